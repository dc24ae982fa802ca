"""Open files: the fd table (files.img, fdinfo-N.img) and fs (cwd, root, umask).

The fd-table loop here knows no kind of file by name: each fd's kind (torpor.parts.fds, one
module per kind) refuses what it cannot save, writes its image entry and restores it. What
every kind shares is done here: an open file description several fds share (in any process
of the tree, found with kcmp) is saved once and restored once, the others take copies of it;
close-on-exec; the owner that receives SIGIO/SIGURG (F_SETOWN_EX, F_SETSIG); and the file
locks held through each fd (parts.locks).
An fd of no known kind refuses the dump, naming it.

Files in flight, carried by messages queued on sockets (SCM_RIGHTS), are open files too,
maybe held by no fd any more: the socket's kind gives torpor copies of them, which go
through the kinds like the tree's fds (inspected with them, and saved from torpor's copy
unless an fd of the tree shares the open file; only kinds that can be saved so travel).
At restore, those no fd holds are made in the root process, above its fds, for the
sockets' queues to carry again, and closed there with what the kinds parked.
"""

import fcntl
import os
import struct
from dataclasses import replace

from torpor.arch import X86_64
from torpor.context import DumpContext, DumpOptions, RestoreContext, is_utf8
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel.files import FdDescription, describe_fd, same_open_file
from torpor.kernel.procfs import list_fds, list_tasks, proc, read_status
from torpor.parts import fds as kinds
from torpor.parts import locks, memfds
from torpor.parts.fds.base import FD_CLOEXEC, copy, open_in_task, park

F_SETFL = 4
F_SETSIG, F_GETSIG = 10, 11
SETFL_FLAGS = os.O_APPEND | os.O_ASYNC | os.O_DIRECT | os.O_NOATIME | os.O_NONBLOCK
F_SETOWN_EX, F_GETOWN_EX = 15, 16
SCM_RIGHTS = 1


# How a refusal names the files of kinds torpor does not save (FdDescription.kind).
_READABLE = {
    "io_uring": "an io_uring instance",
    "userfaultfd": "a userfaultfd",
    "perf_event": "a perf event",
    "bpf-map": "a BPF map",
    "bpf-prog": "a BPF program",
    "bpf_link": "a BPF link",
    "bpf_iter": "a BPF iterator",
    "kvm-vm": "a KVM virtual machine",
    "dmabuf": "a DMA buffer",
}


def _a(what: str) -> str:
    if what in _READABLE:
        return _READABLE[what]
    return ("an " if what[:1] in "aeio" else "a ") + what


def inspect(fds_by_pid: dict[int, list[FdDescription]], tree: "TreeFiles") -> None:
    """Refuse unsupported fds of any process of the tree, and files in flight, before
    anything about it changes; each kind's state in `tree` starts with what it found."""
    found: dict[str, list] = {k.field: [] for k in kinds.KINDS}
    for pid, fds in fds_by_pid.items():
        for d in fds:
            kind = kinds.kind_of(d)
            if kind is None:
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is {_a(d.kind)} ({d.target}), not supported yet"
                )
            if not is_utf8(d.target):
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is {d.target!r}, a path that is not UTF-8, "
                    "which images cannot hold"
                )
            found[kind.field].append((pid, d))
    _add_in_flight(found, tree)
    tasks = {tid for pid in fds_by_pid for tid in list_tasks(pid)}
    tree.options = replace(tree.options, tasks=frozenset(tasks))
    for kind in kinds.KINDS:
        kind.inspect(found[kind.field], tree.options, tree.states[kind.field])


def _add_in_flight(found: dict[str, list], tree: "TreeFiles") -> None:
    """Add to `found` the files in flight on the fds found (as torpor's copies), then
    those carried in turn by the files in flight, each open file once."""
    me = os.getpid()
    new = found
    while any(new.values()):
        fresh: dict[str, list] = {k.field: [] for k in kinds.KINDS}
        for kind in kinds.KINDS:
            for fd in kind.in_flight(new[kind.field]) if new[kind.field] else ():
                tree.carried.copies.append(fd)
                d = describe_fd(me, fd)
                carried = kinds.kind_of(d)
                if carried is None or not carried.travels:
                    raise UnsupportedError(
                        f"a message queued on {kind.name} of the tree carries "
                        f"{carried.name if carried else _a(d.kind)} ({d.target}), "
                        "not supported yet"
                    )
                if not _already_found(found, fresh, carried.field, me, d):
                    fresh[carried.field].append((me, d))
        for field, more in fresh.items():
            found[field].extend(more)
        new = fresh


def _already_found(found, fresh, field: str, me: int, d: FdDescription) -> bool:
    return any(
        other.target == d.target and same_open_file(pid, other.fd, me, d.fd)
        for pid, other in (*found[field], *fresh[field])
    )


def describe_all(pid: int) -> list[FdDescription]:
    return [describe_fd(pid, fd) for fd in list_fds(pid)]


class TreeFiles:
    """The open file descriptions of a tree being dumped: an fd that shares its description
    with an fd seen before (in any process, found with kcmp) gets the same file id; each
    kind keeps its tree-wide state here, for a dump with `options`."""

    def __init__(self, options: DumpOptions):
        self.options = options
        self.seen: dict[str, list[tuple[int, int, int]]] = {}  # target -> (pid, fd, file id)
        self.states: dict[str, dict] = {k.field: {} for k in kinds.KINDS}
        self.locks = locks.TreeLocks()
        self.carried = InFlight()
        self.memfds = memfds.TreeMemfds()  # held by fds or mapped, by any task of the tree
        self.tables: set[int] = set()  # the files_id of each fd table saved (fdinfo-N.img)

    def known_id(self, pid: int, d: FdDescription) -> int | None:
        for other_pid, other_fd, file_id in self.seen.get(d.target, ()):
            if same_open_file(other_pid, other_fd, pid, d.fd):
                return file_id
        return None

    def write(self, images) -> None:
        for kind in kinds.KINDS:
            kind.write(images, self.states[kind.field])
        self.locks.write(images)

    def inventory(self, entry) -> None:
        """Each kind's fields of inventory.img."""
        for kind in kinds.KINDS:
            kind.inventory(entry, self.states[kind.field])

    def dump_done(self, killed: bool) -> None:
        """Each kind's last word on the dump: the tree is killed next, or let go."""
        for kind in kinds.KINDS:
            kind.dump_done(self.states[kind.field], killed)
        self.carried.close()
        self.memfds.close()


class InFlight:
    """The files in flight of a tree being dumped: torpor's copies of them, and the
    ScmEntry of each message carrying some, whose file ids dump_carried fills in."""

    def __init__(self):
        self.copies: list[int] = []  # every copy torpor holds, closed when the dump is over
        self.pending: list[tuple] = []  # (ScmEntry, the copies of the fds it carries)

    def carry(self, scm: "pb.ScmEntry", fds: list[int]) -> None:
        """Fill `scm`, of a message carrying `fds` (torpor's copies, owned from now on)."""
        self.copies.extend(fds)
        scm.type = SCM_RIGHTS
        self.pending.append((scm, list(fds)))

    def close(self) -> None:
        for fd in self.copies:
            os.close(fd)
        self.copies.clear()


def dump(ctx: DumpContext, fds: list[FdDescription], tree: TreeFiles) -> None:
    """The process's fd table (fdinfo-N.img, N its files_id) and fs: a table it shares with
    the process that saved it (clone CLONE_FILES, the same files_id) is saved once."""
    if ctx.core.ids.files_id not in tree.tables:
        tree.tables.add(ctx.core.ids.files_id)
        _dump_table(ctx, fds, tree)
    _dump_fs(ctx)


def _dump_table(ctx: DumpContext, fds: list[FdDescription], tree: TreeFiles) -> None:
    entries = []
    uid, euid = (int(x) for x in read_status(ctx.pid)["Uid"].split()[:2])
    for d in fds:
        kind = kinds.kind_of(d)
        file_id = tree.known_id(ctx.pid, d)
        if file_id is None:
            file_id = _add_file(ctx, kind, d, tree, _owner(ctx, d.fd, uid, euid))
            tree.seen.setdefault(d.target, []).append((ctx.pid, d.fd, file_id))
        tree.locks.dump_fd(ctx, d.fd, file_id)
        entries.append(
            pb.fdinfo_pb2.FdinfoEntry(
                id=file_id,
                flags=FD_CLOEXEC if d.flags & os.O_CLOEXEC else 0,
                type=kind.fd_type,
                fd=d.fd,
            )
        )
    ctx.images.write(f"fdinfo-{ctx.core.ids.files_id}.img", entries)


def dump_carried(ctx: DumpContext, tree: TreeFiles) -> None:
    """Give the messages' files in flight their file ids, once every process was dumped:
    that of an fd of the tree sharing the open file, else a file of its own, saved from
    torpor's copy (`ctx`: torpor's, in_flight); what those carry in turn too."""
    while tree.carried.pending:
        scm, fds = tree.carried.pending.pop(0)
        for fd in fds:
            d = describe_fd(ctx.pid, fd)
            file_id = tree.known_id(ctx.pid, d)
            if file_id is None:
                kind = kinds.kind_of(d)
                if kind is None or not kind.travels:  # sent from outside while frozen
                    raise UnsupportedError(
                        f"a message queued in the tree carries {_a(d.kind)} ({d.target}), "
                        "not supported yet"
                    )
                file_id = _add_file(ctx, kind, d, tree, _own_copy_owner(fd))
                tree.seen.setdefault(d.target, []).append((ctx.pid, fd, file_id))
            scm.rights.append(file_id)


def _own_copy_owner(fd: int) -> "pb.fown_pb2.FownEntry":
    """The owner entry of an open file torpor holds a copy of (the owner is the open
    file's, so torpor's copy shows it)."""
    owner_type, owner = struct.unpack("<ii", fcntl.fcntl(fd, F_GETOWN_EX, bytes(8)))
    return pb.fown_pb2.FownEntry(
        uid=os.getuid(), euid=os.geteuid(), signum=fcntl.fcntl(fd, F_GETSIG),
        pid_type=owner_type if owner else 0, pid=owner,
    )  # fmt: skip


def _add_file(ctx: DumpContext, kind, d: FdDescription, tree: TreeFiles, fown) -> int:
    entry = kind.dump(ctx, d, tree.states[kind.field], fown)

    def make(file_id):
        entry.id = file_id
        return pb.fdinfo_pb2.FileEntry(type=kind.fd_type, id=file_id, **{kind.field: entry})

    return ctx.files.add(("fd", ctx.pid, d.fd), make)


def _owner(ctx: DumpContext, fd: int, uid: int, euid: int) -> "pb.fown_pb2.FownEntry":
    """Who gets the fd's SIGIO (F_GETOWN_EX) and which signal (F_GETSIG), asked in the task;
    `uid` and `euid` are the process's."""
    task = ctx.task
    out = task.reserve(8)
    task.call(X86_64, "fcntl", fd, F_GETOWN_EX, out)
    owner_type, owner = struct.unpack("<ii", task.read(out, 8))
    signum = task.call(X86_64, "fcntl", fd, F_GETSIG)
    return pb.fown_pb2.FownEntry(
        uid=uid, euid=euid, signum=signum, pid_type=owner_type if owner else 0, pid=owner
    )


def _dump_fs(ctx: DumpContext) -> None:
    cwd = os.readlink(proc(ctx.pid, "cwd"))
    root = os.readlink(proc(ctx.pid, "root"))
    if cwd.endswith(" (deleted)"):
        raise UnsupportedError(f"the working directory {cwd} was deleted")
    if root != "/":
        raise UnsupportedError(f"the process runs chrooted in {root}, not supported yet")
    umask = int(read_status(ctx.pid)["Umask"], 8)
    fs = pb.fs_pb2.FsEntry(
        cwd_id=ctx.files.add_path(cwd, os.O_RDONLY | os.O_DIRECTORY),
        root_id=ctx.files.add_path(root, os.O_RDONLY | os.O_DIRECTORY),
        umask=umask,
    )
    ctx.images.write(f"fs-{ctx.pid}.img", [fs])


# --- restore ---------------------------------------------------------------------------------


def restore_problems(files: dict, shell_job: bool) -> list[str]:
    """Why the open files of the images cannot be reopened with these options (each kind
    says), found before anything is created."""
    problems = []
    for f in files.values():
        kind = kinds.kind_of_entry(f)
        entry = getattr(f, kind.field) if kind else None
        problem = kind.restore_problem(entry, shell_job) if kind else None
        if not problem and entry is not None and "fown" in entry.DESCRIPTOR.fields_by_name:
            problem = _owner_problem(f.id, entry.fown)
        if problem and problem not in problems:
            problems.append(problem)
    return problems


def external_keys(files: dict) -> dict[str, int]:
    """The keys of the open files whose other side was outside the tree (what
    --inherit-fd may hand in), with the file id of each."""
    keys = {}
    for f in files.values():
        kind = kinds.kind_of_entry(f)
        key = kind.external_key(getattr(f, kind.field)) if kind else None
        if key:
            keys[key] = f.id
    return keys


def describe(f) -> str:
    """A FileEntry in a few words (its kind says)."""
    kind = kinds.kind_of_entry(f)
    return kind.describe(getattr(f, kind.field)) if kind else "a file of no known kind"


def in_flight_problems(images, files: dict) -> list[str]:
    """Why the files the saved messages carry cannot be made again: a file id the images
    do not have, or a kind that does not travel."""
    problems = []
    for file_id in sorted(_carried(images, files)):
        f = files.get(file_id)
        kind = kinds.kind_of_entry(f) if f is not None else None
        if f is None:
            problems.append(f"a saved message carries file id {file_id}, which is not saved")
        elif kind is None or not kind.travels:
            problems.append(
                f"a saved message carries file {file_id} "
                f"({kind.name if kind else 'of no known kind'}), which torpor cannot send again"
            )
    return problems


def _carried(images, files: dict) -> set[int]:
    """The file ids carried by the messages saved on the open files `files`."""
    by_kind: dict = {}
    for f in files.values():
        kind = kinds.kind_of_entry(f)
        if kind is not None:
            by_kind.setdefault(kind, []).append(getattr(f, kind.field))
    return set().union(*(kind.carried_files(images, got) for kind, got in by_kind.items()))


F_OWNER_TYPES = (0, 1, 2)  # F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP


def _owner_problem(file_id: int, fown) -> str | None:
    """A saved SIGIO owner F_SETOWN_EX and F_SETSIG cannot take: a type no owner has, an ID
    or a signal beyond what the kernel numbers."""
    if fown.pid_type not in F_OWNER_TYPES or fown.pid >= 1 << 31 or fown.signum > 64:
        return f"file {file_id}: SIGIO owner {fown.pid} (type {fown.pid_type}) is not one"
    return None


def memory_objects(files: dict) -> dict[int, tuple[str, int, int]]:
    """The memory objects (memfds) the tree's open files are: id -> (name, size, seals)."""
    found = {}
    for f in files.values():
        kind = kinds.kind_of_entry(f)
        got = kind.memory_object(getattr(f, kind.field)) if kind else None
        if got:
            found[got[0]] = got[1:]
    return found


def close_inherited(ctx: RestoreContext) -> None:
    ctx.task.call(X86_64, "close_range", 0, 0xFFFFFFFF, 0)


class SharedFds:
    """Where each file description of a tree being restored was first put, so that other
    fds (in any process) take the very same description instead of a new one; and each
    kind's own state for the whole restore."""

    def __init__(self):
        self.files: dict[int, tuple[int, int]] = {}  # file id -> (saved PID, fd)
        self.parked_from: dict[int, int] = {}  # saved PID -> its first parked fd (base.park_at)
        self.states: dict[str, dict] = {k.field: {} for k in kinds.KINDS}


def restore(ctx: RestoreContext) -> None:
    entries = ctx.images.read(f"fdinfo-{ctx.core.ids.files_id}.img")
    shared: SharedFds = ctx.shared_files
    placed = []
    for e in entries:
        f = ctx.files.get(e.id)
        if f is None:
            raise ImageError(f"fdinfo: fd {e.fd} refers to unknown file id {e.id}")
        kind = kinds.kind_of_entry(f)
        if kind is None or f.type != kind.fd_type or e.type != kind.fd_type:
            raise ImageError(f"fdinfo: fd {e.fd} has a file kind torpor cannot restore")
        placed.append((e.fd, e, kind, getattr(f, kind.field)))
    for kind in kinds.KINDS:
        kind.prepare(ctx, shared.states[kind.field])
    for fd, e, kind, entry in sorted(placed, key=lambda p: p[0]):
        cloexec = bool(e.flags & FD_CLOEXEC)
        if e.id in shared.files:
            copy(ctx, *shared.files[e.id], fd, cloexec)
            continue
        _restore_file(ctx, kind, entry, e.id, fd, cloexec)
    for kind in kinds.KINDS:
        kind.finish(ctx, shared.states[kind.field])


def _restore_file(ctx: RestoreContext, kind, entry, file_id: int, fd: int, cloexec: bool) -> None:
    """A new open file for `entry` at `fd`, with its owner and O_ASYNC; the tree's other
    fds of that file take it from there."""
    shared: SharedFds = ctx.shared_files
    kind.restore(ctx, entry, fd, cloexec, shared.states[kind.field])
    fown, flags = kind.owner_and_flags(ctx, entry)
    _restore_owner(ctx, fd, fown)
    if flags & os.O_ASYNC:  # signals start with F_SETFL, not with open(2)
        ctx.task.call(X86_64, "fcntl", fd, F_SETFL, flags & SETFL_FLAGS)
    shared.files[file_id] = (ctx.image_pid, fd)


def _restore_in_flight(ctx: RestoreContext) -> None:
    """Make the files in flight that no fd of the tree holds, in process `ctx` (the root)
    above its fds, where the sockets' kinds find them (SharedFds.files) to send again."""
    shared: SharedFds = ctx.shared_files
    made = set()
    for file_id in sorted(_carried(ctx.images, ctx.files) - shared.files.keys()):
        f = ctx.files[file_id]  # in_flight_problems checked it before anything was made
        kind = kinds.kind_of_entry(f)
        fd = park(ctx, open_in_task(ctx, "/", os.O_PATH))  # a number above the process's fds
        _restore_file(ctx, kind, getattr(f, kind.field), file_id, fd, True)
        made.add(kind)
    for kind in made:
        kind.finish(ctx, shared.states[kind.field])


def _restore_owner(ctx: RestoreContext, fd: int, fown) -> None:
    task = ctx.task
    if fown.pid:
        got = task.syscall(
            X86_64, "fcntl", fd, F_SETOWN_EX, task.put(struct.pack("<ii", fown.pid_type, fown.pid))
        )
        if got < 0:
            raise RestoreError(
                f"cannot make process {fown.pid} the owner of fd {fd} of process "
                f"{ctx.image_pid} (F_SETOWN_EX): {os.strerror(-got)}"
            )
    if fown.signum:
        task.call(X86_64, "fcntl", fd, F_SETSIG, fown.signum)


def finish_tree(contexts: list[RestoreContext]) -> None:
    """What the kinds do once every process of the tree has all its fds; then each process
    that owns its fd table takes back its file locks."""
    shared: SharedFds = contexts[0].shared_files
    _restore_in_flight(contexts[0])
    for kind in kinds.KINDS:
        kind.finish_tree(contexts, shared.states[kind.field])
    for ctx in contexts:
        if not ctx.owns_files:  # its parent's table, finished with it
            continue
        at = shared.parked_from.get(ctx.image_pid)
        if at is not None:  # what the kinds kept for the tree to take
            ctx.task.call(X86_64, "close_range", at, 0xFFFFFFFF, 0)
        locks.restore(ctx)


def restore_fs(ctx: RestoreContext) -> None:
    fs = ctx.images.read_one(f"fs-{ctx.image_pid}.img")
    cwd = ctx.files.get(fs.cwd_id)
    if cwd is None:
        raise ImageError(f"fs-{ctx.image_pid}.img: unknown cwd file id {fs.cwd_id}")
    try:
        ctx.task.call(X86_64, "chdir", ctx.task.put(cwd.reg.name.encode() + b"\0"))
    except OSError as e:
        raise RestoreError(f"cannot enter working directory {cwd.reg.name}: {e.strerror}") from None
    ctx.task.call(X86_64, "umask", fs.umask)

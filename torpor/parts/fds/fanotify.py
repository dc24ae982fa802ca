"""fanotify: an instance's fanotify_init flags and event flags, and every mark with its
mask, ignored mask and flags. CRIU's FANOTIFY kind.

The kernel shows an inode mark with a file handle of the marked file, whose path the dump
finds through it (open_by_handle_at on a mount of its filesystem, as for inotify); a mount
mark by its mount ID, whose mount point the process's mountinfo gives; a filesystem mark
by its device, saved as a mount mark on a mount of that filesystem (torpor_filesystem).
Events queued and not read yet cannot be saved without reading them away: an instance
holding some refuses the dump, naming the fd. So does an instance of a permission class
(FAN_CLASS_CONTENT, FAN_CLASS_PRE_CONTENT) while some task waits for an answer to a
permission event (its wchan is fanotify_handle_event): the answer could not be given once
the tree is stopped, nor by the restored instance, which never had that event. A mount or
filesystem mark asking permission events refuses too: made again before the program runs,
it would hold every open of those files, torpor's own included, with no one to answer.

Nothing of an instance is read through the task, so one in flight (carried by a message
queued on a socket) is saved from torpor's copy of it like the others.

The restore makes the instance in the task (fanotify_init) at its fd; its marks are added
once every fd of the tree is in place, so that what the restore itself opens and writes
queues no event and waits on no permission, and in the kernel's order (it lists the
newest mark first).
"""

import fcntl
import os
import struct
from pathlib import Path

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.kernel.files import borrowed, path_of_handle
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import FdKind, place

FIONREAD = 0x541B
F_SETFL = 4
AT_FDCWD = -100
HANDLE_WORDS = 16  # CRIU writes at least this many

FAN_NONBLOCK = 0x2
FAN_CLASS_CONTENT, FAN_CLASS_PRE_CONTENT = 0x4, 0x8
FAN_MARK_ADD = 0x1
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_IGNORED_SURV_MODIFY = 0x40
FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM = 0x10, 0x100
FAN_MARK_EVICTABLE = 0x200
FAN_MARK_IGNORE = 0x400
PERMISSION_WAIT = "fanotify_handle_event"
# FAN_OPEN_PERM, FAN_ACCESS_PERM, FAN_OPEN_EXEC_PERM, FAN_PRE_ACCESS
PERMISSION_EVENTS = 0x10000 | 0x20000 | 0x40000 | 0x100000


class Fanotify(FdKind):
    name = "a fanotify instance"
    fd_type = pb.fdinfo_pb2.FANOTIFY
    field = "ffy"
    travels = True  # nothing of it is read through the task

    def recognise(self, d) -> bool:
        return d.kind == "fanotify"

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            where = (
                f"fd {d.fd} of process {pid} is a fanotify instance"
                if pid != os.getpid()
                else "a message queued in the tree carries a fanotify instance"  # torpor's copy
            )
            queued = _queued(pid, d.fd)
            if queued:
                raise UnsupportedError(
                    f"{where} with {queued} bytes of events not read yet, not supported yet"
                )
            info = fdinfo.fanotify(pid, d.fd)
            for mark in info.marks:
                if mark.kind not in ("inode", "mount", "filesystem"):
                    raise UnsupportedError(f"{where} with a {mark.kind} mark, not supported yet")
                if mark.kind != "inode" and mark.mask & PERMISSION_EVENTS:
                    raise UnsupportedError(
                        f"{where} asking permission for every file of a {mark.kind} "
                        f"(mask {mark.mask:#x}), which would hold the restore's own opens, "
                        "not supported yet"
                    )
            if info.flags & (FAN_CLASS_CONTENT | FAN_CLASS_PRE_CONTENT):
                waiting = _waiting_for_permission()
                if waiting:
                    raise UnsupportedError(
                        f"{where} of a permission class, and task {waiting} waits for the "
                        "answer to a permission event, not supported yet"
                    )

    def dump(self, ctx, d, state, fown):
        info = fdinfo.fanotify(ctx.pid, d.fd)
        entry = pb.fsnotify_pb2.FanotifyFileEntry(
            flags=d.flags & ~os.O_CLOEXEC, fown=fown, faflags=info.flags,
            evflags=info.event_flags,
        )  # fmt: skip
        mounts = _mounts(ctx.pid)
        for mark in info.marks:
            saved = entry.mark.add(
                id=0, mflags=mark.mflags, mask=mark.mask, ignored_mask=mark.ignored_mask,
                s_dev=mark.sdev,
            )  # fmt: skip
            if mark.kind == "inode":
                saved.type = pb.fsnotify_pb2.INODE
                saved.ie.i_ino = mark.inode
                saved.ie.f_handle.CopyFrom(_handle_entry(ctx, d, mark))
                continue
            saved.type = pb.fsnotify_pb2.MOUNT
            if mark.kind == "mount":
                found = mounts.get(mark.mnt_id)
            else:
                saved.torpor_filesystem = True
                found = _mount_of_device(mounts, mark.sdev)
            if found is None:
                raise UnsupportedError(
                    f"fd {d.fd} of process {ctx.pid} is a fanotify instance marking a "
                    f"{mark.kind} the process sees no mount of, not supported yet"
                )
            saved.me.mnt_id, saved.me.path = found[0], found[1]
        return entry

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        # The init flags as they were given (fdinfo shows them so), then the file's own
        # O_NONBLOCK and close-on-exec flag, which fcntl may have changed since.
        task = ctx.task
        got = task.syscall(X86_64, "fanotify_init", entry.faflags, entry.evflags)
        if got < 0:
            raise RestoreError(
                f"cannot make fd {fd} of process {ctx.image_pid} a fanotify instance again "
                f"(flags {entry.faflags:#x}): {os.strerror(-got)}"
            )
        if bool(entry.faflags & FAN_NONBLOCK) != bool(entry.flags & os.O_NONBLOCK):
            task.call(X86_64, "fcntl", got, F_SETFL, entry.flags & os.O_NONBLOCK)
        place(ctx, got, fd, cloexec, always_set_flag=True)
        state.setdefault("marks", []).append((ctx, fd, entry))

    def finish_tree(self, contexts, state) -> None:
        for ctx, fd, entry in state.pop("marks", ()):
            for mark in reversed(entry.mark):
                _add_mark(ctx, fd, mark)


def _queued(pid: int, fd: int) -> int:
    """How many bytes of events fd `fd` of `pid` holds, not read yet (FIONREAD)."""
    with borrowed(pid, fd) as own:
        return struct.unpack("i", fcntl.ioctl(own, FIONREAD, bytes(4)))[0]


def _handle_entry(ctx, d, mark) -> "pb.fh_pb2.FhEntry":
    path = path_of_handle(mark.sdev, mark.handle_type, mark.handle)
    if path is None:
        raise UnsupportedError(
            f"fd {d.fd} of process {ctx.pid} is a fanotify instance marking inode "
            f"{mark.inode}, which is deleted or on no mount torpor sees, not supported yet"
        )
    padded = mark.handle.ljust(max(HANDLE_WORDS * 8, -(-len(mark.handle) // 8) * 8), b"\0")
    return pb.fh_pb2.FhEntry(
        bytes=len(mark.handle), type=mark.handle_type, path=path,
        handle=struct.unpack(f"<{len(padded) // 8}Q", padded),
    )  # fmt: skip


def _mounts(pid: int) -> dict[int, tuple[int, str, int]]:
    """The process's mounts: mount ID -> (mount ID, mount point, kernel dev_t), the ones
    showing their filesystem's root first among those of one device."""
    found = {}
    for line in Path(proc(pid, "mountinfo")).read_text().splitlines():
        fields = line.split()
        major, minor = (int(x) for x in fields[2].split(":"))
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        found[int(fields[0])] = (int(fields[0]), point, major << 20 | minor, fields[3] == "/")
    return {k: v[:3] for k, v in sorted(found.items(), key=lambda kv: not kv[1][3])}


def _mount_of_device(mounts: dict, sdev: int):
    return next((m for m in mounts.values() if m[2] == sdev), None)


def _waiting_for_permission() -> int | None:
    """A task of the host blocked until a fanotify listener answers its permission event,
    or None."""
    for task in Path("/proc").glob("[0-9]*/task/[0-9]*"):
        try:
            if (task / "wchan").read_text().strip() == PERMISSION_WAIT:
                return int(task.name)
        except OSError:
            continue
    return None


def _add_mark(ctx, instance: int, mark) -> None:
    task = ctx.task
    if mark.HasField("ie"):
        where, kind = mark.ie.f_handle.path, 0
    else:
        where = mark.me.path
        kind = FAN_MARK_FILESYSTEM if mark.torpor_filesystem else FAN_MARK_MOUNT
    path = task.put(where.encode() + b"\0")
    keep = mark.mflags & FAN_MARK_EVICTABLE
    steps = [(FAN_MARK_ADD | kind | keep, mark.mask)]
    if mark.ignored_mask:
        ignore = FAN_MARK_IGNORE if mark.mflags & FAN_MARK_IGNORE else FAN_MARK_IGNORED_MASK
        surv = mark.mflags & FAN_MARK_IGNORED_SURV_MODIFY
        steps.append((FAN_MARK_ADD | kind | keep | ignore | surv, mark.ignored_mask))
    for flags, mask in steps:
        if not mask:
            continue
        got = task.syscall(X86_64, "fanotify_mark", instance, flags, mask, AT_FDCWD, path)
        if got < 0:
            raise RestoreError(
                f"cannot mark {where} with fanotify again (fd {instance} of process "
                f"{ctx.image_pid}): {os.strerror(-got)}"
            )


KIND = Fanotify()

"""Open files: the fd table (files.img, fdinfo-N.img, pipes-data.img) and fs (cwd, root, umask).

Supported: regular files and directories (path, offset, flags), memory character devices such
as /dev/null, pipes whose both ends belong to the task (with their unread data), and with
--shell-job the terminal. Anything else refuses the dump, naming the fd and its kind.
"""

import os

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext, no_owner
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel.files import FdDescription, describe_fd, peek_pipe, same_open_file
from torpor.kernel.procfs import list_fds, proc, read_status

AT_FDCWD = -100
F_SETFD, FD_CLOEXEC = 2, 1
O_ACCMODE = 3
OPEN_ONLY_FLAGS = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC
SEEK_SET = 0
MEMFD_PREFIX = "/memfd:"
TTY_INFO_ID = 1


def _is_memfd(d: FdDescription) -> bool:
    return d.kind == "reg" and d.target.startswith(MEMFD_PREFIX)


def _check_supported(pid: int, d: FdDescription, shell_job: bool) -> None:
    kind, fd = d.kind, f"fd {d.fd} of process {pid}"
    if kind == "tty" and not shell_job:
        raise UnsupportedError(f"{fd} is a terminal ({d.target}): dump with --shell-job")
    if kind in ("reg", "dir") and d.target.endswith(" (deleted)") and not _is_memfd(d):
        raise UnsupportedError(f"{fd} is a deleted file ({d.target}), not supported yet")
    if kind not in ("reg", "dir", "chr-mem", "tty", "pipe"):
        raise UnsupportedError(f"{fd} is a {kind} ({d.target}), not supported yet")


def inspect(fds_by_pid: dict[int, list[FdDescription]], shell_job: bool) -> None:
    """Refuse unsupported fds of any process of the tree before anything about it changes."""
    pipes: dict[int, set[int]] = {}
    for pid, fds in fds_by_pid.items():
        for d in fds:
            _check_supported(pid, d, shell_job)
            if d.kind == "pipe":
                pipes.setdefault(d.inode, set()).add(d.flags & O_ACCMODE)
    for pid, fds in fds_by_pid.items():
        for d in fds:
            if d.kind == "pipe" and pipes[d.inode] != {os.O_RDONLY, os.O_WRONLY}:
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a pipe ({d.target}) whose other end is "
                    "outside the process tree, not supported yet"
                )


def describe_all(pid: int) -> list[FdDescription]:
    return [describe_fd(pid, fd) for fd in list_fds(pid)]


class TreeFiles:
    """The open file descriptions of a tree being dumped: an fd that shares its description
    with an fd seen before (in any process, found with kcmp) gets the same file id; the
    unread contents of each pipe are saved once."""

    def __init__(self):
        self.seen: dict[str, list[tuple[int, int, int]]] = {}  # target -> (pid, fd, file id)
        self.pipe_data: dict[int, tuple] = {}  # pipe inode -> (PipeDataEntry, bytes)

    def known_id(self, pid: int, d: FdDescription) -> int | None:
        for other_pid, other_fd, file_id in self.seen.get(d.target, ()):
            if same_open_file(other_pid, other_fd, pid, d.fd):
                return file_id
        return None

    def write(self, images) -> None:
        if self.pipe_data:
            images.write("pipes-data.img", list(self.pipe_data.values()))


def dump(ctx: DumpContext, fds: list[FdDescription], tree: TreeFiles) -> None:
    entries = []
    for d in fds:
        file_id = tree.known_id(ctx.pid, d)
        if file_id is None:
            file_id = _add_file(ctx, d)
            tree.seen.setdefault(d.target, []).append((ctx.pid, d.fd, file_id))
            if d.kind == "pipe" and d.inode not in tree.pipe_data:
                data = peek_pipe(ctx.pid, d.fd) if d.flags & O_ACCMODE == os.O_RDONLY else None
                if data is not None:
                    tree.pipe_data[d.inode] = (
                        pb.pipe_data_pb2.PipeDataEntry(pipe_id=d.inode, bytes=len(data)),
                        data,
                    )
        entries.append(
            pb.fdinfo_pb2.FdinfoEntry(
                id=file_id,
                flags=FD_CLOEXEC if d.flags & os.O_CLOEXEC else 0,
                type=_fd_type(d),
                fd=d.fd,
            )
        )
    ctx.images.write(f"fdinfo-{ctx.core.ids.files_id}.img", entries)
    _dump_fs(ctx)


def _fd_type(d: FdDescription) -> int:
    return {"pipe": pb.fdinfo_pb2.PIPE, "tty": pb.fdinfo_pb2.TTY}.get(d.kind, pb.fdinfo_pb2.REG)


def _add_file(ctx: DumpContext, d: FdDescription) -> int:
    flags = d.flags & ~os.O_CLOEXEC
    if d.kind == "pipe":
        return ctx.files.add(
            ("fd", ctx.pid, d.fd),
            lambda i: pb.fdinfo_pb2.FileEntry(
                type=pb.fdinfo_pb2.PIPE,
                id=i,
                pipe=pb.pipe_pb2.PipeEntry(id=i, pipe_id=d.inode, flags=flags, fown=no_owner()),
            ),
        )
    if d.kind == "tty":
        return ctx.files.add(
            ("fd", ctx.pid, d.fd),
            lambda i: pb.fdinfo_pb2.FileEntry(
                type=pb.fdinfo_pb2.TTY,
                id=i,
                tty=pb.tty_pb2.TtyFileEntry(
                    id=i, tty_info_id=TTY_INFO_ID, flags=flags, fown=no_owner()
                ),
            ),
        )
    reg = pb.regfile_pb2.RegFileEntry(
        flags=flags, pos=d.pos, name=d.target, fown=no_owner(), mode=d.mode
    )
    if _is_memfd(d):
        reg.torpor_memfd = d.inode
        reg.size = os.stat(proc(ctx.pid, "fd", str(d.fd))).st_size
        ctx.memfds.append((ctx.pid, d.fd, d.inode, reg.size))

    def make(i):
        reg.id = i
        return pb.fdinfo_pb2.FileEntry(type=pb.fdinfo_pb2.REG, id=i, reg=reg)

    return ctx.files.add(("fd", ctx.pid, d.fd), make)


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


def close_inherited(ctx: RestoreContext) -> None:
    ctx.task.call(X86_64, "close_range", 0, 0xFFFFFFFF, 0)


def _open(ctx: RestoreContext, path: str, flags: int) -> int:
    """Open in the task through its own ABI, so that flags such as O_LARGEFILE come out as
    they were."""
    try:
        return ctx.task.call(
            ctx.abi,
            "openat",
            AT_FDCWD,
            ctx.task.put(path.encode() + b"\0"),
            flags & ~OPEN_ONLY_FLAGS,
            0,
        )
    except OSError as e:
        raise RestoreError(f"cannot reopen {path}: {os.strerror(e.errno)}") from None


def _place(
    ctx: RestoreContext, got: int, fd: int, cloexec: bool, always_set_flag: bool = False
) -> None:
    """Move the descriptor `got` to number `fd` with the saved close-on-exec flag (set or
    cleared when `always_set_flag`, else only set: a fresh open has it clear)."""
    task = ctx.task
    if got != fd:
        task.call(X86_64, "dup3", got, fd, os.O_CLOEXEC if cloexec else 0)
        task.call(X86_64, "close", got)
    elif cloexec or always_set_flag:
        task.call(X86_64, "fcntl", fd, F_SETFD, FD_CLOEXEC if cloexec else 0)


class SharedFds:
    """Where each file description and pipe of a tree being restored was first put, so that
    other processes take the very same description (pidfd_getfd) instead of a new one."""

    def __init__(self):
        self.files: dict[int, tuple[int, int]] = {}  # file id -> (saved PID, fd)
        self.pipes: dict[int, tuple[int, int, int]] = {}  # pipe id -> (PID, read fd, write fd)
        self.parked_from: dict[int, int] = {}  # saved PID -> lowest fd of its parked pipe ends


def restore(ctx: RestoreContext) -> None:
    entries = ctx.images.read(f"fdinfo-{ctx.core.ids.files_id}.img")
    shared: SharedFds = ctx.shared_files
    park_at = max((e.fd for e in entries), default=0) + 1  # above every fd to be placed
    made_pipes = []
    terminal = None
    for e in sorted(entries, key=lambda e: e.fd):
        f = ctx.files.get(e.id)
        if f is None:
            raise ImageError(f"fdinfo: fd {e.fd} refers to unknown file id {e.id}")
        cloexec = bool(e.flags & FD_CLOEXEC)
        if e.id in shared.files:
            _copy(ctx, *shared.files[e.id], e.fd, cloexec)
            continue
        if f.HasField("reg"):
            name = f.reg.name
            if f.reg.HasField("torpor_memfd"):
                name = ctx.shared_memory.path(f.reg.torpor_memfd)
            got = _open(ctx, name, f.reg.flags)
            _place(ctx, got, e.fd, cloexec)
            if f.reg.pos:
                ctx.task.call(X86_64, "lseek", e.fd, f.reg.pos, SEEK_SET)
        elif f.HasField("tty"):
            if not ctx.shell_job:
                raise RestoreError(f"fd {e.fd} was a terminal: restore with --shell-job")
            terminal = terminal or _own_terminal()
            _place(ctx, _open(ctx, terminal, f.tty.flags), e.fd, cloexec)
        elif f.HasField("pipe"):
            if f.pipe.pipe_id not in shared.pipes:
                _make_pipe(ctx, f.pipe.pipe_id, park_at)
                made_pipes.append(f.pipe.pipe_id)
            _restore_pipe_end(ctx, f.pipe, e.fd, cloexec)
        else:
            raise ImageError(f"fdinfo: fd {e.fd} has a file kind torpor cannot restore")
        shared.files[e.id] = (ctx.image_pid, e.fd)
    if made_pipes:
        shared.parked_from[ctx.image_pid] = park_at
        data = {}
        if ctx.images.has("pipes-data.img"):
            data = {e.pipe_id: d for e, d in ctx.images.read_with_payloads("pipes-data.img")}
        for pipe_id in made_pipes:
            if data.get(pipe_id):
                _refill_pipe(ctx, shared.pipes[pipe_id][2], data[pipe_id])


def close_parked(ctx: RestoreContext) -> None:
    """Close the spare pipe ends, once every process of the tree has taken its own."""
    park_at = ctx.shared_files.parked_from.get(ctx.image_pid)
    if park_at is not None:
        ctx.task.call(X86_64, "close_range", park_at, 0xFFFFFFFF, 0)


def _copy(ctx: RestoreContext, owner: int, fd: int, target: int, cloexec: bool) -> None:
    """Make fd `target` of this task a copy of fd `fd` of process `owner` (maybe this one):
    the same open file description, with the saved close-on-exec flag."""
    task = ctx.task
    if owner == ctx.image_pid:
        task.call(X86_64, "dup3", fd, target, os.O_CLOEXEC if cloexec else 0)
        return
    pidfd = task.call(X86_64, "pidfd_open", owner, 0)
    try:
        got = task.call(X86_64, "pidfd_getfd", pidfd, fd, 0)
    finally:
        task.call(X86_64, "close", pidfd)
    _place(ctx, got, target, cloexec, always_set_flag=True)


def _make_pipe(ctx: RestoreContext, pipe_id: int, park_at: int) -> None:
    """A new pipe, both ends parked above every fd still to be placed, so they never collide."""
    task = ctx.task
    out = task.reserve(8)
    task.call(X86_64, "pipe2", out, 0)
    raw = task.read(out, 8)
    parked = []
    for end in (int.from_bytes(raw[:4], "little"), int.from_bytes(raw[4:], "little")):
        parked.append(task.call(X86_64, "fcntl", end, 1030, park_at))  # F_DUPFD_CLOEXEC
        task.call(X86_64, "close", end)
    ctx.shared_files.pipes[pipe_id] = (ctx.image_pid, *parked)


def _restore_pipe_end(ctx, entry, fd: int, cloexec: bool) -> None:
    task = ctx.task
    owner, read_end, write_end = ctx.shared_files.pipes[entry.pipe_id]
    source = write_end if entry.flags & O_ACCMODE == os.O_WRONLY else read_end
    _copy(ctx, owner, source, fd, cloexec)
    if entry.flags & os.O_NONBLOCK:
        task.call(X86_64, "fcntl", fd, 4, entry.flags & ~O_ACCMODE)  # F_SETFL


def _refill_pipe(ctx: RestoreContext, write_fd: int, data: bytes) -> None:
    fd = os.open(proc(ctx.pid, "fd", str(write_fd)), os.O_WRONLY | os.O_NONBLOCK)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _own_terminal() -> str:
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd)
        except OSError:
            continue
    raise RestoreError("--shell-job needs a terminal on stdin, stdout or stderr")


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

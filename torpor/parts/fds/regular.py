"""Regular files, directories and the memory character devices (/dev/null, /dev/zero,
/dev/urandom ...), reopened by path with their flags and offset; memfds, reopened from the
memory object the restore recreated for the tree (parts.shmem), their size, seals and the
contents no mapping of the tree saved in parts.memfds; files deleted while open,
reopened from their ghost (parts.ghosts). CRIU's REG kind."""

import os
import shutil
import stat

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel.files import MQUEUE_MAGIC, filesystem_type
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import (
    AT_FDCWD,
    OPEN_ONLY_FLAGS,
    FdKind,
    exact_open_abi,
    open_in_task,
    place,
)
from torpor.parts.ghosts import O_TMPFILE_ONLY, is_ghost

MEMFD_PREFIX = "/memfd:"
F_SETFL = 4
SEEK_SET = 0


def is_memfd(d) -> bool:
    return d.kind == "reg" and d.target.startswith(MEMFD_PREFIX)


def _procfs_task(path: str) -> int | None:
    """The task whose /proc directory `path` is in (/proc/PID/..., /proc/PID/task/TID/...),
    or None for other paths."""
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "proc" or not parts[2].isdigit():
        return None
    if len(parts) > 4 and parts[3] == "task" and parts[4].isdigit():
        return int(parts[4])
    return int(parts[2])


class Regular(FdKind):
    name = "a file"
    fd_type = pb.fdinfo_pb2.REG
    field = "reg"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind in ("reg", "dir", "chr-mem")

    def describe(self, entry) -> str:
        return entry.name

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            if not d.target.startswith("/"):  # a pseudo file of no kind torpor knows
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a pseudo file ({d.target}), not supported yet"
                )
            if filesystem_type(pid, d.fd) == MQUEUE_MAGIC:
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a POSIX message queue ({d.target}), "
                    "not supported yet"
                )
            task = _procfs_task(d.target)
            if task is not None and task not in options.tasks:
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is {d.target}, a file of task {task}, which is "
                    "not in the tree (another task may have its PID after a restore), not "
                    "supported yet"
                )
            if is_ghost(d.target) and d.kind == "dir":
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a deleted directory ({d.target}), "
                    "not supported yet"
                )

    def dump(self, ctx, d, state, fown):
        reg = pb.regfile_pb2.RegFileEntry(
            flags=d.flags & ~os.O_CLOEXEC, pos=d.pos, name=d.target, fown=fown, mode=d.mode
        )
        if is_memfd(d):
            reg.torpor_memfd = d.inode
            path = str(proc(ctx.pid, "fd", str(d.fd)))
            reg.size, reg.torpor_memfd_seals = ctx.memfds.hold(d.inode, path)
        elif is_ghost(d.target):
            what = f"fd {d.fd} of process {ctx.pid}"
            ctx.ghosts.saved_for(reg, str(proc(ctx.pid, "fd", str(d.fd))), what)
        return reg

    def memory_object(self, entry):
        if not entry.HasField("torpor_memfd"):
            return None
        name = entry.name.removeprefix(MEMFD_PREFIX).removesuffix(" (deleted)")
        return entry.torpor_memfd, name, entry.size, entry.torpor_memfd_seals

    def restore_problem(self, entry, shell_job) -> str | None:
        """A path that now holds another type of file than the one saved: a FIFO or device
        where a regular file was would block or never end, a link would lead elsewhere."""
        if entry.HasField("torpor_memfd") or not entry.HasField("mode"):
            return None
        try:
            now = os.lstat(entry.name).st_mode
        except (OSError, ValueError):
            return None  # gone (a ghost, or a restore that will say so itself)
        if stat.S_IFMT(now) != stat.S_IFMT(entry.mode):
            return (
                f"{entry.name!r} is now {_type_of(now)}, not the {_type_of(entry.mode)} "
                "that was saved"
            )
        return None

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        name = entry.name
        if entry.HasField("torpor_memfd"):
            name = ctx.shared_memory.path(entry.torpor_memfd)
        # Opened without blocking, should the path be a FIFO an image without the saved
        # type (restore_problem) gives no means to see; the saved flags come back after.
        if entry.flags & O_TMPFILE_ONLY:
            got = _tmpfile_again(ctx, name, entry.flags | os.O_NONBLOCK)
        else:
            got = open_in_task(ctx, name, entry.flags | os.O_NONBLOCK)
        if not entry.flags & os.O_NONBLOCK:
            kept = entry.flags & (os.O_APPEND | os.O_DIRECT | os.O_NOATIME)  # O_ASYNC: later
            ctx.task.call(X86_64, "fcntl", got, F_SETFL, kept)
        place(ctx, got, fd, cloexec)
        if entry.pos:
            ctx.task.call(X86_64, "lseek", fd, entry.pos, SEEK_SET)


def _tmpfile_again(ctx, ghost: str, flags: int) -> int:
    """A file made by O_TMPFILE, made so again in the task (in the directory of its ghost,
    the one it was made in) with `flags`, and filled from its ghost with its contents, mode,
    owner and times; the task's new fd."""
    where = os.path.dirname(ghost)
    try:
        got = ctx.task.call(
            exact_open_abi(ctx, flags), "openat", AT_FDCWD,
            ctx.task.put(where.encode() + b"\0"), flags & ~OPEN_ONLY_FLAGS, 0o600,
        )  # fmt: skip
    except OSError as e:
        raise RestoreError(
            f"cannot make the O_TMPFILE file in {where} again: {os.strerror(e.errno)}"
        ) from None
    st = os.stat(ghost)
    with open(ghost, "rb") as src, open(f"/proc/{ctx.pid}/fd/{got}", "r+b") as dst:
        shutil.copyfileobj(src, dst)
        os.fchown(dst.fileno(), st.st_uid, st.st_gid)
        os.fchmod(dst.fileno(), stat.S_IMODE(st.st_mode))
        dst.flush()
        os.utime(dst.fileno(), ns=(st.st_atime_ns, st.st_mtime_ns))
    return got


def _type_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "file of an unknown type"


KIND = Regular()

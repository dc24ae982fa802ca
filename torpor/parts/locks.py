"""File locks and leases: POSIX record locks (fcntl F_SETLK, lockf), open-file-description
locks (F_OFD_SETLK), flock(2) locks and leases (F_SETLEASE), in CRIU's file-locks.img.

/proc/PID/fdinfo/FD shows the locks held through each fd. A POSIX lock belongs to its
process and is taken again by that process through the same fd; an OFD or flock lock
belongs to the open file description, so it is saved once however many fds of the tree
share that description, and taken again through the first of them restored. A lease
belongs to the description too: it is saved once, through an fd of the process that took
it where that process holds the description (the kernel makes the taker the file's owner
for the lease-break signal unless an owner is set, and the restored owner is set before the
lease is taken again), as CRIU writes it: kind FL_LEASE, type F_RDLCK or F_WRLCK, the whole
file. A lease being broken (a process opened the file since; CRIU marks it LEASE_BREAKING)
refuses the dump, as do mandatory locks and kinds of lock torpor does not know. A lock
another process took meanwhile, or a file another process has open in a way a lease
forbids, makes the restore fail, naming the file and the lock.
"""

import errno
import os
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.kernel.procfs import proc

FL_POSIX, FL_FLOCK, FL_OFD, FL_LEASE = 1, 2, 4, 8
LEASE_BREAKING = 4  # or'ed into a lease's type by CRIU: the type it is being broken to
F_RDLCK, F_WRLCK = 0, 1
F_SETLK, F_OFD_SETLK = 6, 37
F_SETLEASE = 1024
LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4
SEEK_SET = 0
KINDS = {"POSIX": FL_POSIX, "FLOCK": FL_FLOCK, "OFDLCK": FL_OFD, "LEASE": FL_LEASE}
MODES = {FL_POSIX: "ADVISORY", FL_FLOCK: "ADVISORY", FL_OFD: "ADVISORY", FL_LEASE: "ACTIVE"}
ACCESS = {"READ": F_RDLCK, "WRITE": F_WRLCK}
NAMES = {FL_POSIX: "POSIX lock", FL_FLOCK: "flock lock", FL_OFD: "OFD lock", FL_LEASE: "lease"}
TYPES = {F_RDLCK: "read", F_WRLCK: "write"}


def _path(pid: int, fd: int) -> str:
    try:
        return os.readlink(proc(pid, "fd", str(fd)))
    except OSError:
        return "?"


class TreeLocks:
    """The locks of a tree being dumped."""

    def __init__(self):
        self.entries: list = []
        self.by_description: set = set()  # (file id, lock) of OFD and flock locks saved
        self.leases: dict = {}  # file id -> the FileLockEntry of its description's lease

    def dump_fd(self, ctx: DumpContext, fd: int, file_id: int) -> None:
        for lock in fdinfo.locks(ctx.pid, fd):
            flag, access = KINDS.get(lock.kind), ACCESS.get(lock.access)
            if flag == FL_LEASE and lock.mode == "BREAKING":
                raise UnsupportedError(
                    f"fd {fd} of process {ctx.pid} holds a lease on {_path(ctx.pid, fd)} that "
                    "is being broken (a process opened the file since), not supported"
                )
            if flag is None or access is None or lock.mode != MODES[flag]:
                what = f"{lock.kind} {lock.mode} {lock.access}".lower()
                raise UnsupportedError(
                    f"fd {fd} of process {ctx.pid} holds a {what} lock (a mandatory lock or "
                    "a delegation), not supported yet"
                )
            if flag == FL_LEASE:
                self._lease(ctx.pid, fd, file_id, access, lock.pid)
                continue
            length = 0 if lock.end is None else lock.end - lock.start + 1
            if flag != FL_POSIX:
                key = (file_id, flag, access, lock.start, length)
                if key in self.by_description:
                    continue
                self.by_description.add(key)
            self.entries.append(
                pb.FileLockEntry(
                    flag=flag, type=access, pid=ctx.pid, fd=fd, start=lock.start, len=length
                )
            )

    def _lease(self, pid: int, fd: int, file_id: int, access: int, taker: int) -> None:
        """One entry per description: through the first fd seen, or the taker's."""
        saved = self.leases.get(file_id)
        if saved is None or (saved.pid != taker and pid == taker):
            self.leases[file_id] = pb.FileLockEntry(
                flag=FL_LEASE, type=access, pid=pid, fd=fd, start=0, len=0
            )

    def write(self, images) -> None:
        entries = self.entries + list(self.leases.values())
        if entries:
            images.write("file-locks.img", entries)


def check_image(images) -> None:
    """Refuse (ImageError) a file-locks.img entry no kernel lock can be made of, before
    anything is restored."""
    if not images.has("file-locks.img"):
        return
    for lock in images.read("file-locks.img"):
        if lock.flag == FL_LEASE and lock.type & LEASE_BREAKING:
            raise ImageError(
                f"file-locks.img: the lease on fd {lock.fd} of process {lock.pid} is being "
                "broken, which torpor does not restore"
            )
        if lock.flag not in NAMES or lock.type not in TYPES or lock.len < 0:
            raise ImageError(f"file-locks.img: a lock of kind {lock.flag}, type {lock.type}")


def restore(ctx: RestoreContext) -> None:
    """Take back the locks and leases the process held (once every process has its fds,
    and after check_image)."""
    if not ctx.images.has("file-locks.img"):
        return
    task = ctx.task
    for lock in ctx.images.read("file-locks.img"):
        if lock.pid != ctx.image_pid:
            continue  # (every entry was checked by check_image, in the preflight)
        if lock.flag == FL_LEASE:
            _restore_lease(ctx, lock)
            continue
        if lock.flag == FL_FLOCK:
            got = task.syscall(
                X86_64, "flock", lock.fd, (LOCK_SH if lock.type == F_RDLCK else LOCK_EX) | LOCK_NB
            )
        else:
            flock = struct.pack("<hh4xqqi4x", lock.type, SEEK_SET, lock.start, lock.len, 0)
            command = F_SETLK if lock.flag == FL_POSIX else F_OFD_SETLK
            got = task.syscall(X86_64, "fcntl", lock.fd, command, task.put(flock))
        if got < 0:
            span = f"bytes {lock.start}-" + (str(lock.start + lock.len - 1) if lock.len else "EOF")
            why = (
                "another process holds a conflicting lock"
                if -got in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
                else os.strerror(-got)
            )
            raise RestoreError(
                f"cannot take back the {NAMES[lock.flag]} on fd {lock.fd} of process "
                f"{ctx.image_pid} ({span}): {why}"
            )


def _restore_lease(ctx: RestoreContext, lock) -> None:
    got = ctx.task.syscall(X86_64, "fcntl", lock.fd, F_SETLEASE, lock.type)
    if got >= 0:
        return
    if -got == errno.EAGAIN:
        why = (
            "the file is open for writing"
            if lock.type == F_RDLCK
            else "the file is open through another open file description"
        )
    elif -got == errno.EBADF:
        why = "the fd is not open"
    else:
        why = os.strerror(-got)
    raise RestoreError(
        f"cannot take back the {TYPES[lock.type]} lease on fd {lock.fd} of process "
        f"{ctx.image_pid} ({_path(ctx.pid, lock.fd)}): {why}"
    )

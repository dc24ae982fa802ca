"""File locks: POSIX record locks (fcntl F_SETLK, lockf), open-file-description locks
(F_OFD_SETLK) and flock(2) locks, in CRIU's file-locks.img.

/proc/PID/fdinfo/FD shows the locks held through each fd. A POSIX lock belongs to its
process and is taken again by that process through the same fd; an OFD or flock lock
belongs to the open file description, so it is saved once however many fds of the tree
share that description, and taken again through the first of them restored. Leases and
anything but advisory locks refuse the dump. A lock another process took meanwhile makes
the restore fail, naming the file and the lock.
"""

import errno
import os
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo

FL_POSIX, FL_FLOCK, FL_OFD = 1, 2, 4
F_RDLCK, F_WRLCK = 0, 1
F_SETLK, F_OFD_SETLK = 6, 37
LOCK_SH, LOCK_EX, LOCK_NB = 1, 2, 4
SEEK_SET = 0
KINDS = {"POSIX": FL_POSIX, "FLOCK": FL_FLOCK, "OFDLCK": FL_OFD}
ACCESS = {"READ": F_RDLCK, "WRITE": F_WRLCK}
NAMES = {FL_POSIX: "POSIX lock", FL_FLOCK: "flock lock", FL_OFD: "OFD lock"}


class TreeLocks:
    """The locks of a tree being dumped."""

    def __init__(self):
        self.entries: list = []
        self.by_description: set = set()  # (file id, lock) of OFD and flock locks saved

    def dump_fd(self, ctx: DumpContext, fd: int, file_id: int) -> None:
        for lock in fdinfo.locks(ctx.pid, fd):
            flag, access = KINDS.get(lock.kind), ACCESS.get(lock.access)
            if flag is None or access is None or lock.mode != "ADVISORY":
                what = f"{lock.kind} {lock.mode} {lock.access}".lower()
                raise UnsupportedError(
                    f"fd {fd} of process {ctx.pid} holds a {what} lock (a lease or a "
                    "mandatory lock), not supported yet"
                )
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

    def write(self, images) -> None:
        if self.entries:
            images.write("file-locks.img", self.entries)


def restore(ctx: RestoreContext) -> None:
    """Take back the locks the process held (once every process has its fds)."""
    if not ctx.images.has("file-locks.img"):
        return
    task = ctx.task
    for lock in ctx.images.read("file-locks.img"):
        if lock.pid != ctx.image_pid:
            continue
        if lock.flag not in NAMES or lock.type not in (F_RDLCK, F_WRLCK) or lock.len < 0:
            raise ImageError(f"file-locks.img: a lock of kind {lock.flag}, type {lock.type}")
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

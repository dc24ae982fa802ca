"""Regular files, directories and the memory character devices (/dev/null, /dev/zero,
/dev/urandom ...), reopened by path with their flags and offset; memfds, reopened from the
memory object the restore recreated for the tree (parts.shmem); files deleted while open,
reopened from their ghost (parts.ghosts). CRIU's REG kind."""

import fcntl
import os

from torpor.arch import X86_64
from torpor.errors import UnsupportedError
from torpor.images import pb
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import FdKind, open_in_task, place
from torpor.parts.ghosts import is_ghost

MEMFD_PREFIX = "/memfd:"
F_GET_SEALS = 1034
SEEK_SET = 0


def is_memfd(d) -> bool:
    return d.kind == "reg" and d.target.startswith(MEMFD_PREFIX)


def _seals(pid: int, fd: int) -> int:
    own = os.open(proc(pid, "fd", str(fd)), os.O_RDONLY)
    try:
        return fcntl.fcntl(own, F_GET_SEALS)
    finally:
        os.close(own)


class Regular(FdKind):
    name = "a file"
    fd_type = pb.fdinfo_pb2.REG
    field = "reg"

    def recognise(self, d) -> bool:
        return d.kind in ("reg", "dir", "chr-mem")

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            if not d.target.startswith("/"):  # nsfs ("net:[4026531840]") and the like
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a namespace or other pseudo file "
                    f"({d.target}), not supported yet"
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
            reg.size = os.stat(proc(ctx.pid, "fd", str(d.fd))).st_size
            reg.torpor_memfd_seals = _seals(ctx.pid, d.fd)
            ctx.memfds.append((ctx.pid, d.fd, d.inode, reg.size))
        elif is_ghost(d.target):
            what = f"fd {d.fd} of process {ctx.pid}"
            ctx.ghosts.saved_for(reg, str(proc(ctx.pid, "fd", str(d.fd))), what)
        return reg

    def memory_object(self, entry):
        if not entry.HasField("torpor_memfd"):
            return None
        name = entry.name.removeprefix(MEMFD_PREFIX).removesuffix(" (deleted)")
        return entry.torpor_memfd, name, entry.size, entry.torpor_memfd_seals

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        name = entry.name
        if entry.HasField("torpor_memfd"):
            name = ctx.shared_memory.path(entry.torpor_memfd)
        place(ctx, open_in_task(ctx, name, entry.flags), fd, cloexec)
        if entry.pos:
            ctx.task.call(X86_64, "lseek", fd, entry.pos, SEEK_SET)


KIND = Regular()

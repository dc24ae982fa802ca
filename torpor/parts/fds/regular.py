"""Regular files, directories and the memory character devices (/dev/null, /dev/zero,
/dev/urandom ...), reopened by path with their flags and offset; memfds, reopened from the
memory object the restore recreated for the tree (parts.shmem); files deleted while open,
reopened from their ghost (parts.ghosts). CRIU's REG kind."""

import os

from torpor.arch import X86_64
from torpor.errors import UnsupportedError
from torpor.images import pb
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import FdKind, open_in_task, place
from torpor.parts.ghosts import is_ghost

MEMFD_PREFIX = "/memfd:"
SEEK_SET = 0


def is_memfd(d) -> bool:
    return d.kind == "reg" and d.target.startswith(MEMFD_PREFIX)


class Regular(FdKind):
    name = "a file"
    fd_type = pb.fdinfo_pb2.REG
    field = "reg"

    def recognise(self, d) -> bool:
        return d.kind in ("reg", "dir", "chr-mem")

    def inspect(self, found, shell_job) -> None:
        for pid, d in found:
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
            ctx.memfds.append((ctx.pid, d.fd, d.inode, reg.size))
        elif is_ghost(d.target):
            what = f"fd {d.fd} of process {ctx.pid}"
            ctx.ghosts.saved_for(reg, str(proc(ctx.pid, "fd", str(d.fd))), what)
        return reg

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        name = entry.name
        if entry.HasField("torpor_memfd"):
            name = ctx.shared_memory.path(entry.torpor_memfd)
        place(ctx, open_in_task(ctx, name, entry.flags), fd, cloexec)
        if entry.pos:
            ctx.task.call(X86_64, "lseek", fd, entry.pos, SEEK_SET)


KIND = Regular()

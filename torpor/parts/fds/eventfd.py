"""eventfd: its counter and whether it counts as a semaphore (EFD_SEMAPHORE). CRIU's EVENTFD
kind. The counter is written after the eventfd is made: eventfd2 takes only 32 bits of it.
Kernels before 6.6 do not show EFD_SEMAPHORE: there an eventfd refuses the dump."""

import os
import struct

from torpor.arch import X86_64
from torpor.errors import UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.parts.fds.base import FdKind, place

EFD_SEMAPHORE = 1


class Eventfd(FdKind):
    name = "an eventfd"
    fd_type = pb.fdinfo_pb2.EVENTFD
    field = "efd"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "eventfd"

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            if fdinfo.eventfd(pid, d.fd).semaphore is None:
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is an eventfd, and this kernel does not show "
                    "whether it is a semaphore (Linux 6.6 does)"
                )

    def dump(self, ctx, d, state, fown):
        info = fdinfo.eventfd(ctx.pid, d.fd)
        return pb.eventfd_pb2.EventfdFileEntry(
            flags=d.flags & ~os.O_CLOEXEC, fown=fown, counter=info.count,
            torpor_semaphore=bool(info.semaphore),
        )  # fmt: skip

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        flags = (entry.flags & os.O_NONBLOCK) | (EFD_SEMAPHORE if entry.torpor_semaphore else 0)
        got = task.call(X86_64, "eventfd2", 0, flags)
        if entry.counter:
            task.call(X86_64, "write", got, task.put(struct.pack("<Q", entry.counter)), 8)
        place(ctx, got, fd, cloexec)


KIND = Eventfd()

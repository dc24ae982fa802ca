"""signalfd: the set of signals it reads. CRIU's SIGNALFD kind."""

import os
import struct

from torpor.arch import X86_64
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.parts.fds.base import FdKind, place


class Signalfd(FdKind):
    name = "a signalfd"
    fd_type = pb.fdinfo_pb2.SIGNALFD
    field = "sgfd"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "signalfd"

    def dump(self, ctx, d, state, fown):
        return pb.signalfd_pb2.SignalfdEntry(
            flags=d.flags & ~os.O_CLOEXEC, fown=fown, sigmask=fdinfo.signalfd_mask(ctx.pid, d.fd)
        )

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        mask = task.put(struct.pack("<Q", entry.sigmask))
        got = task.call(X86_64, "signalfd4", -1, mask, 8, entry.flags & os.O_NONBLOCK)
        place(ctx, got, fd, cloexec)


KIND = Signalfd()

"""eventpoll (epoll): every file it watches, with the events asked for and the data word.
CRIU's EVENTPOLL kind.

A watched file is known by the fd it was added with, in the process the eventpoll is saved
from; the dump checks (kcmp KCMP_EPOLL_TFD) that this fd still is that file, and refuses an
eventpoll watching a file since closed there. The restore makes every eventpoll of a process
first and adds the watched files once all the process's fds are in place, so eventpolls may
watch eventpolls. Readiness is the kernel's to find again: a level-triggered event is
reported again as long as it holds; an edge-triggered one pending at the dump may be
reported once more after the restore (as when the program adds a ready file).
"""

import os
import struct

from torpor.arch import X86_64
from torpor.errors import UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.kernel.files import epoll_watches
from torpor.parts.fds.base import FdKind, place

EPOLL_CTL_ADD = 1


class Eventpoll(FdKind):
    name = "an eventpoll"
    fd_type = pb.fdinfo_pb2.EVENTPOLL
    field = "epfd"

    def recognise(self, d) -> bool:
        return d.kind == "eventpoll"

    def dump(self, ctx, d, state, fown):
        entry = pb.eventpoll_pb2.EventpollFileEntry(flags=d.flags & ~os.O_CLOEXEC, fown=fown)
        for t in fdinfo.epoll_targets(ctx.pid, d.fd):
            if not epoll_watches(ctx.pid, d.fd, t.tfd):
                raise UnsupportedError(
                    f"fd {d.fd} of process {ctx.pid} is an eventpoll watching a file that "
                    f"was fd {t.tfd} and is no longer open there, not supported yet"
                )
            entry.tfd.add(
                id=0, tfd=t.tfd, events=t.events, data=t.data, dev=t.dev, inode=t.inode,
                pos=t.pos,
            )  # fmt: skip
        return entry

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        place(ctx, ctx.task.call(X86_64, "epoll_create1", 0), fd, cloexec)
        state.setdefault(ctx.image_pid, []).append((fd, entry))

    def finish(self, ctx, state) -> None:
        task = ctx.task
        for fd, entry in state.pop(ctx.image_pid, ()):
            for t in entry.tfd:
                event = task.put(struct.pack("<IQ", t.events, t.data))  # packed on x86
                task.call(X86_64, "epoll_ctl", fd, EPOLL_CTL_ADD, t.tfd, event)


KIND = Eventpoll()

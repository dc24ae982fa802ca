"""The kinds of file descriptor torpor saves, one module each (see base.FdKind): KINDS is
the only list of them."""

import contextlib

from torpor.parts.fds import (
    eventfd,
    eventpoll,
    fifo,
    inotify,
    pipe,
    regular,
    signalfd,
    timerfd,
    tty,
)
from torpor.parts.fds.base import FdKind
from torpor.parts.sockets import inet, netlink, packet, unix

KINDS: tuple[FdKind, ...] = (
    regular.KIND,
    pipe.KIND,
    fifo.KIND,
    tty.KIND,
    eventfd.KIND,
    signalfd.KIND,
    timerfd.KIND,
    inotify.KIND,
    eventpoll.KIND,
    unix.KIND,
    inet.KIND,
    netlink.KIND,
    packet.KIND,
)


def kind_of(d) -> FdKind | None:
    """The kind that saves fd `d`, or None if torpor saves no such fd."""
    return next((k for k in KINDS if k.recognise(d)), None)


def kind_of_entry(entry) -> FdKind | None:
    """The kind that restores a FileEntry: the one whose member is set."""
    return next((k for k in KINDS if entry.HasField(k.field)), None)


@contextlib.contextmanager
def dump_session(options: dict, leave_running: bool):
    """Around a whole dump, each kind's own part in it (a kind's dump_session, where it has
    one): the dump options meant for it, and what it must finish or undo once the tree is
    killed or let go (`leave_running`, or a dump that failed)."""
    with contextlib.ExitStack() as stack:
        for kind in KINDS:
            session = getattr(kind, "dump_session", None)
            if session is not None:
                stack.enter_context(session(options, leave_running))
        yield

"""The kinds of file descriptor torpor saves, one module each (see base.FdKind): KINDS is
the only list of them."""

from torpor.parts.fds import (
    eventfd,
    eventpoll,
    fanotify,
    fifo,
    inotify,
    nsfile,
    pidfd,
    pipe,
    regular,
    signalfd,
    timerfd,
    tty,
)
from torpor.parts.fds.base import FdKind
from torpor.parts.sockets import inet, netlink, packet, raw, unix

KINDS: tuple[FdKind, ...] = (
    nsfile.KIND,  # before regular: a namespace file is a regular file to stat
    regular.KIND,
    pipe.KIND,
    fifo.KIND,
    tty.KIND,
    eventfd.KIND,
    signalfd.KIND,
    timerfd.KIND,
    inotify.KIND,
    fanotify.KIND,
    pidfd.KIND,
    eventpoll.KIND,
    unix.KIND,
    raw.KIND,  # before inet, which has the same FileEntry member
    inet.KIND,
    netlink.KIND,
    packet.KIND,
)


def kind_of(d) -> FdKind | None:
    """The kind that saves fd `d`, or None if torpor saves no such fd."""
    return next((k for k in KINDS if k.recognise(d)), None)


def kind_of_entry(entry) -> FdKind | None:
    """The kind that restores a FileEntry: the first whose member is set that claims it."""
    return next((k for k in KINDS if entry.HasField(k.field) and k.claims(entry)), None)

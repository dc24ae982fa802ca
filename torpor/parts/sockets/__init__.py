"""Sockets, one module per family, each a kind of file descriptor (torpor.parts.fds.base):
unix. What they share: their options (options) and the messages waiting in their receive
queues (queues)."""

from __future__ import annotations

import contextlib
import socket

from torpor.kernel.files import borrowed


@contextlib.contextmanager
def borrowed_socket(pid: int, fd: int):
    """A socket object in torpor for the socket behind fd `fd` of process `pid` (the same
    socket: what is set on it is set on theirs)."""
    with borrowed(pid, fd) as own:
        sock = socket.socket(fileno=own)
        try:
            yield sock
        finally:
            sock.detach()

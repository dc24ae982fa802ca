"""The unread messages of a socket's receive queue (sk-queues.img, CRIU's SkPacketEntry
followed by the message's bytes), read at dump without taking them and sent again at
restore; one image for the sockets of every family.

Reading leaves the queue as it was: the messages are peeked (MSG_PEEK) one after another
from a copy of the socket torpor holds, the socket's peek offset (SO_PEEK_OFF) walking the
queue and then put back. Each message keeps its sender's address (datagrams: a Unix name,
or an internet address as its struct sockaddr_in or sockaddr_in6) and, when the socket
asked for them with SO_PASSCRED, the sender's credentials. The file descriptors a message
carries (SCM_RIGHTS) come to torpor as copies of their own, which the caller turns into file
ids (parts.files: files in flight); where it does not, they refuse the dump.
"""

from __future__ import annotations

import os
import socket
import struct

from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.parts.sockets import options

LARGEST = 1 << 20  # the largest single queued message torpor saves
_CONTROL = socket.CMSG_SPACE(253 * 4) + socket.CMSG_SPACE(12)


def peek(
    sock: socket.socket, what: str, passcred: bool, carry=None
) -> list[tuple[pb.SkPacketEntry, bytes]]:
    """The messages queued on `sock` (`what` names it in refusals), oldest first; their
    id_for is left for the caller. The fds a message carries are handed to `carry` with
    the message's new ScmEntry (it owns them from then on); without it they refuse."""
    stream = sock.type == socket.SOCK_STREAM
    buf = bytearray(LARGEST)
    found = []
    was = options.peek_offset(sock)
    options.set_peek_offset(sock, 0)
    try:
        while True:
            try:
                n, control, flags, address = sock.recvmsg_into(
                    [buf], _CONTROL, socket.MSG_PEEK | socket.MSG_DONTWAIT
                )
            except BlockingIOError:
                break
            if n == 0 and stream:
                break
            passed = _passed_fds(control)
            if flags & socket.MSG_CTRUNC or (passed and carry is None):
                _close_all(passed)
                raise UnsupportedError(
                    f"{what} holds queued file descriptors (SCM_RIGHTS), not supported yet"
                )
            if flags & socket.MSG_TRUNC:
                _close_all(passed)
                raise UnsupportedError(
                    f"{what} holds a queued message larger than {LARGEST >> 20} MiB, "
                    "not supported yet"
                )
            entry = pb.SkPacketEntry(id_for=0, length=n)
            if passed:
                carry(entry.scm.add(), passed)
            if not stream and address:
                entry.addr = address_bytes(sock.family, address)
            creds = _credentials(control)
            if passcred and creds:
                entry.ucred.pid, entry.ucred.uid, entry.ucred.gid = creds
            found.append((entry, bytes(buf[:n])))
    finally:
        options.set_peek_offset(sock, was)
    return found


def address_bytes(family: int, address) -> bytes:
    """A sender's address as the kernel gave it: a Unix name as is, an internet address
    (host, port[, flowinfo, scope id]) as its struct sockaddr_in or sockaddr_in6."""
    if isinstance(address, str):
        return os.fsencode(address)
    if not isinstance(address, tuple):
        return address
    raw = socket.inet_pton(family, address[0])
    if family == socket.AF_INET:
        return struct.pack("=H", family) + struct.pack("!H", address[1]) + raw + bytes(8)
    return (
        struct.pack("=H", family)
        + struct.pack("!HI", address[1], address[2])
        + raw
        + struct.pack("=I", address[3])
    )


def write(images, queued) -> None:
    """Add the messages of `queued` ((socket's entry, peek()'s messages) pairs, the entries'
    file ids set by now) to sk-queues.img, one image for every family of socket: after what
    another family wrote there first."""
    saved = []
    for entry, messages in queued:
        for message, data in messages:
            message.id_for = entry.id
            saved.append((message, data))
    if not saved:
        return
    if images.has("sk-queues.img"):
        saved = [*images.read_with_payloads("sk-queues.img"), *saved]
    images.write("sk-queues.img", saved)


def _passed_fds(control) -> list[int]:
    """The copies of the fds a message carries that the peek gave torpor."""
    return [
        fd
        for level, kind, data in control
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
        for fd in struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4])
    ]


def _close_all(fds) -> None:
    for fd in fds:
        os.close(fd)


def _credentials(control) -> tuple[int, int, int] | None:
    for level, kind, data in control:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            return struct.unpack("iII", data[:12])
    return None


def send(sender: socket.socket, entry, data: bytes, to: bytes | None, what: str, fds=()) -> None:
    """Queue one saved message again, sent from `sender` (to address `to`, or to its peer),
    with the saved credentials if there are any and carrying `fds` (torpor's own)."""
    control = []
    if fds:
        control.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds)))
    if entry.HasField("ucred"):
        creds = struct.pack("iII", entry.ucred.pid, entry.ucred.uid, entry.ucred.gid)
        control.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS, creds))
    try:
        if sender.type == socket.SOCK_STREAM and not control:
            view = memoryview(data)
            while view:
                view = view[sender.send(view, socket.MSG_DONTWAIT) :]
        elif to is None:
            sender.sendmsg([data], control, socket.MSG_DONTWAIT)
        else:
            sender.sendmsg([data], control, socket.MSG_DONTWAIT, to)
    except OSError as e:
        raise RestoreError(f"cannot queue the saved data of {what} again: {e.strerror}") from None

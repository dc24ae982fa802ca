"""What the kernel says of sockets through NETLINK_SOCK_DIAG (sock_diag(7)): for Unix
sockets, each one's type, state, name, socket file, peer, pending connections, queue
lengths and shutdown state, known by inode number.

Only sockets of torpor's own network namespace are listed, which is the tree's.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass, field

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3

# struct unix_diag_req: family, protocol, pad, states, ino, show, cookie[2]
UNIX_DIAG_REQ = struct.Struct("=BBHIII8s")
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS, UDIAG_SHOW_PEER = 0x1, 0x2, 0x4
UDIAG_SHOW_ICONS, UDIAG_SHOW_RQLEN, UDIAG_SHOW_UID = 0x8, 0x10, 0x40
# struct unix_diag_msg: family, type, state, pad, ino, cookie[2]
UNIX_DIAG_MSG = struct.Struct("=BBBBI8s")
UNIX_DIAG_NAME, UNIX_DIAG_VFS, UNIX_DIAG_PEER, UNIX_DIAG_ICONS = 0, 1, 2, 3
UNIX_DIAG_RQLEN, UNIX_DIAG_SHUTDOWN, UNIX_DIAG_UID = 4, 6, 7
NLMSGHDR = struct.Struct("=IHHII")
RTATTR = struct.Struct("=HH")


@dataclass
class UnixSocket:
    ino: int
    type: int  # SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
    state: int  # TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
    name: bytes = b""  # as bound (an abstract name starts with NUL); empty when unbound
    vfs_dev: int = 0  # the socket file of a path name (0 for none)
    vfs_ino: int = 0
    peer: int = 0  # ino of the peer socket; 0 for none or one with no inode
    peer_gone: bool = False  # it has a peer with no inode: since closed, or not accepted yet
    icons: list[int] = field(default_factory=list)  # embryos of pending connections
    rqueue: int = 0  # bytes (or, listening, connections) in the receive queue
    wqueue: int = 0  # bytes in the send queue (listening: the backlog)
    shutdown: int = 0  # RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
    uid: int = 0


def unix_sockets() -> dict[int, UnixSocket]:
    """Every Unix socket of this network namespace, by inode number."""
    show = (
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS
        | UDIAG_SHOW_RQLEN | UDIAG_SHOW_UID
    )  # fmt: skip
    req = UNIX_DIAG_REQ.pack(socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, show, b"\xff" * 8)
    found = {}
    for payload in _dump(req):
        _, kind, state, _, ino, _ = UNIX_DIAG_MSG.unpack_from(payload)
        sk = UnixSocket(ino=ino, type=kind, state=state)
        for attr, value in _attributes(payload[UNIX_DIAG_MSG.size :]):
            if attr == UNIX_DIAG_NAME:  # a path ends at its NUL, an abstract name starts with one
                sk.name = value if value[:1] == b"\0" else value.split(b"\0", 1)[0]
            elif attr == UNIX_DIAG_VFS:
                sk.vfs_ino, sk.vfs_dev = struct.unpack_from("=II", value)
            elif attr == UNIX_DIAG_PEER:
                (sk.peer,) = struct.unpack_from("=I", value)
                sk.peer_gone = not sk.peer
            elif attr == UNIX_DIAG_ICONS:
                sk.icons = list(struct.unpack_from(f"={len(value) // 4}I", value))
            elif attr == UNIX_DIAG_RQLEN:
                sk.rqueue, sk.wqueue = struct.unpack_from("=II", value)
            elif attr == UNIX_DIAG_SHUTDOWN:
                sk.shutdown = value[0]
            elif attr == UNIX_DIAG_UID:
                (sk.uid,) = struct.unpack_from("=I", value)
        found[ino] = sk
    return found


def _dump(request: bytes):
    """The payloads of the answers to one sock_diag dump request."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        header = NLMSGHDR.pack(
            NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
        )
        nl.send(header + request)
        while True:
            data = nl.recv(1 << 16)
            offset = 0
            while offset + NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = NLMSGHDR.unpack_from(data, offset)
                if length < NLMSGHDR.size:
                    return
                body = data[offset + NLMSGHDR.size : offset + length]
                offset += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", body)
                    if err:
                        raise OSError(-err, os.strerror(-err))
                    continue
                yield body


def _attributes(data: bytes):
    offset = 0
    while offset + RTATTR.size <= len(data):
        length, attr = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size:
            return
        yield attr, data[offset + RTATTR.size : offset + length]
        offset += (length + 3) & ~3

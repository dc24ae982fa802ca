"""What the kernel says of sockets through NETLINK_SOCK_DIAG (sock_diag(7)), known by
inode number: for Unix sockets, each one's type, state, name, socket file, peer, pending
connections, queue lengths and shutdown state; for packet sockets, the interface, options,
multicast memberships, rings and fanout group.

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


# struct packet_diag_req: family, protocol, pad, ino, show, cookie[2]
PACKET_DIAG_REQ = struct.Struct("=BBHII8s")
PACKET_SHOW_INFO, PACKET_SHOW_MCLIST, PACKET_SHOW_RING_CFG, PACKET_SHOW_FANOUT = 1, 2, 4, 8
# struct packet_diag_msg: family, type, num (protocol), ino, cookie[2]
PACKET_DIAG_MSG = struct.Struct("=BBHI8s")
PACKET_DIAG_INFO, PACKET_DIAG_MCLIST, PACKET_DIAG_RX_RING, PACKET_DIAG_TX_RING = 0, 1, 2, 3
PACKET_DIAG_FANOUT = 4
PDI_RUNNING, PDI_AUXDATA, PDI_ORIGDEV, PDI_VNETHDR, PDI_LOSS = 1, 2, 4, 8, 0x10
PACKET_DIAG_INFO_STRUCT = struct.Struct("=IIIIII")  # index, version, reserve, thresh, tstamp, flags
PACKET_DIAG_MCLIST_STRUCT = struct.Struct("=IIHH32s")  # index, count, type, alen, addr
PACKET_DIAG_RING = struct.Struct("=7I")


@dataclass
class PacketSocket:
    ino: int
    type: int
    protocol: int  # the ethernet protocol it is bound to, host byte order
    ifindex: int = 0
    version: int = 0
    reserve: int = 0
    copy_thresh: int = 0
    tstamp: int = 0
    flags: int = 0  # PDI_*
    mclist: list[tuple[int, int, int, bytes]] = field(
        default_factory=list
    )  # index, count, type, addr
    rx_ring: tuple[int, ...] | None = None  # block_size, block_nr, frame_size, frame_nr, ...
    tx_ring: tuple[int, ...] | None = None
    fanout: int | None = None  # group id | type << 16


def packet_sockets() -> dict[int, PacketSocket]:
    """Every packet socket of this network namespace, by inode number."""
    show = PACKET_SHOW_INFO | PACKET_SHOW_MCLIST | PACKET_SHOW_RING_CFG | PACKET_SHOW_FANOUT
    req = PACKET_DIAG_REQ.pack(socket.AF_PACKET, 0, 0, 0, show, b"\xff" * 8)
    found = {}
    for payload in _dump(req):
        _, kind, num, ino, _ = PACKET_DIAG_MSG.unpack_from(payload)
        sk = PacketSocket(ino=ino, type=kind, protocol=num)
        for attr, value in _attributes(payload[PACKET_DIAG_MSG.size :]):
            if attr == PACKET_DIAG_INFO:
                (sk.ifindex, sk.version, sk.reserve, sk.copy_thresh, sk.tstamp, sk.flags) = (
                    PACKET_DIAG_INFO_STRUCT.unpack_from(value)
                )
            elif attr == PACKET_DIAG_MCLIST:
                size = PACKET_DIAG_MCLIST_STRUCT.size
                for at in range(0, len(value) - size + 1, size):
                    index, count, kind_, alen, addr = PACKET_DIAG_MCLIST_STRUCT.unpack_from(
                        value, at
                    )
                    sk.mclist.append((index, count, kind_, addr[:alen]))
            elif attr == PACKET_DIAG_RX_RING:
                sk.rx_ring = PACKET_DIAG_RING.unpack_from(value)
            elif attr == PACKET_DIAG_TX_RING:
                sk.tx_ring = PACKET_DIAG_RING.unpack_from(value)
            elif attr == PACKET_DIAG_FANOUT:
                (sk.fanout,) = struct.unpack_from("=I", value)
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

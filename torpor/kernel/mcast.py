"""Multicast group memberships as the kernel shows and takes them: the groups joined on
each interface (/proc/PID/net/igmp and igmp6, for every socket of the network namespace
together), and one socket's source filter for one group and interface (getsockopt
MCAST_MSFILTER, which fails with EADDRNOTAVAIL where the socket did not join the group),
in the layouts of a 64-bit process (struct group_req and struct group_filter).
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct

SOL_IP, SOL_IPV6 = 0, 41
MCAST_JOIN_GROUP, MCAST_MSFILTER = 42, 48
MCAST_EXCLUDE, MCAST_INCLUDE = 0, 1

SOCKADDR_STORAGE = 128
# struct group_req: interface index (padded to 8), the group as a sockaddr_storage
GROUP_REQ = struct.Struct(f"=I4x{SOCKADDR_STORAGE}s")
# struct group_filter up to its source list: index, group, mode, number of sources
GROUP_FILTER = struct.Struct(f"=I4x{SOCKADDR_STORAGE}sII")
SOURCES_ASKED = 64  # the sources asked for at first; more if the kernel says there are

_libc = ctypes.CDLL(None, use_errno=True)


def level_of(family: int) -> int:
    """The option level of a family's multicast options."""
    return SOL_IP if family == socket.AF_INET else SOL_IPV6


def groups_joined(pid: int, family: int) -> list[tuple[int, bytes]]:
    """(interface index, group address in network order) of every group some socket of
    `pid`'s network namespace (or the kernel itself) joined, for `family`."""
    if family == socket.AF_INET:
        return _igmp(f"/proc/{pid}/net/igmp")
    return _igmp6(f"/proc/{pid}/net/igmp6")


def _igmp(path: str) -> list[tuple[int, bytes]]:
    """/proc/net/igmp: a line per interface ("index name : count querier"), then a line per
    group, indented, its address the hex of the 32-bit word in host order."""
    found = []
    index = None
    try:
        f = open(path)
    except FileNotFoundError:  # no IPv4 multicast
        return []
    with f:
        next(f)
        for line in f:
            fields = line.split()
            if not fields:
                continue
            if not line[0].isspace():
                index = int(fields[0])
            elif index is not None:
                found.append((index, struct.pack("=I", int(fields[0], 16))))
    return found


def _igmp6(path: str) -> list[tuple[int, bytes]]:
    """/proc/net/igmp6: a line per group: index, name, the address in hex, network order."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:  # no IPv6
        return []
    return [(int(fields[0]), bytes.fromhex(fields[2])) for fields in map(str.split, lines)]


def sockaddr(family: int, address: bytes) -> bytes:
    """A sockaddr_storage holding `address` (4 or 16 bytes, network order), port 0."""
    if family == socket.AF_INET:
        raw = struct.pack("=H2x", family) + address
    else:
        raw = struct.pack("=H6x", family) + address + bytes(4)
    return raw.ljust(SOCKADDR_STORAGE, b"\0")


def _address_of(family: int, storage: bytes) -> bytes:
    return storage[4:8] if family == socket.AF_INET else storage[8:24]


def source_filter(
    sock: socket.socket, family: int, ifindex: int, group: bytes
) -> tuple[int, list[bytes]] | None:
    """(mode, sources) of the socket's membership of `group` on interface `ifindex`; None
    if it has none there."""
    asked = SOURCES_ASKED
    while True:
        head = GROUP_FILTER.pack(ifindex, sockaddr(family, group), 0, asked)
        buf = ctypes.create_string_buffer(head + bytes(SOCKADDR_STORAGE * asked))
        length = ctypes.c_uint32(len(buf))
        level = level_of(family)
        if _libc.getsockopt(sock.fileno(), level, MCAST_MSFILTER, buf, ctypes.byref(length)):
            err = ctypes.get_errno()
            if err == 99:  # EADDRNOTAVAIL: not a group of this socket
                return None
            raise OSError(err, os.strerror(err))
        _, _, mode, count = GROUP_FILTER.unpack_from(buf.raw)
        if count <= asked:
            break
        asked = count
    at = GROUP_FILTER.size
    sources = [
        _address_of(family, buf.raw[at + i * SOCKADDR_STORAGE : at + (i + 1) * SOCKADDR_STORAGE])
        for i in range(count)
    ]
    return mode, sources


def join(sock: socket.socket, family: int, ifindex: int, group: bytes) -> None:
    """Join `group` on interface `ifindex` (MCAST_JOIN_GROUP: no source filter, EXCLUDE{})."""
    req = GROUP_REQ.pack(ifindex, sockaddr(family, group))
    sock.setsockopt(level_of(family), MCAST_JOIN_GROUP, req)


def set_source_filter(
    sock: socket.socket, family: int, ifindex: int, group: bytes, mode: int, sources
) -> None:
    """Give a joined group its filter mode and sources (MCAST_MSFILTER)."""
    head = GROUP_FILTER.pack(ifindex, sockaddr(family, group), mode, len(sources))
    body = b"".join(sockaddr(family, s) for s in sources)
    sock.setsockopt(level_of(family), MCAST_MSFILTER, head + body)

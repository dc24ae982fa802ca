"""Packet sockets (AF_PACKET): type, the protocol and interface they are bound to, their
packet options (version, reserve, auxdata, origdev, vnet header, loss, timestamps, copy
threshold), multicast and promiscuous memberships, fanout group, and the socket options
every socket has. CRIU's PACKETSK kind.

What the kernel keeps is read through sock_diag; the interface is saved by index and name,
and a restore where that index names another interface refuses. Memory-mapped rings refuse
the dump. Packets waiting in the receive queue are not saved: like those that arrive while
the tree is frozen they are lost, and the dump says so.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import sockdiag
from torpor.parts.fds.base import FdKind, place
from torpor.parts.sockets import borrowed_socket, options

log = logging.getLogger("torpor")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP, PACKET_COPY_THRESH, PACKET_AUXDATA, PACKET_ORIGDEV = 1, 7, 8, 9
PACKET_VERSION, PACKET_RESERVE, PACKET_LOSS, PACKET_VNET_HDR = 10, 12, 14, 15
PACKET_TIMESTAMP, PACKET_FANOUT = 17, 18
# PacketSockEntry field -> (its option, its sock_diag flag) for the on/off ones
_SWITCHES = {
    "aux_data": (PACKET_AUXDATA, sockdiag.PDI_AUXDATA),
    "orig_dev": (PACKET_ORIGDEV, sockdiag.PDI_ORIGDEV),
    "vnet_hdr": (PACKET_VNET_HDR, sockdiag.PDI_VNETHDR),
    "loss": (PACKET_LOSS, sockdiag.PDI_LOSS),
}
F_SETFL = 4
SETFL_FLAGS = os.O_NONBLOCK


class PacketSocket(FdKind):
    name = "a packet socket"
    fd_type = pb.fdinfo_pb2.PACKETSK
    field = "psk"

    def recognise(self, d) -> bool:
        return d.kind == "socket" and d.protocol == "PACKET"

    def inspect(self, found, options, state) -> None:
        if not found:
            return
        diag = sockdiag.packet_sockets()
        for pid, d in found:
            sk = diag.get(d.inode)
            what = f"fd {d.fd} of process {pid} is a packet socket"
            if sk is None:
                raise UnsupportedError(f"{what} the kernel does not list, not supported yet")
            if sk.rx_ring or sk.tx_ring:
                raise UnsupportedError(f"{what} with memory-mapped rings, not supported yet")
        state["diag"] = diag

    def dump(self, ctx, d, state, fown):
        sk = state["diag"][d.inode]
        with borrowed_socket(ctx.pid, d.fd) as sock:
            opts = options.dump(sock)
            queued = bool(select.select([sock], [], [], 0)[0])
        if queued:
            log.warning(
                "fd %d of process %d: the packets waiting in its packet socket are not saved",
                d.fd, ctx.pid,
            )  # fmt: skip
        entry = pb.PacketSockEntry(
            id=0,
            type=sk.type,
            protocol=sk.protocol,
            flags=d.flags & ~os.O_CLOEXEC,
            ifindex=sk.ifindex,
            fown=fown,
            opts=opts,
            version=sk.version,
            reserve=sk.reserve,
            timestamp=sk.tstamp,
            copy_thresh=sk.copy_thresh,
            torpor_ino=d.inode,
            **{name: bool(sk.flags & flag) for name, (_, flag) in _SWITCHES.items()},
        )
        if sk.ifindex:
            entry.torpor_ifname = socket.if_indextoname(sk.ifindex)
        for index, count, kind, addr in sk.mclist:
            for _ in range(count):
                entry.mclist.add(index=index, type=kind, addr=addr)
        if sk.fanout is not None:
            entry.fanout = sk.fanout
        return entry

    def restore_problem(self, entry, shell_job) -> str | None:
        if entry.ifindex and entry.HasField("torpor_ifname"):
            try:
                name = socket.if_indextoname(entry.ifindex)
            except OSError:
                name = None
            if name != entry.torpor_ifname:
                return (
                    f"a packet socket was bound to interface {entry.ifindex} "
                    f"({entry.torpor_ifname}), which this host has not"
                )
        return None

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        protocol = socket.htons(entry.protocol)
        got = task.call(X86_64, "socket", socket.AF_PACKET, entry.type, protocol)
        if entry.flags & SETFL_FLAGS:
            task.call(X86_64, "fcntl", got, F_SETFL, entry.flags & SETFL_FLAGS)
        place(ctx, got, fd, cloexec)
        with borrowed_socket(ctx.pid, fd) as sock:
            try:
                _restore_options(sock, entry)
                # struct sockaddr_ll: family, protocol (network order), ifindex, the rest 0
                address = struct.pack("=HHi12x", socket.AF_PACKET, protocol, entry.ifindex)
                task.call(X86_64, "bind", fd, task.put(address), len(address))
                for m in entry.mclist:
                    mreq = struct.pack("=iHH8s", m.index, m.type, len(m.addr), m.addr)
                    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
                if entry.HasField("fanout"):
                    sock.setsockopt(SOL_PACKET, PACKET_FANOUT, entry.fanout)
            except OSError as e:
                raise RestoreError(
                    f"cannot make packet socket {fd} of process {ctx.image_pid} again: {e.strerror}"
                ) from None
            options.restore_buffers(sock, entry.opts)
            options.restore_rest(sock, entry.opts)


def _restore_options(sock, entry) -> None:
    """The packet options, set before the socket is bound (the version and reserve cannot
    change on a socket with rings; the others could, this keeps them together)."""
    for option, value in (
        (PACKET_VERSION, entry.version),
        (PACKET_RESERVE, entry.reserve),
        (PACKET_TIMESTAMP, entry.timestamp),
        (PACKET_COPY_THRESH, entry.copy_thresh),
    ):
        if value:
            sock.setsockopt(SOL_PACKET, option, value)
    for name, (option, _) in _SWITCHES.items():
        if getattr(entry, name):
            sock.setsockopt(SOL_PACKET, option, 1)


KIND = PacketSocket()

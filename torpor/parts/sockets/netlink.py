"""Netlink sockets: protocol, the port id they are bound to, the multicast groups they
listen to, where they send by default, their netlink options (NETLINK_PKTINFO, EXT_ACK,
...) and the socket options every socket has. CRIU's NETLINKSK kind.

At dump all of it is read from a copy of the socket torpor holds; at restore the task makes
the socket and torpor binds it to the same port id, joins its groups and connects it.
A socket with unread messages refuses the dump: netlink cannot peek past the first one.
"""

from __future__ import annotations

import os
import select
import socket
import struct

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.parts.fds.base import FdKind, place
from torpor.parts.sockets import borrowed_socket, options

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP, NETLINK_LIST_MEMBERSHIPS = 1, 9
# SOL_NETLINK options that are on or off, each kept as one bit of torpor_flags
FLAG_OPTIONS = {
    3: "NETLINK_PKTINFO",
    4: "NETLINK_BROADCAST_ERROR",
    5: "NETLINK_NO_ENOBUFS",
    8: "NETLINK_LISTEN_ALL_NSID",
    10: "NETLINK_CAP_ACK",
    11: "NETLINK_EXT_ACK",
    12: "NETLINK_GET_STRICT_CHK",
}
F_SETFL = 4
SETFL_FLAGS = os.O_NONBLOCK


class NetlinkSocket(FdKind):
    name = "a netlink socket"
    fd_type = pb.fdinfo_pb2.NETLINKSK
    field = "nlsk"

    def recognise(self, d) -> bool:
        return d.kind == "socket" and d.protocol == "NETLINK"

    def dump(self, ctx, d, state, fown):
        with borrowed_socket(ctx.pid, d.fd) as sock:
            if select.select([sock], [], [], 0)[0]:
                raise UnsupportedError(
                    f"fd {d.fd} of process {ctx.pid} is a netlink socket with unread messages, "
                    "not supported yet"
                )
            portid, _ = sock.getsockname()
            dst_portid, dst_group = sock.getpeername()
            raw = sock.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 128)
            groups = list(struct.unpack(f"{len(raw) // 4}I", raw))
            while groups and not groups[-1]:
                groups.pop()
            flags = 0
            for option in FLAG_OPTIONS:
                if sock.getsockopt(SOL_NETLINK, option):
                    flags |= 1 << option
            return pb.NetlinkSkEntry(
                id=0,
                ino=d.inode,
                protocol=sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL),
                state=1 if dst_portid or dst_group else 0,
                flags=d.flags & ~os.O_CLOEXEC,
                portid=portid,
                groups=groups,
                dst_portid=dst_portid,
                dst_group=dst_group,
                fown=fown,
                opts=options.dump(sock),
                torpor_type=sock.type,
                torpor_flags=flags,
            )

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        kind = entry.torpor_type if entry.HasField("torpor_type") else socket.SOCK_RAW
        got = ctx.task.call(X86_64, "socket", socket.AF_NETLINK, kind, entry.protocol)
        if entry.flags & SETFL_FLAGS:
            ctx.task.call(X86_64, "fcntl", got, F_SETFL, entry.flags & SETFL_FLAGS)
        place(ctx, got, fd, cloexec)
        with borrowed_socket(ctx.pid, fd) as sock:
            try:
                if entry.portid:
                    sock.bind((entry.portid, 0))
                for word, bits in enumerate(entry.groups):
                    for bit in range(32):
                        if bits >> bit & 1:
                            group = word * 32 + bit + 1
                            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
                if entry.dst_portid or entry.dst_group:
                    sock.connect((entry.dst_portid, entry.dst_group))
                for option in FLAG_OPTIONS:
                    if entry.torpor_flags >> option & 1:
                        sock.setsockopt(SOL_NETLINK, option, 1)
            except OSError as e:
                raise RestoreError(
                    f"cannot make netlink socket {fd} of process {ctx.image_pid} again "
                    f"(port id {entry.portid}): {e.strerror}"
                ) from None
            options.restore_buffers(sock, entry.opts)
            options.restore_rest(sock, entry.opts)


KIND = NetlinkSocket()

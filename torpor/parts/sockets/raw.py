"""Raw sockets (SOCK_RAW, any protocol) and ICMP echo sockets ("ping" sockets: SOCK_DGRAM
with IPPROTO_ICMP or IPPROTO_ICMPV6), over IPv4 and IPv6: CRIU's INETSK kind, like the
other internet sockets (parts.sockets.inet), whose FileEntry member they share.

Saved in InetSkEntry: the protocol; the bound address (a ping socket's port is its echo
identifier, kept so that replies to the identifier it has used still reach it); the
connected address; the raw options CRIU keeps in IpOptsRawEntry (IP_HDRINCL or
IPV6_HDRINCL, IP_NODEFRAG, IPV6_CHECKSUM with its offset, the ICMP_FILTER of a raw ICMP
socket and the ICMPV6_FILTER of a raw ICMPv6 one); the IP, IPv6 and socket level options
inet's tables read back, and the multicast groups joined (parts.sockets.multicast).

The receive queue is not saved: a raw socket's packets (which carry their IP header, for
IPv4) could only be queued again by sending them again, which would reach every raw socket
of that protocol on the host, and a ping socket's replies only by forging them. A socket
with packets not yet read, or with an error waiting (a pending one, or on its error queue:
IP_RECVERR, send timestamps), refuses the dump, naming it. So does a raw IGMP or ICMPv6
socket while the host routes multicast (it may be the one multicast routing socket,
MRT_INIT, whose routes torpor does not save).

At restore the socket is made in the process that holds it, its options set from torpor on
a copy of it, then it is bound and connected. A ping socket can be made only by a process
whose group is in net.ipv4.ping_group_range (for IPv6 too; root is no exception): a
restore where torpor's group is not refuses before anything is made, naming the setting.

Not seen, so not saved: IP_ROUTER_ALERT and IPV6_ROUTER_ALERT (set only), the interface
index of IP_MULTICAST_IF (see inet), IPsec policies (IP_IPSEC_POLICY, IP_XFRM_POLICY).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import inetproc
from torpor.parts.fds.base import FdKind, place
from torpor.parts.sockets import borrowed_socket, inet, multicast, options, queues

PROTOCOLS = ("RAW", "RAWv6", "PING", "PINGv6")  # system.sockprotoname
IPPROTO_ICMP, IPPROTO_IGMP, IPPROTO_ICMPV6 = 1, 2, 58
SOL_IP, SOL_IPV6, SOL_RAW, SOL_ICMPV6 = 0, 41, 255, 58
IP_HDRINCL, IP_NODEFRAG = 3, 22
IPV6_CHECKSUM, IPV6_HDRINCL = 7, 36
ICMP_FILTER, ICMPV6_FILTER = 1, 1
ICMPV6_FILTER_WORDS = 8  # struct icmp6_filter: a bit for each of the 256 types
PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range"
MC_FORWARDING = {
    socket.AF_INET: "/proc/sys/net/ipv4/conf/all/mc_forwarding",
    socket.AF_INET6: "/proc/sys/net/ipv6/conf/all/mc_forwarding",
}


def is_ping(entry) -> bool:
    return entry.type == socket.SOCK_DGRAM and entry.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6)


class RawSocket(FdKind):
    name = "a raw or ping socket"
    fd_type = pb.fdinfo_pb2.INETSK
    field = "isk"

    def recognise(self, d) -> bool:
        return d.kind == "socket" and d.protocol in PROTOCOLS

    def claims(self, entry) -> bool:
        return entry.isk.type == socket.SOCK_RAW or is_ping(entry.isk)

    # --- dump ------------------------------------------------------------------------------

    def inspect(self, found, options, state) -> None:
        facts = {}
        mine = [(pid, d) for pid, d in found if self.recognise(d)]  # found has every INETSK
        listed = inetproc.sockets(mine[0][0]) if mine else {}
        for pid, d in mine:
            with borrowed_socket(pid, d.fd) as sock:
                facts[d.inode] = _inspect_one(
                    sock, f"fd {d.fd} of process {pid}", listed.get(d.inode)
                )
        state["raw_facts"] = facts  # the kinds of INETSK share their state

    def dump(self, ctx, d, state, fown):
        family, kind, proto, local, peer = state["raw_facts"][d.inode]
        entry = pb.InetSkEntry(
            id=0,
            ino=d.inode,
            family=family,
            type=kind,
            proto=proto,
            state=inet.TCP_ESTABLISHED if peer else inet.TCP_CLOSE,
            src_port=local[1],
            dst_port=peer[1] if peer else 0,
            flags=d.flags & ~os.O_CLOEXEC,
            backlog=0,
            fown=fown,
        )
        inet._set_addresses(entry, local, peer)
        what = f"fd {d.fd} of process {ctx.pid} ({_describe(entry)})"
        with borrowed_socket(ctx.pid, d.fd) as sock:
            entry.opts.CopyFrom(options.dump(sock))
            inet._dump_options(sock, entry, what)
            if kind == socket.SOCK_RAW:
                _dump_raw_options(sock, entry)
            multicast.dump(sock, entry, ctx.pid)
        return entry

    # --- restore ---------------------------------------------------------------------------

    def restore_problem(self, entry, shell_job) -> str | None:
        v4 = entry.family == socket.AF_INET
        if entry.family not in (socket.AF_INET, socket.AF_INET6):
            return f"a raw socket has an unknown family {entry.family}"
        if is_ping(entry) and entry.proto != (IPPROTO_ICMP if v4 else IPPROTO_ICMPV6):
            return f"a ping socket has the protocol {entry.proto} of the other family"
        if entry.type == socket.SOCK_RAW and not 0 < entry.proto < 256:
            return f"a raw socket has an unknown protocol {entry.proto}"
        words = 1 if v4 else 4
        if len(entry.src_addr) != words or (entry.dst_addr and len(entry.dst_addr) != words):
            return "a raw socket's address has the wrong length"
        raw = entry.ip_opts.raw
        filters = {(True, IPPROTO_ICMP): 1, (False, IPPROTO_ICMPV6): ICMPV6_FILTER_WORDS}
        if raw.icmpv_filter and len(raw.icmpv_filter) != filters.get((v4, entry.proto)):
            return f"a raw socket of protocol {entry.proto} has an ICMP filter of the wrong size"
        if raw.checksum and not raw.HasField("torpor_checksum_offset"):
            return "a raw IPv6 socket has IPV6_CHECKSUM on at an offset the image does not say"
        if is_ping(entry):
            problem = _ping_problem()
            if problem:
                return problem
        return multicast.restore_problem(entry)

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        got = task.syscall(X86_64, "socket", entry.family, entry.type, entry.proto)
        if got < 0:
            raise RestoreError(_cannot_make(entry, -got))
        if entry.flags & inet.SETFL_FLAGS:
            task.call(X86_64, "fcntl", got, inet.F_SETFL, entry.flags & inet.SETFL_FLAGS)
        port = entry.src_port if is_ping(entry) else 0  # a raw socket's port is its protocol
        local = inet._address(entry.family, entry.src_addr, port, entry.torpor_src_scope_id)
        with borrowed_socket(ctx.pid, got) as sock:
            inet._restore_options(sock, entry)
            _restore_raw_options(sock, entry)
            multicast.restore(sock, entry)
            options.restore_buffers(sock, entry.opts)
        if port or not inet._is_any(local[0]):
            address = queues.address_bytes(entry.family, local)
            done = task.syscall(X86_64, "bind", got, task.put(address), len(address))
            if done < 0:
                raise RestoreError(f"cannot bind {_describe(entry)} again: {os.strerror(-done)}")
        if entry.dst_addr:
            peer = inet._address(
                entry.family,
                entry.dst_addr,
                entry.dst_port,
                entry.torpor_dst_scope_id,
                entry.torpor_dst_flowinfo,
            )
            address = queues.address_bytes(entry.family, peer)
            done = task.syscall(X86_64, "connect", got, task.put(address), len(address))
            if done < 0:
                raise RestoreError(f"cannot connect {_describe(entry)} again: {os.strerror(-done)}")
        with borrowed_socket(ctx.pid, got) as sock:
            options.restore_rest(sock, entry.opts)
        place(ctx, got, fd, cloexec, always_set_flag=True)


# --- dump helpers ----------------------------------------------------------------------------


def _inspect_one(sock: socket.socket, fd_what: str, listed) -> tuple:
    """(family, type, protocol, local address, peer address or None) of one socket (as
    `listed` in procfs, for its peer); refuse one whose state cannot be saved."""
    get = sock.getsockopt
    family = get(socket.SOL_SOCKET, socket.SO_DOMAIN)
    kind = get(socket.SOL_SOCKET, socket.SO_TYPE)
    proto = get(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    local = sock.getsockname()
    peer = None
    if listed is not None and listed.state == inet.TCP_ESTABLISHED:
        peer = (listed.remote, listed.remote_port)
        if family == socket.AF_INET6:
            peer = (*peer, 0, local[3])  # a link-local peer is on the bound interface
    facts = (family, kind, proto, local, peer)
    entry = pb.InetSkEntry(family=family, type=kind, proto=proto, src_port=local[1])
    inet._set_addresses(entry, local, None)
    what = f"{fd_what} is {_describe(entry)}"
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    events = dict(poller.poll(0)).get(sock.fileno(), 0)
    if events & select.POLLIN:
        raise UnsupportedError(
            f"{what} with packets not yet read, which cannot be queued again, not supported yet"
        )
    if events & select.POLLERR:
        raise UnsupportedError(
            f"{what} with an error not yet read (pending, or on its error queue), not supported yet"
        )
    if kind == socket.SOCK_RAW and (family, proto) in (
        (socket.AF_INET, IPPROTO_IGMP),
        (socket.AF_INET6, IPPROTO_ICMPV6),
    ):
        if _read(MC_FORWARDING[family]) not in ("", "0"):
            raise UnsupportedError(
                f"{what} while the host routes multicast: it may be the multicast routing "
                "socket (MRT_INIT), not supported yet"
            )
    return facts


def _dump_raw_options(sock: socket.socket, entry) -> None:
    """CRIU's IpOptsRawEntry of a raw socket."""
    get = sock.getsockopt
    raw = entry.ip_opts.raw
    if entry.family == socket.AF_INET:
        raw.hdrincl = bool(get(SOL_IP, IP_HDRINCL))
        raw.nodefrag = bool(get(SOL_IP, IP_NODEFRAG))
        if entry.proto == IPPROTO_ICMP:
            raw.icmpv_filter.extend(struct.unpack("=I", get(SOL_RAW, ICMP_FILTER, 4)))
        return
    raw.hdrincl = bool(get(SOL_IPV6, IPV6_HDRINCL))
    offset = get(SOL_IPV6, IPV6_CHECKSUM)
    raw.checksum = offset != -1
    raw.torpor_checksum_offset = offset
    if entry.proto == IPPROTO_ICMPV6:
        size = 4 * ICMPV6_FILTER_WORDS
        raw.icmpv_filter.extend(
            struct.unpack(f"={ICMPV6_FILTER_WORDS}I", get(SOL_ICMPV6, ICMPV6_FILTER, size))
        )


def _describe(entry) -> str:
    """How messages name the socket: kind, protocol, addresses."""
    v6 = entry.family == socket.AF_INET6
    local = inet._address(entry.family, entry.src_addr, 0, entry.torpor_src_scope_id)[0]
    if is_ping(entry):
        text = f"a ping{'v6' if v6 else ''} socket {local}, identifier {entry.src_port}"
    else:
        text = f"a raw{'v6' if v6 else ''} socket of protocol {entry.proto} on {local}"
    if entry.dst_addr:
        text += " connected to " + inet._address(entry.family, entry.dst_addr, 0)[0]
    return text


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


# --- restore helpers -------------------------------------------------------------------------


def _ping_problem() -> str | None:
    """Why torpor cannot make a ping socket here: its group is outside
    net.ipv4.ping_group_range."""
    text = _read(PING_GROUP_RANGE)
    try:
        low, high = (int(x) for x in text.split())
    except ValueError:
        return "a ping socket cannot be made: net.ipv4.ping_group_range cannot be read"
    groups = {os.getegid(), *os.getgroups()}
    if any(low <= g <= high for g in groups):
        return None
    return (
        f"a ping socket cannot be made: net.ipv4.ping_group_range is {low} {high}, which "
        f"does not include the group {os.getegid()} the restore runs as"
    )


def _cannot_make(entry, err: int) -> str:
    what = _describe(entry)
    if is_ping(entry) and err == errno.EACCES:
        return f"cannot make {what} again: its group is not in net.ipv4.ping_group_range"
    return f"cannot make {what} again: {os.strerror(err)}"


def _restore_raw_options(sock: socket.socket, entry) -> None:
    """The raw options that differ from the new socket's."""
    if entry.type != socket.SOCK_RAW or not entry.ip_opts.HasField("raw"):
        return
    raw = entry.ip_opts.raw
    if entry.family == socket.AF_INET:
        wanted = [
            (SOL_IP, IP_HDRINCL, int(raw.hdrincl), "IP_HDRINCL"),
            (SOL_IP, IP_NODEFRAG, int(raw.nodefrag), "IP_NODEFRAG"),
        ]
    else:
        offset = raw.torpor_checksum_offset if raw.checksum else -1
        wanted = [
            (SOL_IPV6, IPV6_HDRINCL, int(raw.hdrincl), "IPV6_HDRINCL"),
            (SOL_IPV6, IPV6_CHECKSUM, offset, "IPV6_CHECKSUM"),
        ]
    for level, option, value, name in wanted:
        if sock.getsockopt(level, option) != value:
            inet._set(sock, level, option, value, name)
    if raw.icmpv_filter and entry.family == socket.AF_INET:
        packed = struct.pack("=I", *raw.icmpv_filter)
        inet._set(sock, SOL_RAW, ICMP_FILTER, packed, "ICMP_FILTER")
    elif raw.icmpv_filter:
        packed = struct.pack(f"={ICMPV6_FILTER_WORDS}I", *raw.icmpv_filter)
        inet._set(sock, SOL_ICMPV6, ICMPV6_FILTER, packed, "ICMPV6_FILTER")


KIND = RawSocket()

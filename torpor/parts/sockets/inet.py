"""Internet sockets: TCP and UDP (and UDP-lite) over IPv4 and IPv6. CRIU's INETSK kind
(InetSkEntry in files.img; unread datagrams in sk-queues.img; with --tcp-established, each
TCP connection's state and queues in tcp-stream-INO.img).

Saved: a TCP socket listening (its address, backlog and options, which the connections it
accepts inherit) or never connected (bound or not); a UDP socket bound or not, connected
or not, with the datagrams waiting in its receive queue and each one's sender address;
with --tcp-established, an established TCP connection, read in repair mode (TCP_REPAIR):
its sequence numbers, the data received and not read, the data sent and not acknowledged
or not sent yet, MSS, window scaling, SACK, timestamps and windows. Every option
getsockopt reads back is kept: the socket level ones (options), the IP, IPv6, TCP and UDP
levels' (the tables below), IPV6_V6ONLY, SO_BINDTODEVICE. A TCP connection without
--tcp-established, or in a state other than ESTABLISHED, refuses the dump, naming its state
and addresses, as does a listening socket with connections not yet accepted. A dumped
connection is put in repair mode again just before the tree is killed, so that closing it
sends nothing (no FIN, no RST); left running, it leaves repair mode without a window probe.
A connection whose peer is outside the tree is held by the network lock (netlock) from
before it is read until the restored one runs, so that the peer's packets are dropped, and
sent again later, instead of being lost or answered with a RST; if the lock cannot be
installed the dump refuses, naming the connection and why, unless --network-lock skip.
With --tcp-close (CRIU's option) a connection in any state is saved without being read:
its addresses and options only, no lock, and the tree's closing it is what its peer sees.

At restore the socket is made in the process that holds it, with its file status flags; its
options are set from torpor on a copy of it, before it is bound (SO_REUSEADDR, IP_FREEBIND,
IPV6_V6ONLY and the like must come first; a TCP socket binds with SO_REUSEADDR on, put back
as it was afterwards, so that connections the dumped one left in TIME_WAIT do not stop it);
then it is bound and listens, in its process. A connection is made in repair mode (which
also lets it share its port with a listener): sequence numbers, a connect that sends
nothing, the negotiated options, its queues and windows. Once the whole tree has its fds:
buffer sizes, the saved datagrams, each sent again from its sender's address (by the socket
of the tree bound to it, else by a socket torpor binds there with IP_TRANSPARENT and
IP_FREEBIND, which take a foreign address too), then UDP sockets connect, connections leave
repair mode (every peer of the tree exists by then) and send what was not sent yet, and the
other options are put back. With --tcp-close (restore) a saved connection comes back as a
socket of its family in the CLOSE state, unbound and shut down both ways, with its options:
reads see the end of the stream, writes fail with EPIPE, poll shows POLLHUP, and nothing
is sent to the peer.

Also kept: the multicast groups a UDP socket joined, with their source filters
(parts.sockets.multicast), IP_OPTIONS as set, and an IPv6 socket's sticky extension
headers (IPV6_HOPOPTS, IPV6_RTHDRDSTOPTS, IPV6_RTHDR, IPV6_DSTOPTS). A UDP socket with an
error its process has not read (pending, or on its error queue) refuses the dump. Raw and
ping sockets are parts.sockets.raw, which shares this module's helpers. What the kernel
shows nowhere, so that torpor cannot save it nor even see it was set: the interface index
of IP_MULTICAST_IF (only its address is read back), a sticky IPV6_PKTINFO (source address
and interface) of a datagram socket, IPv6 flow label leases (IPV6_FLOWLABEL_MGR), IPv6
anycast addresses joined (IPV6_JOIN_ANYCAST), IPsec policies (IP_IPSEC_POLICY,
IP_XFRM_POLICY and their IPv6 twins).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
from contextlib import ExitStack
from dataclasses import dataclass

from torpor.arch import X86_64
from torpor.context import log
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel.nftables import NftablesError
from torpor.parts.fds.base import FdKind, place
from torpor.parts.sockets import borrowed_socket, multicast, netlock, options, queues

PROTOCOLS = ("TCP", "TCPv6", "UDP", "UDPv6", "UDP-Lite", "UDPLITEv6")  # system.sockprotoname
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE = 6, 17, 136
SOL_IP, SOL_IPV6 = 0, 41
IP_OPTIONS, IP_FREEBIND, IP_TRANSPARENT, IP_PKTINFO = 4, 15, 19, 8
IPV6_V6ONLY, IPV6_PKTINFO, IPV6_TRANSPARENT, IPV6_FREEBIND = 26, 50, 75, 78
TCP_NODELAY, TCP_MAXSEG, TCP_CORK, TCP_INFO, TCP_CONGESTION, TCP_ULP = 1, 2, 3, 11, 13, 31
TCP_REPAIR, TCP_REPAIR_QUEUE, TCP_QUEUE_SEQ, TCP_REPAIR_OPTIONS = 19, 20, 21, 22
TCP_TIMESTAMP, TCP_REPAIR_WINDOW = 24, 29
TCP_REPAIR_ON, TCP_REPAIR_OFF, TCP_REPAIR_OFF_NO_WP = 1, 0, -1
TCP_RECV_QUEUE, TCP_SEND_QUEUE = 1, 2
TCPOPT_MSS, TCPOPT_WINDOW, TCPOPT_SACK_PERM, TCPOPT_TIMESTAMP = 2, 3, 4, 8
TCPI_OPT_TIMESTAMPS, TCPI_OPT_SACK, TCPI_OPT_WSCALE = 1, 2, 4
REPAIR_WINDOW = struct.Struct("=5I")  # struct tcp_repair_window
UDP_CORK = 1
SIOCINQ, SIOCOUTQ, SIOCOUTQNSD = 0x541B, 0x5411, 0x894B
SETFL_FLAGS = os.O_NONBLOCK | os.O_APPEND | os.O_NOATIME
F_SETFL = 4

TCP_ESTABLISHED, TCP_CLOSE, TCP_LISTEN = 1, 7, 10
SHUT_RDWR = 2
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}  # fmt: skip
# the states of a connection CRIU's --tcp-close saves without reading (SYN_RECV and
# TIME_WAIT have no socket of their own)
CONNECTED = (1, 2, 4, 5, 8, 9, 11)

# Integer options by level: (the entry's message holding them, level, {field: option}).
# IP_FREEBIND is IpOptsEntry.freebind and IPV6_V6ONLY InetSkEntry.v6only (CRIU's fields).
_IP = {
    "torpor_tos": 1,
    "torpor_ttl": 2,
    "torpor_recvopts": 6,
    "torpor_retopts": 7,
    "torpor_pktinfo": 8,
    "torpor_mtu_discover": 10,
    "torpor_recverr": 11,
    "torpor_recvttl": 12,
    "torpor_recvtos": 13,
    "torpor_passsec": 18,
    "torpor_transparent": 19,
    "torpor_recvorigdstaddr": 20,
    "torpor_minttl": 21,
    "torpor_bind_address_no_port": 24,
    "torpor_recvfragsize": 25,
    "torpor_recverr_rfc4884": 26,
    "torpor_multicast_if": 32,
    "torpor_multicast_ttl": 33,
    "torpor_multicast_loop": 34,
    "torpor_multicast_all": 49,
    "torpor_unicast_if": 50,
    "torpor_local_port_range": 51,
    "torpor_checksum": 23,
}
_IPV6 = {
    "flowinfo": 11,
    "unicast_hops": 16,
    "multicast_if": 17,
    "multicast_hops": 18,
    "multicast_loop": 19,
    "mtu_discover": 23,
    "recverr": 25,
    "multicast_all": 29,
    "recverr_rfc4884": 31,
    "flowinfo_send": 33,
    "recvpktinfo": 49,
    "recvhoplimit": 51,
    "recvhopopts": 53,
    "recvrthdr": 56,
    "recvdstopts": 58,
    "recvpathmtu": 60,
    "dontfrag": 62,
    "recvtclass": 66,
    "tclass": 67,
    "autoflowlabel": 70,
    "addr_preferences": 72,
    "minhopcount": 73,
    "recvorigdstaddr": 74,
    "transparent": 75,
    "unicast_if": 76,
    "recvfragsize": 77,
    "router_alert_isolate": 30,
    "pktinfo_2292": 2,
    "hopopts_2292": 3,
    "dstopts_2292": 4,
    "rthdr_2292": 5,
    "hoplimit_2292": 8,
}
_TCP = {
    "nodelay": 1,
    "maxseg": 2,
    "cork": 3,
    "syncnt": 7,
    "linger2": 8,
    "defer_accept": 9,
    "window_clamp": 10,
    "thin_linear_timeouts": 16,
    "user_timeout": 18,
    "fastopen": 23,
    "notsent_lowat": 25,
    "save_syn": 27,
    "fastopen_connect": 30,
    "fastopen_no_cookie": 34,
    "inq": 36,
    "tx_delay": 37,
    "rto_max_ms": 44,
    "rto_min_us": 45,
    "delack_max_us": 46,
}
_UDP = {
    "cork": 1,
    "encap": 100,
    "no_check6_tx": 101,
    "no_check6_rx": 102,
    "segment": 103,
    "gro": 104,
}
_UDPLITE = {"send_cscov": 10, "recv_cscov": 11}
# an IPv6 socket's sticky extension headers, as bytes: Ipv6OptsEntry field -> option
_STICKY = {"hopopts": 54, "rthdrdstopts": 55, "rthdr": 57, "dstopts": 59}
STICKY_LARGEST = 1024  # what getsockopt reads here; a header is (hdrlen + 1) * 8 bytes
_SO = {
    "timestamp": 29, "timestampns": 35, "timestamping": 37, "timestamp_new": 63,
    "timestampns_new": 64, "timestamping_new": 65, "rxq_ovfl": 40, "wifi_status": 41,
    "select_err_queue": 45, "busy_poll": 46, "max_pacing_rate": 47,
    "zerocopy": 60, "prefer_busy_poll": 69, "reserve_mem": 73, "txrehash": 74, "rcvmark": 75,
    "rcvpriority": 82,
}  # fmt: skip
# multicast options, which a TCP socket shows but cannot be given
_DATAGRAM_ONLY = (
    "torpor_multicast_if", "torpor_multicast_ttl", "torpor_multicast_loop",
    "multicast_if", "multicast_hops", "multicast_loop",
)  # fmt: skip
# what a connection's TCP_MAXSEG and TCP_WINDOW_CLAMP show was negotiated, not chosen:
# TcpStreamEntry's mss_clamp and windows hold it
_NEGOTIATED = ("maxseg", "window_clamp")
# errors of getsockopt for an option the socket's family or protocol does not have
_NOT_HERE = (errno.ENOPROTOOPT, errno.EOPNOTSUPP, errno.EINVAL)


def _tables(entry):
    """(message, level, {field: option}) for every option table that applies to `entry`."""
    tcp = entry.type == socket.SOCK_STREAM
    ip = {k: v for k, v in _IP.items() if not (tcp and k in _DATAGRAM_ONLY)}
    found = [(entry.ip_opts, SOL_IP, ip), (entry.torpor_so_opts, socket.SOL_SOCKET, _SO)]
    if entry.family == socket.AF_INET6:
        ipv6 = {k: v for k, v in _IPV6.items() if not (tcp and k in _DATAGRAM_ONLY)}
        found.append((entry.torpor_ipv6_opts, SOL_IPV6, ipv6))
    if tcp:
        found.append((entry.torpor_tcp_opts, IPPROTO_TCP, _TCP))
    else:
        found.append((entry.torpor_udp_opts, IPPROTO_UDP, _UDP))
    if entry.proto == IPPROTO_UDPLITE:
        found.append((entry.torpor_udp_opts, IPPROTO_UDPLITE, _UDPLITE))
    return found


@dataclass
class _Facts:
    """What inspect found of one socket, for dump."""

    family: int
    type: int
    proto: int
    state: int
    local: tuple
    peer: tuple | None
    backlog: int = 0


class InetSocket(FdKind):
    name = "an internet socket"
    fd_type = pb.fdinfo_pb2.INETSK
    field = "isk"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "socket" and d.protocol in PROTOCOLS

    # --- dump ------------------------------------------------------------------------------

    def inspect(self, found, options, state) -> None:
        facts, named = {}, {}
        for pid, d in found:
            if not self.recognise(d):
                continue  # a raw or ping socket: parts.sockets.raw shares the member
            named[d.inode] = f"fd {d.fd} of process {pid}"
            with borrowed_socket(pid, d.fd) as sock:
                facts[d.inode] = _inspect_one(sock, named[d.inode], options)
        state["facts"] = facts
        state["options"] = options
        # A copy of each TCP connection saved, (copy, its SO_REUSEADDR), kept until the tree
        # is let go or killed.
        state["copies"] = []
        if options.tcp_established and not options.tcp_close:
            outside = [(named[ino], f) for ino, f in facts.items() if _peer_outside(f, facts)]
            if outside:
                _lock(outside, options, state)

    def dump(self, ctx, d, state, fown):
        facts: _Facts = state["facts"][d.inode]
        what = f"fd {d.fd} of process {ctx.pid} ({_describe(facts)})"
        entry = pb.InetSkEntry(
            id=0,
            ino=d.inode,
            family=facts.family,
            type=facts.type,
            proto=facts.proto,
            state=facts.state,
            src_port=facts.local[1],
            dst_port=facts.peer[1] if facts.peer else 0,
            flags=d.flags & ~os.O_CLOEXEC,
            backlog=facts.backlog,
            fown=fown,
        )
        _set_addresses(entry, facts.local, facts.peer)
        with borrowed_socket(ctx.pid, d.fd) as sock:
            entry.opts.CopyFrom(options.dump(sock, tcp=facts.proto == IPPROTO_TCP))
            _dump_options(sock, entry, what)
            multicast.dump(sock, entry, ctx.pid)
            if facts.type == socket.SOCK_DGRAM:
                messages = queues.peek(sock, what, passcred=False)
                if messages:
                    state.setdefault("queued", []).append((entry, messages))
            elif facts.state == TCP_ESTABLISHED and not state["options"].tcp_close:
                state.setdefault("streams", []).append((entry.ino, *_dump_stream(sock)))
                state["copies"].append((sock.dup(), entry.opts.reuseaddr))
        return entry

    def write(self, images, state) -> None:
        queues.write(images, state.get("queued", ()))
        for ino, stream, data in state.get("streams", ()):
            images.write(f"tcp-stream-{ino:x}.img", [(stream, data)])

    def inventory(self, entry, state) -> None:
        """CRIU's network_lock_method and tcp_close, and the lock table the restore removes."""
        options = state["options"]
        entry.network_lock_method = netlock.METHODS[options.network_lock]
        if options.tcp_close:
            entry.tcp_close = True
        if state.get("lock"):
            entry.torpor_network_lock_table = state["lock"]

    def dump_done(self, state, killed) -> None:
        """Each saved TCP connection stays in repair mode when the tree is killed, so that
        closing it sends nothing to its peer, and the network lock stays for the restore to
        remove; when the tree is let go (--leave-running, or a dump that failed) the
        connections leave repair mode, then the lock goes."""
        for copy, reuseaddr in state.get("copies", ()):
            with contextlib.suppress(OSError):
                if killed:
                    copy.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
                else:
                    _leave_repair(copy, reuseaddr)
            copy.close()
        name = state.get("lock")
        if name and not killed:
            try:
                netlock.unlock(name)
            except NftablesError as e:
                log.warning(
                    "the network lock %s %s could not be removed (%s): remove it with "
                    "nft delete table %s %s",
                    netlock.TABLE_FAMILY, name, e, netlock.TABLE_FAMILY, name,
                )  # fmt: skip

    # --- restore ---------------------------------------------------------------------------

    def describe(self, entry) -> str:
        try:
            local = _shown(_address(entry.family, entry.src_addr, entry.src_port))
            if entry.dst_port:
                local += " -> " + _shown(_address(entry.family, entry.dst_addr, entry.dst_port))
        except (OSError, ValueError, struct.error):  # the address words of a damaged image
            return f"{_protocol(entry)} socket"
        state = TCP_STATES.get(entry.state, "?") if entry.proto == IPPROTO_TCP else ""
        return f"{_protocol(entry)} socket {local} {state}".rstrip()

    def restore_problem(self, entry, shell_job) -> str | None:
        if entry.family not in (socket.AF_INET, socket.AF_INET6):
            return f"an internet socket has an unknown family {entry.family}"
        if (entry.type, entry.proto) not in (
            (socket.SOCK_STREAM, IPPROTO_TCP),
            (socket.SOCK_DGRAM, IPPROTO_UDP),
            (socket.SOCK_DGRAM, IPPROTO_UDPLITE),
        ):
            return f"an internet socket has an unknown type {entry.type} or protocol {entry.proto}"
        words = 1 if entry.family == socket.AF_INET else 4
        if len(entry.src_addr) != words or (entry.dst_addr and len(entry.dst_addr) != words):
            return "an internet socket's address has the wrong length"
        return multicast.restore_problem(entry)

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        got = task.call(X86_64, "socket", entry.family, entry.type, entry.proto)
        if entry.flags & SETFL_FLAGS:
            task.call(X86_64, "fcntl", got, F_SETFL, entry.flags & SETFL_FLAGS)
        local = _address(entry.family, entry.src_addr, entry.src_port, entry.torpor_src_scope_id)
        closed = ctx.tcp_close and _connection(entry)
        stream = entry.proto == IPPROTO_TCP and entry.state == TCP_ESTABLISHED and not closed
        with borrowed_socket(ctx.pid, got) as sock:
            _restore_options(sock, entry)
            multicast.restore(sock, entry)
            if entry.proto == IPPROTO_TCP and local[1] and not closed:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # see the docstring
            if stream:  # also lets it bind to the port of a listener of the tree
                sock.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
        if closed:  # unbound; shut down both ways, which a socket never connected refuses
            # with ENOTCONN after marking it: its reads end, its writes fail (EPIPE)
            task.syscall(X86_64, "shutdown", got, SHUT_RDWR)
        elif local[1] or not _is_any(local[0]):
            address = queues.address_bytes(entry.family, local)
            bound = task.syscall(X86_64, "bind", got, task.put(address), len(address))
            if bound < 0:
                raise RestoreError(
                    f"cannot bind {_protocol(entry)} socket to {_shown(local)} again: "
                    f"{os.strerror(-bound)}"
                )
        if entry.state == TCP_LISTEN:
            task.call(X86_64, "listen", got, entry.backlog)
        if stream:
            name = f"tcp-stream-{entry.ino:x}.img"
            saved, data = ctx.images.read_with_payloads(name)[0]
            with borrowed_socket(ctx.pid, got) as sock:
                _restore_stream(ctx, got, sock, entry, saved, data)
            state.setdefault("streams", []).append((ctx, fd, saved, data))
        place(ctx, got, fd, cloexec, always_set_flag=True)
        state.setdefault("placed", []).append((ctx, fd, entry))

    def finish_tree(self, contexts, state) -> None:
        placed = state.get("placed")
        if not placed:
            return
        with ExitStack() as stack:
            socks = [
                (ctx, fd, entry, stack.enter_context(borrowed_socket(ctx.pid, fd)))
                for ctx, fd, entry in placed
            ]
            for _, _, entry, sock in socks:
                options.restore_buffers(sock, entry.opts)
            _refill(contexts[0].images, socks)
            for ctx, fd, entry, _ in socks:
                if entry.type == socket.SOCK_DGRAM and entry.state == TCP_ESTABLISHED:
                    _connect(ctx, fd, entry)
            for ctx, fd, saved, data in state.get("streams", ()):  # every end exists now
                with borrowed_socket(ctx.pid, fd) as sock:
                    sock.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF)
                    _send_unsent(sock, data[len(data) - saved.unsq_len :])
            for _, _, entry, sock in socks:
                options.restore_rest(sock, entry.opts)


# --- dump helpers ----------------------------------------------------------------------------


def _inspect_one(sock: socket.socket, fd_what: str, dump_options) -> _Facts:
    """The facts of one socket; refuse what cannot be saved (`fd_what` names the fd; a
    TCP connection is saved with --tcp-established, or in any state with --tcp-close)."""
    get = sock.getsockopt
    family = get(socket.SOL_SOCKET, socket.SO_DOMAIN)
    kind = get(socket.SOL_SOCKET, socket.SO_TYPE)
    proto = get(socket.SOL_SOCKET, socket.SO_PROTOCOL)
    local = sock.getsockname()
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    facts = _Facts(family, kind, proto, TCP_CLOSE, local, peer)
    if proto == IPPROTO_TCP:
        info = get(IPPROTO_TCP, TCP_INFO, 32)
        facts.state = info[0]
        if facts.state == TCP_LISTEN:
            pending, facts.backlog = struct.unpack_from("=II", info, 24)
            if pending:
                raise UnsupportedError(
                    f"{fd_what} is a TCP socket listening on {_shown(local)} with {pending} "
                    "connection(s) not yet accepted, not supported yet"
                )
        elif facts.state in CONNECTED and dump_options.tcp_close:
            pass  # saved closed: addresses and options only
        elif facts.state == TCP_ESTABLISHED and dump_options.tcp_established:
            pass  # saved through TCP_REPAIR
        elif facts.state != TCP_CLOSE:
            ends = f"{_shown(local)} -> {_shown(peer)}" if peer else _shown(local)
            how = (
                "dump with --tcp-established to save it"
                if facts.state == TCP_ESTABLISHED
                else "not supported yet"
            )
            raise UnsupportedError(
                f"{fd_what} is a TCP connection ({TCP_STATES.get(facts.state, facts.state)} "
                f"{ends}), {how}"
            )
        elif _queued(sock, SIOCINQ) or _queued(sock, SIOCOUTQ):
            raise UnsupportedError(
                f"{fd_what} is a closed TCP connection with data left in its queues, "
                "not supported yet"
            )
    else:
        facts.state = TCP_ESTABLISHED if peer else TCP_CLOSE
        if get(IPPROTO_UDP, UDP_CORK) and _queued(sock, SIOCOUTQ):
            raise UnsupportedError(
                f"{fd_what} is a UDP socket holding corked data not yet sent, not supported yet"
            )
        if error_waiting(sock):
            raise UnsupportedError(
                f"{fd_what} is {_describe(facts)} with an error not yet read (pending, or on "
                "its error queue), not supported yet"
            )
    ulp = get(IPPROTO_TCP, TCP_ULP, 16).rstrip(b"\0") if proto == IPPROTO_TCP else b""
    if ulp:
        raise UnsupportedError(
            f"{fd_what} is a TCP socket with the upper layer protocol {ulp.decode()} "
            "(TCP_ULP), not supported yet"
        )
    return facts


def _connection(entry) -> bool:
    """Whether `entry` is a TCP connection (not a listener, not a socket never connected)."""
    return entry.proto == IPPROTO_TCP and entry.state not in (TCP_LISTEN, TCP_CLOSE)


def _peer_outside(facts: _Facts, every: dict) -> bool:
    """Whether `facts` is a TCP connection whose other end is no socket of the tree (of
    `every` socket's facts)."""
    if facts.proto != IPPROTO_TCP or facts.state != TCP_ESTABLISHED:
        return False
    here, there = _end(facts.family, facts.local), _end(facts.family, facts.peer)
    return not any(
        f.proto == IPPROTO_TCP
        and f.peer
        and _end(f.family, f.local) == there
        and _end(f.family, f.peer) == here
        for f in every.values()
    )


def _end(family: int, address: tuple) -> tuple[str, int]:
    """(host, port) of one end of a connection, an IPv4-mapped host as its IPv4 address."""
    _, plain = _as_ipv4(family, address)
    return plain[0], plain[1]


def _lock(outside: list[tuple[str, _Facts]], dump_options, state: dict) -> None:
    """Install the network lock for the connections whose peer is outside the tree
    (`outside`: how each fd is named, its facts), or refuse the dump saying why it cannot;
    with --network-lock skip, only say what that risks."""
    if dump_options.network_lock == "skip":
        log.warning(
            "--network-lock skip: %d TCP connection(s) with a peer outside the tree are not "
            "locked; what their peers send while the tree is down is answered with a RST",
            len(outside),
        )
        return
    name = netlock.table_name(dump_options.root)
    state["lock"] = name  # before it exists: a dump stopped right after it still removes it
    try:
        netlock.lock(name, [netlock.Connection(f.family, f.local, f.peer) for _, f in outside])
    except NftablesError as e:
        del state["lock"]
        what, facts = outside[0]
        raise UnsupportedError(
            f"{what} is a TCP connection ({_shown(facts.local)} -> {_shown(facts.peer)}) "
            f"whose peer is outside the tree, and the network cannot be locked: {e}; dump "
            "with --network-lock skip to save it anyway (its peer's packets are then "
            "answered with a RST while the tree is down)"
        ) from None


def check_connections(inventory, files: dict, tcp_close: bool) -> tuple[str | None, str]:
    """Whether the saved TCP sockets of `files` (files.img entries by id) can be made again
    by a restore with or without `tcp_close`: (the problem, or None; what the restore does
    with them; nothing to say when there are none)."""
    if inventory.tcp_close and not tcp_close:
        return "the images were dumped with --tcp-close: restore them with --tcp-close", ""
    connections = [
        f.isk for f in files.values() if f.type == pb.fdinfo_pb2.INETSK and _connection(f.isk)
    ]
    if not connections and not inventory.torpor_network_lock_table:
        return None, ""
    if tcp_close:
        plan = f"{len(connections)} TCP connection(s), restored closed (--tcp-close)"
    else:
        for entry in connections:
            if entry.state != TCP_ESTABLISHED:
                state = TCP_STATES.get(entry.state, entry.state)
                return (
                    f"a TCP socket in state {state} cannot be made again (restore with "
                    "--tcp-close to have it closed)",
                    "",
                )
        plan = f"{len(connections)} TCP connection(s), taken over through TCP_REPAIR"
    if inventory.torpor_network_lock_table:
        plan += (
            f"; the network lock {netlock.TABLE_FAMILY} {inventory.torpor_network_lock_table} "
            "is removed once the tree runs"
        )
    return None, plan


def error_waiting(sock: socket.socket) -> bool:
    """Whether the socket has an error for its process to read: a pending one (SO_ERROR,
    which reading clears) or on its error queue (IP_RECVERR, timestamps), which nothing can
    put back."""
    poller = select.poll()
    poller.register(sock.fileno(), 0)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _queued(sock: socket.socket, request: int) -> int:
    out = fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0")
    return struct.unpack("=i", out)[0]


def _dump_options(sock: socket.socket, entry, what: str) -> None:
    """The IP, IPv6, TCP, UDP and further socket-level options of `sock` into `entry`."""
    get = sock.getsockopt
    entry.ip_opts.freebind = bool(get(*_freebind(entry.family)))
    if entry.family == socket.AF_INET6:
        entry.v6only = bool(get(SOL_IPV6, IPV6_V6ONLY))
    for message, level, table in _tables(entry):
        for field, option in table.items():
            if _connection(entry) and field in _NEGOTIATED:
                continue
            try:
                setattr(message, field, get(level, option))
            except OSError as e:
                if e.errno not in _NOT_HERE:
                    raise
    ip_options = _get_bytes(sock, SOL_IP, IP_OPTIONS, 40)  # a raw IPv6 socket has no SOL_IP
    if ip_options:
        entry.ip_opts.torpor_options = ip_options
    if entry.family == socket.AF_INET6:
        for field, option in _STICKY.items():
            value = _get_bytes(sock, SOL_IPV6, option, STICKY_LARGEST)
            if value and (value[1] + 1) * 8 > len(value):
                raise UnsupportedError(
                    f"{what} has an IPV6_{field.upper()} header larger than "
                    f"{STICKY_LARGEST} bytes, not supported yet"
                )
            if value:
                setattr(entry.torpor_ipv6_opts, field, value)
    if entry.type == socket.SOCK_STREAM:
        congestion = get(IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0")
        entry.torpor_tcp_opts.congestion = congestion.decode()


def _get_bytes(sock: socket.socket, level: int, option: int, size: int) -> bytes:
    """An option of bytes, empty where the socket has no such option."""
    try:
        return sock.getsockopt(level, option, size)
    except OSError as e:
        if e.errno not in _NOT_HERE:
            raise
    return b""


def _freebind(family: int) -> tuple[int, int]:
    """(level, option) of IP_FREEBIND, one flag of the socket that IPv6 sockets (a raw one
    has no SOL_IP level) also show as IPV6_FREEBIND."""
    return (SOL_IPV6, IPV6_FREEBIND) if family == socket.AF_INET6 else (SOL_IP, IP_FREEBIND)


def _describe(facts: _Facts) -> str:
    name = {IPPROTO_TCP: "TCP", IPPROTO_UDP: "UDP", IPPROTO_UDPLITE: "UDP-lite"}[facts.proto]
    v6 = "v6" if facts.family == socket.AF_INET6 else ""
    if facts.peer:
        return f"a {name}{v6} socket {_shown(facts.local)} -> {_shown(facts.peer)}"
    return f"a {name}{v6} socket {_shown(facts.local)}"


def _protocol(entry) -> str:
    name = {IPPROTO_TCP: "a TCP", IPPROTO_UDP: "a UDP", IPPROTO_UDPLITE: "a UDP-lite"}
    return name.get(entry.proto, "an internet") + ("v6" if entry.family == socket.AF_INET6 else "")


def _shown(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- addresses -------------------------------------------------------------------------------


def _set_addresses(entry, local: tuple, peer: tuple | None) -> None:
    """An entry's local and peer addresses, from Python address tuples."""
    entry.src_addr.extend(_words(entry.family, local[0]))
    if entry.family == socket.AF_INET6 and local[3]:
        entry.torpor_src_scope_id = local[3]
    if peer:
        entry.dst_addr.extend(_words(entry.family, peer[0]))
        if entry.family == socket.AF_INET6:
            if peer[2]:
                entry.torpor_dst_flowinfo = peer[2]
            if peer[3]:
                entry.torpor_dst_scope_id = peer[3]


def _words(family: int, host: str) -> list[int]:
    """An address as CRIU keeps it: its bytes, four at a time, as little-endian words."""
    raw = socket.inet_pton(family, host)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))


def _address(family: int, words, port: int, scope_id: int = 0, flowinfo: int = 0) -> tuple:
    """The Python address tuple of saved words and port."""
    host = socket.inet_ntop(family, struct.pack(f"<{len(words)}I", *words))
    if family == socket.AF_INET6:
        return (host, port, flowinfo, scope_id)
    return (host, port)


def _is_any(host: str) -> bool:
    return host in ("0.0.0.0", "::")


def _from_sockaddr(raw: bytes) -> tuple[int, tuple]:
    """(family, Python address tuple) of a saved struct sockaddr_in or sockaddr_in6."""
    (family,) = struct.unpack_from("=H", raw)
    if family == socket.AF_INET and len(raw) >= 8:
        (port,) = struct.unpack_from("!H", raw, 2)
        return family, (socket.inet_ntop(family, raw[4:8]), port)
    if family == socket.AF_INET6 and len(raw) >= 28:
        port, flowinfo = struct.unpack_from("!HI", raw, 2)
        (scope_id,) = struct.unpack_from("=I", raw, 24)
        return family, (socket.inet_ntop(family, raw[8:24]), port, flowinfo, scope_id)
    raise RestoreError("a saved datagram has a sender address of an unknown family")


def _as_ipv4(family: int, address: tuple) -> tuple[int, tuple]:
    """An IPv4-mapped IPv6 address as the IPv4 one it stands for; others unchanged."""
    if family == socket.AF_INET6 and address[0].startswith("::ffff:") and "." in address[0]:
        return socket.AF_INET, (address[0].removeprefix("::ffff:"), address[1])
    return family, address


# --- restore helpers -------------------------------------------------------------------------


def _restore_options(sock: socket.socket, entry) -> None:
    """Every option but the SkOptsEntry ones (and SO_REUSEADDR, SO_REUSEPORT and
    SO_BINDTODEVICE of those, which bind needs) that differs from the new socket's."""
    opts = entry.opts
    for name, option in (("reuseaddr", socket.SO_REUSEADDR), ("so_reuseport", 15)):
        if opts.HasField(name) and getattr(opts, name):
            _set(sock, socket.SOL_SOCKET, option, 1, name)
    if opts.so_bound_dev:
        _set(sock, socket.SOL_SOCKET, 25, opts.so_bound_dev.encode(), "SO_BINDTODEVICE")
    if entry.family == socket.AF_INET6 and entry.HasField("v6only"):
        if bool(sock.getsockopt(SOL_IPV6, IPV6_V6ONLY)) != entry.v6only:
            _set(sock, SOL_IPV6, IPV6_V6ONLY, int(entry.v6only), "IPV6_V6ONLY")
    if entry.ip_opts.freebind:
        _set(sock, *_freebind(entry.family), 1, "IP_FREEBIND")
    for message, level, table in _tables(entry):
        for field, option in table.items():
            if message.HasField(field) and _get(sock, level, option, field) != getattr(
                message, field
            ):
                _set(sock, level, option, getattr(message, field), field.removeprefix("torpor_"))
    if entry.ip_opts.torpor_options:
        _set(sock, SOL_IP, IP_OPTIONS, entry.ip_opts.torpor_options, "IP_OPTIONS")
    for field, option in _STICKY.items():
        if entry.torpor_ipv6_opts.HasField(field):
            value = getattr(entry.torpor_ipv6_opts, field)
            _set(sock, SOL_IPV6, option, value, f"IPV6_{field.upper()}")
    congestion = entry.torpor_tcp_opts.congestion
    if congestion:
        now = sock.getsockopt(IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b"\0").decode()
        if now != congestion:
            _set(sock, IPPROTO_TCP, TCP_CONGESTION, congestion.encode(), "TCP_CONGESTION")


def _get(sock: socket.socket, level: int, option: int, what: str) -> int:
    try:
        return sock.getsockopt(level, option)
    except OSError as e:
        raise RestoreError(
            f"cannot set the socket option {what.removeprefix('torpor_')}: {e.strerror}"
        ) from None


def _set(sock: socket.socket, level: int, option: int, value, what: str) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError as e:
        raise RestoreError(f"cannot set the socket option {what}: {e.strerror}") from None


def _connect(ctx, fd: int, entry) -> None:
    peer = _address(
        entry.family,
        entry.dst_addr,
        entry.dst_port,
        entry.torpor_dst_scope_id,
        entry.torpor_dst_flowinfo,
    )
    task = ctx.task
    address = queues.address_bytes(entry.family, peer)
    got = task.syscall(X86_64, "connect", fd, task.put(address), len(address))
    if got < 0:
        raise RestoreError(
            f"cannot connect {_protocol(entry)} socket to {_shown(peer)} again: {os.strerror(-got)}"
        )


def _refill(images, socks) -> None:
    """Send every saved datagram again to the socket that held it, from its sender's
    address."""
    if not images.has("sk-queues.img"):
        return
    by_id = {entry.id: (entry, sock) for _, _, entry, sock in socks}
    for message, data in images.read_with_payloads("sk-queues.img"):
        if message.id_for not in by_id:
            continue  # another family's
        entry, sock = by_id[message.id_for]
        local = _address(entry.family, entry.src_addr, entry.src_port, entry.torpor_src_scope_id)
        what = f"{_protocol(entry)} socket {_shown(local)}"
        if not message.addr:
            raise RestoreError(f"a datagram saved for {what} has no sender address")
        family, sender = _as_ipv4(*_from_sockaddr(message.addr))
        to = _destination(entry, local, family)
        with ExitStack() as stack:
            own = _tree_sender(socks, entry.proto, family, sender)
            if own is not None:
                _send_from_tree(own, sender, to, data, what)
            else:
                out = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM, entry.proto))
                _bind_anywhere(out, family, sender, what)
                queues.send(out, message, data, to, what)


def _destination(entry, local: tuple, family: int) -> tuple:
    """Where a datagram from a sender of `family` is sent to reach the socket `entry`:
    its own address, or the loopback one where it is bound to any address."""
    if family == socket.AF_INET:
        if entry.family == socket.AF_INET6:
            mapped = local[0].removeprefix("::ffff:")
            return ("127.0.0.1" if _is_any(local[0]) else mapped, local[1])
        return ("127.0.0.1" if _is_any(local[0]) else local[0], local[1])
    return ("::1" if _is_any(local[0]) else local[0], local[1], 0, local[3])


def _tree_sender(socks, proto: int, family: int, sender: tuple):
    """A restored socket of the tree bound to `sender` (or to any address on its port),
    which sends it: (socket, its entry); None if there is none."""
    for _, _, entry, sock in socks:
        if entry.type != socket.SOCK_DGRAM or entry.proto != proto:
            continue
        local = _address(entry.family, entry.src_addr, entry.src_port)
        lfamily, local = _as_ipv4(entry.family, local)
        if local[1] != sender[1]:
            continue
        if local[0] == sender[0] or (
            _is_any(local[0])
            and (lfamily == family or (entry.family == socket.AF_INET6 and not entry.v6only))
            and _is_local(family, sender[0])
        ):
            return sock, entry
    return None


def _is_local(family: int, host: str) -> bool:
    """Whether `host` is an address of this host (a socket can be bound to it)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError:
            return False
    return True


def _send_from_tree(own, sender: tuple, to: tuple, data: bytes, what: str) -> None:
    """Send from a socket of the tree, choosing the saved source address (IP_PKTINFO)
    where the socket is bound to any address."""
    sock, entry = own
    control = []
    if entry.family == socket.AF_INET6:
        if len(to) == 2:  # an IPv4 sender's datagram, from a dual-stack socket
            to = ("::ffff:" + to[0], to[1], 0, 0)
        source = sender[0] if ":" in sender[0] else "::ffff:" + sender[0]
        control.append(
            (SOL_IPV6, IPV6_PKTINFO, socket.inet_pton(socket.AF_INET6, source) + bytes(4))
        )
    else:
        spec = socket.inet_pton(socket.AF_INET, sender[0])
        control.append((SOL_IP, IP_PKTINFO, bytes(4) + spec + bytes(4)))
    try:
        sock.sendmsg([data], control, socket.MSG_DONTWAIT, to)
    except OSError as e:
        raise RestoreError(f"cannot queue a saved datagram of {what} again: {e.strerror}") from None


def _bind_anywhere(sock: socket.socket, family: int, sender: tuple, what: str) -> None:
    """Bind a sending socket to a sender's address, local or not."""
    for level, option in ((socket.SOL_SOCKET, socket.SO_REUSEADDR), (socket.SOL_SOCKET, 15)):
        sock.setsockopt(level, option, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(SOL_IPV6, IPV6_TRANSPARENT, 1)
        sock.setsockopt(SOL_IPV6, IPV6_FREEBIND, 1)
    else:
        sock.setsockopt(SOL_IP, IP_TRANSPARENT, 1)
        sock.setsockopt(SOL_IP, IP_FREEBIND, 1)
    try:
        sock.bind(sender)
    except OSError as e:
        raise RestoreError(
            f"cannot send a saved datagram of {what} again from {_shown(sender)}, its "
            f"sender's address: {e.strerror}"
        ) from None


# --- TCP connections (TCP_REPAIR) ------------------------------------------------------------


def _dump_stream(sock: socket.socket) -> tuple[pb.TcpStreamEntry, bytes]:
    """A connection's TcpStreamEntry and its queues' data (received, then sent), read in
    repair mode; it leaves repair mode again without a word to its peer."""
    get = sock.getsockopt
    reuseaddr = get(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    sock.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_ON)
    try:
        info = get(IPPROTO_TCP, TCP_INFO, 8)
        inq, outq, unsent = (_queued(sock, r) for r in (SIOCINQ, SIOCOUTQ, SIOCOUTQNSD))
        queue_data = []
        seqs = []
        for queue, length in ((TCP_RECV_QUEUE, inq), (TCP_SEND_QUEUE, outq)):
            sock.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, queue)
            seqs.append(get(IPPROTO_TCP, TCP_QUEUE_SEQ) & 0xFFFFFFFF)
            queue_data.append(_peek_all(sock, length))
        sock.setsockopt(IPPROTO_TCP, TCP_REPAIR_QUEUE, 0)
        window = REPAIR_WINDOW.unpack(get(IPPROTO_TCP, TCP_REPAIR_WINDOW, REPAIR_WINDOW.size))
        stream = pb.TcpStreamEntry(
            inq_len=inq,
            inq_seq=seqs[0],
            outq_len=outq,
            outq_seq=seqs[1],
            opt_mask=info[5] & (TCPI_OPT_TIMESTAMPS | TCPI_OPT_SACK | TCPI_OPT_WSCALE),
            snd_wscale=info[6] & 0xF,
            mss_clamp=get(IPPROTO_TCP, TCP_MAXSEG),
            rcv_wscale=info[6] >> 4,
            timestamp=get(IPPROTO_TCP, TCP_TIMESTAMP) & 0xFFFFFFFF,
            cork=bool(get(IPPROTO_TCP, TCP_CORK)),
            nodelay=bool(get(IPPROTO_TCP, TCP_NODELAY)),
            unsq_len=unsent,
        )
        stream.snd_wl1, stream.snd_wnd, stream.max_window, stream.rcv_wnd, stream.rcv_wup = window
    finally:
        _leave_repair(sock, reuseaddr)
    return stream, b"".join(queue_data)


def _leave_repair(sock: socket.socket, reuseaddr: int) -> None:
    """Out of repair mode without a window probe; SO_REUSEADDR (which repair mode
    overrides) as it was."""
    sock.setsockopt(IPPROTO_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuseaddr))


def _peek_all(sock: socket.socket, length: int) -> bytes:
    """The `length` bytes of the queue chosen with TCP_REPAIR_QUEUE (peeked from the
    start, whatever the socket's peek offset)."""
    if not length:
        return b""
    was = options.peek_offset(sock)
    if was != -1:
        options.set_peek_offset(sock, 0)
    try:
        data = sock.recv(length, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    finally:
        if was != -1:
            options.set_peek_offset(sock, was)
    if len(data) != length:
        raise UnsupportedError(
            f"a TCP connection's queue holds {length} bytes but {len(data)} could be read"
        )
    return data


def _restore_stream(ctx, fd: int, sock: socket.socket, entry, saved, data: bytes) -> None:
    """Make the bound socket `fd` (`sock`, in repair mode) the saved connection again:
    sequence numbers, the connect that sends nothing, the negotiated options, the queues
    (but what was not yet sent, which goes once it leaves repair mode) and windows."""
    what = f"the TCP connection {entry.ino}"
    inq, sent = data[: saved.inq_len], data[saved.inq_len : len(data) - saved.unsq_len]
    for queue, seq in (
        (TCP_RECV_QUEUE, saved.inq_seq - saved.inq_len),
        (TCP_SEND_QUEUE, saved.outq_seq - saved.outq_len),
    ):
        _set(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")
        _set(sock, IPPROTO_TCP, TCP_QUEUE_SEQ, _u32(seq), "TCP_QUEUE_SEQ")
    _connect(ctx, fd, entry)
    repair = [(TCPOPT_MSS, saved.mss_clamp)]
    if saved.opt_mask & TCPI_OPT_WSCALE:
        repair.append((TCPOPT_WINDOW, saved.snd_wscale | saved.rcv_wscale << 16))
    if saved.opt_mask & TCPI_OPT_SACK:
        repair.append((TCPOPT_SACK_PERM, 0))
    if saved.opt_mask & TCPI_OPT_TIMESTAMPS:
        repair.append((TCPOPT_TIMESTAMP, 0))
    packed = b"".join(struct.pack("=II", code, value) for code, value in repair)
    _set(sock, IPPROTO_TCP, TCP_REPAIR_OPTIONS, packed, "TCP_REPAIR_OPTIONS")
    if saved.opt_mask & TCPI_OPT_TIMESTAMPS:
        _set(sock, IPPROTO_TCP, TCP_TIMESTAMP, _u32(saved.timestamp), "TCP_TIMESTAMP")
    options.restore_buffers(sock, entry.opts)
    for queue, chunk in ((TCP_RECV_QUEUE, inq), (TCP_SEND_QUEUE, sent)):
        _set(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE")
        _send_unsent(sock, chunk, what)
    _set(sock, IPPROTO_TCP, TCP_REPAIR_QUEUE, 0, "TCP_REPAIR_QUEUE")
    if saved.HasField("snd_wnd"):
        window = REPAIR_WINDOW.pack(
            saved.snd_wl1, saved.snd_wnd, saved.max_window, saved.rcv_wnd, saved.rcv_wup
        )
        _set(sock, IPPROTO_TCP, TCP_REPAIR_WINDOW, window, "TCP_REPAIR_WINDOW")


def _u32(value: int) -> bytes:
    """A 32-bit option value (a sequence number, a timestamp) as setsockopt takes it."""
    return struct.pack("=I", value & 0xFFFFFFFF)


def _send_unsent(sock: socket.socket, data: bytes, what: str = "a TCP connection") -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[sock.send(view, socket.MSG_DONTWAIT) :]
    except OSError as e:
        raise RestoreError(f"cannot queue the saved data of {what} again: {e.strerror}") from None


KIND = InetSocket()

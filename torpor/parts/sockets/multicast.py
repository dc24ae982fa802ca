"""The multicast groups an internet socket (UDP, UDP-lite, raw, ping) joined, with each
one's source filter: kept in its InetSkEntry (torpor_memberships of the IP options for
IPv4 groups, of the IPv6 options for IPv6 groups; an IPv6 socket may join both).

The kernel shows no socket's list of groups, only every group joined on each interface
(/proc/PID/net/igmp and igmp6, the tree's network namespace). Each of those is asked of
the socket (MCAST_MSFILTER on torpor's copy of it), which answers only for a group it
joined there, with its filter mode and sources. At restore the interface must have the
same index and name (the restore refuses before anything is made otherwise); each group is
joined again (MCAST_JOIN_GROUP) and given its filter (MCAST_MSFILTER) unless that is
EXCLUDE{}, the filter a join starts with.

What is not kept: a group joined naming the interface by its address (IP_ADD_MEMBERSHIP
with imr_address) is joined again by the interface's index, so leaving it later by the
address alone fails; the kernel keeps that address but shows it nowhere.
"""

from __future__ import annotations

import socket

from torpor.errors import RestoreError
from torpor.kernel import mcast


def dump(sock: socket.socket, entry, pid: int) -> None:
    """Add the memberships of `sock` (of process `pid`) to `entry`."""
    if entry.type == socket.SOCK_STREAM:
        return  # a TCP socket cannot join a group
    families = [socket.AF_INET, socket.AF_INET6]
    if entry.family == socket.AF_INET:
        families.remove(socket.AF_INET6)
    elif entry.type == socket.SOCK_RAW:
        families.remove(socket.AF_INET)  # a raw IPv6 socket has no IPv4 level
    for family in families:
        kept = _memberships(entry, family)
        for ifindex, group in sorted(set(mcast.groups_joined(pid, family))):
            found = mcast.source_filter(sock, family, ifindex, group)
            if found is None:
                continue
            mode, sources = found
            member = kept.add(ifindex=ifindex, group=group, mode=mode, sources=sources)
            try:
                member.ifname = socket.if_indextoname(ifindex)
            except OSError:
                pass


def restore_problem(entry) -> str | None:
    """Why the memberships of `entry` cannot be joined again on this host: an interface
    that has not the index and name it had."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for member in _memberships(entry, family):
            if not member.HasField("ifname"):
                continue
            try:
                name = socket.if_indextoname(member.ifindex)
            except OSError:
                name = None
            if name != member.ifname:
                return (
                    f"a socket joined the multicast group {_shown(family, member.group)} on "
                    f"interface {member.ifindex} ({member.ifname}), which this host has not"
                )
    return None


def restore(sock: socket.socket, entry) -> None:
    """Join the saved groups again on `sock`, each with its source filter."""
    for family in (socket.AF_INET, socket.AF_INET6):
        for member in _memberships(entry, family):
            group = bytes(member.group)
            try:
                mcast.join(sock, family, member.ifindex, group)
                if member.mode != mcast.MCAST_EXCLUDE or member.sources:
                    mcast.set_source_filter(
                        sock, family, member.ifindex, group, member.mode, list(member.sources)
                    )
            except OSError as e:
                raise RestoreError(
                    f"cannot join the multicast group {_shown(family, group)} on interface "
                    f"{member.ifindex} again: {e.strerror}"
                ) from None


def _memberships(entry, family: int):
    if family == socket.AF_INET:
        return entry.ip_opts.torpor_memberships
    return entry.torpor_ipv6_opts.torpor_memberships


def _shown(family: int, group: bytes) -> str:
    try:
        return socket.inet_ntop(family, bytes(group))
    except ValueError:
        return bytes(group).hex()

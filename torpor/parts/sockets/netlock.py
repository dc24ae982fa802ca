"""The network lock: while a dumped tree is frozen or dead, the packets of its TCP
connections whose peer is outside the tree are dropped, both ways, so that the peer neither
loses what it sends (it keeps it and sends it again, as for any lost packet) nor gets a RST
from a host where no socket holds the connection's address any more.

The lock is an nftables table of torpor's own (family inet, named after the dump:
torpor-<root pid>-<8 hex digits>) with an input and an output chain holding, for each such
connection, a rule dropping each direction of its 4-tuple. A dump installs it before it reads
the first connection in repair mode; a dump that lets the tree go (--leave-running, or one
that failed or was interrupted) removes it before it returns; a dump that kills the tree
leaves it, and names it in inventory.img (CRIU's network_lock_method, nftables, and
torpor_network_lock_table), so that the restore removes it once the restored connections
have left repair mode and the tree runs. A restore that fails leaves it: the peer keeps
waiting, and the next restore can still take the connection over. Connections whose two
ends are in the tree need no lock: both are in repair mode while the tree is down, and
neither sends anything.

`--network-lock skip` installs nothing (CRIU's name): what the peer sends meanwhile is
answered with a RST and its connection dies.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from torpor.kernel import nftables

# CRIU's values of InventoryEntry.network_lock_method (its enum NETWORK_LOCK_METHOD)
METHOD_IPTABLES, METHOD_NFTABLES, METHOD_SKIP = 0, 1, 2
METHODS = {"nftables": METHOD_NFTABLES, "skip": METHOD_SKIP}
TABLE_FAMILY = "inet"
TABLE_PREFIX = "torpor-"
# before every other chain of the hook: whatever other tables accept, a drop here is final
PRIORITY = -300


@dataclass(frozen=True)
class Connection:
    """One TCP connection to lock: its family and both ends, as Python address tuples."""

    family: int
    local: tuple
    peer: tuple


def table_name(root_pid: int) -> str:
    """A name for the lock table of a dump of the tree rooted at `root_pid`, unlike that
    of any other dump (a table a killed dump or a failed restore left keeps its own)."""
    return f"{TABLE_PREFIX}{root_pid}-{os.urandom(4).hex()}"


def lock(name: str, connections: list[Connection]) -> None:
    """Install the table `name` dropping every packet of `connections`, in one
    transaction; NftablesError (one line) if libnftables is missing or nftables refuses."""
    table = f"{TABLE_FAMILY} {name}"
    commands = [f"add table {table}"]
    for hook in ("input", "output"):
        commands.append(
            f"add chain {table} {hook} "
            f"{{ type filter hook {hook} priority {PRIORITY}; policy accept; }}"
        )
    for c in connections:
        for source, destination in ((c.local, c.peer), (c.peer, c.local)):
            match = _match(c.family, source, destination)
            commands.extend(f"add rule {table} {hook} {match} drop" for hook in ("input", "output"))
    nftables.run("\n".join(commands) + "\n")


def unlock(name: str) -> bool:
    """Remove the table `name`: True if it was removed, False if this host has none of that
    name (the images were moved to another host, or it was removed already);
    NftablesError if it is there and cannot be removed."""
    with nftables.Nftables() as nft:
        try:
            nft.run(f"delete table {TABLE_FAMILY} {name}\n")
        except nftables.NftablesError:
            if name not in _tables(nft):
                return False
            raise
    return True


def tables() -> list[str]:
    """The names of this host's nftables tables of family inet."""
    with nftables.Nftables() as nft:
        return _tables(nft)


def _tables(nft: nftables.Nftables) -> list[str]:
    names = []
    for line in nft.run("list tables\n").splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "table" and words[1] == TABLE_FAMILY:
            names.append(words[2])
    return names


def release(inventory) -> str | None:
    """Remove the lock a dump left (named in `inventory`), once the restored tree runs;
    a warning to show if it could not be removed, else None."""
    name = inventory.torpor_network_lock_table
    if not name:
        return None
    try:
        unlock(name)
    except nftables.NftablesError as e:
        return (
            f"the network lock {TABLE_FAMILY} {name} could not be removed ({e}): the "
            f"restored connections get no packet until it is (nft delete table "
            f"{TABLE_FAMILY} {name})"
        )
    return None


def _match(family: int, source: tuple, destination: tuple) -> str:
    """The nft match of the TCP packets from `source` to `destination`."""
    fam, src = _plain(family, source[0])
    _, dst = _plain(family, destination[0])
    ip = "ip" if fam == socket.AF_INET else "ip6"
    return f"{ip} saddr {src} tcp sport {source[1]} {ip} daddr {dst} tcp dport {destination[1]}"


def _plain(family: int, host: str) -> tuple[int, str]:
    """An IPv4-mapped IPv6 address as the IPv4 one its packets carry; others unchanged."""
    if family == socket.AF_INET6 and host.startswith("::ffff:") and "." in host:
        return socket.AF_INET, host.removeprefix("::ffff:")
    return family, host

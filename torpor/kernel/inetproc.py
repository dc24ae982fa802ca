"""Raw and ICMP echo (ping) sockets as /proc/PID/net/raw, raw6, icmp and icmp6 list them
(the network namespace of PID): each socket's state and remote address, by inode. A raw
or ping socket has no peer port, so getpeername says it is not connected even when it is;
these tables show where it is connected to.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

TABLES = {
    socket.AF_INET: ("raw", "icmp"),
    socket.AF_INET6: ("raw6", "icmp6"),
}


@dataclass(frozen=True)
class Listed:
    state: int  # TCP_* state: TCP_ESTABLISHED (1) once connected, else TCP_CLOSE (7)
    remote: str  # the remote address, as inet_ntop writes it
    remote_port: int


def sockets(pid: int) -> dict[int, Listed]:
    """Every raw and ping socket of `pid`'s network namespace, by inode number."""
    found = {}
    for family, names in TABLES.items():
        for name in names:
            try:
                with open(f"/proc/{pid}/net/{name}") as f:
                    lines = f.read().splitlines()[1:]
            except FileNotFoundError:  # no IPv6, or no ping sockets in this kernel
                continue
            for line in lines:
                fields = line.split()
                if len(fields) < 10:
                    continue
                host, port = fields[2].split(":")
                found[int(fields[9])] = Listed(
                    int(fields[3], 16), _address(family, host), int(port, 16)
                )
    return found


def _address(family: int, text: str) -> str:
    """An address as the tables print it: each 32-bit word of it in hex, in host order."""
    words = [int(text[i : i + 8], 16) for i in range(0, len(text), 8)]
    return socket.inet_ntop(family, struct.pack(f"={len(words)}I", *words))

"""The options every socket carries (SOL_SOCKET, and TCP keepalive), read at dump from a
copy of the socket torpor holds and put back on the new socket at restore: CRIU's
SkOptsEntry.

Only options that differ from a fresh socket's are set again, so that, say, a buffer size
never chosen stays under the kernel's automatic sizing. Buffer sizes are set first (a
restored queue must fit); the rest once the queues are refilled (SO_PASSCRED would make
an unbound sender bind itself while refilling).
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

from torpor.errors import RestoreError
from torpor.images import pb

SOL_SOCKET = socket.SOL_SOCKET
SO_DONTROUTE, SO_BROADCAST, SO_SNDBUF, SO_RCVBUF = 5, 6, 7, 8
SO_KEEPALIVE, SO_OOBINLINE, SO_NO_CHECK, SO_PRIORITY, SO_LINGER = 9, 10, 11, 12, 13
SO_REUSEPORT, SO_PASSCRED, SO_RCVLOWAT = 15, 16, 18
SO_RCVTIMEO, SO_SNDTIMEO = 20, 21  # the _OLD ones: struct timeval of this (64-bit) process
SO_BINDTODEVICE, SO_GET_FILTER, SO_ATTACH_FILTER = 25, 26, 26
SO_SNDBUFFORCE, SO_RCVBUFFORCE, SO_PASSSEC, SO_MARK, SO_PEEK_OFF = 32, 33, 34, 36, 42
TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT = 4, 5, 6

# SkOptsEntry field -> SOL_SOCKET option, for the plain integer and boolean ones
_FLAGS = {
    "reuseaddr": socket.SO_REUSEADDR,
    "so_reuseport": SO_REUSEPORT,
    "so_broadcast": SO_BROADCAST,
    "so_keepalive": SO_KEEPALIVE,
    "so_passcred": SO_PASSCRED,
    "so_passsec": SO_PASSSEC,
    "so_dontroute": SO_DONTROUTE,
    "so_no_check": SO_NO_CHECK,
}
_NUMBERS = {
    "so_priority": SO_PRIORITY,
    "so_rcvlowat": SO_RCVLOWAT,
    "so_mark": SO_MARK,
    "so_oobinline": SO_OOBINLINE,
}
_KEEPALIVE = {
    "tcp_keepidle": TCP_KEEPIDLE,
    "tcp_keepintvl": TCP_KEEPINTVL,
    "tcp_keepcnt": TCP_KEEPCNT,
}

_libc = ctypes.CDLL(None, use_errno=True)


def dump(sock: socket.socket, tcp: bool = False) -> pb.SkOptsEntry:
    """The options of `sock` (with `tcp`, also its keepalive timing)."""
    get = sock.getsockopt
    snd = struct.unpack("qq", get(SOL_SOCKET, SO_SNDTIMEO, 16))
    rcv = struct.unpack("qq", get(SOL_SOCKET, SO_RCVTIMEO, 16))
    opts = pb.SkOptsEntry(
        so_sndbuf=get(SOL_SOCKET, SO_SNDBUF),
        so_rcvbuf=get(SOL_SOCKET, SO_RCVBUF),
        so_snd_tmo_sec=snd[0],
        so_snd_tmo_usec=snd[1],
        so_rcv_tmo_sec=rcv[0],
        so_rcv_tmo_usec=rcv[1],
    )
    for name, option in _FLAGS.items():
        value = _get_if_any(sock, option)
        if value is not None:
            setattr(opts, name, bool(value))
    for name, option in _NUMBERS.items():
        value = _get_if_any(sock, option)
        if value is not None:
            setattr(opts, name, value & 0xFFFFFFFF)
    onoff, seconds = struct.unpack("ii", get(SOL_SOCKET, SO_LINGER, 8))
    if onoff:
        opts.so_linger = seconds
    device = get(SOL_SOCKET, SO_BINDTODEVICE, 16).rstrip(b"\0")
    if device:
        opts.so_bound_dev = device.decode()
    opts.so_filter.extend(_filter(sock))
    peek_off = _get_if_any(sock, SO_PEEK_OFF)
    if peek_off not in (None, -1):
        opts.torpor_peek_off = peek_off
    if tcp and opts.so_keepalive:
        for name, option in _KEEPALIVE.items():
            setattr(opts, name, get(socket.IPPROTO_TCP, option))
    return opts


def _get_if_any(sock: socket.socket, option: int) -> int | None:
    """SOL_SOCKET option `option`, or None where the socket's family has no such option."""
    try:
        return sock.getsockopt(SOL_SOCKET, option)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT):
            return None
        raise


def peek_offset(sock: socket.socket) -> int:
    return sock.getsockopt(SOL_SOCKET, SO_PEEK_OFF)


def set_peek_offset(sock: socket.socket, offset: int) -> None:
    sock.setsockopt(SOL_SOCKET, SO_PEEK_OFF, offset)


def restore_buffers(sock: socket.socket, opts) -> None:
    """The send and receive buffer sizes, where they differ from the new socket's (the
    kernel doubles what it is given; the FORCE options pass the system's maximum)."""
    for saved, get, force in (
        (opts.so_sndbuf, SO_SNDBUF, SO_SNDBUFFORCE),
        (opts.so_rcvbuf, SO_RCVBUF, SO_RCVBUFFORCE),
    ):
        if sock.getsockopt(SOL_SOCKET, get) != saved:
            _set(sock, SOL_SOCKET, force, saved // 2, "buffer size")


def restore_rest(sock: socket.socket, opts) -> None:
    """Every other option that differs from the new socket's."""
    get = sock.getsockopt
    for field, option in (("snd", SO_SNDTIMEO), ("rcv", SO_RCVTIMEO)):
        value = struct.pack(
            "qq", getattr(opts, f"so_{field}_tmo_sec"), getattr(opts, f"so_{field}_tmo_usec")
        )
        if get(SOL_SOCKET, option, 16) != value:
            _set(sock, SOL_SOCKET, option, value, "timeout")
    for name, option in (*_FLAGS.items(), *_NUMBERS.items()):
        if not opts.HasField(name):
            continue
        saved, now = int(getattr(opts, name)), _get_if_any(sock, option)
        if now is None and saved:
            raise RestoreError(f"this kernel has no socket option {name} for a saved socket")
        if now is not None and (now & 0xFFFFFFFF if name in _NUMBERS else bool(now)) != saved:
            _set(sock, SOL_SOCKET, option, saved, name)
    for name, option in _KEEPALIVE.items():
        if opts.HasField(name) and get(socket.IPPROTO_TCP, option) != getattr(opts, name):
            _set(sock, socket.IPPROTO_TCP, option, getattr(opts, name), name)
    if opts.HasField("so_linger"):
        _set(sock, SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, opts.so_linger), "SO_LINGER")
    if opts.so_bound_dev:
        _set(sock, SOL_SOCKET, SO_BINDTODEVICE, opts.so_bound_dev.encode(), "SO_BINDTODEVICE")
    if opts.so_filter:
        _attach_filter(sock, list(opts.so_filter))
    if opts.HasField("torpor_peek_off"):
        _set(sock, SOL_SOCKET, SO_PEEK_OFF, opts.torpor_peek_off, "SO_PEEK_OFF")


def _set(sock: socket.socket, level: int, option: int, value, what: str) -> None:
    try:
        sock.setsockopt(level, option, value)
    except OSError as e:
        raise RestoreError(f"cannot set the socket option {what}: {e.strerror}") from None


def _filter(sock: socket.socket) -> list[int]:
    """The socket filter's instructions (struct sock_filter, 8 bytes each, as integers);
    the kernel counts SO_GET_FILTER's length in instructions, not bytes."""
    count = ctypes.c_uint32(0)
    if _libc.getsockopt(sock.fileno(), SOL_SOCKET, SO_GET_FILTER, None, ctypes.byref(count)):
        return []
    if not count.value:
        return []
    buf = ctypes.create_string_buffer(count.value * 8)
    length = ctypes.c_uint32(count.value)
    if _libc.getsockopt(sock.fileno(), SOL_SOCKET, SO_GET_FILTER, buf, ctypes.byref(length)):
        err = ctypes.get_errno()
        raise OSError(err, f"SO_GET_FILTER: {err}")
    return list(struct.unpack(f"<{count.value}Q", buf.raw))


def _attach_filter(sock: socket.socket, instructions: list[int]) -> None:
    code = ctypes.create_string_buffer(struct.pack(f"<{len(instructions)}Q", *instructions))
    prog = struct.pack("HxxxxxxQ", len(instructions), ctypes.addressof(code))
    _set(sock, SOL_SOCKET, SO_ATTACH_FILTER, prog, "SO_ATTACH_FILTER")

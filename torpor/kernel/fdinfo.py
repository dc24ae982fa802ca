"""What /proc/PID/fdinfo/FD shows of the anonymous-inode files (eventfd, eventpoll, signalfd,
timerfd), parsed into plain values. Formats as the kernel prints them (fs/eventfd.c,
fs/eventpoll.c, fs/signalfd.c, fs/timerfd.c); a field the running kernel does not print is
None, and the caller decides whether it can do without."""

import re
from dataclasses import dataclass

from torpor.kernel.procfs import proc


def _text(pid: int, fd: int) -> str:
    with open(proc(pid, "fdinfo", str(fd))) as f:
        return f.read()


def _fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


@dataclass(frozen=True)
class Eventfd:
    count: int
    semaphore: bool | None  # None: the kernel does not say (before Linux 6.6)


def eventfd(pid: int, fd: int) -> Eventfd:
    fields = _fields(_text(pid, fd))
    semaphore = fields.get("eventfd-semaphore")
    return Eventfd(
        int(fields["eventfd-count"], 16), None if semaphore is None else semaphore == "1"
    )


@dataclass(frozen=True)
class EpollTarget:
    tfd: int
    events: int
    data: int
    pos: int
    inode: int
    dev: int


def epoll_targets(pid: int, fd: int) -> list[EpollTarget]:
    """Every file the eventpoll watches: "tfd: N events: HEX data: HEX pos:N ino:HEX sdev:HEX"."""
    targets = []
    for line in _text(pid, fd).splitlines():
        if not line.startswith("tfd:"):
            continue
        values = dict(re.findall(r"(\w+):\s*([0-9a-fA-F]+)", line))
        targets.append(
            EpollTarget(
                tfd=int(values["tfd"]),
                events=int(values["events"], 16),
                data=int(values["data"], 16),
                pos=int(values.get("pos", "0")),
                inode=int(values.get("ino", "0"), 16),
                dev=int(values.get("sdev", "0"), 16),
            )
        )
    return targets


def signalfd_mask(pid: int, fd: int) -> int:
    """The signals a signalfd reads: bit N-1 for signal N."""
    return int(_fields(_text(pid, fd))["sigmask"], 16)


@dataclass(frozen=True)
class Timerfd:
    clockid: int
    ticks: int  # expirations not read yet
    settime_flags: int
    value: tuple[int, int]  # time left (seconds, nanoseconds); (0, 0): disarmed
    interval: tuple[int, int]


def _pair(text: str) -> tuple[int, int]:
    sec, nsec = text.strip("()").split(",")
    return int(sec), int(nsec)


def timerfd(pid: int, fd: int) -> Timerfd:
    fields = _fields(_text(pid, fd))
    return Timerfd(
        clockid=int(fields["clockid"]),
        ticks=int(fields["ticks"]),
        settime_flags=int(fields["settime flags"], 8),
        value=_pair(fields["it_value"]),
        interval=_pair(fields["it_interval"]),
    )


@dataclass(frozen=True)
class Lock:
    """One "lock:" line: "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"."""

    kind: str  # POSIX, FLOCK, OFDLCK, LEASE, DELEG ...
    mode: str  # ADVISORY, MANDATORY, ACTIVE, BREAKING ...
    access: str  # READ, WRITE, UNLCK, NONE
    pid: int
    start: int
    end: int | None  # None: to the end of the file


def locks(pid: int, fd: int) -> list[Lock]:
    """The locks held through fd `fd` of `pid` (waiters, shown with "->", left out)."""
    held = []
    for line in _text(pid, fd).splitlines():
        if not line.startswith("lock:"):
            continue
        words = line.split(":", 2)[2].split()
        if words[0] == "->":
            continue
        kind, mode, access, owner, _inode, start, end = words[:7]
        held.append(
            Lock(kind, mode, access, int(owner), int(start), None if end == "EOF" else int(end))
        )
    return held


@dataclass(frozen=True)
class InotifyWatch:
    """One "inotify wd:N ino:HEX sdev:HEX mask:HEX ignored_mask:HEX fhandle-bytes:HEX
    fhandle-type:HEX f_handle:HEX" line."""

    wd: int
    inode: int
    sdev: int  # the kernel's dev_t: major << 20 | minor
    mask: int
    ignored_mask: int
    handle_type: int
    handle: bytes


def inotify_watches(pid: int, fd: int) -> list[InotifyWatch]:
    watches = []
    for line in _text(pid, fd).splitlines():
        if not line.startswith("inotify "):
            continue
        v = dict(re.findall(r"([\w-]+):([0-9a-fA-F]+)", line))
        size = int(v["fhandle-bytes"], 16)
        watches.append(
            InotifyWatch(
                wd=int(v["wd"], 16), inode=int(v["ino"], 16), sdev=int(v["sdev"], 16),
                mask=int(v["mask"], 16), ignored_mask=int(v["ignored_mask"], 16),
                handle_type=int(v["fhandle-type"], 16), handle=bytes.fromhex(v["f_handle"])[:size],
            )
        )  # fmt: skip
    return watches

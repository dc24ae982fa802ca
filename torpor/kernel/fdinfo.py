"""What /proc/PID/fdinfo/FD shows of the anonymous-inode files (eventfd, eventpoll, signalfd,
timerfd, inotify, fanotify, pidfd), parsed into plain values. Formats as the kernel prints
them (fs/eventfd.c, fs/eventpoll.c, fs/signalfd.c, fs/timerfd.c, fs/notify/fdinfo.c,
kernel/pid.c); a field the running kernel does not print is
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


@dataclass(frozen=True)
class Pidfd:
    """What a pidfd shows of its process: "Pid:" and "NSpid:" (its PID in each namespace,
    the reader's first); -1 once it has exited and been reaped, 0 where it is in no
    namespace the reader sees."""

    pid: int | None  # None: the kernel does not say (before Linux 5.10)
    nspids: tuple[int, ...]


def pidfd(pid: int, fd: int) -> Pidfd:
    fields = _fields(_text(pid, fd))
    shown = fields.get("Pid")
    nspids = tuple(int(p) for p in fields.get("NSpid", "").split())
    return Pidfd(None if shown is None else int(shown), nspids)


@dataclass(frozen=True)
class FanotifyMark:
    """One mark of a fanotify instance: an inode ("fanotify ino:HEX sdev:HEX mflags:HEX
    mask:HEX ignored_mask:HEX fhandle-bytes:HEX fhandle-type:HEX f_handle:HEX"), a mount
    ("fanotify mnt_id:HEX mflags:...") or a whole filesystem ("fanotify sdev:HEX mflags:...");
    `kind` says which, or names a kind torpor does not know (the line's first key)."""

    kind: str  # "inode", "mount", "filesystem", or the unknown line's first key
    mflags: int
    mask: int
    ignored_mask: int
    sdev: int = 0  # the kernel's dev_t: major << 20 | minor (inode and filesystem marks)
    inode: int = 0
    mnt_id: int = 0
    handle_type: int = 0
    handle: bytes = b""


@dataclass(frozen=True)
class Fanotify:
    flags: int  # fanotify_init flags (FAN_CLOEXEC and FAN_NONBLOCK as they were given)
    event_flags: int  # fanotify_init event_f_flags
    marks: tuple[FanotifyMark, ...]


def fanotify(pid: int, fd: int) -> Fanotify:
    flags = event_flags = 0
    marks = []
    for line in _text(pid, fd).splitlines():
        if not line.startswith("fanotify "):
            continue
        pairs = re.findall(r"([\w-]+):([0-9a-fA-F]+)", line)
        v = dict(pairs)
        if "event-flags" in v:
            flags, event_flags = int(v["flags"], 16), int(v["event-flags"], 16)
            continue
        common = {
            "mflags": int(v.get("mflags", "0"), 16), "mask": int(v.get("mask", "0"), 16),
            "ignored_mask": int(v.get("ignored_mask", "0"), 16),
        }  # fmt: skip
        first = pairs[0][0] if pairs else ""
        if first == "ino":
            size = int(v["fhandle-bytes"], 16)
            marks.append(
                FanotifyMark(
                    "inode", **common, sdev=int(v["sdev"], 16), inode=int(v["ino"], 16),
                    handle_type=int(v["fhandle-type"], 16),
                    handle=bytes.fromhex(v["f_handle"])[:size],
                )
            )  # fmt: skip
        elif first == "mnt_id":
            marks.append(FanotifyMark("mount", **common, mnt_id=int(v["mnt_id"], 16)))
        elif first == "sdev":
            marks.append(FanotifyMark("filesystem", **common, sdev=int(v["sdev"], 16)))
        else:
            marks.append(FanotifyMark(first or line, **common))
    return Fanotify(flags, event_flags, tuple(marks))

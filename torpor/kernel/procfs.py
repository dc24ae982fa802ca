"""Readers for /proc/PID: maps and smaps flags, stat, status, auxv, pagemap, fd and fdinfo.

Each reader returns plain data; deciding what the data means for a checkpoint is left to the parts.
"""

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# /proc/PID/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_FILE_OR_SHARED_ANON = 1 << 61
PM_EXCLUSIVE = 1 << 56


def proc(pid: int, *parts: str) -> Path:
    return Path("/proc", str(pid), *parts)


@dataclass
class Mapping:
    """One line of /proc/PID/maps, with the VmFlags and protection key of the matching smaps
    entry."""

    start: int
    end: int
    perms: str
    offset: int
    dev: tuple[int, int]
    inode: int
    name: str
    vm_flags: set[str] = field(default_factory=set)
    pkey: int = 0

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def is_file(self) -> bool:
        return self.inode != 0

    @property
    def is_special(self) -> bool:
        """Kernel-provided mappings ([vdso], [vvar*], [vsyscall], ...)."""
        return self.name.startswith("[") and self.name not in ("[heap]", "[stack]")


def _parse_maps_line(line: str) -> Mapping:
    parts = line.split(None, 5)
    start, end = (int(x, 16) for x in parts[0].split("-"))
    major, minor = (int(x, 16) for x in parts[3].split(":"))
    name = parts[5].rstrip("\n") if len(parts) > 5 else ""
    return Mapping(start, end, parts[1], int(parts[2], 16), (major, minor), int(parts[4]), name)


def read_maps(pid: int, with_flags: bool = True) -> list[Mapping]:
    """The task's mappings in address order; with_flags adds smaps' VmFlags and ProtectionKey
    (slower)."""
    if not with_flags:
        with open(proc(pid, "maps")) as f:
            return [_parse_maps_line(line) for line in f]
    mappings: list[Mapping] = []
    with open(proc(pid, "smaps")) as f:
        for line in f:
            head = line.split(None, 1)[0]
            if head == "VmFlags:":
                mappings[-1].vm_flags = set(line.split()[1:])
            elif head == "ProtectionKey:":
                mappings[-1].pkey = int(line.split()[1])
            elif "-" in head and not head.endswith(":"):
                mappings.append(_parse_maps_line(line))
    return mappings


@dataclass
class Stat:
    """The fields of /proc/PID/stat torpor needs (proc(5) numbering in comments)."""

    comm: str
    state: str
    ppid: int
    pgid: int
    sid: int
    tty_nr: int  # device number of the controlling terminal, 0 if none
    tpgid: int  # foreground process group of the controlling terminal, -1 if none
    num_threads: int
    start_code: int
    end_code: int
    start_stack: int
    start_data: int
    end_data: int
    start_brk: int
    arg_start: int
    arg_end: int
    env_start: int
    env_end: int
    exit_code: int


def read_stat(pid: int) -> Stat:
    raw = proc(pid, "stat").read_bytes().decode(errors="surrogateescape")
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    f = {i + 3: v for i, v in enumerate(rest)}  # field numbers as in proc(5)
    n = lambda i: int(f[i])  # noqa: E731
    return Stat(
        comm=comm,
        state=f[3],
        ppid=n(4),
        pgid=n(5),
        sid=n(6),
        tty_nr=n(7),
        tpgid=n(8),
        num_threads=n(20),
        start_code=n(26),
        end_code=n(27),
        start_stack=n(28),
        start_data=n(45),
        end_data=n(46),
        start_brk=n(47),
        arg_start=n(48),
        arg_end=n(49),
        env_start=n(50),
        env_end=n(51),
        exit_code=n(52),
    )


def orphaned_group(pid: int) -> bool:
    """Whether the process group of `pid` is orphaned (POSIX: no member has its parent in
    another group of the same session), which makes the kernel discard the terminal stop
    signals (SIGTSTP, SIGTTIN, SIGTTOU) sent to its members."""
    group = read_stat(pid)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            member = read_stat(int(entry.name))
            if member.pgid != group.pgid:
                continue
            parent = read_stat(member.ppid)
        except (OSError, KeyError, ValueError):
            continue  # gone meanwhile, or the parent is outside this PID namespace
        if parent.pgid != group.pgid and parent.sid == group.sid:
            return False
    return True


def is_dead(pid: int) -> bool:
    """Whether task `pid` has exited: a zombie, or gone from /proc."""
    try:
        return read_stat(pid).state in ("Z", "X")
    except OSError:
        return True


def read_status(pid: int) -> dict[str, str]:
    result = {}
    with open(proc(pid, "status")) as f:
        for line in f:
            key, _, value = line.partition(":")
            result[key] = value.strip()
    return result


def read_auxv(pid: int) -> bytes:
    return proc(pid, "auxv").read_bytes()


def auxv_entries(raw: bytes, word: int) -> list[tuple[int, int]]:
    """Decode an auxv blob of `word`-byte words (8 for 64-bit, 4 for ia32) up to AT_NULL."""
    fmt = "<QQ" if word == 8 else "<II"
    entries = []
    for key, value in struct.iter_unpack(fmt, raw[: len(raw) - len(raw) % (2 * word)]):
        if key == 0:
            break
        entries.append((key, value))
    return entries


def read_personality(pid: int) -> int:
    return int(proc(pid, "personality").read_text(), 16)


def list_fds(pid: int) -> list[int]:
    return sorted(int(name) for name in os.listdir(proc(pid, "fd")))


def list_tasks(pid: int) -> list[int]:
    return sorted(int(name) for name in os.listdir(proc(pid, "task")))


def children(pid: int) -> list[int]:
    """Children of every thread of `pid` (needs CONFIG_PROC_CHILDREN)."""
    kids: list[int] = []
    for tid in list_tasks(pid):
        try:
            kids += [int(x) for x in proc(pid, "task", str(tid), "children").read_text().split()]
        except FileNotFoundError:
            pass
    return kids


@dataclass
class FdInfo:
    pos: int
    flags: int
    mnt_id: int


def read_fdinfo(pid: int, fd: int) -> FdInfo:
    values = {}
    with open(proc(pid, "fdinfo", str(fd))) as f:
        for line in f:
            key, _, value = line.partition(":")
            values[key] = value.strip()
    return FdInfo(int(values["pos"]), int(values["flags"], 8), int(values.get("mnt_id", "0")))


def read_pagemap(pid: int, start: int, end: int, fd: int | None = None) -> memoryview:
    """Raw pagemap entries (uint64 each) for [start, end); pass an open pagemap fd to reuse it."""
    count = (end - start) // PAGE_SIZE
    own = fd is None
    if own:
        fd = os.open(proc(pid, "pagemap"), os.O_RDONLY)
    try:
        data = os.pread(fd, count * 8, start // PAGE_SIZE * 8)
    finally:
        if own:
            os.close(fd)
    return memoryview(data).cast("Q")


SIGEV_THREAD_ID = 4
_SIGEV_NAMES = {"signal": 0, "none": 1, "thread": 2}  # as fs/proc/base.c names them


@dataclass(frozen=True)
class PosixTimer:
    """One entry of /proc/PID/timers: a POSIX timer of the process, as the kernel shows it."""

    id: int
    signo: int
    sival: int  # sigev_value as a pointer-sized number
    notify: int  # sigev_notify, SIGEV_THREAD_ID included
    target: int  # the PID (or, with SIGEV_THREAD_ID, TID) signalled; 0 if it is gone
    clock: int  # the clockid_t, negative for CPU-time clocks of a given task


def read_posix_timers(pid: int) -> list[PosixTimer]:
    """Every POSIX timer of process `pid` (none where the kernel lacks CONFIG_POSIX_TIMERS)."""
    try:
        text = proc(pid, "timers").read_text()
    except FileNotFoundError:
        return []
    timers, fields = [], {}
    for line in text.splitlines() + ["ID: end"]:
        key, _, value = line.partition(":")
        if key == "ID" and fields:
            signo, _, sival = fields["signal"].partition("/")
            kind, _, whom = fields["notify"].partition("/")
            directed, _, target = whom.partition(".")
            timers.append(
                PosixTimer(
                    id=int(fields["ID"]),
                    signo=int(signo),
                    sival=0 if sival.strip("()") == "null" else int(sival, 16),
                    notify=_SIGEV_NAMES[kind] | (SIGEV_THREAD_ID if directed == "tid" else 0),
                    target=int(target),
                    clock=int(fields["ClockID"]),
                )
            )
            fields = {}
        fields[key] = value.strip()
    return timers

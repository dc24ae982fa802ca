"""Pseudo-terminal pairs the tree opened itself (its /dev/ptmx masters and their /dev/pts/N
slaves), for the terminal kind (tty): CRIU's PTY TtyInfoEntry, one per side of a pair.

A pair is saved when the tree holds its master: its index, whether the slave is locked, packet
mode, exclusive mode, each side's termios and the window size, the session the slave controls
and its foreground group, and what is queued in it either way (ptyqueue.py: tty-data.img). A
slave the tree holds without its master is someone else's terminal (the caller's: --shell-job,
tty.py); a master whose slave is open outside the tree refuses the dump.

An fd on /dev/tty whose process's controlling terminal is a pair's slave is that slave, opened
through /dev/tty.

At restore the master is opened again in its process, from /dev/ptmx, until the kernel gives it
the same index (the lower free ones it gives first are held and let go); a slave is opened at
/dev/pts/N, or at /dev/tty. Before the fds of a session leader, the slave becomes again the
controlling terminal of its session (TIOCSCTTY), with its foreground group. Once every process
has its fds: the queued data, the settings; a slave no process held any more is opened and
closed once, which is what the master saw (end of file, POLLHUP).
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import tty
from torpor.kernel.files import borrowed
from torpor.kernel.procfs import read_stat
from torpor.parts.fds import ptyqueue
from torpor.parts.fds.base import (
    AT_FDCWD,
    O_LARGEFILE,
    OPEN_ONLY_FLAGS,
    exact_open_abi,
    park,
    take,
)

KERNEL_NCCS = 19  # control characters in the kernel's struct termios
SETFL_FLAGS = os.O_NONBLOCK | os.O_APPEND | os.O_NOATIME
F_SETFL = 4
# How a program opens /dev/ptmx (posix_openpt): with O_LARGEFILE from 64-bit code only
MASTER_FLAGS = {64: os.O_RDWR | O_LARGEFILE, 32: os.O_RDWR}


# --- dump ------------------------------------------------------------------------------------


def pairs_of(found) -> set[int]:
    """The indices of the pty pairs whose master the tree holds (`found`: every terminal fd
    of the tree, as (pid, FdDescription)); refuse a master whose slave is open elsewhere."""
    masters: dict[int, tuple[int, object]] = {}
    slaves = set()
    for pid, d in found:
        if tty.is_pty_master(d.rdev):
            masters.setdefault(index_of(pid, d), (pid, d))
        elif index_of(pid, d) is not None:
            slaves.add(index_of(pid, d))
    for index, (pid, d) in masters.items():
        if index not in slaves and not _slave_closed(pid, d):
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is the master of /dev/pts/{index}, whose slave "
                "is open outside the process tree, not supported yet"
            )
    return set(masters)


def index_of(pid: int, d) -> int | None:
    """The pty index of terminal fd `d` of `pid`: its own for a side of a pair, that of the
    process's controlling terminal for /dev/tty; None for any other terminal."""
    if tty.is_pty_slave(d.rdev):
        return tty.slave_index(d.rdev)
    if tty.is_dev_tty(d.rdev):
        ctty = read_stat(pid).tty_nr
        return tty.slave_index(ctty) if tty.is_pty_slave(ctty) else None
    if not tty.is_pty_master(d.rdev):
        return None
    with borrowed(pid, d.fd) as own:
        return tty.get_int(own, tty.TIOCGPTN)


def side_info(pid: int, d, index: int, info_id: int) -> pb.tty_pb2.TtyInfoEntry:
    """The TtyInfoEntry of one side (the master, or the slave) of pair `index`, read
    through fd `d` of `pid`."""
    master = tty.is_pty_master(d.rdev)
    with borrowed(pid, d.fd) as own:
        ldisc = tty.get_int(own, tty.TIOCGETD)
        if ldisc != tty.N_TTY:  # (its settings cannot even be read: they are N_TTY's ioctls)
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is a side of /dev/pts/{index} with line "
                f"discipline {ldisc}, not N_TTY, not supported"
            )
        info = pb.tty_pb2.TtyInfoEntry(
            id=info_id, type=pb.tty_pb2.PTY, rdev=d.rdev if master else tty.slave_rdev(index),
            locked=master and bool(tty.get_int(own, tty.TIOCGPTLCK)),
            exclusive=bool(tty.get_int(own, tty.TIOCGEXCL)),
            packet_mode=master and bool(tty.get_int(own, tty.TIOCGPKT)),
            sid=tty.session_of(own) if master else 0,
            pgrp=tty.foreground_of(own) if master else 0,
            termios=termios_entry(termios.tcgetattr(own)),
            winsize=winsize_entry(own),
        )  # fmt: skip
    info.pty.index = index
    return info


def queued_in(pid: int, d, index: int) -> ptyqueue.Queued:
    """What is queued either way in pair `index`, whose master is fd `d` of `pid`, read
    and put back as it was; a refusal names the fd, the process and the pty."""
    where = f"fd {d.fd} of process {pid}, the master of /dev/pts/{index}"
    with borrowed(pid, d.fd) as master:
        try:
            return ptyqueue.take(master, slave_open=not _slave_closed(pid, d))
        except UnsupportedError as e:
            raise UnsupportedError(f"{where}: {e}") from None
        except (OSError, termios.error) as e:
            raise UnsupportedError(
                f"{where}: cannot read what is queued in it: {os.strerror(e.args[0])}"
            ) from None


def data_entries(sides: dict, queues: dict) -> list:
    """The TtyDataEntry of every pair's queues (`queues`: index -> Queued), each naming the
    side that reads it (`sides`: (index, is master) -> TtyInfoEntry)."""
    entries = []
    for index, queued in sorted(queues.items()):
        if queued.to_master:
            master = sides[(index, True)]
            entries.append(pb.tty_pb2.TtyDataEntry(tty_id=master.id, data=queued.to_master))
        if (queued.to_slave or queued.line_ends) and (index, False) in sides:
            entries.append(
                pb.tty_pb2.TtyDataEntry(
                    tty_id=sides[(index, False)].id,
                    data=queued.to_slave,
                    torpor_line_ends=queued.line_ends,
                    torpor_lines=True,
                )  # fmt: skip
            )
    return entries


def termios_entry(attrs) -> pb.tty_pb2.TermiosEntry:
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = attrs
    chars = [c if isinstance(c, int) else ord(c) for c in cc[:KERNEL_NCCS]]
    return pb.tty_pb2.TermiosEntry(
        c_iflag=iflag, c_oflag=oflag, c_cflag=cflag, c_lflag=lflag, c_line=0,
        c_ispeed=ispeed, c_ospeed=ospeed, c_cc=chars,
    )  # fmt: skip


def winsize_entry(fd: int) -> pb.tty_pb2.WinsizeEntry:
    rows, cols, xpixel, ypixel = struct.unpack("<4H", fcntl.ioctl(fd, tty.TIOCGWINSZ, bytes(8)))
    return pb.tty_pb2.WinsizeEntry(ws_row=rows, ws_col=cols, ws_xpixel=xpixel, ws_ypixel=ypixel)


def attributes(t) -> list:
    """termios.tcsetattr's list from a TermiosEntry."""
    cc = list(t.c_cc[:KERNEL_NCCS]) + [0] * (termios.NCCS - min(len(t.c_cc), KERNEL_NCCS))
    return [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_ispeed, t.c_ospeed, cc]


def _slave_closed(pid: int, d) -> bool:
    """Whether the slave of the master behind fd `d` of `pid` was opened and closed again
    by everyone (the master then reads end of file: POLLHUP)."""
    with borrowed(pid, d.fd) as own:
        poller = select.poll()
        poller.register(own, select.POLLIN)
        events = poller.poll(0)
    return bool(events and events[0][1] & select.POLLHUP)


# --- restore ---------------------------------------------------------------------------------


class Pairs:
    """The pty pairs of a tree being restored: their sides' infos by index, and where each
    master was made (saved PID, fd) for the other fds of the tree to take."""

    def __init__(self, infos, data=()):
        self.masters: dict[int, object] = {}  # index -> the master's TtyInfoEntry
        self.slaves: dict[int, object] = {}
        for info in infos:
            if info.type == pb.tty_pb2.PTY and info.HasField("pty"):
                side = self.masters if tty.is_pty_master(info.rdev) else self.slaves
                side[info.pty.index] = info
        self.queued = _queues(self.masters, self.slaves, data)  # index -> Queued
        self.made: dict[int, tuple[int, int]] = {}  # index -> (saved PID, parked master fd)
        self.controlled: set[int] = set()  # pairs whose slave controls its session again

    def is_pair_side(self, info) -> bool:
        return info.HasField("pty") and info.pty.index in self.masters

    def open(self, ctx, info, flags: int, via_dev_tty: bool = False) -> int:
        """A new fd in the task for one side of a pair, with open flags `flags`: the master
        (made here, or taken from where another process made it), or a new open of the
        slave (never becoming a controlling terminal by it: control does that), at
        /dev/pts/N or, `via_dev_tty`, at /dev/tty (the process's controlling terminal)."""
        index = info.pty.index
        owner, parked = self._master(ctx, index)
        if via_dev_tty:
            return _open_noctty(ctx, "/dev/tty", flags)
        if not tty.is_pty_master(info.rdev):
            return _open_noctty(ctx, f"/dev/pts/{index}", flags)
        fd = take(ctx, owner, parked)
        if flags & SETFL_FLAGS:
            ctx.task.call(X86_64, "fcntl", fd, F_SETFL, flags & SETFL_FLAGS)
        return fd

    def _master(self, ctx, index: int) -> tuple[int, int]:
        """Where the master of pair `index` is (saved PID, parked fd), made here if not yet."""
        if index not in self.made:
            master = self._make_master(ctx, index)
            _resize(ctx, master, self.masters[index])
            self.made[index] = (ctx.image_pid, park(ctx, master))
        return self.made[index]

    def control(self, ctx) -> None:
        """Give the session process `ctx` leads its controlling terminal back, when that is
        the slave of a pair, before any of its fds: its /dev/tty fds, and those of its
        session, open it."""
        for index, info in self.masters.items():
            if info.sid == ctx.image_pid and index not in self.controlled:
                self._master(ctx, index)
                _control(ctx, index, info.pgrp)
                self.controlled.add(index)

    def _make_master(self, ctx, index: int) -> int:
        """Open /dev/ptmx in the task until the kernel hands out pty `index`."""
        task = ctx.task
        lower = []
        try:
            while True:
                fd = _open_noctty(ctx, "/dev/ptmx", MASTER_FLAGS[ctx.abi.bits])
                out = task.reserve(4)
                task.call(X86_64, "ioctl", fd, tty.TIOCGPTN, out)
                (got,) = struct.unpack("<i", task.read(out, 4))
                if got == index:
                    break
                if got > index:
                    task.call(X86_64, "close", fd)
                    raise RestoreError(f"cannot make /dev/pts/{index} again: it is in use here")
                lower.append(fd)  # held, so that the next open gets the next index
        finally:
            for held in lower:
                task.call(X86_64, "close", held)
        task.call(X86_64, "ioctl", fd, tty.TIOCSPTLCK, task.put(struct.pack("<i", 0)))
        return fd

    def finish(self, contexts) -> None:
        """Settings, controlling terminals and foreground groups of every pair, once every
        process has its fds."""
        pids = {ctx.image_pid: ctx for ctx in contexts}
        for index, (owner, parked) in self.made.items():
            master_info, slave_info = self.masters[index], self.slaves.get(index)
            with borrowed(pids[owner].pid, parked) as master:
                slave = os.open(f"/dev/pts/{index}", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
                try:
                    _queue_again(master, slave, master_info, self.queued.get(index))
                    _settle(master, master_info)
                    if slave_info is not None:
                        _settle(slave, slave_info)
                    _lock_again(master, master_info)
                finally:
                    os.close(slave)  # the last one when no process holds the slave: a hang-up
            if master_info.sid in pids and index not in self.controlled:
                _control(pids[master_info.sid], index, master_info.pgrp)


def _queues(masters: dict, slaves: dict, data) -> dict:
    """The queued data of tty-data.img (`data`) by pair index, checked: each entry names a
    side of a pair, once, and its lines end inside its data, in order."""
    sides = {info.id: (index, info) for side in (masters, slaves) for index, info in side.items()}
    queues: dict[int, ptyqueue.Queued] = {}
    seen = set()
    for entry in data:
        if entry.tty_id not in sides or entry.tty_id in seen:
            raise RestoreError(f"tty-data.img: queued data for no pty side (id {entry.tty_id})")
        seen.add(entry.tty_id)
        index, info = sides[entry.tty_id]
        queued = queues.setdefault(index, ptyqueue.Queued())
        if tty.is_pty_master(info.rdev):
            queued.to_master = entry.data
            limit = ptyqueue.MASTER_LIMIT
        else:
            queued.to_slave = entry.data
            ends = list(entry.torpor_line_ends)
            if not entry.torpor_lines and _canonical(info):
                ends = ptyqueue.lines_of(entry.data)
            if ends != sorted(ends) or any(end > len(entry.data) for end in ends):
                raise RestoreError(f"tty-data.img: lines of /dev/pts/{index} out of order")
            queued.line_ends = ends
            limit = ptyqueue.SLAVE_LIMIT
        if len(entry.data) > limit:
            raise RestoreError(
                f"tty-data.img: {len(entry.data)} bytes queued in /dev/pts/{index}, more "
                f"than a terminal holds ({limit})"
            )
    return queues


def _canonical(info) -> bool:
    return info.HasField("termios") and bool(info.termios.c_lflag & termios.ICANON)


def _queue_again(master: int, slave: int, info, queued) -> None:
    """Put what was queued in the pair back, under the saved settings `info` has."""
    if not queued:
        return
    if not info.HasField("termios"):
        raise RestoreError(f"/dev/pts/{info.pty.index} had data queued, but no settings")
    saved = attributes(info.termios)
    try:
        ptyqueue.put_back(master, slave, saved, queued)
    except RestoreError as e:
        raise RestoreError(f"cannot queue data in /dev/pts/{info.pty.index} again: {e}") from None
    except (OSError, termios.error) as e:
        raise RestoreError(
            f"cannot queue data in /dev/pts/{info.pty.index} again: {os.strerror(e.args[0])}"
        ) from None


def _open_noctty(ctx, path: str, flags: int) -> int:
    """Open the terminal `path` in the task with `flags`, never as its controlling one."""
    try:
        return ctx.task.call(
            exact_open_abi(ctx, flags), "openat", AT_FDCWD, ctx.task.put(path.encode() + b"\0"),
            (flags & ~OPEN_ONLY_FLAGS) | os.O_NOCTTY, 0,
        )  # fmt: skip
    except OSError as e:
        raise RestoreError(f"cannot open {path} again: {os.strerror(e.errno)}") from None


def _settle(fd: int, info) -> None:
    try:
        if info.HasField("termios"):
            termios.tcsetattr(fd, termios.TCSANOW, attributes(info.termios))
        if info.packet_mode:
            fcntl.ioctl(fd, tty.TIOCPKT, struct.pack("i", 1))
        if info.exclusive:
            fcntl.ioctl(fd, tty.TIOCEXCL)
    except (OSError, termios.error) as e:
        raise RestoreError(f"cannot set up /dev/pts/{info.pty.index} again: {e}") from None


def _resize(ctx, master: int, info) -> None:
    """Give a new pair its window size while no process group has it as its terminal: a
    size set later sends the foreground group a SIGWINCH the program never had."""
    if info.HasField("winsize"):
        w = info.winsize
        size = ctx.task.put(struct.pack("<4H", w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel))
        ctx.task.call(X86_64, "ioctl", master, tty.TIOCSWINSZ, size)


def _lock_again(master: int, info) -> None:
    if info.locked:
        fcntl.ioctl(master, tty.TIOCSPTLCK, struct.pack("i", 1))


def _control(ctx, index: int, pgrp: int) -> None:
    """Make /dev/pts/`index` the controlling terminal of the session `ctx` leads, with
    foreground group `pgrp`."""
    task = ctx.task
    fd = _open_noctty(ctx, f"/dev/pts/{index}", os.O_RDWR)
    try:
        task.call(X86_64, "ioctl", fd, tty.TIOCSCTTY, 0)
        if pgrp:
            got = task.syscall(
                X86_64, "ioctl", fd, tty.TIOCSPGRP, task.put(struct.pack("<i", pgrp))
            )
            if got < 0:
                raise RestoreError(
                    f"cannot give /dev/pts/{index} to process group {pgrp}: {os.strerror(-got)}"
                )
    finally:
        task.call(X86_64, "close", fd)

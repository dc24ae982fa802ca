"""What waits in the two queues of a pty pair: the bytes the master has not read yet (what the
slave wrote, after its output processing, and the slave's echoes), and the input the slave has
not read yet (what the master wrote, after the slave's line discipline: in canonical mode,
complete lines and a line not ended yet). CRIU's tty-data.img holds them, one TtyDataEntry
per side, `tty_id` naming the side that reads them; torpor adds where the slave's lines end.

Reading a terminal's queue takes the data, so the dump reads both queues and puts them back
at once, the way the restore puts them into a new pair:

- The master's queue is read through the tree's master; the slave's through a new open of the
  slave (TIOCGPTPEER), non-blocking: in canonical mode one read(2) returns one line (a line
  ended by the EOF character comes without it, an EOF on an empty line as 0 bytes); what is
  left is a line not ended yet, read once the slave is switched to non-canonical mode, which
  the kernel allows only because no complete line is left (the switch forgets where lines
  end).
- The slave's input is written again on the master while the slave has temporary settings
  under which nothing is processed twice: no input flags but the flow control it had (so that
  a packet-mode master sees no change of it), no output processing, canonical mode with every
  special character disabled but VLNEXT (^V), which makes a newline, ^V, ^D or a flow-control
  character that was data data again, and VEOF (^D), which ends a line ended by EOF; and
  echo, which is how torpor knows the line discipline is done: each byte queued echoes once,
  and torpor reads the echoes off the master. Then the saved settings: canonical mode kept on
  keeps the lines where they end, non-canonical mode forgets them, as the kernel had.
- The master's queue is written again on the slave, with the same settings (no output
  processing): it reaches the master as it was.

A packet-mode master with a status byte not read yet (TIOCPKT_FLUSHREAD, _STOP, ...: poll
says POLLPRI) and data queued either way is refused: reading the master takes the status,
and the kernel offers no way to set one back. Otherwise packet mode is switched off while the
queues move (so that no setting change makes a status) and on again.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios
from dataclasses import dataclass, field

from torpor.errors import RestoreError, UnsupportedError
from torpor.kernel import tty

LNEXT, EOF = 0x16, 0x04  # the temporary settings' VLNEXT and VEOF
ECHO_WAIT_MS = 5000  # how long the line discipline may take to echo what was written
FLOW_IFLAGS = termios.IXON | termios.IXANY  # (IXOFF would answer a full queue with ^S)
MAX_READS = tty.N_TTY_BUF_SIZE + 1  # a line per read at most, and empty ones are EOFs
SLAVE_LIMIT = tty.N_TTY_BUF_SIZE - 1  # what the line discipline queues in canonical mode
MASTER_LIMIT = 65536  # what a pty buffers on its way to the master (TTYB_DEFAULT_MEM_LIMIT)


@dataclass
class Queued:
    """A pair's queues: `to_master` what the master will read, `to_slave` what the slave will
    read, `line_ends` where each complete line of `to_slave` ends (canonical mode)."""

    to_master: bytes = b""
    to_slave: bytes = b""
    line_ends: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.to_master or self.to_slave or self.line_ends)


def take(master: int, index: int, slave_open: bool) -> Queued:
    """Read the queues of pair `index` through `master` (torpor's copy of the tree's master)
    and put them back as they were; `slave_open`: whether any process holds the slave (when
    none does, its input cannot be read and the master's queue is all there is)."""
    if not slave_open and not tty.get_int(master, tty.FIONREAD):
        return Queued()
    locked = bool(tty.get_int(master, tty.TIOCGPTLCK))
    if locked:
        fcntl.ioctl(master, tty.TIOCSPTLCK, struct.pack("i", 0))
    try:
        slave = tty.open_peer(master, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            return _take(master, slave, index, slave_open)
        finally:
            os.close(slave)
    finally:
        if locked:
            fcntl.ioctl(master, tty.TIOCSPTLCK, struct.pack("i", 1))


def _take(master: int, slave: int, index: int, slave_open: bool) -> Queued:
    packet = bool(tty.get_int(master, tty.TIOCGPKT))
    if packet and _status_pending(master):
        waiting = tty.get_int(master, tty.FIONREAD) + tty.get_int(slave, tty.FIONREAD)
        if waiting:
            raise UnsupportedError(
                f"/dev/pts/{index} has {waiting} bytes not read yet behind a packet-mode "
                "status byte not read yet, which cannot be saved without taking it"
            )
        return Queued()
    saved = _attrs(slave)
    if packet:
        fcntl.ioctl(master, tty.TIOCPKT, struct.pack("i", 0))
    try:
        queued = Queued(to_master=_drain(master))
        if slave_open:
            queued.to_slave, queued.line_ends = _drain_input(slave, saved)
        try:
            put_back(master, slave, saved, queued)
        except RestoreError as e:
            raise UnsupportedError(f"/dev/pts/{index}: {e}") from None
        return queued
    finally:
        if packet:
            fcntl.ioctl(master, tty.TIOCPKT, struct.pack("i", 1))


def put_back(master: int, slave: int, saved: list, queued: Queued) -> None:
    """Queue `queued` in the pair of `master` and `slave` (an open of its slave), whose
    settings are to be `saved` (tcgetattr's list, control characters as ints); they are
    `saved` when this returns."""
    if not queued:
        return
    canonical = bool(saved[3] & termios.ICANON)
    if queued.line_ends and not canonical:
        raise RestoreError("input saved as lines, for a terminal not in canonical mode")
    termios.tcsetattr(slave, termios.TCSANOW, _quiet(saved))
    try:
        if queued.to_slave or queued.line_ends:
            _write_all(master, _encoded(queued, saved))
            echoed = _read_exactly(master, len(queued.to_slave))
            if echoed != queued.to_slave:
                raise RestoreError("the terminal's line discipline changed its queued input")
        _write_all(slave, queued.to_master)
    finally:
        termios.tcsetattr(slave, termios.TCSANOW, saved)


def lines_of(data: bytes) -> list[int]:
    """Where the lines of `data` end, when all that says so is its newlines (CRIU's images)."""
    return [at + 1 for at, byte in enumerate(data) if byte == ord("\n")]


# --- reading ---------------------------------------------------------------------------------


def _attrs(fd: int) -> list:
    attrs = termios.tcgetattr(fd)
    attrs[6] = [c if isinstance(c, int) else ord(c) for c in attrs[6]]
    return attrs


def _status_pending(master: int) -> bool:
    poller = select.poll()
    poller.register(master, select.POLLPRI)
    events = poller.poll(0)
    return bool(events and events[0][1] & select.POLLPRI)


def _drain(fd: int) -> bytes:
    """Everything a non-canonical side (the master) has to read, without blocking: polling
    first makes the kernel hand the line discipline what is still in its buffers."""
    got = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        poller.poll(0)
        waiting = tty.get_int(fd, tty.FIONREAD)
        if not waiting:
            return got
        got += os.read(fd, waiting)


def _drain_input(slave: int, saved: list) -> tuple[bytes, list[int]]:
    """The slave's input (`slave` is non-blocking) and where its complete lines end."""
    lines, ends = [], []
    if saved[3] & termios.ICANON:
        for _ in range(MAX_READS):
            try:
                line = os.read(slave, tty.N_TTY_BUF_SIZE * 2)
            except BlockingIOError:
                break
            lines.append(line)
            ends.append(sum(map(len, lines)))
        raw = list(saved)
        raw[3] &= ~termios.ICANON
        termios.tcsetattr(slave, termios.TCSANOW, raw)
        try:
            lines.append(_read_available(slave))
        finally:
            termios.tcsetattr(slave, termios.TCSANOW, saved)
    else:
        lines.append(_read_available(slave))
    return b"".join(lines), ends


def _read_available(fd: int) -> bytes:
    got = b""
    while True:
        try:
            chunk = os.read(fd, tty.N_TTY_BUF_SIZE * 2)
        except BlockingIOError:
            return got
        if not chunk:
            return got
        got += chunk


# --- writing ---------------------------------------------------------------------------------


def _quiet(saved: list) -> list:
    """Settings under which what the master writes is queued as it is and echoed once, and
    what the slave writes reaches the master as it is."""
    iflag, _oflag, cflag, _lflag, ispeed, ospeed, cc = saved
    quiet_cc = [0] * len(cc)
    quiet_cc[termios.VLNEXT], quiet_cc[termios.VEOF] = LNEXT, EOF
    for keep in (termios.VSTART, termios.VSTOP, termios.VMIN, termios.VTIME):
        quiet_cc[keep] = cc[keep]
    lflag = termios.ICANON | termios.ECHO | termios.IEXTEN
    return [iflag & FLOW_IFLAGS, 0, cflag, lflag, ispeed, ospeed, quiet_cc]


def _encoded(queued: Queued, saved: list) -> bytes:
    """What to write on the master, under _quiet(saved), to queue `queued.to_slave` with its
    lines ending at `queued.line_ends`."""
    special = {ord("\n"), LNEXT, EOF}
    if saved[0] & termios.IXON:
        special |= {saved[6][termios.VSTART], saved[6][termios.VSTOP]}

    def literal(data: bytes) -> bytes:
        return b"".join(bytes((LNEXT, c)) if c in special else bytes((c,)) for c in data)

    data, out, start = queued.to_slave, [], 0
    for end in queued.line_ends:
        line = data[start:end]
        if line.endswith(b"\n"):
            out.append(literal(line[:-1]) + b"\n")
        else:
            out.append(literal(line) + bytes((EOF,)))
        start = end
    out.append(literal(data[start:]))
    return b"".join(out)


def _write_all(fd: int, data: bytes) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while data:
        if not poller.poll(ECHO_WAIT_MS):
            raise RestoreError("the terminal takes no more data")
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            continue


def _read_exactly(fd: int, count: int) -> bytes:
    got = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while len(got) < count:
        if not poller.poll(ECHO_WAIT_MS):
            raise RestoreError(
                f"the terminal echoed {len(got)} of the {count} bytes of queued input"
            )
        try:
            got += os.read(fd, count - len(got))
        except BlockingIOError:
            continue
    return got

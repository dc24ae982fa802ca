"""What waits in the two queues of a pty pair: the bytes the master has not read yet (what the
slave wrote, after its output processing, and the slave's echoes), and the input the slave has
not read yet (what the master wrote, after the slave's line discipline: in canonical mode,
complete lines and a line not ended yet). CRIU's tty-data.img holds them, one TtyDataEntry
per side, `tty_id` naming the side that reads them; torpor adds where the slave's lines end.

Reading a terminal's queue takes the data, so the dump reads both queues and puts them back
at once, the way the restore puts them into a new pair. What it cannot put back exactly, or
the images cannot say, it refuses, naming it: before reading anything where the kernel shows
it (_refusal: a line discipline other than N_TTY, whose ioctls differ; a slave that can write
nothing now, its output stopped by ^S or its master's queue full, which fits back more or
less according to how it was written; EXTPROC with input; a non-canonical slave as full as
its line discipline gets), or after reading and putting back (_unsaid: a pending ^V, input
beyond the line discipline's buffer, a line not ended as long as that buffer). A put-back
that fails says what is lost.

- The master's queue is read through the tree's master; the slave's through a new open of the
  slave (TIOCGPTPEER), non-blocking, under capture settings (_capture: the saved ones without
  echo, signals, input translation and special characters; canonical mode as it was, since
  switching it forgets where lines end). In canonical mode one read(2) returns one line (a
  line ended by the EOF character comes without it, an EOF on an empty line as 0 bytes);
  what is left is a line not ended yet, which FIONREAD does not count: a newline written on
  the master ends it, and poll(2) on the slave waits for the line discipline to take it. A
  second one is needed when the first is taken as data: a ^V (lnext) was pending.
- The line discipline holds 4095 bytes; in canonical mode with a complete line queued, what
  the master writes beyond stays in the pty's buffer, unprocessed, and reading the slave
  lets it in: under the capture settings it comes in as it was written, without echoes or
  signals, after the 4095 processed bytes, and is put back as it was, after the settings.
- The slave's input is written again on the master while the slave has temporary settings
  under which nothing is processed twice (_quiet): no input flags but the flow control it had
  (so that a packet-mode master sees no change of it), no output processing, canonical mode
  with every special character disabled but VLNEXT (^V), which makes a newline, ^V, ^D or a
  flow-control character that was data data again, and VEOF (^D), which ends a line ended by
  EOF; and echo, which is how torpor knows the line discipline is done: each byte queued
  echoes once, and torpor reads the echoes off the master. Then the saved settings: canonical
  mode kept on keeps the lines where they end, non-canonical mode forgets them, as the kernel
  had.
- The master's queue is written again on the slave, with the same settings (no output
  processing), 1 KiB a write (PIECE): it reaches the master as it was.

Packet mode is switched off while the queues move (so that no setting change makes a status
byte) and on again, which clears the status. A packet-mode master with a status byte not read
yet (TIOCPKT_FLUSHREAD, _STOP, ...: poll says POLLPRI) is refused, before anything is read,
whatever is queued: reading the master would take the status, the kernel offers no way to
set one back, and the images have no place for it (the restore's packet mode starts with
none). (What torpor measured: a change of ICANON, or of anything but the flow control and
EXTPROC, makes no status; an input flush of the master makes none; FIONREAD of a canonical
slave counts neither a line not ended nor an end of file on an empty line.)
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
SLAVE_LIMIT = tty.N_TTY_BUF_SIZE - 1  # what the line discipline queues in canonical mode
MASTER_LIMIT = 65536  # what a pty buffers on its way to the master (TTYB_DEFAULT_MEM_LIMIT)
# A line per read at most (empty ones are EOFs), from the line discipline and the pty's buffer
MAX_READS = tty.N_TTY_BUF_SIZE + MASTER_LIMIT + 1
# How much of a pty's queue goes back a write at a time: its buffer (8 KiB of allocations
# that hold twice as much) holds more in writes of 1 KiB than in larger ones (measured: 16 KiB
# and 9.5 KiB behind the 4095 bytes of the line discipline)
PIECE = 1024


@dataclass
class Queued:
    """A pair's queues: `to_master` what the master will read, `to_slave` what the slave will
    read, `line_ends` where each complete line of `to_slave` ends (canonical mode). Found by
    the dump but not in the images (it refuses them): `lnext`, a ^V received whose next byte
    is taken as it is, and `beyond`, input the line discipline had no room for yet, as the
    master wrote it."""

    to_master: bytes = b""
    to_slave: bytes = b""
    line_ends: list[int] = field(default_factory=list)
    lnext: bool = False
    beyond: bytes = b""
    long_line: int = 0  # a line not ended as long as the buffer holds: its last byte unsure

    def __bool__(self) -> bool:
        return bool(self.to_master or self.to_slave or self.line_ends or self.lnext or self.beyond)


def take(master: int, slave_open: bool) -> Queued:
    """Read the queues of a pair through `master` (torpor's copy of the tree's master)
    and put them back as they were; `slave_open`: whether any process holds the slave (when
    none does, its input cannot be read and the master's queue is all there is). Refusals
    (UnsupportedError) say what, not which pty: the caller names it."""
    if not slave_open and not tty.get_int(master, tty.FIONREAD):
        return Queued()
    locked = bool(tty.get_int(master, tty.TIOCGPTLCK))
    if locked:
        fcntl.ioctl(master, tty.TIOCSPTLCK, struct.pack("i", 0))
    try:
        slave = tty.open_peer(master, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            return _take(master, slave, slave_open)
        finally:
            os.close(slave)
    finally:
        if locked:
            fcntl.ioctl(master, tty.TIOCSPTLCK, struct.pack("i", 1))


def _take(master: int, slave: int, slave_open: bool) -> Queued:
    # (the master's was seen by pty.side_info; the slave may be held by no process)
    ldisc = tty.get_int(slave, tty.TIOCGETD)
    if ldisc != tty.N_TTY:  # (whose ioctls, termios too, differ)
        raise UnsupportedError(f"its slave has line discipline {ldisc}, not N_TTY")
    saved = _attrs(slave)
    refusal = _refusal(master, slave, saved)
    if refusal:
        raise UnsupportedError(refusal)
    packet = bool(tty.get_int(master, tty.TIOCGPKT))
    if packet:
        fcntl.ioctl(master, tty.TIOCPKT, struct.pack("i", 0))
    try:
        queued = Queued(to_master=_drain(master))
        if slave_open:
            _read_input(master, slave, saved, queued)
        _put_back_taken(master, slave, saved, queued)
    finally:
        if packet:
            fcntl.ioctl(master, tty.TIOCPKT, struct.pack("i", 1))
    problems = _unsaid(queued)
    if problems:
        raise UnsupportedError(" and ".join(problems) + ", which the images cannot say")
    return queued


def _read_input(master: int, slave: int, saved: list, queued: Queued) -> None:
    """_drain_input; if reading fails, what was read (and `queued` already held) is put
    back and the dump refused."""
    try:
        _drain_input(master, slave, saved, queued)
    except (OSError, termios.error) as e:
        _put_back_taken(master, slave, saved, queued)
        raise UnsupportedError(
            f"reading its slave's input failed ({os.strerror(e.args[0])}); what was read is "
            f"put back ({_described(queued)})"
        ) from None


def _refusal(master: int, slave: int, saved: list) -> str | None:
    """Why the pair's queues cannot be read and put back exactly, from what the kernel shows
    before anything is read; None when they can."""
    lflag, waiting = saved[3], tty.get_int(slave, tty.FIONREAD)
    if tty.get_int(master, tty.TIOCGPKT) and _status_pending(master):
        return (
            "its master, in packet mode, has a status byte not read yet, which the images "
            "cannot say and reading it takes"
        )
    if not _writable(slave):
        if _drain(master, take_data=False) >= SLAVE_LIMIT:  # (then the pty's buffer may be)
            return (
                "its master's queue is full (its slave can write no more), more than is sure "
                "to fit back"
            )
        return "its slave's output is stopped (^S or TCOOFF)"
    if lflag & tty.EXTPROC and waiting:
        return f"its slave, in external processing mode (EXTPROC), has {waiting} bytes queued"
    if not lflag & termios.ICANON and waiting >= SLAVE_LIMIT:
        return (
            f"its slave has {waiting} bytes of input, as much as its line discipline holds, "
            "and maybe more waiting behind"
        )
    return None  # (the master's own settings stay raw: termios calls on it reach the slave)


def _unsaid(queued: Queued) -> list[str]:
    """What the dump found queued that the images cannot say."""
    problems = []
    if queued.beyond:
        problems.append(
            f"its slave has {len(queued.beyond)} bytes of input beyond the {SLAVE_LIMIT} its "
            "line discipline holds, not processed yet"
        )
    if queued.lnext:
        problems.append("its slave received a ^V (lnext) that makes the next byte data")
    if queued.long_line:
        problems.append(
            f"its slave has a line not ended of {queued.long_line} bytes, as many as its line "
            "discipline holds (its last byte may have been lost)"
        )
    return problems


def put_back(master: int, slave: int, saved: list, queued: Queued) -> None:
    """Queue `queued` in the pair of `master` and `slave` (an open of its slave), whose
    settings are to be `saved` (tcgetattr's list, control characters as ints); they are
    `saved` when this returns."""
    if not queued:
        return
    canonical = bool(saved[3] & termios.ICANON)
    if (queued.line_ends or queued.lnext) and not canonical:
        raise RestoreError("input saved as lines, for a terminal not in canonical mode")
    if (queued.to_master or queued.to_slave) and not _writable(slave):
        raise RestoreError("the slave's output is stopped (^S or TCOOFF)")  # (no echo either)
    termios.tcsetattr(slave, termios.TCSANOW, _quiet(saved))
    try:
        if queued.to_slave or queued.line_ends or queued.lnext:
            _write_all(master, _encoded(queued, saved))
            if _read_exactly(master, len(queued.to_slave)) != queued.to_slave:
                raise RestoreError("the terminal's line discipline changed its queued input")
        _write_all(slave, queued.to_master, PIECE)
    finally:
        termios.tcsetattr(slave, termios.TCSANOW, saved)
    _write_all(master, queued.beyond, PIECE)  # waits for room, processed then, as it was


def lines_of(data: bytes) -> list[int]:
    """Where the lines of `data` end, when all that says so is its newlines (CRIU's images)."""
    return [at + 1 for at, byte in enumerate(data) if byte == ord("\n")]


def _put_back_taken(master: int, slave: int, saved: list, queued: Queued) -> None:
    """Put back what the dump read; if that fails, say what is lost."""
    try:
        put_back(master, slave, saved, queued)
    except (RestoreError, OSError, termios.error) as e:
        reason = str(e) if isinstance(e, RestoreError) else os.strerror(e.args[0])
        raise UnsupportedError(
            f"what the dump read could not be put back ({reason}), and is lost or only "
            f"partly in place: {_described(queued)}"
        ) from None


def _described(queued: Queued) -> str:
    parts = []
    for what, data in (
        ("the slave's input", queued.to_slave), ("the master's queue", queued.to_master),
        ("the slave's input not processed yet", queued.beyond),
    ):  # fmt: skip
        if data:
            shown = data[:32] + (b"..." if len(data) > 32 else b"")
            parts.append(f"{len(data)} bytes of {what} ({shown!r})")
    if queued.line_ends:
        parts.append(f"{len(queued.line_ends)} line ends")
    if queued.lnext:
        parts.append("a pending ^V")
    return ", ".join(parts)


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


def _writable(fd: int) -> bool:
    """Whether a write on terminal `fd` goes anywhere now (not stopped, room at the other end)."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    events = poller.poll(0)
    return bool(events and events[0][1] & select.POLLOUT)


def _drain(fd: int, take_data: bool = True) -> bytes | int:
    """Everything a non-canonical side (the master) has to read, without blocking: polling
    first makes the kernel hand the line discipline what is still in its buffers. Without
    `take_data`, how much that is, nothing read."""
    got = b""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        poller.poll(0)
        waiting = tty.get_int(fd, tty.FIONREAD)
        if not take_data:
            return waiting
        if not waiting:
            return got
        got += os.read(fd, waiting)


def _drain_input(master: int, slave: int, saved: list, queued: Queued) -> None:
    """Fill `queued` with the slave's input (`slave` is non-blocking) and where its complete
    lines end, under the capture settings."""
    before = tty.get_int(slave, tty.FIONREAD)
    termios.tcsetattr(slave, termios.TCSANOW, _capture(saved))
    try:
        if not saved[3] & termios.ICANON:
            queued.to_slave = _read_available(slave)
            queued.to_slave, queued.beyond = queued.to_slave[:before], queued.to_slave[before:]
            return
        lines = []
        try:
            for _ in range(MAX_READS):
                try:
                    lines.append(os.read(slave, tty.N_TTY_BUF_SIZE * 2))
                except BlockingIOError:
                    break
            half, queued.lnext = _line_not_ended(master, slave, lines)
        except (OSError, termios.error):
            _split(queued, lines, b"", saved)  # what was read, for the caller to put back
            raise
    finally:
        termios.tcsetattr(slave, termios.TCSANOW, saved)
    queued.long_line = len(half) if len(half) >= SLAVE_LIMIT else 0
    _split(queued, lines, half, saved)


def _line_not_ended(master: int, slave: int, lines: list[bytes]) -> tuple[bytes, bool]:
    """The line not ended yet in the canonical slave whose complete lines (`lines`) were all
    read, and whether a ^V is pending: ended by a newline written on the master, or two if
    the first is taken as data."""
    for newlines in (1, 2):
        _write_all(master, b"\n")
        try:
            return _line_now(slave)[:-newlines], newlines == 2
        except BlockingIOError:
            continue
    read = b"".join(lines)
    raise UnsupportedError(
        "its slave's line discipline took no newline to end its line, and the input the dump "
        f"read is lost: {len(read)} bytes ({read[:32]!r})"
    )


def _line_now(slave: int) -> bytes:
    """One line of the canonical `slave`, once its line discipline has taken what was written
    (poll(2) waits for that when no line is complete); BlockingIOError when there is none."""
    poller = select.poll()
    poller.register(slave, select.POLLIN)
    poller.poll(0)
    return os.read(slave, tty.N_TTY_BUF_SIZE * 2)


def _split(queued: Queued, lines: list[bytes], half: bytes, saved: list) -> None:
    """Set `queued` from the lines read from a canonical slave and the line not ended: where
    the lines end, and, past the SLAVE_LIMIT bytes of the line discipline's buffer (a line
    ended by EOF holds one more), what came in from the pty's buffer, not processed."""
    eols = {saved[6][termios.VEOL], saved[6][termios.VEOL2]} - {0}
    data, ends, used, cut = b"", [], 0, None
    for line in lines:
        marker = not line.endswith(b"\n") and not (line and line[-1] in eols)
        if cut is None and used + len(line) + marker > SLAVE_LIMIT:
            cut = len(data) + SLAVE_LIMIT - used
        data += line
        used += len(line) + marker
        ends.append(len(data))
    if cut is None and used + len(half) > SLAVE_LIMIT:
        cut = len(data) + SLAVE_LIMIT - used
    data += half
    if cut is None:
        queued.to_slave, queued.line_ends = data, ends
    else:
        queued.to_slave, queued.beyond = data[:cut], data[cut:]
        queued.line_ends = [end for end in ends if end <= cut]


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


def _capture(saved: list) -> list:
    """Settings under which the slave's input is read as it is queued, and what comes in
    from the pty's buffer meanwhile is taken as the master wrote it: no echo, signals or
    input translation, no special character (the flow control, as it was, sees only what it
    saw already); canonical mode and EXTPROC as they were (switching either forgets the
    lines)."""
    iflag, _oflag, cflag, lflag, ispeed, ospeed, cc = saved
    kept_cc = [0] * len(cc)
    for keep in (termios.VSTART, termios.VSTOP, termios.VMIN, termios.VTIME):
        kept_cc[keep] = cc[keep]
    kept = lflag & (termios.ICANON | tty.EXTPROC)
    return [iflag & FLOW_IFLAGS, 0, cflag, kept, ispeed, ospeed, kept_cc]


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
    lines ending at `queued.line_ends` (and a ^V pending after it, `queued.lnext`)."""
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
    if queued.lnext:
        out.append(bytes((LNEXT,)))
    return b"".join(out)


def _write_all(fd: int, data: bytes, piece: int = MASTER_LIMIT) -> None:
    """Write `data` on terminal `fd`, `piece` bytes at most a write."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while data:
        if not poller.poll(ECHO_WAIT_MS):
            raise RestoreError(f"the terminal takes no more data ({len(data)} bytes left)")
        try:
            data = data[os.write(fd, data[:piece]) :]
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

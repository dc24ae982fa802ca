"""Pseudo-terminal pairs beyond the ptys workload (tests/workloads/ptys.c, dumped and restored
by test_end_to_end for both bitnesses): the data queued in a pair, left as it was by a dump that
lets the tree go on, and what the dump refuses, leaving the program working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import harness
import imagecraft
import pytest
from test_end_to_end import crit_decodes_every_image

import torpor
from torpor.errors import RestoreError, TorporError, UnsupportedError
from torpor.images.imagedir import ImageDir
from torpor.kernel import tty
from torpor.parts.fds import ptyqueue

N_NULL = 27  # a line discipline that takes nothing and gives nothing

# Holds the master on stdin; on SIGUSR1 writes through it and exits.
MASTER_ONLY = """
import os, signal
signal.signal(signal.SIGUSR1, lambda *a: None)
print("READY", flush=True)
signal.pause()
os.write(0, b"through\\n")
print("OK", flush=True)
"""

# Opens a pair, queues data both ways (a line and half a line for the slave, output for the
# master) and, on SIGUSR1, reads it: each read(2) must return what it did before.
QUEUED = """
import os, signal, fcntl, struct, termios, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
master, slave = os.openpty()
os.write(slave, b"said\\n")
os.write(master, b"typed ahead\\rhalf a li")
while struct.unpack("i", fcntl.ioctl(master, termios.FIONREAD, bytes(4)))[0] < 28:
    time.sleep(0.01)  # until the slave's line discipline echoed it all
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
fcntl.fcntl(slave, fcntl.F_SETFL, os.O_NONBLOCK)
got = [os.read(master, 100), os.read(slave, 100)]
try:
    got.append(os.read(slave, 100))
except BlockingIOError:
    os.write(master, b"ne\\r")
    got.append(os.read(slave, 100))
print("OK" if got == [b"said\\r\\ntyped ahead\\r\\nhalf a li", b"typed ahead\\n", b"half a line\\n"]
      else f"LOST {got}", flush=True)
"""

# A packet-mode master with a status byte not read yet (FLUSHREAD, from the slave's tcflush)
# and data behind it; on SIGUSR1 reads both.
PACKET_STATUS = """
import os, signal, fcntl, struct, termios
signal.signal(signal.SIGUSR1, lambda *a: None)
master, slave = os.openpty()
fcntl.ioctl(master, 0x5420, struct.pack("i", 1))
termios.tcflush(slave, termios.TCIFLUSH)
os.write(slave, b"data")
print("READY", flush=True)
signal.pause()
got = [os.read(master, 100), os.read(master, 100)]
print("OK" if got == [bytes([termios.TIOCPKT_FLUSHREAD]), b"\\0data"] else f"LOST {got}",
      flush=True)
"""


def _start(code: str, out, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=stdin, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 10
    while "READY" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.02)
    return proc


def _refused(proc, tmp_path, *words: str) -> None:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(proc.pid, str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert list(images.iterdir()) == []


def _refused_then_reads(tmp_path, code: str, *words: str) -> None:
    """Start program `code`, see its dump refused with `words` in the message ("{pid}" in a
    word is the program's PID), then let it check that it still reads exactly its data."""
    out = tmp_path / "out"
    proc = _start(code, out)
    try:
        _refused(proc, tmp_path, *(word.replace("{pid}", str(proc.pid)) for word in words))
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert "OK" in out.read_text(), out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()


def test_master_whose_slave_is_outside_is_refused(tmp_path):
    """A master whose slave another process (here the test) holds: refused, naming the
    pty; the program then writes through it and the slave reads it."""
    master, slave = os.openpty()
    out = tmp_path / "out"
    try:
        proc = _start(MASTER_ONLY, out, stdin=master)
        try:
            _refused(proc, tmp_path, f"master of {os.ttyname(slave)}", "outside the process tree")
            proc.send_signal(signal.SIGUSR1)
            assert proc.wait(timeout=10) == 0, out.read_text()
            assert os.read(slave, 100).startswith(b"through"), "the pair no longer works"
        finally:
            harness.kill_tree(proc.pid, proc.pid)
            proc.wait()
    finally:
        os.close(master)
        os.close(slave)


def test_queued_data_stays_after_a_dump_that_lets_go(tmp_path):
    """Data queued both ways in a pair (a line, half a line and output), read by a dump that
    lets the program go on and put back: the program reads exactly what it would have,
    read by read, nothing processed twice by the line discipline (icrnl, echo, onlcr)."""
    out = tmp_path / "out"
    proc = _start(QUEUED, out)
    try:
        images = tmp_path / "images"
        images.mkdir()
        torpor.dump(proc.pid, str(images), leave_running=True)
        crit_decodes_every_image(images)
        saved = [(e.data, list(e.torpor_line_ends)) for e in ImageDir(images).read("tty-data.img")]
        assert sorted(saved) == [
            (b"said\r\ntyped ahead\r\nhalf a li", []),
            (b"typed ahead\nhalf a li", [12]),
        ], saved
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert "OK" in out.read_text(), out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()


def test_ptys_workload_left_running(start_workload, tmp_path):
    """The ptys workload (data queued in pairs B and D, packet mode, cooked settings) dumped
    with leave_running: every side reads what was queued, the settings are as they were."""
    w = start_workload("ptys")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images), leave_running=True)
    crit_decodes_every_image(images)
    assert w.proc.poll() is None, w.log()
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def test_packet_status_with_data_is_refused(tmp_path):
    """A packet-mode master with a status byte not read yet and data behind it: refused,
    naming the pty (reading the data would take the status); the program then reads both."""
    _refused_then_reads(
        tmp_path, PACKET_STATUS, "/dev/pts/", "in packet mode, has a status byte not read yet"
    )


def test_queued_lines_beyond_their_data_are_refused(start_workload, tmp_path):
    """tty-data.img saying a slave's line ends past its data: the restore refuses in one
    line naming the image, and leaves no process."""
    w = start_workload("ptys")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)

    def craft(decoded):
        slave_input = [m for m, _ in decoded["tty-data.img"] if m.torpor_lines]
        assert slave_input, decoded["tty-data.img"]
        slave_input[0].torpor_line_ends.append(len(slave_input[0].data) + 1)

    imagecraft.rewrite(images, craft)
    # found as the pair is made again, once the tree exists: RestoreError, the tree killed
    harness.assert_restore_refused(images, w.pid, "tty-data.img", error=TorporError)


def test_slave_input_without_its_line_ends_is_split_at_newlines(tmp_path):
    """A slave's queued input saved as CRIU saves it (data only, no torpor_lines): its lines
    end after each newline, and what follows the last is half a line, as the program reads
    it after the restore."""
    out = tmp_path / "out"
    proc = _start(QUEUED, out)
    images = tmp_path / "images"
    images.mkdir()
    try:
        torpor.dump(proc.pid, str(images))
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()
    assert harness.wait_gone(proc.pid, 5)

    def craft(decoded):
        for message, _ in decoded["tty-data.img"]:
            if message.torpor_lines:
                message.ClearField("torpor_lines")
                message.ClearField("torpor_line_ends")

    imagecraft.rewrite(images, craft)
    restored = torpor.restore(str(images))
    os.kill(restored, signal.SIGUSR1)
    _, status = os.waitpid(restored, 0)
    assert status == 0, out.read_text()
    assert "OK" in out.read_text(), out.read_text()


# Common to the programs below: `fionread`, `writable` and `wait_until`, which waits for the
# line discipline (a bounded loop, never a timing assertion).
HELPERS = """
import os, signal, fcntl, select, struct, termios, time
def fionread(fd):
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0]
def writable(fd):
    p = select.poll(); p.register(fd, select.POLLOUT)
    return bool(p.poll(0))
def wait_until(test):
    deadline = time.monotonic() + 10
    while not test():
        assert time.monotonic() < deadline, "the line discipline never got there"
        time.sleep(0.01)
def read_now(fd):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        return os.read(fd, 10000)
    except BlockingIOError:
        return None
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
master, slave = os.openpty()
"""

# A packet-mode master with a status byte not read yet (FLUSHREAD) and, in the slave (no
# echo), input FIONREAD does not count: QUEUED_INPUT, then what ends it (END), so that the
# slave reads READS. The master reads the status byte and nothing else.
BEHIND_STATUS = (
    HELPERS
    + """
fcntl.ioctl(master, 0x5420, struct.pack("i", 1))
attrs = termios.tcgetattr(slave)
attrs[3] &= ~termios.ECHO
termios.tcsetattr(slave, termios.TCSANOW, attrs)
termios.tcflush(slave, termios.TCIFLUSH)
os.write(master, QUEUED_INPUT)
p = select.poll(); p.register(slave, select.POLLIN)
p.poll(0)  # which waits for the line discipline to take it, when no line is complete
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = [os.read(master, 100), read_now(master)]
os.write(master, END)
got += [read_now(slave) for _ in READS]
want = [bytes([termios.TIOCPKT_FLUSHREAD]), None] + READS
print("OK" if got == want else f"LOST {got}", flush=True)
"""
)


@pytest.mark.parametrize(
    "queued, end, reads",
    [
        (b"half a li", b"ne\n", [b"half a line\n"]),
        (b"\x04", b"", [b"", None]),  # an end of file
        (b"ab\x16", b"\n\n", [b"ab\n\n"]),  # a ^V pending: the first newline is data
        (b"", b"", [None]),  # nothing but the status byte
    ],
    ids=["half-line", "end-of-file", "lnext", "status-only"],
)
def test_input_behind_a_packet_status_is_refused(tmp_path, queued, end, reads):
    """A packet-mode status byte not read yet, alone or with a canonical slave's input that
    FIONREAD does not count (a line not ended, an end of file, a pending ^V): the images
    have no place for it, and reading the master would take it, so the dump refuses before
    reading anything, naming the fd, the process and the pty; the program then reads the
    status byte, nothing else on the master, and its input."""
    code = f"QUEUED_INPUT, END, READS = {queued!r}, {end!r}, {reads!r}\n" + BEHIND_STATUS
    _refused_then_reads(tmp_path, code, "fd 3 of process {pid}", "the master of /dev/pts/",
                        "in packet mode, has a status byte not read yet")  # fmt: skip


# A canonical slave (cooked: echo, icrnl, onlcr) given 60 lines of 100 bytes: 4095 of them in
# its line discipline (40 lines and 95 bytes), the rest in the pty's buffer, not processed
# yet. The slave must read the 60 lines, the master their echoes, each once.
BEYOND = (
    HELPERS
    + """
lines = [b"%03d" % i + b"y" * 96 + b"\\r" for i in range(60)]
fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
data = b"".join(lines)
while data:
    data = data[os.write(master, data):]
wait_until(lambda: fionread(master) == 4095)  # 4135 echoes, the first 4095 in its own
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
fcntl.fcntl(master, fcntl.F_SETFL, 0)
read = [os.read(slave, 200) for _ in lines]
echoes = b""
while len(echoes) < 6060:
    echoes += os.read(master, 10000)
ok = read == [line[:-1] + b"\\n" for line in lines] and read_now(slave) is None
ok = ok and echoes == b"".join(line[:-1] + b"\\r\\n" for line in lines)
print("OK" if ok else f"LOST {read[-3:]} {echoes[-300:]}", flush=True)
"""
)


def test_input_beyond_the_line_discipline_is_refused(tmp_path):
    """A canonical slave with input beyond the 4095 bytes its line discipline holds (the
    rest waits in the pty's buffer, not processed): the dump refuses, naming it, and puts
    back the 4095 processed bytes and the rest as written, to be processed later; the
    program then reads its 60 lines and their echoes, each once."""
    _refused_then_reads(tmp_path, BEYOND, "fd 3 of process {pid}", "1905 bytes of input beyond")


# A slave stopped by ^S (IXON) with data queued both ways: "out" it wrote, and the line
# "typed\\r", whose echo waits for the output to start again. After ^Q each side reads
# exactly that.
STOPPED = (
    HELPERS
    + """
os.write(slave, b"out")
os.write(master, b"typed\\r\\x13")
wait_until(lambda: not writable(slave) and fionread(slave) == 6 and fionread(master) == 3)
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
os.write(master, b"\\x11")
echoed = b""
while len(echoed) < 10:
    echoed += os.read(master, 100)
got = [echoed, os.read(slave, 100), read_now(master), read_now(slave)]
print("OK" if got == [b"outtyped\\r\\n", b"typed\\n", None, None] else f"LOST {got}", flush=True)
"""
)

# A canonical slave with a ^V pending after "ab" (echoed as "ab^\\b"): a newline after it is data.
LNEXT_PENDING = (
    HELPERS
    + """
os.write(master, b"ab\\x16")
wait_until(lambda: fionread(master) == 4)
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = [os.read(master, 100), read_now(master)]
os.write(master, b"\\n\\n")
got += [os.read(slave, 100), read_now(slave)]
print("OK" if got == [b"ab^\\b", None, b"ab\\n\\n", None] else f"LOST {got}", flush=True)
"""
)

# A non-canonical slave (no echo, signals or input processing) given 5000 bytes: 4095 in its
# line discipline, the rest in the pty's buffer. It must read the 5000.
RAW_FULL = (
    HELPERS
    + """
attrs = termios.tcgetattr(slave)
attrs[0], attrs[3] = 0, attrs[3] & ~(termios.ICANON | termios.ECHO | termios.ISIG)
termios.tcsetattr(slave, termios.TCSANOW, attrs)
data = bytes(range(256)) * 19 + bytes(136)
fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
left = data
while left:
    left = left[os.write(master, left):]
wait_until(lambda: fionread(slave) == 4095)
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = b""
while len(got) < 5000:
    got += os.read(slave, 10000)
print("OK" if got == data and read_now(slave) is None else f"LOST {len(got)}", flush=True)
"""
)

# A slave in external processing mode (EXTPROC: the line discipline processes nothing) with
# input queued.
EXTPROC_QUEUED = (
    HELPERS
    + """
attrs = termios.tcgetattr(slave)
attrs[3] |= 0o200000
termios.tcsetattr(slave, termios.TCSANOW, attrs)
os.write(master, b"abc")
wait_until(lambda: fionread(slave) == 3)
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = [os.read(slave, 100), read_now(master)]
print("OK" if got == [b"abc", None] else f"LOST {got}", flush=True)
"""
)

# Fills the master's queue: the slave writes until the pty takes no more (its line
# discipline's 4095 bytes and the pty's buffer), which the master must then read.
MASTER_FULL = (
    HELPERS
    + """
fcntl.fcntl(slave, fcntl.F_SETFL, os.O_NONBLOCK)
attrs = termios.tcgetattr(slave)
attrs[1] &= ~termios.OPOST
termios.tcsetattr(slave, termios.TCSANOW, attrs)
data = b""
while True:
    try:
        data += bytes([len(data) % 251]) * os.write(slave, bytes([len(data) % 251]) * 100)
    except BlockingIOError:
        if fionread(master) == 4095 and not writable(slave):
            break
        time.sleep(0.01)
print("READY", len(data), flush=True)
signal.sigwait({signal.SIGUSR1})
fcntl.fcntl(master, fcntl.F_SETFL, os.O_NONBLOCK)
got = b""
wait_until(lambda: fionread(master) > 0)
while len(got) < len(data):
    got += read_now(master) or b""
print("OK" if got == data and read_now(master) is None else f"LOST {len(got)}", flush=True)
"""
)


# The slave in another line discipline (N_NULL, 27) for a while.
@pytest.mark.parametrize(
    "code, words",
    [
        (STOPPED, ["its slave's output is stopped (^S or TCOOFF)"]),
        (LNEXT_PENDING, ["its slave received a ^V (lnext)"]),
        (RAW_FULL, ["4095 bytes of input, as much as its line discipline holds"]),
        (EXTPROC_QUEUED, ["(EXTPROC), has 3 bytes queued"]),
        (MASTER_FULL, ["its master's queue is full (its slave can write no more)"]),
    ],
    ids=["stopped", "lnext", "non-canonical-full", "extproc", "master-full"],
)
def test_what_cannot_be_put_back_exactly_is_refused(tmp_path, code, words):
    """Refused, naming the fd, the process and the pty, before anything is read: a slave
    whose output is stopped by ^S (neither echoes nor the master's queue could go back), or
    that can write no more because its master's queue is full (the pty's buffer holds more
    or less of it according to how it was written), a
    non-canonical slave with as much input as its line discipline holds (more may wait in
    the pty's buffer), a slave in EXTPROC mode with input; and after reading and putting it
    back, a ^V pending in a canonical slave (found by the newline that ends its line; the
    images cannot say it). The program then reads exactly what was queued, both ways."""
    _refused_then_reads(tmp_path, code, "fd 3 of process {pid}", "/dev/pts/", *words)


def test_another_line_discipline_is_refused(tmp_path, monkeypatch):
    """A side of a pair in a line discipline other than N_TTY (TIOCGETD, as torpor asks it,
    says N_NULL: the kernel may lack that discipline, and this test must not): refused
    before anything is read, naming it; the program then reads what was queued, both ways."""
    asked = tty.get_int

    def n_null(fd: int, request: int) -> int:
        return N_NULL if request == tty.TIOCGETD else asked(fd, request)

    monkeypatch.setattr(tty, "get_int", n_null)
    _refused_then_reads(tmp_path, QUEUED, "/dev/pts/", f"line discipline {N_NULL}, not N_TTY")


def test_a_put_back_that_fails_says_what_is_lost(tmp_path, monkeypatch):
    """When the dump cannot put back what it read (here the echoes never come), the error
    says so, with what was lost and where; it is one line."""

    def no_echoes(fd, count):
        raise RestoreError(f"the terminal echoed 0 of the {count} bytes of queued input")

    monkeypatch.setattr(ptyqueue, "_read_exactly", no_echoes)
    out = tmp_path / "out"
    proc = _start(QUEUED, out)
    try:
        _refused(proc, tmp_path, f"of process {proc.pid}", "could not be put back",
                 "echoed 0 of the 21 bytes", "is lost or only partly in place",
                 "21 bytes of the slave's input (b'typed ahead\\nhalf a li')",
                 "28 bytes of the master's queue", "1 line ends")  # fmt: skip
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()

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
from torpor.errors import TorporError, UnsupportedError
from torpor.images.imagedir import ImageDir

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
    out = tmp_path / "out"
    proc = _start(PACKET_STATUS, out)
    try:
        _refused(proc, tmp_path, "/dev/pts/", "packet-mode status byte not read yet")
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert "OK" in out.read_text(), out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()


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
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "tty-data.img" in message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"


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

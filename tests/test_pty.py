"""Pseudo-terminal pairs beyond the ptys workload (tests/workloads/ptys.c, run by
test_end_to_end for both bitnesses): what the dump refuses, leaving the program working."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError

# Holds the master on stdin; on SIGUSR1 writes through it and exits.
MASTER_ONLY = """
import os, signal
signal.signal(signal.SIGUSR1, lambda *a: None)
print("READY", flush=True)
signal.pause()
os.write(0, b"through\\n")
print("OK", flush=True)
"""

# Opens a pair and writes to the master what nobody reads yet; on SIGUSR1 reads it.
QUEUED = """
import os, signal
signal.signal(signal.SIGUSR1, lambda *a: None)
master, slave = os.openpty()
os.write(master, b"typed ahead\\n")
print("READY", flush=True)
signal.pause()
print("OK" if os.read(slave, 100) == b"typed ahead\\n" else "LOST", flush=True)
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


def test_queued_input_is_refused(tmp_path):
    """Input written on the master and not read yet from the slave: refused, naming the
    bytes waiting; the program then reads them."""
    out = tmp_path / "out"
    proc = _start(QUEUED, out)
    try:
        _refused(proc, tmp_path, "bytes not read yet", "/dev/pts/")
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert "OK" in out.read_text(), out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.wait()

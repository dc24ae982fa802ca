"""Clocks: a restored task's CLOCK_MONOTONIC and CLOCK_BOOTTIME carry on from their dumped values
in a new time namespace; --no-timens keeps the host's; a kernel without time namespaces gets a
clear refusal that names the way out."""

from __future__ import annotations

import os
import threading
import time

import harness
import pytest

import torpor
from torpor.errors import RestoreError
from torpor.kernel import libc
from torpor.restorer import check


def _dump(start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    return w, harness.dump_killed(w, tmp_path)


def _monotonic_offset(pid: int) -> int:
    with open(f"/proc/{pid}/timens_offsets") as f:
        secs, nsecs = next(line.split()[1:] for line in f if line.startswith("monotonic"))
    return int(secs) * 10**9 + int(nsecs)


def test_clocks_carry_on_in_a_time_namespace(start_workload, tmp_path):
    w, images = _dump(start_workload, tmp_path)
    time.sleep(1.0)  # the clocks must not jump by the time spent frozen
    pid = torpor.restore(str(images))
    w.adopt(pid)
    assert os.readlink(f"/proc/{pid}/ns/time") != os.readlink("/proc/self/ns/time")
    assert _monotonic_offset(pid) <= -(10**9), "the frozen second was not taken off the clock"
    w.signal()
    w.verdict().assert_passed()


def test_no_timens_keeps_the_host_clocks(start_workload, tmp_path):
    w, images = _dump(start_workload, tmp_path)
    pid = torpor.restore(str(images), timens=False)
    w.adopt(pid)
    assert os.readlink(f"/proc/{pid}/ns/time") == os.readlink("/proc/self/ns/time")
    w.signal()
    w.verdict().assert_passed()


def test_kernel_without_time_namespaces(start_workload, tmp_path, monkeypatch):
    w, images = _dump(start_workload, tmp_path)
    real = libc.syscall

    def no_timens(nr, *args):
        if nr == libc.SYS_UNSHARE:
            raise OSError(22, "Invalid argument")
        return real(nr, *args)

    monkeypatch.setattr(libc, "syscall", no_timens)
    with pytest.raises(RestoreError, match="--no-timens"):
        torpor.restore(str(images))
    monkeypatch.undo()
    assert not os.path.exists(f"/proc/{w.pid}")


def test_threaded_caller_is_refused(start_workload, tmp_path):
    """setns into a time namespace needs a single-threaded caller: a caller with threads gets
    a clear refusal up front (and nothing is created), and can restore with timens=False."""
    w, images = _dump(start_workload, tmp_path)
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        refused = [f for f in check(str(images)) if f.refused]
        assert [f.topic for f in refused] == ["clocks"], refused
        assert not [f for f in check(str(images), timens=False) if f.refused]
        with pytest.raises(RestoreError, match="single-threaded.*--no-timens"):
            torpor.restore(str(images))
        assert not os.path.exists(f"/proc/{w.pid}")
        pid = torpor.restore(str(images), timens=False)
    finally:
        stop.set()
        thread.join()
    w.adopt(pid)
    w.signal()
    w.verdict().assert_passed()

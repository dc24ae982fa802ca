"""--pidns: a process whose PID is taken here is restored into a new PID namespace, where it has
its dumped PID (the misc workload checks getpid() against the PID it had before the dump)."""

from __future__ import annotations

import os
import time

import pytest

import torpor
from torpor.errors import RestoreError


def test_restore_into_new_pid_namespace(start_workload, tmp_path):
    w = start_workload("misc")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images), leave_running=True)  # the original keeps its PID
    with pytest.raises(RestoreError, match="in use"):
        torpor.restore(str(images))
    restored = torpor.restore(str(images), pidns=True)
    try:
        assert restored != w.pid
        with open(f"/proc/{restored}/status") as f:
            nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        assert nspid == [str(restored), str(w.pid)], nspid
        namespace = os.readlink(f"/proc/{restored}/ns/pid")
        assert namespace != os.readlink("/proc/self/ns/pid")
        assert os.readlink("/proc/self/ns/pid_for_children") == os.readlink("/proc/self/ns/pid")
        os.kill(restored, 10)
        _, status = os.waitpid(restored, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, w.log()
    finally:
        if os.path.exists(f"/proc/{restored}"):
            os.kill(restored, 9)
    deadline = time.monotonic() + 5  # the namespace's init leaves once it is alone
    while _processes_in(namespace) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_in(namespace), "the PID namespace outlived the restored process"
    w.signal()
    w.verdict().assert_passed()


def _processes_in(namespace: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") == namespace:
                found.append(pid)
        except OSError:
            pass
    return found

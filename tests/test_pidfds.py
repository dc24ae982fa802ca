"""pidfds beyond the end-to-end round trip (workload pidfds, both bitnesses): one of a process
outside the tree refuses the dump by name and leaves the program as it was; restored into a
new PID namespace, pidfds of the tree's processes and of a reaped one still work."""

from __future__ import annotations

import os

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError


def _pidfds(pid: int) -> dict[int, int]:
    """fd -> the PID its pidfd shows."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]":
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                found[int(fd)] = next(int(x.split()[1]) for x in f if x.startswith("Pid:"))
    return found


def test_pidfd_of_process_outside_the_tree_refuses(start_workload, tmp_path):
    w = start_workload("pidfds", "outside")
    w.wait_ready()
    tree = harness.tree_pids(w.pid)
    ((fd, outside),) = [(fd, p) for fd, p in _pidfds(w.pid).items() if p > 0 and p not in tree]
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    for words in (f"fd {fd} of process {w.pid} is a pidfd", f"process {outside}", "outside"):
        assert words in message, message
    assert os.listdir(images) == []
    assert harness.tracer_pid(w.pid) == 0, "the original is still traced"
    w.signal()
    w.verdict().assert_passed()


def test_pidfds_restored_into_a_pid_namespace(start_workload, tmp_path):
    """The dead process's pidfd reaches the task from torpor, which is not in its PID
    namespace; the others name the restored children by their PIDs there."""
    w = start_workload("pidfds")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images), leave_running=True)  # the original keeps its PIDs
    restored = torpor.restore(str(images), pidns=True)
    try:
        assert restored != w.pid
        os.kill(restored, 10)
        _, status = os.waitpid(restored, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, w.log()
    finally:
        if harness.pid_alive(restored):
            os.kill(restored, 9)
    w.signal()
    w.verdict().assert_passed()


def test_pidfd_of_a_thread_refuses(start_workload, tmp_path):
    """A pidfd of a thread other than a main thread (PIDFD_THREAD): threads are made after
    the fds, so it refuses the dump, naming the fd and the thread."""
    w = start_workload("pidfds", "thread")
    w.wait_ready()
    threads = {int(t) for t in os.listdir(f"/proc/{w.pid}/task")} - {w.pid}
    ((fd, tid),) = [(fd, p) for fd, p in _pidfds(w.pid).items() if p in threads]
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    assert f"fd {fd} of process {w.pid} is a pidfd of thread {tid}" in message, message
    assert os.listdir(images) == []
    w.signal()
    w.verdict().assert_passed()

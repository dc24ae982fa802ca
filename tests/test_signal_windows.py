"""A signal sent while torpor holds a task must act on it as it would have on the original.

A task stopped inside a syscall (pause, nanosleep, read, poll) is resumed by re-issuing that
syscall. If torpor let the task run with its signals unblocked before the syscall was entered
again, a signal that arrived meanwhile would be handled first and the task would then sleep on
in the syscall, its wake-up lost. These tests send SIGUSR1 at the worst moment, while the task
is seized (dump with leave_running) or being rebuilt (restore), and expect the workload to
leave its wait and pass as if the signal had come a moment later.
"""

from __future__ import annotations

import os
import signal

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError
from torpor.parts import files as files_part
from torpor.parts import memory as memory_part
from torpor.parts import task as task_part

MODES = ("pause", "nanosleep", "pipe-read", "poll")


@pytest.mark.parametrize("mode", MODES)
def test_signal_during_dump(mode, start_workload, tmp_path, monkeypatch):
    """SIGUSR1 sent during a leave-running dump wakes the task from its syscall afterwards."""
    w = start_workload("syscalls", mode)
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    real_dump = memory_part.dump

    def dump_and_signal(ctx):
        os.kill(w.pid, signal.SIGUSR1)
        real_dump(ctx)

    monkeypatch.setattr(memory_part, "dump", dump_and_signal)
    torpor.dump(w.pid, str(images), leave_running=True)
    w.verdict().assert_passed()


@pytest.mark.parametrize("mode", MODES)
def test_signal_during_refused_dump(mode, start_workload, tmp_path, monkeypatch):
    """SIGUSR1 sent while a dump holds the task and then refuses it (its fds are checked once
    the tree is frozen) wakes the task from its syscall once it is let go."""
    w = start_workload("syscalls", mode)
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()

    def signal_and_refuse(fds, shell_job):
        os.kill(w.pid, signal.SIGUSR1)
        raise UnsupportedError("refused for this test")

    monkeypatch.setattr(files_part, "inspect", signal_and_refuse)
    with pytest.raises(UnsupportedError):
        torpor.dump(w.pid, str(images), leave_running=True)
    w.verdict(timeout=10).assert_passed()


@pytest.mark.parametrize("mode", MODES)
def test_signal_during_restore(mode, start_workload, tmp_path, monkeypatch):
    """SIGUSR1 queued to the restored task before it runs again wakes it from its syscall."""
    w = start_workload("syscalls", mode)
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    real_restore = task_part.restore

    def restore_and_signal(ctx):
        real_restore(ctx)
        os.kill(ctx.pid, signal.SIGUSR1)

    monkeypatch.setattr(task_part, "restore", restore_and_signal)
    restored = torpor.restore(str(images))
    assert restored == pid
    w.adopt(restored)
    w.verdict().assert_passed()

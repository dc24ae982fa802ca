"""A process stopped by job control (SIGSTOP) when it is dumped stays stopped: a dump that
leaves it running leaves it stopped, and a restore brings it back stopped, by the signal the
images name (CRIU's task_state TASK_STOPPED and stop_signo). Judged by use: the workload
waits in pause() for SIGUSR1; sent while it is stopped, the signal is not handled (no
verdict, the process still stopped) until SIGCONT, and then the workload checks itself and
passes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import harness
import imagecraft
import pytest
from test_end_to_end import checkpoint_and_restore, images_dir

import torpor
from torpor.errors import ImageError
from torpor.images import ImageDir
from torpor.images import constants as C
from torpor.kernel import procfs

PAUSED = harness.Spec("syscalls", "pause")
QUIET = 0.5  # time in which a stopped process must not handle the signal sent to it


def stop(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while harness.proc_state(pid)[0] != "T":
        assert time.monotonic() < deadline, f"{pid} did not stop"
        time.sleep(0.01)


def assert_stopped_until_continued(w: harness.Workload, pid: int) -> None:
    """SIGUSR1 waits while `pid` is stopped; SIGCONT lets the workload take it and pass."""
    assert harness.proc_state(pid)[0] == "T", f"{pid} is not stopped: {harness.proc_state(pid)}"
    w.signal(signal.SIGUSR1)
    time.sleep(QUIET)
    assert harness.proc_state(pid)[0] == "T", f"{pid} runs again: {harness.proc_state(pid)}"
    assert "PASS" not in w.log() and "FAIL" not in w.log(), f"a stopped process ran:\n{w.log()}"
    os.kill(pid, signal.SIGCONT)
    w.verdict().assert_passed()


def test_a_stopped_process_is_restored_stopped(start_workload, tmp_path):
    w = start_workload(PAUSED)
    w.wait_ready()
    stop(w.pid)
    images = images_dir(tmp_path)
    pid = checkpoint_and_restore(w, images)
    core = ImageDir(str(images)).read_one(f"core-{pid}.img")
    assert (core.tc.task_state, core.tc.stop_signo) == (C.TASK_STOPPED, signal.SIGSTOP)
    assert_stopped_until_continued(w, pid)


def test_a_stopped_process_dumped_and_left_running_stays_stopped(start_workload, tmp_path):
    w = start_workload(PAUSED)
    w.wait_ready()
    stop(w.pid)
    torpor.dump(w.pid, str(images_dir(tmp_path)), leave_running=True)
    assert_stopped_until_continued(w, w.pid)


def test_a_running_process_is_not_recorded_stopped(start_workload, tmp_path):
    w = start_workload(PAUSED)
    w.wait_ready()
    images = images_dir(tmp_path)
    torpor.dump(w.pid, str(images), leave_running=True)
    core = ImageDir(str(images)).read_one(f"core-{w.pid}.img")
    assert (core.tc.task_state, core.tc.stop_signo) == (C.TASK_ALIVE, 0)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@pytest.mark.parametrize("flavour", ["64"], indirect=True)
def test_an_image_stopped_by_another_signal_is_refused(start_workload, tmp_path):
    w = start_workload(PAUSED)
    w.wait_ready()
    stop(w.pid)
    images = images_dir(tmp_path)
    torpor.dump(w.pid, str(images), leave_running=False)
    w.reap_original()
    name = f"core-{w.pid}.img"

    def not_a_stop_signal(decoded):
        decoded[name][0][0].tc.stop_signo = signal.SIGUSR1

    imagecraft.rewrite(images, not_a_stop_signal)
    with pytest.raises(ImageError, match=f"{name}: stopped by signal {int(signal.SIGUSR1)}"):
        torpor.restore(str(images))
    assert not harness.pid_alive(w.pid)


def test_a_terminal_stop_comes_back_by_its_own_signal(built_workloads, tmp_path):
    """Stopped by SIGTSTP in a group that is not orphaned (its parent, this test, is in
    another group of the same session): restored stopped by SIGTSTP, which the parent's
    waitpid(WUNTRACED) reports, as for the original."""
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen(
        [harness.binary("syscalls", "64"), "pause"], stdout=log, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, process_group=0, cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_for(lambda: b"READY" in (tmp_path / "log").read_bytes())
        assert not procfs.orphaned_group(proc.pid)
        os.kill(proc.pid, signal.SIGTSTP)
        _, status = os.waitpid(proc.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTSTP
        images = images_dir(tmp_path)
        torpor.dump(proc.pid, str(images), leave_running=False)
        proc.wait()
        pid = torpor.restore(str(images))
        assert pid == proc.pid
        _, status = os.waitpid(pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGTSTP, status
        os.kill(pid, signal.SIGUSR1)
        os.kill(pid, signal.SIGCONT)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, (tmp_path / "log").read_text()
        assert "PASS" in (tmp_path / "log").read_text()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        log.close()


def test_a_group_alone_in_its_session_is_orphaned(start_workload):
    w = start_workload(PAUSED)
    w.wait_ready()
    assert procfs.orphaned_group(w.pid)  # its parent is in another session


def _wait_for(ready, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def spinner(tmp_path_factory) -> Path:
    """tests/data/stopped/spinner.c, built as the workloads are."""
    exe = tmp_path_factory.mktemp("spinner") / "spinner"
    source = Path(__file__).parent / "data" / "stopped" / "spinner.c"
    built = subprocess.run(
        ["gcc", "-O1", "-g", "-Wall", "-o", str(exe), str(source)], capture_output=True
    )
    assert built.returncode == 0, built.stderr.decode()
    return exe


def test_a_stopped_process_runs_no_instruction_before_sigcont(spinner, tmp_path):
    """Stopped while it runs (not asleep in a call): once restored it is stopped before it
    runs any code of its own, which its count, in a shared file, would show."""
    counter = tmp_path / "count"
    counter.write_bytes(bytes(4096))
    log = open(tmp_path / "log", "wb")
    proc = subprocess.Popen(
        [spinner, counter], stdout=log, stdin=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for(lambda: b"READY" in (tmp_path / "log").read_bytes())
        stop(proc.pid)
        images = images_dir(tmp_path)
        torpor.dump(proc.pid, str(images), leave_running=False)
        proc.wait()
        dumped = counter.read_bytes()[:8]
        pid = torpor.restore(str(images))
        time.sleep(QUIET)
        assert harness.proc_state(pid)[0] == "T"
        assert counter.read_bytes()[:8] == dumped, "the restored process ran before SIGCONT"
        os.kill(pid, signal.SIGCONT)
        _wait_for(lambda: counter.read_bytes()[:8] != dumped)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        log.close()


def test_a_sigstop_sent_during_the_dump_stops_it_after(start_workload, tmp_path):
    """SIGSTOP, which torpor cannot block, sent while the dump drives the task: the dump
    goes on, and the process left running is stopped as it was asked to be."""
    w = start_workload(PAUSED)
    w.wait_ready()
    sent = []

    def stop_once(done, total):
        if not sent:
            os.kill(w.pid, signal.SIGSTOP)
            sent.append(done)

    torpor.dump(w.pid, str(images_dir(tmp_path)), leave_running=True, progress=stop_once)
    assert sent, "the dump reported no progress"
    deadline = time.monotonic() + 5
    while harness.proc_state(w.pid)[0] != "T":
        assert time.monotonic() < deadline, f"not stopped: {harness.proc_state(w.pid)}"
        time.sleep(0.01)
    assert_stopped_until_continued(w, w.pid)

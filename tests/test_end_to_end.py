"""Checkpoint and restore every workload, in both flavours, through torpor's Python API.

The flow for each workload: start it (this test process is its parent), wait for READY,
``torpor.dump`` it (which kills it), reap the original so its PID is free, ``torpor.restore``
it (the restored task must get the same PID and be a child of this process), send SIGUSR1
and read the verdict: exit status 0, exactly one READY and a PASS line in the log. The
workload itself checks that its state survived; these tests check the protocol around it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import harness
import pytest

import torpor

# Workloads for the leave_running variant: a dump must disturb nothing in them (registers,
# memory, signal state are what the dump touches most; timers, seccomp filters and process
# settings are read with calls injected into the process).
LEAVE_RUNNING = tuple(
    harness.Spec(*names)
    for names in (
        ("regs",), ("memory",), ("signals",), ("attrs",), ("timers",), ("seccomp", "shared"),
        ("fdattrs",), ("locks",), ("unixsk",), ("rawsk",), ("mcastsk",),
        ("pidfds",), ("fanotify",), ("cow",),
    )
)  # fmt: skip


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the end-to-end tests must run as root"


def images_dir(tmp_path):
    """A fresh, empty images directory for one test."""
    path = tmp_path / "images"
    path.mkdir()
    return path


CRIT = "/usr/bin/crit"


def crit_decodes_every_image(images) -> None:
    """CRIU's own decoder must read every image torpor wrote (pages-N.img is raw data)."""
    assert os.path.exists(CRIT), "crit is missing: install Debian's criu package"
    names = sorted(p.name for p in images.iterdir() if not p.name.startswith("pages-"))
    assert "core-" in " ".join(names) and "mm-" in " ".join(names), names

    # A tree has hundreds of images: decode them a few processes at a time. (Not with threads:
    # a restore into a time namespace needs this process single-threaded.)
    batch = 2 * (os.cpu_count() or 1)
    for at in range(0, len(names), batch):
        running = [
            (name, subprocess.Popen([CRIT, "decode", "-i", str(images / name)], **PIPES))
            for name in names[at : at + batch]
        ]
        for name, proc in running:
            out, err = proc.communicate()
            assert proc.returncode == 0, f"crit cannot decode {name}: {err.decode()}"
            assert json.loads(out)["entries"], f"crit found no entries in {name}"


PIPES = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}


def checkpoint_and_restore(w: harness.Workload, images, *, force_vdso_trampolines=False) -> int:
    """Dump w (killing it), reap the original, restore it; return the restored PID."""
    pid = w.pid
    torpor.dump(pid, str(images), leave_running=False, shell_job=False)
    assert (images / "inventory.img").exists(), "dump wrote no inventory.img"
    crit_decodes_every_image(images)
    status = w.reap_original()
    assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
    assert harness.wait_gone(pid, 5), f"pid {pid} still exists after the dump"

    restored = torpor.restore(
        str(images),
        shell_job=False,
        pidfile=None,
        force_vdso_trampolines=force_vdso_trampolines,
    )
    assert restored == pid, f"restored as pid {restored}, expected the original {pid}"
    w.adopt(restored)
    state = harness.proc_state(restored)
    assert state is not None, f"restored pid {restored} is gone right after restore:\n{w.log()}"
    assert state[1] == os.getpid(), f"restored pid {restored} has parent {state[1]}, not us"
    return restored


@pytest.mark.parametrize("spec", harness.WORKLOADS, ids=lambda s: s.id)
def test_checkpoint_restore(spec, start_workload, tmp_path):
    """Dump, restore, signal: the restored workload finds all its state intact."""
    w = start_workload(spec)
    w.wait_ready()
    if spec.name == "counter":
        time.sleep(0.35)  # let it tick before the checkpoint ...
    checkpoint_and_restore(w, images_dir(tmp_path))
    if spec.name == "counter":
        time.sleep(0.35)  # ... and after the restore
    w.signal(signal.SIGUSR1)
    v = w.verdict()
    v.assert_passed()
    if spec.name == "counter":
        ticks = harness.counter_ticks(v.log)
        assert ticks == list(range(1, len(ticks) + 1)), f"ticks not consecutive:\n{v.log}"
        assert len(ticks) >= 4, f"too few ticks around the checkpoint:\n{v.log}"


def test_checkpoint_restore_vdso_trampolines(start_workload, tmp_path):
    """The vDSO workload also works when restore keeps the dumped vDSO and jumps onwards."""
    w = start_workload(harness.Spec("vdso", "trampolines"))
    w.wait_ready()
    checkpoint_and_restore(w, images_dir(tmp_path), force_vdso_trampolines=True)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@pytest.mark.parametrize("spec", LEAVE_RUNNING, ids=lambda s: s.id)
def test_leave_running(spec, start_workload, tmp_path):
    """A dump with leave_running=True leaves the original running with its state intact."""
    w = start_workload(spec)
    w.wait_ready()
    images = images_dir(tmp_path)
    torpor.dump(w.pid, str(images), leave_running=True, shell_job=False)
    assert (images / "inventory.img").exists(), "dump wrote no inventory.img"
    crit_decodes_every_image(images)
    assert w.proc.poll() is None, f"the original died during the dump:\n{w.log()}"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()

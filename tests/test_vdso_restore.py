"""End-to-end tests of restoring the vDSO from states the plain vDSO test never reaches.

Each case runs in both flavours (the ``flavour`` fixture) and is restored twice over: once
normally and once with ``force_vdso_trampolines=True``, where the dumped vDSO comes back as
plain memory at its old address with jumps into the kernel's copy mapped elsewhere. The
verdict is always the workload's own (tests/workloads/vdso.c), printed after SIGUSR1:

- ``unmapped``: the task had unmapped its [vdso] and every [vvar*] mapping; the restore must
  not bring any of them back, and raw time syscalls must keep working.
- ``moved``: the task had mremapped the whole trio to another address and calls the moved
  vDSO's functions; they must keep giving the right time, and a normal restore must put the
  trio back at the moved address.
- ``spin``: the checkpoint catches the task with its instruction pointer inside the vDSO, in
  the middle of clock_gettime; the restored task must carry on with a correct, monotonic clock.
- re-dump chain: a restored task is dumped and restored again; after a restore with
  trampolines the second image must show the kernel's vDSO where the restore put it, the old
  copy as plain memory, and AT_SYSINFO_EHDR pointing at the kernel's copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import harness
import pytest

import torpor
from torpor.images import ImageDir
from torpor.images import constants as C

AT_SYSINFO_EHDR = 33

# Dumps tried (each with leave_running=True, into a fresh directory) before the spin case
# gives up on catching the task inside the vDSO. A spinning task is there most of the time,
# so this bound is only reached when something is wrong.
SPIN_TRIES = 200

restore_kinds = pytest.mark.parametrize("trampolines", [False, True], ids=["normal", "trampolines"])


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the end-to-end tests must run as root"


def vdso_spec(mode: str, trampolines: bool) -> harness.Spec:
    """The vdso workload in ``mode``, told whether the restore will use trampolines."""
    return harness.Spec("vdso", mode, args=("trampolines",) if trampolines else ())


def fresh_dir(tmp_path, name: str):
    """A new, empty directory ``name`` under tmp_path, for one set of images."""
    path = tmp_path / name
    path.mkdir()
    return path


def read_image(images, name: str):
    """The single entry of image file ``name`` in the directory ``images``."""
    return ImageDir(images).read_one(name)


def vdso_vmas(mm) -> list:
    """The VMAs an mm image marks as the kernel's vDSO."""
    return [v for v in mm.vmas if v.status & C.VMA_AREA_VDSO]


def saved_auxv(mm) -> dict[int, int]:
    """mm_saved_auxv (key, value word pairs) as a dict."""
    words = list(mm.mm_saved_auxv)
    return dict(zip(words[0::2], words[1::2], strict=False))


def special_maps(pid: int) -> list[tuple[int, int, str]]:
    """(start, end, name) of the [vdso] and [vvar*] lines of /proc/PID/maps."""
    found = []
    for line in harness.maps_lines(pid):
        fields = line.split(None, 5)
        name = fields[5].strip() if len(fields) > 5 else ""
        if name == "[vdso]" or name.startswith("[vvar"):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            found.append((start, end, name))
    return found


def restore_as_child(w: harness.Workload, images, trampolines: bool) -> int:
    """Restore ``images`` (the original PID must be free) and follow the restored task."""
    pid = w.pid
    restored = torpor.restore(str(images), force_vdso_trampolines=trampolines)
    assert restored == pid, f"restored as pid {restored}, expected the original {pid}"
    w.adopt(restored)
    state = harness.proc_state(restored)
    assert state is not None, f"restored pid {restored} is gone right after restore:\n{w.log()}"
    assert state[1] == os.getpid(), f"restored pid {restored} has parent {state[1]}, not us"
    return restored


def dump_and_restore(w: harness.Workload, images, trampolines: bool) -> int:
    """Dump the original workload (killing it), reap it, restore it; return the PID."""
    pid = w.pid
    torpor.dump(pid, str(images))
    status = w.reap_original()
    assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
    assert harness.wait_gone(pid, 5), f"pid {pid} still exists after the dump"
    return restore_as_child(w, images, trampolines)


def wait_for_ready_line(w: harness.Workload, timeout: float = harness.READY_TIMEOUT) -> None:
    """Wait for READY only: a spinning workload never sleeps, so wait_ready() does not fit."""
    deadline = time.monotonic() + timeout
    while "READY\n" not in w.log():
        if w.proc.poll() is not None:
            raise harness.WorkloadError(
                f"vdso-{w.flavour} exited with {w.proc.returncode} before READY\n{w.log()}"
            )
        assert time.monotonic() < deadline, f"vdso-{w.flavour}: no READY after {timeout}s"
        time.sleep(0.005)


@restore_kinds
def test_unmapped_vdso(start_workload, tmp_path, trampolines):
    """A task that unmapped its vDSO and vvar gets none of them back, and raw time works."""
    w = start_workload(vdso_spec("unmapped", trampolines))
    w.wait_ready()
    assert special_maps(w.pid) == [], "the workload did not unmap its vDSO"
    images = fresh_dir(tmp_path, "images")
    pid = dump_and_restore(w, images, trampolines)

    mm = read_image(images, f"mm-{pid}.img")
    kept = [hex(v.start) for v in mm.vmas if v.status & (C.VMA_AREA_VDSO | C.VMA_AREA_VVAR)]
    assert kept == [], f"the image records vDSO/vvar VMAs the task did not have: {kept}"
    assert special_maps(pid) == [], f"the restore mapped a vDSO: {special_maps(pid)}"

    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@restore_kinds
def test_moved_vdso(start_workload, tmp_path, trampolines):
    """A task that mremapped the vvar/vDSO trio keeps calling the moved vDSO correctly."""
    w = start_workload(vdso_spec("moved", trampolines))
    w.wait_ready()
    moved = special_maps(w.pid)
    moved_vdso = [start for start, _, name in moved if name == "[vdso]"]
    assert len(moved_vdso) == 1, f"no single [vdso] after the move: {moved}"
    images = fresh_dir(tmp_path, "images")
    pid = dump_and_restore(w, images, trampolines)

    mm = read_image(images, f"mm-{pid}.img")
    assert [v.start for v in vdso_vmas(mm)] == moved_vdso, "the image lost the moved vDSO"
    if not trampolines:
        assert special_maps(pid) == moved, "a normal restore did not keep the trio where it was"

    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@restore_kinds
def test_checkpoint_inside_vdso(start_workload, tmp_path, trampolines):
    """A task checkpointed with its instruction pointer inside the vDSO resumes correctly."""
    w = start_workload(vdso_spec("spin", trampolines))
    wait_for_ready_line(w)
    pid = w.pid
    caught = None
    tried = 0
    while caught is None and tried < SPIN_TRIES:
        images = fresh_dir(tmp_path, f"images-{tried}")
        tried += 1
        torpor.dump(pid, str(images), leave_running=True)
        assert w.proc.poll() is None, f"the original died during dump {tried}:\n{w.log()}"
        ip = read_image(images, f"core-{pid}.img").thread_info.gpregs.ip
        vmas = vdso_vmas(read_image(images, f"mm-{pid}.img"))
        assert len(vmas) == 1, f"dump {tried} recorded {len(vmas)} vDSO VMAs"
        if vmas[0].start <= ip < vmas[0].end:
            caught = images
        else:
            shutil.rmtree(images)
    assert caught is not None, f"none of {tried} dumps caught the task inside the vDSO"

    w.proc.kill()
    w.reap_original()
    assert harness.wait_gone(pid, 5), f"pid {pid} still exists after the kill"
    restore_as_child(w, caught, trampolines)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@restore_kinds
def test_redump_restored_task(start_workload, tmp_path, trampolines):
    """A restored task can be dumped and restored again, and its vDSO still works.

    With trampolines the first restore leaves the dumped vDSO as plain memory at the
    original address and maps the kernel's elsewhere; the second image must record that
    truthfully (one vDSO VMA, the kernel's, named by AT_SYSINFO_EHDR), or the second
    restore would treat the old copy as the kernel's. The workload runs in its
    "trampolines" mode there, because glibc's getauxval() keeps returning the original
    address, which is no longer a [vdso] mapping after such a restore.
    """
    w = start_workload(harness.Spec("vdso", "trampolines" if trampolines else None))
    w.wait_ready()
    first = fresh_dir(tmp_path, "images-1")
    pid = dump_and_restore(w, first, trampolines)
    firsts = vdso_vmas(read_image(first, f"mm-{pid}.img"))
    assert len(firsts) == 1, f"{len(firsts)} VMAs marked as vDSO in the first image"
    original = firsts[0]

    second = fresh_dir(tmp_path, "images-2")
    torpor.dump(pid, str(second))
    _, wstatus = os.waitpid(pid, 0)
    status = os.waitstatus_to_exitcode(wstatus)
    assert status < 0, f"the restored task exited by itself with {status}:\n{w.log()}"

    mm = read_image(second, f"mm-{pid}.img")
    vmas = vdso_vmas(mm)
    assert len(vmas) == 1, f"{len(vmas)} VMAs marked as vDSO in the second image"
    (kernels,) = vmas
    if trampolines:
        assert kernels.start != original.start, (
            f"the second image has the kernel's vDSO at the original {original.start:#x}"
        )
        old_copy = [v for v in mm.vmas if v.start == original.start]
        assert len(old_copy) == 1, f"no VMA at the original vDSO address {original.start:#x}"
        assert not old_copy[0].status & (C.VMA_AREA_VDSO | C.VMA_AREA_VVAR), (
            "the old vDSO copy is not plain memory in the second image"
        )
    else:
        assert kernels.start == original.start, (
            f"the vDSO moved from {original.start:#x} to {kernels.start:#x} in a normal restore"
        )
    ehdr = saved_auxv(mm).get(AT_SYSINFO_EHDR)
    assert ehdr == kernels.start, (
        f"AT_SYSINFO_EHDR {ehdr:#x} is not the vDSO VMA at {kernels.start:#x}"
        if ehdr is not None
        else "the saved auxv has no AT_SYSINFO_EHDR"
    )

    restore_as_child(w, second, trampolines)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()

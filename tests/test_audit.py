"""The audit (torpor.audit): what procfs showed of each task at dump, compared after restore.

Every other test restores with TORPOR_VERIFY=strict (conftest), so the audit runs in all of
them; these tests check the audit itself: what a snapshot reads, which differences the
explanations absorb and which they do not, and that a restored tree that differs from its
audit is reported (--verify=warn) or refused and killed (--verify=strict).
"""

from __future__ import annotations

import mmap
import os
import resource
import subprocess
import time

import harness
import imagecraft
import pytest
from command import TORPOR, child_subreaper, cli_env

from torpor import audit

LIMIT_KEY = "limits.Max open files"
# What the restorer tells the audit about a restore (torpor.restorer), and "root".
CIRCUMSTANCES = (
    None, "pidns", "root", "ignore", "shell-job", "inherit-fd", "trampolines", "temporary-mask",
    "other-kernel",
)  # fmt: skip


# --- snapshots of this process ------------------------------------------------------------------


def test_a_snapshot_reads_what_the_process_holds(tmp_path):
    """Values of this very process, as the kernel's own calls see them."""
    path = tmp_path / "held"
    path.write_bytes(b"x" * 4096)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 4096, prot=mmap.PROT_READ):
        values = audit.snapshot(os.getpid(), os.getpid(), process=True)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert values[LIMIT_KEY] == f"{soft} {hard}"
        assert values["stat.ppid"] == str(os.getppid())
        assert values["stat.session"] == str(os.getsid(0))
        assert values["stat.pgrp"] == str(os.getpgid(0))
        assert values["stat.nice"] == str(os.getpriority(os.PRIO_PROCESS, 0))
        assert values[f"fd.{f.fileno()}"] == str(path)
        assert int(values[f"fdinfo.{f.fileno()}.flags"], 8) & 3 == os.O_RDONLY
        mapped = [k for k, v in values.items() if k.endswith(".path") and v == str(path)]
        assert len(mapped) == 1, mapped
        vma = mapped[0].removesuffix(".path")
        assert values[f"{vma}.perms"] == "r--s"
        assert "rd" in values[f"{vma}.VmFlags"].split()
        assert values["cwd"] == os.getcwd()


def test_a_thread_snapshot_has_no_process_values():
    values = audit.snapshot(os.getpid(), os.getpid(), process=False)
    assert "status.SigBlk" in values and "stat.policy" in values
    assert not any(k.startswith(("fd.", "limits.", "smaps.")) for k in values)


# --- differences ---------------------------------------------------------------------------------


def test_every_changed_value_is_a_difference():
    before = {LIMIT_KEY: "1024 4096", "status.SigBlk": "0000000000000000"}
    after = {LIMIT_KEY: "1024 1048576", "status.SigBlk": "0000000000000000"}
    assert audit.differences(before, after) == [f"{LIMIT_KEY}: 1024 4096 -> 1024 1048576"]


def test_a_lost_fd_mapping_or_timer_is_a_difference_a_missing_field_is_not():
    before = {"fd.5": "/etc/passwd", "smaps.1000.range": "1000-2000", "timers.0.ClockID": "1"}
    before["status.x86_Thread_features"] = "shstk"  # one kernel shows it, the other not
    assert audit.differences(before, {}) == [
        "fd.5: /etc/passwd -> (none)",
        "smaps.1000.range: 1000-2000 -> (none)",
        "timers.0.ClockID: 1 -> (none)",
    ]
    assert audit.differences({}, {"fd.7": "/tmp/x"}) == ["fd.7: (none) -> /tmp/x"]


def test_explained_differences_are_only_what_the_restore_causes():
    same_pipe = ({"fd.3": "pipe:[123]"}, {"fd.3": "pipe:[456]"})
    assert audit.differences(*same_pipe) == []
    other_file = ({"fd.3": "pipe:[123]"}, {"fd.3": "/dev/null"})
    assert audit.differences(*other_file) != []
    lock = "1: POSIX  ADVISORY  WRITE 100 00:2d:77 0 EOF"
    renumbered = "7: POSIX  ADVISORY  WRITE 100 00:2d:99 0 EOF"
    assert audit.differences({"fdinfo.3.lock": lock}, {"fdinfo.3.lock": renumbered}) == []
    read_lock = renumbered.replace("WRITE", "READ ")
    assert audit.differences({"fdinfo.3.lock": lock}, {"fdinfo.3.lock": read_lock}) != []


def test_a_heal_frame_may_add_stack_pages_nothing_may_take_them():
    key = "smaps.7ffd0000.Anonymous"
    assert audit.differences({key: "12 kB"}, {key: "20 kB"}) == []
    assert audit.differences({key: "12 kB"}, {key: "8 kB"}) != []
    grown = f"{12 + audit.HEAL_FRAME_KB + 4} kB"
    assert audit.differences({key: "12 kB"}, {key: grown}) != []


def test_explanations_that_hold_only_in_their_circumstances():
    before, after = {"status.PPid": "100"}, {"status.PPid": "7"}
    assert audit.differences(before, after) != []
    assert audit.differences(before, after, frozenset({"pidns"})) == []
    assert audit.differences(before, after, frozenset({"root"})) == []


def test_every_explanation_gives_its_reason():
    for rule in audit.EXPLAINED:
        assert rule.reason and rule.pattern, rule
        assert rule.when in CIRCUMSTANCES, rule


# --- restores that differ from their audit ------------------------------------------------


def _limit_changed(images, pid: int):
    """The images of a dumped process whose audit says its RLIMIT_NOFILE was 7 7."""

    def mutate(decoded):
        core = decoded[f"core-{pid}.img"][0][0]
        for value in core.torpor_audit.values:
            if value.key == LIMIT_KEY:
                value.value = "7 7"
                return
        raise AssertionError(f"no {LIMIT_KEY} in the audit")

    imagecraft.rewrite(images, mutate)


def _restore(images, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [TORPOR, "restore", "-D", str(images), "-d", *args], capture_output=True, text=True,
        env=cli_env(), stdin=subprocess.DEVNULL, timeout=60, check=False,
    )  # fmt: skip


def _dumped_with_a_changed_limit(start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _limit_changed(images, w.pid)
    return w, images


def test_strict_verification_refuses_a_tree_that_differs_and_kills_it(start_workload, tmp_path):
    w, images = _dumped_with_a_changed_limit(start_workload, tmp_path)
    with child_subreaper():
        outcome = imagecraft.restore_and_judge(images, imagecraft.image_pids(images))
    assert not outcome.broken, outcome.broken
    assert outcome.status == 1, outcome.stderr
    assert "--verify=strict" in outcome.stderr and f"{LIMIT_KEY}: 7 7 ->" in outcome.stderr


def test_warn_verification_says_what_differs_and_lets_the_tree_run(start_workload, tmp_path):
    w, images = _dumped_with_a_changed_limit(start_workload, tmp_path)
    with child_subreaper():
        res = _restore(images, "--verify=warn")
        assert res.returncode == 0, res.stderr
        assert f"--verify: task {w.pid}: {LIMIT_KEY}: 7 7 -> " in res.stderr, res.stderr
        w.adopt(w.pid)
        w.signal()
        w.verdict().assert_passed()


@pytest.mark.parametrize("mode", ["warn", "strict"])
def test_images_without_an_audit_are_restored_with_a_note(start_workload, tmp_path, mode):
    """Images another tool made (CRIU's) have no audit: nothing to compare, said so."""
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)

    def mutate(decoded):
        for name, entries in decoded.items():
            if name.startswith("core-"):
                entries[0][0].ClearField("torpor_audit")

    imagecraft.rewrite(images, mutate)
    with child_subreaper():
        res = _restore(images, f"--verify={mode}")
        assert res.returncode == 0, res.stderr
        assert "tasks have no audit in the images: not verified" in res.stderr, res.stderr
        w.adopt(w.pid)
        w.signal()
        w.verdict().assert_passed()


def _vma(start: int, end: int, flags: str = "rd wr mr mw me ac", anon_kb: int = 4) -> dict:
    key = f"smaps.{start:x}"
    return {
        f"{key}.range": f"{start:x}-{end:x}", f"{key}.perms": "rw-p", f"{key}.offset": "00000000",
        f"{key}.path": "", f"{key}.VmFlags": flags, f"{key}.Size": f"{(end - start) >> 10} kB",
        f"{key}.Anonymous": f"{anon_kb} kB",
    }  # fmt: skip


def test_mappings_the_kernel_kept_apart_compare_as_the_one_the_restore_makes():
    """Two adjacent anonymous VMAs the kernel did not merge (pages from different forks)
    come back as one: no difference, unless their contents or flags differ."""
    apart = {**_vma(0x10000, 0x20000), **_vma(0x20000, 0x30000)}
    assert audit.differences(apart, _vma(0x10000, 0x30000, anon_kb=8)) == []
    assert audit.differences(apart, _vma(0x10000, 0x30000, anon_kb=4)) != []
    unlike = {**_vma(0x10000, 0x20000), **_vma(0x20000, 0x30000, flags="rd wr mr mw me nr")}
    assert audit.differences(unlike, _vma(0x10000, 0x30000, anon_kb=8)) != []


def test_pending_signals_may_be_joined_never_lost():
    before = {"status.ShdPnd": "0000000000000200"}
    assert audit.differences(before, {"status.ShdPnd": "0000000000000a00"}) == []
    assert audit.differences(before, {"status.ShdPnd": "0000000000000000"}) != []


def test_a_mask_shown_by_a_sleeping_call_is_not_the_threads():
    before, after = {"status.SigBlk": "0000000000000000"}, {"status.SigBlk": "0000000000000200"}
    assert audit.differences(before, after) != []
    assert audit.differences(before, after, frozenset({"temporary-mask"})) == []


def test_kernel_bookkeeping_and_the_other_kernels_mitigations():
    key = "smaps.1000.VmFlags"
    assert audit.differences({key: "rd wr mr mw me ac sd"}, {key: "rd wr mr mw me ac"}) == []
    assert audit.differences({key: "rd wr mr mw me ac sd"}, {key: "rd mr mw me ac"}) != []
    ssb = ({"status.Speculation_Store_Bypass": "not vulnerable"},
           {"status.Speculation_Store_Bypass": "thread force mitigated"})  # fmt: skip
    assert audit.differences(*ssb) != []
    assert audit.differences(*ssb, frozenset({"other-kernel"})) == []


SIGSUSPENDER = """
import ctypes, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
signal.signal(signal.SIGUSR1, lambda *a: None)
print("ready", flush=True)
ctypes.CDLL(None).sigsuspend(ctypes.byref(ctypes.create_string_buffer(128)))
"""


@pytest.mark.parametrize("call", ["sigsuspend", "sleep"])
def test_a_thread_asleep_with_a_mask_of_its_own_is_marked_at_dump(call):
    """A thread in sigsuspend shows the call's mask in status: the dump marks it (and only
    it), so that the mask it gets back at restore, its own, is not taken for a change."""
    from torpor.arch import X86_64
    from torpor.images import pb

    code = (
        SIGSUSPENDER
        if call == "sigsuspend"
        else 'print("ready", flush=True)\n' + ("import time; time.sleep(60)")
    )
    child = subprocess.Popen(["python3", "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        waited_in = {"sigsuspend": "130", "sleep": "230"}[call]  # clock_nanosleep
        deadline = time.monotonic() + 10
        while open(f"/proc/{child.pid}/syscall").read().split()[0] != waited_in:
            assert time.monotonic() < deadline, f"the child never slept in {call}"
            time.sleep(0.01)
        core = pb.core_pb2.CoreEntry(mtype=pb.core_pb2.CoreEntry.X86_64)
        audit.record(core, child.pid, child.pid, X86_64)
        values = audit.saved(core)
        assert (audit.TEMPORARY_MASK in values) == (call == "sigsuspend"), values
        if call == "sigsuspend":  # status shows the call's empty mask, not SIGUSR1 blocked
            assert values["status.SigBlk"] == "0000000000000000"
    finally:
        child.kill()
        child.wait()

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

import harness
import imagecraft
import pytest
from command import TORPOR, child_subreaper, cli_env

from torpor import audit

LIMIT_KEY = "limits.Max open files"
# What the restorer tells the audit about a restore (torpor.restorer), and "root".
CIRCUMSTANCES = (None, "pidns", "root", "ignore", "shell-job", "inherit-fd", "trampolines")


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


def test_strict_verification_refuses_a_tree_that_differs_and_kills_it(start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _limit_changed(images, w.pid)
    with child_subreaper():
        outcome = imagecraft.restore_and_judge(images, imagecraft.image_pids(images))
    assert not outcome.broken, outcome.broken
    assert outcome.status == 1, outcome.stderr
    assert "--verify=strict" in outcome.stderr and f"{LIMIT_KEY}: 7 7 ->" in outcome.stderr


def test_warn_verification_says_what_differs_and_lets_the_tree_run(start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _limit_changed(images, w.pid)
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

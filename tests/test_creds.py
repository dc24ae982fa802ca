"""Credentials: uids, gids, groups and capability sets come back, and what this side cannot
grant refuses the restore by name before anything is created."""

from __future__ import annotations

import os
import subprocess

import harness
import pytest

import torpor
from torpor.errors import RestoreError
from torpor.kernel import caps
from torpor.restorer import check


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _start_reduced(flavour: str, workdir, log):
    """The counter workload as uid/gid 0 with groups 4,27 and without cap_sys_admin and
    cap_net_raw in any set (bounding included)."""
    argv = [
        "setpriv",
        "--groups",
        "4,27",
        "--bounding-set",
        "-sys_admin,-net_raw",
        "--inh-caps",
        "-all",
        str(harness.binary("counter", flavour)),
    ]
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        close_fds=True,
        start_new_session=True,
    )


def test_reduced_credentials_come_back(built_workloads, flavour, tmp_path):
    log_path = tmp_path / "counter.log"
    with open(log_path, "ab") as log:
        proc = _start_reduced(flavour, tmp_path, log)
    try:
        while b"READY" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
        before = _status(proc.pid)
        pid = torpor.restore(str(harness.dump_program(proc, tmp_path)))
        after = _status(pid)
        for key in ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd"):
            assert after[key] == before[key], (key, before[key], after[key])
        assert not int(after["CapBnd"], 16) >> caps.NAMES.index("sys_admin") & 1
        os.kill(pid, 10)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_capability_this_side_lacks_refuses(start_workload, tmp_path, monkeypatch):
    w = start_workload("counter")
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    real = caps.own_sets

    def poorer(target="self"):
        sets = real(target)
        sets["CapBnd"] &= ~(1 << caps.NAMES.index("sys_time"))
        return sets

    monkeypatch.setattr(caps, "own_sets", poorer)
    refused = [f for f in check(str(images)) if f.refused]
    assert [f.topic for f in refused] == ["credentials"], refused
    with pytest.raises(RestoreError, match="cap_sys_time") as e:
        torpor.restore(str(images))
    assert str(e.value) == refused[0].message, "check -D and restore disagree"
    assert not os.path.exists(f"/proc/{pid}")


def test_a_user_process_stays_dumpable_by_its_user(built_workloads, flavour, tmp_path):
    """A process of another user is dumpable (it exec'd as that user), so that user may read
    its /proc files and trace it; the restore's change of credentials, which makes a
    process not dumpable, must not keep it that way."""
    log_path = tmp_path / "counter.log"
    as_user = ["setpriv", "--reuid", "4321", "--regid", "4321", "--clear-groups"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [*as_user, str(harness.binary("counter", flavour))], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, cwd="/", start_new_session=True,
        )  # fmt: skip
    pid = None
    try:
        while b"READY" not in log_path.read_bytes():
            assert proc.poll() is None, log_path.read_text()
        pid = torpor.restore(str(harness.dump_program(proc, tmp_path)))
        read = subprocess.run(
            [*as_user, "cat", f"/proc/{pid}/environ"], capture_output=True, check=False
        )
        assert read.returncode == 0, f"its user cannot read its environ: {read.stderr!r}"
        os.kill(pid, 10)
        _, status = os.waitpid(pid, 0)
        pid = None
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        if pid is not None:  # restored, and left by a failed check
            harness.kill_tree(pid, pid)

"""Process and thread settings (the attrs workload, restored and left running in
test_end_to_end): what this side cannot give back refuses
the restore by name (a hard limit above the restorer's, an oom_score_adj it may not lower
to), and CPUs this host lacks are dropped from an affinity with a warning."""

from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import harness
import pytest
from command import TORPOR, cli_env

from torpor.errors import RestoreError
from torpor.kernel import caps
from torpor.parts import flags, rlimits, sched


def test_hard_limit_above_the_restorers_refuses(start_workload, tmp_path):
    """Restored by a torpor whose hard RLIMIT_NOFILE is below the saved 177 and which cannot
    raise it (started without CAP_SYS_RESOURCE, whatever this root may): check -D and restore
    both refuse, naming the limit and both values."""
    w = start_workload("attrs")
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    for command in ("check", "restore"):
        done = subprocess.run(
            ["setpriv", "--bounding-set", "-sys_resource", "prlimit", "--nofile=100:100",
             TORPOR, command, "-D", str(images)],
            capture_output=True, text=True, env=cli_env(), timeout=60, check=False,
        )  # fmt: skip
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert "RLIMIT_NOFILE hard limit 177, above this side's 100" in out, out
        assert not os.path.exists(f"/proc/{pid}"), "a refused restore left the process"


@pytest.fixture
def sleeper():
    child = subprocess.Popen(["sleep", "60"])
    yield child.pid
    child.kill()
    child.wait()


def test_affinity_to_cpus_this_host_lacks(sleeper):
    here = sorted(os.sched_getaffinity(0))
    ctx = SimpleNamespace(pid=sleeper, image_pid=4321, notes=[])
    sched._restore_affinity(ctx, {here[0], 9999})
    assert os.sched_getaffinity(sleeper) == {here[0]}
    assert ctx.notes == [
        "thread 4321 was bound to CPUs this host lacks (9999): it runs on its other CPUs"
    ]
    ctx.notes.clear()
    sched._restore_affinity(ctx, {9998, 9999})
    assert os.sched_getaffinity(sleeper) >= set(here)
    assert "(9998, 9999): it runs on every CPU of this host" in ctx.notes[0]


def test_oom_score_adj_below_what_this_side_may_set(sleeper):
    ctx = SimpleNamespace(pid=sleeper, image_pid=4321)
    flags._restore_oom_score_adj(ctx, 500)
    assert open(f"/proc/{sleeper}/oom_score_adj").read().strip() == "500"
    if caps.own_sets()["CapEff"] >> rlimits.CAP_SYS_RESOURCE & 1:
        flags._restore_oom_score_adj(ctx, -500)
        assert open(f"/proc/{sleeper}/oom_score_adj").read().strip() == "-500"
    else:
        with pytest.raises(RestoreError, match="oom_score_adj -500.*CAP_SYS_RESOURCE"):
            flags._restore_oom_score_adj(ctx, -500)
    with pytest.raises(RestoreError, match="out of range"):
        flags._restore_oom_score_adj(ctx, 5000)

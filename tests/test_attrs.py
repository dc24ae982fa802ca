"""Process and thread settings (the attrs workload, restored and left running in
test_end_to_end): what this side cannot give back refuses
the restore by name (a hard limit above the restorer's, an oom_score_adj it may not lower
to), and CPUs this host lacks are dropped from an affinity with a warning."""

from __future__ import annotations

import errno
import os
import subprocess
from types import SimpleNamespace

import harness
import pytest
from command import TORPOR, cli_env

from torpor.errors import ImageError, RestoreError
from torpor.images import pb
from torpor.kernel import caps, schedattr
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


def test_utilization_clamps_are_saved_and_given_back(sleeper, monkeypatch):
    """Clamps (which this host's kernel may lack: CONFIG_UCLAMP_TASK) as sched_getattr shows
    them are saved, and set back with sched_setattr keeping policy and parameters; on a
    kernel without clamps the restore refuses, naming them."""
    shown = schedattr.SchedAttr(policy=os.SCHED_OTHER, util_min=100, util_max=900)
    monkeypatch.setattr(schedattr, "get", lambda tid: shown)
    core = pb.core_pb2.CoreEntry(mtype=1)
    sched.dump_thread(SimpleNamespace(pid=sleeper, core=core))
    thread = core.thread_core
    assert (thread.torpor_util_min, thread.torpor_util_max) == (100, 900)
    assert not thread.HasField("torpor_deadline")

    given = []
    monkeypatch.setattr(schedattr, "put", lambda tid, attr: given.append((tid, attr)))
    ctx = SimpleNamespace(pid=sleeper, image_pid=4321, core=core, notes=[])
    sched.restore_thread(ctx)
    [(tid, attr)] = given
    assert tid == sleeper and (attr.util_min, attr.util_max) == (100, 900)
    keep = schedattr.SCHED_FLAG_KEEP_POLICY | schedattr.SCHED_FLAG_KEEP_PARAMS
    clamps = schedattr.SCHED_FLAG_UTIL_CLAMP_MIN | schedattr.SCHED_FLAG_UTIL_CLAMP_MAX
    assert attr.flags == keep | clamps

    def unsupported(tid, attr):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(schedattr, "put", unsupported)
    with pytest.raises(RestoreError, match="thread 4321 its utilization clamps 100..900: this"):
        sched.restore_thread(ctx)


def test_no_clamps_saved_where_none_were_asked(sleeper):
    core = pb.core_pb2.CoreEntry(mtype=1)
    sched.dump_thread(SimpleNamespace(pid=sleeper, core=core))
    assert not core.thread_core.HasField("torpor_util_min")
    assert not core.thread_core.HasField("torpor_deadline")


def test_deadline_without_its_parameters_is_refused(sleeper):
    core = pb.core_pb2.CoreEntry(mtype=1)
    core.thread_core.sched_policy = schedattr.SCHED_DEADLINE
    ctx = SimpleNamespace(pid=sleeper, image_pid=4321, core=core, notes=[])
    with pytest.raises(ImageError, match="SCHED_DEADLINE without its parameters"):
        sched.restore_thread(ctx)

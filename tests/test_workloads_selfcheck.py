"""The workloads judge themselves correctly when nothing happens to them.

Each workload is started, signalled right after READY and must report PASS without any
checkpoint: this proves its checks compare against its own snapshot rather than against
anything a checkpoint could hide. A few negative cases prove that the checks can fail:
a workload disturbed from outside must say FAIL, and the harness must notice.
"""

from __future__ import annotations

import signal
import time

import harness
import pytest


@pytest.mark.parametrize("spec", harness.ALL_SPECS, ids=lambda s: s.id)
def test_workload_passes_without_checkpoint(spec, start_workload):
    """Start, READY, SIGUSR1: every workload passes its own checks when left alone."""
    w = start_workload(spec)
    w.wait_ready()
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def test_counter_counts(start_workload):
    """counter prints consecutive ticks from 1 while it waits."""
    w = start_workload("counter")
    w.wait_ready()
    time.sleep(0.35)
    w.signal(signal.SIGUSR1)
    v = w.verdict()
    v.assert_passed()
    ticks = harness.counter_ticks(v.log)
    assert len(ticks) >= 2, v.log
    assert ticks == list(range(1, len(ticks) + 1)), v.log


def test_changed_state_is_reported(start_workload):
    """misc notices its environment block changed behind its back; the verdict is a failure."""
    w = start_workload(harness.Spec("misc"))
    w.wait_ready()
    with open(f"/proc/{w.pid}/stat") as f:
        stat = f.read()
    env_start = int(stat[stat.rindex(")") + 2 :].split()[47])  # field 50: env_start
    with open(f"/proc/{w.pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(env_start)
        mem.write(b"X")
    w.signal(signal.SIGUSR1)
    v = w.verdict()
    assert v.status == 1, v.log
    assert any("/proc/self/environ differs" in line for line in v.failures), v.log
    with pytest.raises(harness.WorkloadError):
        v.assert_passed()


def test_early_wakeup_is_reported(start_workload):
    """A wait that ends without SIGUSR1 is a failure (signals has a SIGUSR2 handler)."""
    w = start_workload("signals")
    w.wait_ready()
    w.signal(signal.SIGUSR2)
    time.sleep(0.1)
    w.signal(signal.SIGUSR1)
    v = w.verdict()
    assert v.status == 1, v.log
    assert any("pause returned early" in line for line in v.failures), v.log

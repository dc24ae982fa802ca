"""A relative sleep interrupted by the checkpoint goes on for the time it had left after the
restore (the sleeper workload measures it on its own monotonic clock), for clock_nanosleep
and nanosleep, 64-bit and 32-bit."""

from __future__ import annotations

import time

import harness
import pytest

import torpor


@pytest.mark.parametrize("mode", [None, "nanosleep"], ids=["clock_nanosleep", "nanosleep"])
def test_sleep_goes_on_for_the_time_left(mode, start_workload, tmp_path):
    w = start_workload("sleeper", mode)
    w.wait_ready()
    time.sleep(1.5)  # a sleep started over would take 1.5 + 3 s in all
    images = harness.dump_killed(w, tmp_path)
    time.sleep(0.5)  # frozen time, which the sleep must not count
    w.adopt(torpor.restore(str(images)))
    time.sleep(2.0)
    w.signal()
    w.verdict().assert_passed()

"""A call sleeping with a timeout, interrupted by the checkpoint, ends when it would have after
the restore, not a whole timeout later (the sleeper workload measures it on its own
monotonic clock, which the restore carries on from the dump), 64-bit and 32-bit:

- relative sleeps with a remainder buffer (clock_nanosleep, nanosleep) go on for the time
  they had left;
- calls that write the time left back (ppoll, select, pselect6) and calls with an absolute
  deadline (FUTEX_WAIT_BITSET, clock_nanosleep TIMER_ABSTIME) are re-issued as they are;
- calls whose time left the kernel keeps to itself (poll, epoll_wait, epoll_pwait,
  epoll_pwait2, futex FUTEX_WAIT, rt_sigtimedwait, semtimedop, sleeps without a remainder)
  go on for the time left read from their timer at the dump (torpor.parts.timeouts), and
  return what they return on timeout;
- so do two threads of a process, each in its own call;
- such a call whose time left is unknown (its thread was stopped before the dump) returns
  EINTR after the restore;
- a time left saved for a call that has no such timeout is refused in one line.
"""

from __future__ import annotations

import signal
import time

import harness
import imagecraft
import pytest

import torpor
from torpor.errors import TorporError

DUMPED_AT = 2.0  # s into the workload's 6 s timeout: started over, the call would end 8 s in


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


TIMED = [
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "futex",
    "futex-time64",
    "futex-bitset",
    "sigtimedwait",
    "sigtimedwait-time64",
    "semtimedop",
    "semtimedop-time64",
    "nanosleep-null",
    "clock_nanosleep-null",
    "clock_nanosleep-time64-null",
    "clock_nanosleep-abs",
    "threads",  # poll in the main thread, futex in a second one
]


@pytest.mark.parametrize("mode", TIMED)
def test_timeout_ends_at_its_deadline(mode, start_workload, tmp_path):
    w = start_workload("sleeper", mode)
    w.wait_ready()
    time.sleep(DUMPED_AT)  # the point: a measured part of the timeout has gone
    images = harness.dump_killed(w, tmp_path)
    w.adopt(torpor.restore(str(images)))
    w.verdict().assert_passed()  # the workload judges when its call returned, and what


def test_time_left_unknown_returns_eintr(start_workload, tmp_path):
    w = start_workload("sleeper", "poll-stopped")
    w.wait_ready()
    time.sleep(DUMPED_AT)
    w.signal(signal.SIGSTOP)  # its timer is gone before torpor sees the thread
    while harness.proc_state(w.pid)[0] != "T":
        time.sleep(0.01)
    images = harness.dump_killed(w, tmp_path)
    w.adopt(torpor.restore(str(images)))
    w.signal(signal.SIGCONT)  # it comes back stopped, as it was dumped
    w.verdict().assert_passed()


def test_a_time_left_for_another_call_is_refused(start_workload, tmp_path):
    w = start_workload("sleeper", "poll")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)

    def craft(decoded):
        info = decoded[f"core-{w.pid}.img"][0][0].thread_info
        assert info.HasField("torpor_time_left"), "the dump saved no time left"
        info.torpor_time_left.nr = 39 if w.flavour == "64" else 20  # getpid

    imagecraft.rewrite(images, craft)
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "\n" not in message and "not a timed call" in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"

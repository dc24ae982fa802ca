"""Interval timers (alarm, setitimer) and POSIX timers come back from a checkpoint and work.

The timers workload checks them by using them (see tests/workloads/timers.c): each fires
with its signal, sival and ID, on time, counted from the restore and not from the dump, and
each timer_t still names its timer. These tests add a process that stays frozen for a while
between dump and restore and the older kernels' way of getting timer IDs (a dump that
leaves the original running is in test_end_to_end).
"""

from __future__ import annotations

import re
import time

import harness

import torpor
from torpor.images import ImageDir
from torpor.parts import timers as timers_part

FROZEN_SECONDS = 3.0  # longer than "fires at once" and "fires late" are apart from on time


def _fired_after(log: str) -> dict[str, float]:
    """What the workload said: {timer: seconds from SIGUSR1 to its firing}."""
    return {m[1]: float(m[2]) for m in re.finditer(r"^(.+) fired ([\d.]+) s after", log, re.M)}


def test_timers_saved(start_workload, tmp_path):
    """The images hold every timer: the armed interval timers, and each POSIX timer with
    its ID, clock, notification and times (the deleted one leaving its ID free)."""
    w = start_workload("timers")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    saved = ImageDir(images).read_one(f"core-{w.pid}.img").tc.timers
    assert saved.real.vsec in (3, 2) and not saved.real.isec  # alarm(4), just armed
    assert (saved.prof.isec, saved.prof.iusec) == (0, 100000) and saved.prof.vusec
    assert not (saved.virt.vsec or saved.virt.vusec)
    posix = {t.it_id: t for t in saved.posix}
    assert sorted(posix) == [0, 1, 3, 4, 5, 6], posix
    periodic, thread, disarmed, monotonic, none = (posix[i] for i in (0, 1, 3, 4, 5))
    big = w.flavour == "64"
    assert periodic.sival_ptr == (0x1122334455667788 if big else 0x55667788)
    assert (periodic.clock_id, periodic.it_sigev_notify, periodic.insec) == (0, 0, 250000000)
    assert (thread.clock_id, thread.it_sigev_notify) == (7, 4)  # CLOCK_BOOTTIME, THREAD_ID
    assert thread.notify_thread_id in _saved_tids(w.pid, images)
    assert not (disarmed.vsec or disarmed.vnsec or disarmed.isec or disarmed.insec)
    assert monotonic.clock_id == 1 and 2 <= monotonic.vsec <= 3
    assert (none.it_sigev_notify, none.isec) == (1, 7)


def _saved_tids(pid: int, images) -> list[int]:
    """The TIDs the images hold for process `pid`."""
    entry = next(e for e in ImageDir(images).read("pstree.img") if e.pid == pid)
    return list(entry.threads)


def test_timers_after_frozen_wait(start_workload, tmp_path):
    """Restored after the images waited FROZEN_SECONDS, every timer fires as much later as
    it had left at the dump: the wait neither uses up its time nor adds to it."""
    w = start_workload("timers")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    time.sleep(FROZEN_SECONDS)
    w.adopt(torpor.restore(str(images)))
    w.signal()
    verdict = w.verdict()
    verdict.assert_passed()
    fired = _fired_after(verdict.log)
    assert set(fired) == {"the alarm", "the monotonic timer"}, verdict.log
    for name, after in fired.items():  # 4 s timers, dumped right after READY
        assert 2.5 < after < 4.5, f"{name} fired {after} s after the restore\n{verdict.log}"


def test_timer_ids_in_order(start_workload, tmp_path, monkeypatch):
    """Where the kernel cannot create a timer with a given ID (before Linux 6.15), timers are
    created in ID order until each saved ID comes, and the deleted one's ID stays free."""
    monkeypatch.setattr(timers_part, "force_in_order", True)
    w = start_workload("timers")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()

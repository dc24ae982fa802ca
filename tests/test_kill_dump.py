"""A dump killed at any instant leaves its target as it was.

torpor dumps from a child process that SIGKILLs itself at the k-th ptrace resume of a task
(the moment a task runs an injected call, or is let go) or the k-th register write (the
moment a task is pointed at one), for k spread over the whole dump; the kernel then lets the
tree go, as it does when a real `torpor dump` is killed. Every target must then still pass
its own checks (registers and the whole xstate, signal mask and pending signals, threads,
children) and have no mapping torpor made and no signal blocked that it did not block.
"""

from __future__ import annotations

import os
import signal
import time

import harness
import pytest

import torpor
from torpor.kernel import ptrace

CASES = [
    (harness.Spec("regs"), "cont_syscall"),
    (harness.Spec("regs"), "set_regs"),
    (harness.Spec("signals"), "cont_syscall"),
    (harness.Spec("threads"), "cont_syscall"),
    (harness.Spec("tree", "mixed"), "cont_syscall"),
]
POINTS = 14  # kills per case, spread from the first resume of a task to the last


def _dump_counting(pid: int, images, hook: str, die_at: int = 0) -> tuple[int, int]:
    """Dump `pid` from a child counting the calls of ptrace.`hook`, and killing itself
    (SIGKILL) at call `die_at` if given: (the child's exit status, the calls it made)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        try:
            original = getattr(ptrace, hook)
            seen = [0]

            def counting(*args):
                seen[0] += 1
                if seen[0] == die_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(*args)

            setattr(ptrace, hook, counting)
            torpor.dump(pid, str(images), leave_running=True)
            os.write(w, str(seen[0]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        calls = f.read()
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status), int(calls or 0)


def _tasks(pid: int) -> list[int]:
    found, queue = [], [pid]
    while queue:
        p = queue.pop()
        tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        found += tids
        for t in tids:
            with open(f"/proc/{p}/task/{t}/children") as f:
                queue += [int(c) for c in f.read().split()]
    return sorted(found)


def _running(pids: list[int]) -> bool:
    """Whether a task is running rather than waiting in a call (/proc/PID/syscall)."""
    for pid in pids:
        with open(f"/proc/{pid}/syscall") as f:
            if f.read().startswith("running"):
                return True
    return False


def _state(pids: list[int]) -> list[tuple[str, ...]]:
    """Per task: its tracer, blocked signals and (per process) mappings."""
    out = []
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        with open(f"/proc/{pid}/maps") as f:
            maps = tuple(" ".join(line.split()[:1] + line.split()[5:]) for line in f)
        out.append((fields["TracerPid"].strip(), fields["SigBlk"].strip(), *maps))
    return out


@pytest.mark.parametrize("spec,hook", CASES, ids=lambda c: getattr(c, "id", c))
def test_killed_dump_leaves_the_target_intact(spec, hook, start_workload, tmp_path):
    w = start_workload(spec)
    w.wait_ready()
    status, calls = (
        _dump_counting(w.pid, tmp_path / "whole", hook)
        if ((tmp_path / "whole").mkdir() is None)
        else (0, 0)
    )
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()
    assert status == 0 and calls > POINTS, f"the whole dump made {calls} calls of {hook}"
    landed = 0
    for k in sorted({1 + i * (calls - 1) // (POINTS - 1) for i in range(POINTS)}):
        w = start_workload(spec)
        w.wait_ready()
        tasks = _tasks(w.pid)
        before = _state(tasks)
        images = tmp_path / f"images-{k}"
        images.mkdir()
        status, _ = _dump_counting(w.pid, images, hook, die_at=k)
        assert status in (0, -signal.SIGKILL), f"the dumping child ended with {status}"
        landed += status == -signal.SIGKILL  # 0: this dump made fewer calls, and finished
        deadline = time.monotonic() + 5
        while _state(tasks) != before and time.monotonic() < deadline:
            time.sleep(0.01)  # the tasks heal themselves as soon as they run
        assert _state(tasks) == before, f"killed at {hook} #{k} of {calls}: the tree changed"
        # A task that healed re-issues the call it was in after rt_sigreturn gave back its
        # mask: a signal in the microseconds between would be handled before the call (as
        # the README says). Signal once every task is back in a call.
        while _running(tasks) and time.monotonic() < deadline + 5:
            time.sleep(0.01)
        w.signal(signal.SIGUSR1)
        v = w.verdict()
        assert v.status == 0 and v.passed_line and not v.failures, (
            f"killed at {hook} #{k} of {calls}:\n{v.log}"
        )
    assert landed >= POINTS - 2, f"only {landed} of {POINTS} kills landed inside a dump"

"""How each thread is scheduled: policy and real-time priority (SCHED_DEADLINE with its
runtime, deadline and period), nice value, utilization clamps, the CPUs it may run on, its
I/O priority and its timer slack.

Policy, priority and nice go in CRIU's thread-core fields; the rest in torpor's own. A
SCHED_DEADLINE thread is given its policy last, once every thread exists: such a thread
cannot start another. All of it is read and set by torpor itself through calls on another
task (sched_*, setpriority, ioprio_*, /proc/TID/timerslack_ns), which root may make on any
thread. A thread allowed on CPUs this host does not have is restricted to those it has, and
the restore says so; none of them at all leaves it on every CPU here, said too.
"""

import errno
import os

from torpor.context import DumpContext, RestoreContext
from torpor.errors import ImageError, RestoreError
from torpor.images import pb
from torpor.kernel import libc, schedattr

SCHED_DEADLINE = schedattr.SCHED_DEADLINE
SCHED_RESET_ON_FORK = 0x40000000
IOPRIO_WHO_PROCESS = 1
MAX_RT_PRIO = 99  # the highest sched_priority of any policy
POLICIES = {
    os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR",
    os.SCHED_BATCH: "SCHED_BATCH", os.SCHED_IDLE: "SCHED_IDLE",
}  # fmt: skip


def _slack_path(tid: int) -> str:
    return f"/proc/{tid}/timerslack_ns"


def _slack(tid: int) -> int:
    with open(_slack_path(tid)) as f:
        return int(f.read())


def dump_thread(ctx: DumpContext) -> None:
    tid, thread = ctx.pid, ctx.core.thread_core
    attr = schedattr.get(tid)  # policy, priority, nice and what only it shows, at once
    if attr.policy == SCHED_DEADLINE:
        thread.torpor_deadline.CopyFrom(
            pb.core_pb2.TorporDeadline(
                runtime=attr.runtime, deadline=attr.deadline, period=attr.period,
                flags=attr.flags & schedattr.DEADLINE_FLAGS,
            )
        )  # fmt: skip
    if (attr.util_min, attr.util_max) not in schedattr.NO_CLAMPS:
        thread.torpor_util_min, thread.torpor_util_max = attr.util_min, attr.util_max
    # as sched_getscheduler(2) shows it: with SCHED_RESET_ON_FORK or-ed in
    reset = SCHED_RESET_ON_FORK if attr.flags & schedattr.SCHED_FLAG_RESET_ON_FORK else 0
    thread.sched_policy = attr.policy | reset
    thread.sched_prio = attr.priority
    thread.sched_nice = attr.nice
    thread.torpor_cpus.extend(sorted(os.sched_getaffinity(tid)))
    thread.torpor_ioprio = libc.syscall(libc.SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, tid)
    thread.torpor_timer_slack_ns = _slack(tid)


def restore_thread(ctx: RestoreContext) -> None:
    """Give the restored thread its scheduling back; a note when its CPUs are missing here."""
    tid, thread = ctx.pid, ctx.core.thread_core
    deadline = thread.HasField("sched_policy") and (
        thread.sched_policy & ~SCHED_RESET_ON_FORK == SCHED_DEADLINE
    )
    if deadline != thread.HasField("torpor_deadline"):
        raise ImageError(f"core-{ctx.image_pid}.img: SCHED_DEADLINE without its parameters")
    if thread.HasField("sched_policy") and not deadline:
        policy = thread.sched_policy
        if policy & ~SCHED_RESET_ON_FORK not in POLICIES:
            raise ImageError(f"core-{ctx.image_pid}.img: scheduling policy {policy}")
        if not 0 <= thread.sched_prio <= MAX_RT_PRIO:
            raise ImageError(f"core-{ctx.image_pid}.img: scheduling priority {thread.sched_prio}")
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(thread.sched_prio))
        except OSError as e:
            raise RestoreError(
                f"cannot give thread {ctx.image_pid} {POLICIES[policy & ~SCHED_RESET_ON_FORK]} "
                f"priority {thread.sched_prio}: {e.strerror}"
            ) from None
    if thread.HasField("sched_nice"):
        if not -20 <= thread.sched_nice <= 19:
            raise ImageError(f"core-{ctx.image_pid}.img: nice value {thread.sched_nice}")
        os.setpriority(os.PRIO_PROCESS, tid, thread.sched_nice)
    if thread.torpor_cpus:
        _restore_affinity(ctx, set(thread.torpor_cpus))
    # Both only where they differ from what the thread inherited: an I/O priority never set
    # follows the nice value, one set explicitly no longer does.
    ioprio = libc.syscall(libc.SYS_IOPRIO_GET, IOPRIO_WHO_PROCESS, tid)
    if thread.HasField("torpor_ioprio") and thread.torpor_ioprio != ioprio:
        libc.syscall(libc.SYS_IOPRIO_SET, IOPRIO_WHO_PROCESS, tid, thread.torpor_ioprio)
    if thread.torpor_timer_slack_ns and _slack(tid) != thread.torpor_timer_slack_ns:
        with open(_slack_path(tid), "w") as f:
            f.write(str(thread.torpor_timer_slack_ns))
    if thread.HasField("torpor_util_min") or thread.HasField("torpor_util_max"):
        _restore_clamps(ctx, thread.torpor_util_min, thread.torpor_util_max)
    if deadline:
        _restore_deadline(ctx, thread.torpor_deadline)


def _restore_clamps(ctx: RestoreContext, low: int, high: int) -> None:
    if not 0 <= low <= high <= schedattr.UCLAMP_MAX:
        raise ImageError(f"core-{ctx.image_pid}.img: utilization clamps {low}..{high}")
    attr = schedattr.SchedAttr(
        flags=schedattr.SCHED_FLAG_KEEP_POLICY | schedattr.SCHED_FLAG_KEEP_PARAMS
        | schedattr.SCHED_FLAG_UTIL_CLAMP_MIN | schedattr.SCHED_FLAG_UTIL_CLAMP_MAX,
        util_min=low, util_max=high,
    )  # fmt: skip
    try:
        schedattr.put(ctx.pid, attr)
    except OSError as e:
        why = "this kernel has none" if e.errno == errno.EOPNOTSUPP else e.strerror
        raise RestoreError(
            f"cannot give thread {ctx.image_pid} its utilization clamps {low}..{high}: {why}"
        ) from None


def _restore_deadline(ctx: RestoreContext, saved) -> None:
    attr = schedattr.SchedAttr(
        policy=SCHED_DEADLINE, flags=saved.flags & schedattr.DEADLINE_FLAGS,
        runtime=saved.runtime, deadline=saved.deadline, period=saved.period,
    )  # fmt: skip
    try:
        schedattr.put(ctx.pid, attr)
    except OSError as e:
        raise RestoreError(
            f"cannot give thread {ctx.image_pid} SCHED_DEADLINE (runtime {saved.runtime} ns, "
            f"deadline {saved.deadline} ns, period {saved.period} ns): {e.strerror}"
        ) from None


def _restore_affinity(ctx: RestoreContext, saved: set[int]) -> None:
    here = os.sched_getaffinity(0) | _online_cpus()
    usable = saved & here
    if usable != saved:
        missing = ", ".join(map(str, sorted(saved - here)))
        where = "its other CPUs" if usable else "every CPU of this host"
        ctx.notes.append(
            f"thread {ctx.image_pid} was bound to CPUs this host lacks ({missing}): "
            f"it runs on {where}"
        )
    os.sched_setaffinity(ctx.pid, usable or here)


def _online_cpus() -> set[int]:
    """The CPUs online on this host (from sysfs: torpor itself may be bound to fewer)."""
    cpus: set[int] = set()
    with open("/sys/devices/system/cpu/online") as f:
        for part in f.read().strip().split(","):
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return cpus

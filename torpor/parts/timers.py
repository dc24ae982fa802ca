"""Timers: the interval timers of a process (setitimer, alarm) and its POSIX timers
(timer_create), in CRIU's TaskTimersEntry of the main thread's core image.

Each timer is saved with its time left and its interval, read by injected getitimer and
timer_gettime, and armed again relative to the moment the restore arms it: a timer with 5 s
left when the dump read it fires 5 s after the restore, however long the images waited and
however long the process was frozen. A relative time means the same in every time
namespace, so CLOCK_MONOTONIC and CLOCK_BOOTTIME timers carry on in the restored one just as
those clocks do (see torpor.parts.clocks). A CLOCK_REALTIME timer armed with TIMER_ABSTIME
cannot be told from a relative one (the kernel shows neither the flag nor the absolute
expiry), so it too keeps its remaining relative time: restored later than it was dumped, it
fires that much later than the wall-clock time it was set for.

A POSIX timer's ID is the program's timer_t and must not change. Since Linux 6.15 a restorer
may ask for an ID (with PR_TIMER_CREATE_RESTORE_IDS on, timer_create reads the wanted ID from
its timer_t argument); older kernels hand IDs out in increasing order from a per-process
counter that starts at 0 in a new process, so timers are created in ID order and those
that come out below the wanted ID deleted again, until it comes.

The overrun count (timer_getoverrun) is saved but cannot be set again: it describes the
last signal delivered. A timer's signal still pending at the dump is saved and queued again
by torpor.parts.signals with its siginfo as queued, whose overrun count is 0 (the kernel
counts a pending signal's overruns only as it delivers it); the restored timer, armed anew,
queues its own signal at its next expiry and counts later expiries as its overruns. So the
process gets one signal more than it would have, and the overruns until the dump are lost.
A timer on
CLOCK_THREAD_CPUTIME_ID counts the CPU time of the thread that created it, which the kernel
does not show: a restored one counts the main thread's.

Every call is a 64-bit one, for ia32 programs too: the timers are the process's, and the
kernel keeps the same sigevent whichever ABI created a timer (an ia32 program's sival is
its 32-bit value, zero-extended).
"""

import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import procfs

ITIMERS = (("real", 0), ("virt", 1), ("prof", 2))  # ITIMER_REAL (alarm), _VIRTUAL, _PROF
TIMEVALS = "<4q"  # struct itimerval: interval, value; each seconds and microseconds
TIMESPECS = "<4q"  # struct __kernel_itimerspec: interval, value; seconds and nanoseconds
SIGEVENT = "<Qiii44x"  # struct sigevent: value, signo, notify, thread id, padding to 64
PR_TIMER_CREATE_RESTORE_IDS = 77
RESTORE_IDS_OFF, RESTORE_IDS_ON = 0, 1
# Without PR_TIMER_CREATE_RESTORE_IDS, each ID skipped costs a timer_create and a
# timer_delete (about 0.1 ms); a wider gap than this is refused rather than waited for.
MAX_SKIPPED_IDS = 1 << 18


def dump(ctx: DumpContext) -> None:
    """Every interval timer and every POSIX timer, armed or not, with its time left."""
    timers = ctx.core.tc.timers
    task = ctx.task
    for name, which in ITIMERS:
        size = struct.calcsize(TIMEVALS)
        out = task.reserve(size)
        task.call(X86_64, "getitimer", which, out)
        isec, iusec, vsec, vusec = struct.unpack(TIMEVALS, task.read(out, size))
        getattr(timers, name).CopyFrom(
            pb.timer_pb2.ItimerEntry(isec=isec, iusec=iusec, vsec=vsec, vusec=vusec)
        )
    for timer in procfs.read_posix_timers(ctx.pid):
        timers.posix.append(_dump_posix(ctx, timer))


def _dump_posix(ctx: DumpContext, timer: procfs.PosixTimer):
    """One POSIX timer's entry: what /proc shows of it, and its times and overrun count."""
    task = ctx.task
    entry = pb.timer_pb2.PosixTimerEntry(
        it_id=timer.id,
        clock_id=timer.clock & 0xFFFFFFFF,
        si_signo=timer.signo,
        it_sigev_notify=timer.notify,
        sival_ptr=timer.sival,
    )
    if timer.notify & procfs.SIGEV_THREAD_ID:
        if not timer.target or not procfs.proc(ctx.pid, "task", str(timer.target)).exists():
            raise UnsupportedError(
                f"process {ctx.pid} has POSIX timer {timer.id} aimed at a thread that has "
                "exited; such a timer cannot be restored"
            )
        entry.notify_thread_id = timer.target
    size = struct.calcsize(TIMESPECS)
    out = task.reserve(size)
    task.call(X86_64, "timer_gettime", timer.id, out)
    entry.isec, entry.insec, entry.vsec, entry.vnsec = struct.unpack(
        TIMESPECS, task.read(out, size)
    )
    entry.overrun = task.call(X86_64, "timer_getoverrun", timer.id)
    return entry


def restore(ctx: RestoreContext) -> None:
    """Arm the saved interval timers and create every saved POSIX timer with its own ID,
    armed as it was. Needs the process's threads in place (a timer may signal one of them);
    the new process has no timers of its own."""
    tc = ctx.core.tc
    if not tc.HasField("timers"):
        return
    task = ctx.task
    for name, which in ITIMERS:
        entry = getattr(tc.timers, name)
        if entry.vsec or entry.vusec:
            value = task.put(
                struct.pack(TIMEVALS, entry.isec, entry.iusec, entry.vsec, entry.vusec)
            )
            task.call(X86_64, "setitimer", which, value, 0)
    entries = sorted(tc.timers.posix, key=lambda e: e.it_id)
    if not entries:
        return
    exact = _exact_ids(ctx, RESTORE_IDS_ON)
    for entry in entries:
        timer_id = _create_exact(ctx, entry) if exact else _create_in_order(ctx, entry)
        if entry.vsec or entry.vnsec:
            spec = struct.pack(TIMESPECS, entry.isec, entry.insec, entry.vsec, entry.vnsec)
            task.call(X86_64, "timer_settime", timer_id, 0, task.put(spec), 0)
    if exact:
        _exact_ids(ctx, RESTORE_IDS_OFF)


# True: create timers in ID order even where the kernel can give an ID (the way of kernels
# before 6.15, which tests can so try on any kernel).
force_in_order: bool = False


def _exact_ids(ctx: RestoreContext, mode: int) -> bool:
    """Switch the process's exact timer ID mode; False where the kernel has none."""
    if force_in_order:
        return False
    result = ctx.task.syscall(X86_64, "prctl", PR_TIMER_CREATE_RESTORE_IDS, mode, 0, 0, 0)
    return result == 0


def _create(ctx: RestoreContext, entry, wanted: int) -> int:
    """timer_create with the saved clock and sigevent; the ID the kernel gave."""
    task = ctx.task
    clock = entry.clock_id - (1 << 32) if entry.clock_id >= 1 << 31 else entry.clock_id
    event = struct.pack(
        SIGEVENT, entry.sival_ptr, entry.si_signo, entry.it_sigev_notify, entry.notify_thread_id
    )
    sev, out = task.put(event), task.put(struct.pack("<i", wanted))
    try:
        task.call(X86_64, "timer_create", clock, sev, out)
    except OSError as e:
        raise RestoreError(
            f"process {ctx.image_pid}: cannot create POSIX timer {entry.it_id} "
            f"(clock {clock}): {e.strerror}"
        ) from None
    return struct.unpack("<i", task.read(out, 4))[0]


def _create_exact(ctx: RestoreContext, entry) -> int:
    """Create the timer with its saved ID, in the exact ID mode."""
    got = _create(ctx, entry, entry.it_id)
    if got != entry.it_id:
        raise RestoreError(f"process {ctx.image_pid}: POSIX timer {entry.it_id} came back as {got}")
    return got


def _create_in_order(ctx: RestoreContext, entry) -> int:
    """Create timers until the kernel's counter reaches the saved ID, keeping that one."""
    wanted = entry.it_id
    got = _create(ctx, entry, wanted)
    if got < wanted and wanted - got > MAX_SKIPPED_IDS:
        raise RestoreError(
            f"process {ctx.image_pid}: POSIX timer {wanted} would take creating "
            f"{wanted - got} timers on this kernel, which cannot create a timer with a "
            "given ID (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15)"
        )
    while got < wanted:
        ctx.task.call(X86_64, "timer_delete", got)
        got = _create(ctx, entry, wanted)
    if got != wanted:
        raise RestoreError(
            f"process {ctx.image_pid}: cannot give POSIX timer {wanted} its ID on this "
            f"kernel, which handed out {got}"
        )
    return got


def image_problem(core) -> str | None:
    """What makes a saved timer impossible: a time beyond a time_t or with a fraction of a
    second that is not one, an ID, signal or notification a C int cannot hold; None if
    nothing."""
    tc = core.tc
    if not tc.HasField("timers"):
        return None
    checks = [
        (f"interval timer {name}", getattr(tc.timers, name), ("isec", "iusec", "vsec", "vusec"))
        for name, _ in ITIMERS
    ]
    checks += [
        (f"POSIX timer {t.it_id}", t, ("isec", "insec", "vsec", "vnsec")) for t in tc.timers.posix
    ]
    for what, entry, (isec, ifrac, vsec, vfrac) in checks:
        unit = 10**6 if ifrac.endswith("usec") else 10**9
        seconds = (getattr(entry, isec), getattr(entry, vsec))
        fractions = (getattr(entry, ifrac), getattr(entry, vfrac))
        if max(seconds) >= 1 << 63 or max(fractions) >= unit:
            return f"{what}: a time no timer can have"
    for t in tc.timers.posix:
        if max(t.it_id, t.si_signo, t.it_sigev_notify) >= 1 << 31:
            return f"POSIX timer {t.it_id}: an ID, signal or notification beyond a C int"
    return None

"""Relative timeouts: a call the dump interrupted goes on for the time it had left.

A thread dumped while it sleeps in a call with a timeout is restored re-issuing that call
(parts.regs). Where the call's time left is visible, that is enough: select, pselect6 and
ppoll write it back into their timeout before they return -ERESTARTNOHAND, a nanosleep or
clock_nanosleep with a remainder buffer writes it there (parts.regs sends the sleep for it),
and calls with an absolute deadline (FUTEX_WAIT_BITSET, clock_nanosleep with TIMER_ABSTIME;
mq_timedreceive and mq_timedsend too, on CLOCK_REALTIME) end when they would have: the
monotonic clock carries on from its dumped value in the restore's time namespace
(parts.clocks), the real-time clock is the wall's. The calls of arch's `timed_calls` keep
the time left to themselves:

- poll, futex FUTEX_WAIT, and nanosleep/clock_nanosleep without a remainder buffer return
  -ERESTART_RESTARTBLOCK: the deadline is in the task's restart_block, which restart_syscall
  would use and a restore cannot recreate. Re-issued, each would wait its whole timeout again.
- epoll_wait, epoll_pwait, epoll_pwait2, rt_sigtimedwait and semtimedop fail with EINTR
  whenever the task stops (ptrace, SIGSTOP): the program would see EINTR.

(io_getevents and io_pgetevents would be of these, but an AIO context refuses the dump. The
timeout of recvmmsg bounds only the gathering after a first datagram, which an interrupted
call has not received, and is no timer: the call is re-issued whole, as the kernel restarts
it after a signal. A socket's SO_RCVTIMEO is a timer-wheel timeout that timer_list does not
show: a blocking call with one fails with EINTR when the task stops, before torpor sees it.)

Nothing in /proc says when a call began. What is seen is the timer it sleeps on: every one of
them sleeps on an hrtimer_sleeper whose deadline /proc/timer_list shows (root only), but
without naming its task (kernel.timerlist), and it is cancelled when the task leaves its call.
So the freezer reads the list just before it stops a thread that /proc/PID/syscall shows
blocked in such a call, and again just after: the sleeper that vanished meanwhile was that
thread's, and its deadline minus the stop's instant is the time left. The reading is trusted
only if the thread did nothing else between the two (its voluntary context switches went up
by exactly the one of the stop) and exactly one vanished sleeper had a deadline still ahead,
no further than the call's own timeout; when several did (on a busy host, other tasks' short
waits end early at any instant), only the one of them queued already when the freeze began, a
moment earlier, is (Baseline).

The image then holds the call's EINTR as its registers (what CRIU would restore, and CRIU's
own choice for calls with restart state) and, in ThreadInfoX86.torpor_time_left, the call and
its time left: torpor's restore re-issues it with that time as its timeout, frozen time not
counted (as for a sleep's remainder). An int of milliseconds is set in its register (rounded
up); a timespec is written below the thread's stack pointer, past the red zone, where a signal
frame would go, and the timeout argument points at it (the kernel reads it when the call
begins; only a call re-issued after a stop reads it again, and no handler has run then).
The thread is let go as if the call had just been interrupted, for the kernel to re-issue it
on the way out (RemoteTask.restart_call): entered straight from a ptrace stop, epoll_wait and
semtimedop would fail with EINTR at once.
When the time left is unknown (the list is unreadable without root, the thread was stopped
already, another sleeper vanished at the same moment), the call returns EINTR after the
restore, which its contract allows: it never waits its whole timeout again.
"""

import math
import struct
import time

from torpor.arch import ABIS, Abi
from torpor.arch.abi import (
    EINTR,
    ERESTART_RESTARTBLOCK,
    ERESTARTNOHAND,
    ERESTARTNOINTR,
    ERESTARTSYS,
)
from torpor.context import RestoreContext, log
from torpor.errors import ImageError
from torpor.images import pb
from torpor.kernel import ptrace, timerlist
from torpor.kernel.procfs import proc, read_maps, read_status
from torpor.remote import RemoteError, signed

INTERRUPTED = (EINTR, ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK)
NSEC = 1_000_000_000
RED_ZONE = 128  # x86_64's; ia32 has none, and the same room costs nothing there
TIMESPEC = {"ts32": "<ii", "ts64": "<qq"}
MAX_MS = MAX_TIME32 = (1 << 31) - 1


# --- freezing: the timer a thread sleeps on ---------------------------------------------------


def _voluntary_switches(tid: int) -> int | None:
    try:
        return int(read_status(tid)["voluntary_ctxt_switches"])
    except (OSError, KeyError, ValueError):
        return None


def _blocked_in_timed_call(tid: int) -> bool:
    """Whether /proc/TID/syscall shows the thread blocked in a call of either ABI's
    timed_calls, with a timeout (the thread's ABI is not known before it is stopped)."""
    try:
        fields = proc(tid, "syscall").read_text().split()
        nr, args = int(fields[0]), [int(a, 16) for a in fields[1:7]]
    except (OSError, ValueError, IndexError):
        return False  # running, gone, or not in a call ("-1 sp pc" has no arguments)
    for abi in ABIS:
        call = abi.timed_calls.get(nr)
        if call is not None and len(args) == 6:
            own = [a & ((1 << abi.bits) - 1) for a in args]
            timeout = own[call.timeout]
            if call.kind == "ms":
                timeout = timeout & 0xFFFFFFFF if timeout & 0xFFFFFFFF < 1 << 31 else 0  # an int
            if call.applies(own) and timeout:
                return True
    return False


class Baseline:
    """The sleepers queued before the freeze stopped anything. A sleeper a stop may have
    cancelled counts only if it was queued, with the same deadline, at least SETTLED
    seconds before the thread was seen blocked: the many short waits other tasks arm and
    cancel all the time (a Python thread waiting for its GIL, an event loop woken early)
    then do not pass for the stopped thread's."""

    SETTLED = 0.05

    def __init__(self):
        self.taken = time.monotonic()
        self.timers = timerlist.read()

    def settled(self) -> timerlist.TimerList | None:
        """The list, once it is SETTLED old (waiting for that the first time only)."""
        wait = self.taken + self.SETTLED - time.monotonic()
        if self.timers is not None and wait > 0:
            time.sleep(wait)
        return self.timers


class Watch:
    """The hrtimer sleepers queued just before a thread blocked in a timed call is stopped
    (`before`), to see which of them its stop cancelled (`left`)."""

    def __init__(
        self, tid: int, switches: int, timers: dict[str, timerlist.Sleeper], lasting: set[str]
    ):
        self.tid, self.switches, self.timers, self.lasting = tid, switches, timers, lasting

    @classmethod
    def before(cls, tid: int, baseline: Baseline) -> "Watch | None":
        """A watch over thread `tid`, about to be stopped; None unless it blocks in a call of
        either ABI's timed_calls with a timeout and the timer list can be read."""
        if not _blocked_in_timed_call(tid):
            return None
        old = baseline.settled()
        switches = _voluntary_switches(tid)
        now = timerlist.read() if old is not None and switches is not None else None
        if now is None:
            return None
        lasting = {a for a, s in now.sleepers.items() if old.sleepers.get(a) == s}
        return cls(tid, switches, dict(now.sleepers), lasting)

    def left(self) -> tuple[list[int], list[int]]:
        """Once the thread is stopped: nanoseconds left to the deadline of each sleeper its
        stop may have cancelled, and of those among them that were lasting (queued already
        when the freeze began); both empty when the thread did anything but stop meanwhile."""
        after = timerlist.read()
        if after is None or _voluntary_switches(self.tid) != self.switches + 1:
            return [], []
        gone = [(a, after.left(s)) for a, s in self.timers.items() if a not in after.sleepers]
        every = [n for _, n in gone if n > 0]
        return every, [n for a, n in gone if n > 0 and a in self.lasting]


# --- dump --------------------------------------------------------------------------------------


def _timeout_ns(call, args: list[int], read) -> int | None:
    """The call's timeout in nanoseconds; None if it has none (or it cannot be read)."""
    value = args[call.timeout]
    if call.kind == "ms":
        ms = value - (1 << 32) if value & 1 << 31 else value & 0xFFFFFFFF  # an int
        return ms * 1_000_000 if ms >= 0 else None
    if not value:
        return None
    fmt = TIMESPEC[call.kind]
    try:
        sec, nsec = struct.unpack(fmt, read(value, struct.calcsize(fmt)))
    except (OSError, RemoteError):
        return None
    return sec * NSEC + nsec if sec >= 0 and 0 <= nsec < NSEC else None


def dump_adjusted(regs: ptrace.UserRegs, abi: Abi, left: list[int], read):
    """(registers, TorporTimeLeft or None) for a thread stopped with `regs`, whose stop
    cancelled sleepers with `left` nanoseconds to go (Watch.left); `read(addr, size)` reads
    its memory. A thread interrupted in one of the ABI's timed calls with a timeout gets the
    call's EINTR and, if its time left is known, the entry that resumes it."""
    nr, ret = signed(regs.orig_rax), signed(regs.rax)
    call = abi.timed_calls.get(nr)
    if call is None or -ret not in INTERRUPTED:
        return regs, None
    mask = (1 << abi.bits) - 1
    args = [getattr(regs, r) & mask for r in abi.arg_regs]
    timeout = _timeout_ns(call, args, read) if call.applies(args) else None
    if not timeout:
        return regs, None
    out = regs.copy()
    out.rax = -EINTR & ((1 << 64) - 1)
    every, lasting = left
    fits = [n for n in every if n <= timeout]
    if len(fits) != 1:  # another sleeper vanished too: trust only those of before the freeze
        fits = [n for n in lasting if n <= timeout]
    if len(fits) != 1:
        log.debug("%s: time left unknown (%d candidates): it returns EINTR", call.name, len(fits))
        return out, None
    log.debug("%s: %.6f s of %.6f s left", call.name, fits[0] / NSEC, timeout / NSEC)
    return out, pb.core_x86_pb2.TorporTimeLeft(nr=nr, ns=fits[0])


# --- restore -----------------------------------------------------------------------------------


def image_problem(tid: int, core, abi: Abi) -> str | None:
    """What is impossible about the saved time left of thread `tid`; None if nothing."""
    info = core.thread_info
    if not info.HasField("torpor_time_left"):
        return None
    entry = info.torpor_time_left
    if entry.nr not in abi.timed_calls:
        return f"thread {tid}: time left for syscall {entry.nr}, not a timed call of {abi.name}"
    if entry.ns >= 1 << 62:
        return f"thread {tid}: time left {entry.ns} ns"
    return None


def _room(ctx: RestoreContext, sp: int, size: int) -> int | None:
    """An address below stack pointer `sp`, past the red zone, where `size` bytes fit in the
    writable private mapping (and alternate stack) that holds the stack; None if none."""
    addr = (sp - RED_ZONE - size) & ~15
    if addr <= 0:
        return None
    sas = ctx.core.thread_core.sas if ctx.core.thread_core.HasField("sas") else None
    if sas and sas.ss_sp <= sp <= sas.ss_sp + sas.ss_size and addr < sas.ss_sp:
        return None
    for m in read_maps(ctx.pid, with_flags=False):
        if m.start < sp <= m.end:
            ok = m.start <= addr and m.perms[:2] == "rw" and not m.shared
            return addr if ok else None
    return None


def restore_adjusted(ctx: RestoreContext, regs: ptrace.UserRegs) -> ptrace.UserRegs:
    """The thread's final registers: its saved ones, or, with a time left saved, the call
    re-issued with that time as its timeout (into its memory, which must be in place)."""
    info = ctx.core.thread_info
    if not info.HasField("torpor_time_left"):
        return regs
    abi, entry = ctx.abi, info.torpor_time_left
    call = abi.timed_calls.get(entry.nr)
    if call is None:
        raise ImageError(f"core-{ctx.image_pid}.img: {image_problem(ctx.image_pid, ctx.core, abi)}")
    out = regs.copy()
    if call.kind == "ms":
        value = min(math.ceil(entry.ns / 1_000_000), MAX_MS)
    else:
        sec, nsec = divmod(entry.ns, NSEC)
        if call.kind == "ts32":
            sec = min(sec, MAX_TIME32)
        raw = struct.pack(TIMESPEC[call.kind], sec, nsec)
        value = _room(ctx, regs.rsp & ((1 << abi.bits) - 1), len(raw))
        if value is None:
            ctx.notes.append(
                f"thread {ctx.image_pid}: no room below its stack for the time left of its "
                f"{call.name}: the call returns EINTR"
            )
            return regs
        ctx.task.write(value, raw)
    setattr(out, abi.arg_regs[call.timeout], value)
    out.rax = entry.nr
    out.rip -= len(abi.syscall_insn)
    ctx.task.restart_call = True
    return out

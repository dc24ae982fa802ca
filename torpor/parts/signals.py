"""Signals: every disposition with its flags and mask, the blocked mask, the alternate stack.

Dispositions are read and set through the task's own ABI: an ia32 handler must be installed with
the compat rt_sigaction, or the kernel delivers a 64-bit frame to 32-bit code. Only those that
/proc shows caught or ignored (and SIGCHLD, whose flags matter even without a handler) are read
by injected calls; the others are default dispositions, saved without flags or mask (which
cannot change what a default action does).
"""

from torpor.arch import abi_by_name
from torpor.arch.abi import AltStack, SigAction
from torpor.context import DumpContext, RestoreContext
from torpor.images import pb
from torpor.kernel import ptrace
from torpor.kernel.procfs import read_status

NSIG = 64
SIGKILL, SIGSTOP, SIGCHLD = 9, 19, 17
# Signals whose default action is not to end the process: ignore (SIGCHLD, SIGCONT, SIGURG,
# SIGWINCH) or stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
NOT_FATAL_BY_DEFAULT = frozenset({17, 18, 19, 20, 21, 22, 23, 28})
SIG_DFL = 0
SA_IA32_ABI = 0x02000000  # kernel-internal flag, set on dispositions installed by ia32 code
SS_DISABLE = 2
SS_AUTODISARM = 1 << 31  # the alternate stack is disarmed while a handler runs on it


def ends_by_default(sig: int) -> bool:
    """Whether signal `sig` ends a process whose disposition is the default one (only such a
    signal can have killed a process: a zombie's saved status naming another is forged)."""
    return 1 <= sig <= NSIG and sig not in NOT_FATAL_BY_DEFAULT


def _signals():
    return (s for s in range(1, NSIG + 1) if s not in (SIGKILL, SIGSTOP))


def dump(ctx: DumpContext) -> None:
    """The process-wide part: every disposition and the signals pending for the process."""
    task, abi = ctx.task, ctx.abi
    status = read_status(ctx.pid)
    caught, ignored = int(status["SigCgt"], 16), int(status["SigIgn"], 16)
    out = task.reserve(abi.sigaction_size)
    for sig in _signals():
        bit = 1 << (sig - 1)
        if (caught | ignored) & bit or sig == SIGCHLD:
            task.call(abi, "rt_sigaction", sig, 0, out, 8)
            act = abi.unpack_sigaction(task.read(out, abi.sigaction_size))
        else:
            act = SigAction(SIG_DFL, 0, 0, 0)
        ctx.core.tc.sigactions.append(
            pb.sa_pb2.SaEntry(
                sigaction=act.handler,
                flags=act.flags & ~SA_IA32_ABI,
                restorer=act.restorer,
                mask=act.mask,
                compat_sigaction=abi.bits == 32,
            )
        )
    ctx.core.tc.blk_sigset = _blocked(ctx)
    for info in ptrace.pending_signals(ctx.pid, True):
        ctx.core.tc.signals_s.signals.add(siginfo=info)


def _blocked(ctx) -> int:
    task = ctx.task
    return task.sigmask if task.sigmask is not None else ptrace.get_sigmask(ctx.pid)


def dump_thread(ctx: DumpContext) -> None:
    """One thread's part: its blocked mask, the signals pending for it, its alternate stack."""
    task, abi = ctx.task, ctx.abi
    ctx.core.thread_core.blk_sigset = _blocked(ctx)
    for info in ptrace.pending_signals(ctx.pid, False):
        ctx.core.thread_core.signals_p.signals.add(siginfo=info)
    out = task.reserve(abi.stack_t_size)
    task.call(abi, "sigaltstack", 0, out)
    st = abi.unpack_stack(task.read(out, abi.stack_t_size))
    ctx.core.thread_core.sas.CopyFrom(  # flags as the unsigned word (SS_AUTODISARM is bit 31)
        pb.core_pb2.ThreadSasEntry(ss_sp=st.sp, ss_size=st.size, ss_flags=st.flags & 0xFFFFFFFF)
    )


def restore(ctx: RestoreContext) -> None:
    """Install every saved disposition, with the ABI that installed it."""
    task = ctx.task
    native = abi_by_name("x86_64")
    by_sig = dict(zip(_signals(), ctx.core.tc.sigactions, strict=False))
    ignored_now = int(read_status(ctx.pid)["SigIgn"], 16)
    for sig in _signals():
        entry = by_sig.get(sig)
        default = entry is None or not (entry.sigaction or entry.flags or entry.mask)
        if default and not ignored_now & (1 << (sig - 1)) and sig != SIGCHLD:
            continue  # the new task has it at its default already
        abi = ctx.abi if entry is None else (ctx.abi if entry.compat_sigaction else native)
        act = (
            SigAction(0, 0, 0, 0)
            if entry is None
            else SigAction(entry.sigaction, entry.flags, entry.restorer, entry.mask)
        )
        task.call(abi, "rt_sigaction", sig, task.put(abi.pack_sigaction(act)), 0, 8)


def restore_thread(ctx: RestoreContext) -> None:
    """One thread's alternate stack and blocked mask (the mask takes effect when the thread
    is let go)."""
    sas = ctx.core.thread_core.sas
    if sas.ss_flags & SS_DISABLE or not sas.ss_size:
        st = AltStack(0, SS_DISABLE, 0)
    else:  # SS_ONSTACK is the kernel's to say; SS_AUTODISARM is the thread's setting
        st = AltStack(sas.ss_sp, -(1 << 31) if sas.ss_flags & SS_AUTODISARM else 0, sas.ss_size)
    ctx.task.call(ctx.abi, "sigaltstack", ctx.task.put(ctx.abi.pack_stack(st)), 0)
    tc = ctx.core.thread_core
    mask = tc.blk_sigset if tc.HasField("blk_sigset") else ctx.core.tc.blk_sigset
    ctx.task.sigmask = mask


def forget_child_exits(ctx: RestoreContext) -> None:
    """Take back the SIGCHLD that restoring zombie children queued for the process: the
    process was told about them before the dump."""
    task, native = ctx.task, abi_by_name("x86_64")
    wanted = task.put((1 << (SIGCHLD - 1)).to_bytes(8, "little"))
    no_wait = task.put(bytes(16))
    while task.syscall(native, "rt_sigtimedwait", wanted, 0, no_wait, 8) == SIGCHLD:
        wanted = task.put((1 << (SIGCHLD - 1)).to_bytes(8, "little"))
        no_wait = task.put(bytes(16))


def restore_pending(ctx: RestoreContext) -> None:
    """Queue the process's saved pending signals again; the task sends them to itself, as
    the kernel lets a process queue any siginfo to itself. They stay blocked until it runs."""
    task, native = ctx.task, abi_by_name("x86_64")
    for info in ctx.core.tc.signals_s.signals:
        sig = int.from_bytes(info.siginfo[:4], "little", signed=True)
        task.call(native, "rt_sigqueueinfo", ctx.image_pid, sig, task.put(info.siginfo))


def restore_thread_pending(ctx: RestoreContext, tgid: int) -> None:
    """Queue one thread's saved pending signals again, from inside its own process."""
    task, native = ctx.task, abi_by_name("x86_64")
    for info in ctx.core.thread_core.signals_p.signals:
        sig = int.from_bytes(info.siginfo[:4], "little", signed=True)
        task.call(native, "rt_tgsigqueueinfo", tgid, ctx.image_pid, sig, task.put(info.siginfo))


def image_problem(core, abi) -> str | None:
    """What makes a saved signal disposition impossible (a handler or restorer beyond the
    user space of the ABI that installed it, flags wider than its `unsigned long`); None if
    nothing."""
    for sig, entry in zip(_signals(), core.tc.sigactions, strict=False):
        limit = abi.task_size if entry.compat_sigaction else abi_by_name("x86_64").task_size
        if entry.sigaction > 1 and entry.sigaction >= limit or entry.restorer >= limit:
            return f"signal {sig}: handler {entry.sigaction:#x} is not a user address"
        if entry.compat_sigaction and entry.flags >> 32:
            return f"signal {sig}: flags {entry.flags:#x} do not fit a 32-bit disposition"
    return None


def thread_image_problem(core, abi) -> str | None:
    """What makes a thread's saved alternate stack impossible for its ABI (an address or
    size wider than the ABI's word); None if nothing."""
    sas = core.thread_core.sas
    limit = 1 << abi.bits
    if sas.ss_sp >= limit or sas.ss_size >= limit:
        return f"alternate stack {sas.ss_sp:#x} of {sas.ss_size} bytes does not fit {abi.name}"
    return None

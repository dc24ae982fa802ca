"""Signals: every disposition with its flags and mask, the blocked mask, the alternate stack.

Dispositions are read and set through the task's own ABI: an ia32 handler must be installed with
the compat rt_sigaction, or the kernel delivers a 64-bit frame to 32-bit code.
"""

from torpor.arch import abi_by_name
from torpor.arch.abi import AltStack, SigAction
from torpor.context import DumpContext, RestoreContext
from torpor.images import pb
from torpor.kernel import ptrace

NSIG = 64
SIGKILL, SIGSTOP = 9, 19
SA_IA32_ABI = 0x02000000  # kernel-internal flag, set on dispositions installed by ia32 code
SS_DISABLE = 2


def _signals():
    return (s for s in range(1, NSIG + 1) if s not in (SIGKILL, SIGSTOP))


def dump(ctx: DumpContext) -> None:
    task, abi = ctx.task, ctx.abi
    out = task.reserve(abi.sigaction_size)
    for sig in _signals():
        task.call(abi, "rt_sigaction", sig, 0, out, 8)
        act = abi.unpack_sigaction(task.read(out, abi.sigaction_size))
        ctx.core.tc.sigactions.append(
            pb.sa_pb2.SaEntry(
                sigaction=act.handler,
                flags=act.flags & ~SA_IA32_ABI,
                restorer=act.restorer,
                mask=act.mask,
                compat_sigaction=abi.bits == 32,
            )
        )
    blocked = task.sigmask if task.sigmask is not None else ptrace.get_sigmask(ctx.pid)
    ctx.core.tc.blk_sigset = blocked
    ctx.core.thread_core.blk_sigset = blocked
    for shared, queue in ((True, ctx.core.tc.signals_s), (False, ctx.core.thread_core.signals_p)):
        for info in ptrace.pending_signals(ctx.pid, shared):
            queue.signals.add(siginfo=info)
    out = task.reserve(abi.stack_t_size)
    task.call(abi, "sigaltstack", 0, out)
    st = abi.unpack_stack(task.read(out, abi.stack_t_size))
    ctx.core.thread_core.sas.CopyFrom(
        pb.core_pb2.ThreadSasEntry(ss_sp=st.sp, ss_size=st.size, ss_flags=st.flags)
    )


def restore(ctx: RestoreContext) -> None:
    """Install every saved disposition (with the ABI that installed it) and the alt stack.

    The blocked mask is handed to the task by :func:`restore_blocked`; it takes effect when
    the task is let go.
    """
    task = ctx.task
    native = abi_by_name("x86_64")
    by_sig = dict(zip(_signals(), ctx.core.tc.sigactions, strict=False))
    for sig in _signals():
        entry = by_sig.get(sig)
        abi = ctx.abi if entry is None else (ctx.abi if entry.compat_sigaction else native)
        act = (
            SigAction(0, 0, 0, 0)
            if entry is None
            else SigAction(entry.sigaction, entry.flags, entry.restorer, entry.mask)
        )
        task.call(abi, "rt_sigaction", sig, task.put(abi.pack_sigaction(act)), 0, 8)
    sas = ctx.core.thread_core.sas
    if sas.ss_flags & SS_DISABLE or not sas.ss_size:
        st = AltStack(0, SS_DISABLE, 0)
    else:
        st = AltStack(sas.ss_sp, 0, sas.ss_size)
    task.call(ctx.abi, "sigaltstack", task.put(ctx.abi.pack_stack(st)), 0)


def restore_pending(ctx: RestoreContext) -> None:
    """Queue the saved pending signals again; the task sends them to itself, as the kernel
    lets a process queue any siginfo to itself. They stay blocked until the task runs."""
    task, native = ctx.task, abi_by_name("x86_64")
    for info in ctx.core.tc.signals_s.signals:
        sig = int.from_bytes(info.siginfo[:4], "little", signed=True)
        task.call(native, "rt_sigqueueinfo", ctx.image_pid, sig, task.put(info.siginfo))
    for info in ctx.core.thread_core.signals_p.signals:
        sig = int.from_bytes(info.siginfo[:4], "little", signed=True)
        task.call(
            native, "rt_tgsigqueueinfo", ctx.image_pid, ctx.image_pid, sig, task.put(info.siginfo)
        )


def restore_blocked(ctx: RestoreContext) -> None:
    tc = ctx.core.thread_core
    mask = tc.blk_sigset if tc.HasField("blk_sigset") else ctx.core.tc.blk_sigset
    ctx.task.sigmask = mask

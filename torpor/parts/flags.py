"""Small settings of a process and its threads that programs make once and rely on: the
OOM-killer adjustment, the audit login UID, child-subreaper, THP disabled, membarrier
registrations (per process) and the parent-death signal (per thread).

Most live where CRIU keeps them (core.tc.oom_score_adj, loginuid, child_subreaper,
mm.thp_disabled, thread_core.pdeath_sig); membarrier registrations in torpor's own field.
Those only the task itself can read or set (prctl, membarrier, its own loginuid) go through
injected calls. Membarrier registrations are asked of the kernel with
MEMBARRIER_CMD_GET_REGISTRATIONS (Linux 6.3 and later), which shows all of them; an older
kernel shows none, and a dump there asks for each private expedited barrier, which fails
with EPERM unless the process registered for it (the barrier itself is harmless on a
stopped process). Global-expedited registration cannot be seen that way: before 6.3 it is
not saved.
"""

import errno
import os
import signal
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import RestoreError, TargetError

PR_SET_PDEATHSIG, PR_GET_PDEATHSIG = 1, 2
PR_SET_CHILD_SUBREAPER, PR_GET_CHILD_SUBREAPER = 36, 37
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
O_WRONLY = 1
AT_FDCWD = -100

# membarrier: the barrier command a registration allows -> the command that registers it.
MEMBARRIER_QUERY = 0
MEMBARRIER_REGISTRATIONS = {
    8: 16,  # PRIVATE_EXPEDITED
    32: 64,  # PRIVATE_EXPEDITED_SYNC_CORE
    128: 256,  # PRIVATE_EXPEDITED_RSEQ
}
MEMBARRIER_REGISTER_GLOBAL_EXPEDITED = 4
MEMBARRIER_REGISTER_COMMANDS = MEMBARRIER_REGISTER_GLOBAL_EXPEDITED | sum(
    MEMBARRIER_REGISTRATIONS.values()
)
MEMBARRIER_GET_REGISTRATIONS = 512


def _read_int(path: str) -> int:
    with open(path) as f:
        return int(f.read())


def _prctl_get(task, option: int) -> int:
    """A prctl that stores an int through its second argument."""
    out = task.reserve(8)
    task.call(X86_64, "prctl", option, out, 0, 0, 0)
    return struct.unpack("<i", task.read(out, 4))[0]


def dump(ctx: DumpContext) -> None:
    tc, task = ctx.core.tc, ctx.task
    tc.oom_score_adj = _read_int(f"/proc/{ctx.pid}/oom_score_adj")
    if os.path.exists(f"/proc/{ctx.pid}/loginuid"):  # a kernel without audit has none
        tc.loginuid = _read_int(f"/proc/{ctx.pid}/loginuid")
    tc.child_subreaper = bool(_prctl_get(task, PR_GET_CHILD_SUBREAPER))
    ctx.mm.thp_disabled = bool(task.call(X86_64, "prctl", PR_GET_THP_DISABLE, 0, 0, 0, 0))
    ctx.mm.torpor_membarrier = _membarrier_registrations(ctx)


def _membarrier_registrations(ctx: DumpContext) -> int:
    supported = ctx.task.syscall(X86_64, "membarrier", MEMBARRIER_QUERY, 0, 0)
    if supported < 0:
        return 0  # a kernel without membarrier: nothing to register either
    if supported & MEMBARRIER_GET_REGISTRATIONS:
        got = ctx.task.syscall(X86_64, "membarrier", MEMBARRIER_GET_REGISTRATIONS, 0, 0)
        if got < 0:
            raise TargetError(f"membarrier registrations of process {ctx.pid}: {os.strerror(-got)}")
        return got & MEMBARRIER_REGISTER_COMMANDS
    registered = 0
    for command, register in MEMBARRIER_REGISTRATIONS.items():
        if not supported & command:
            continue
        got = ctx.task.syscall(X86_64, "membarrier", command, 0, 0)
        if got == 0:
            registered |= register
        elif got != -errno.EPERM:
            raise TargetError(f"membarrier({command}) in process {ctx.pid}: {os.strerror(-got)}")
    return registered


def dump_thread(ctx: DumpContext) -> None:
    ctx.core.thread_core.pdeath_sig = _prctl_get(ctx.task, PR_GET_PDEATHSIG)


def restore(ctx: RestoreContext) -> None:
    """The process's settings, before its threads start (they inherit the login UID)."""
    tc, task = ctx.core.tc, ctx.task
    if tc.HasField("loginuid"):
        _restore_loginuid(ctx, tc.loginuid)
    if tc.HasField("oom_score_adj"):
        _restore_oom_score_adj(ctx, tc.oom_score_adj)
    if tc.child_subreaper:
        task.call(X86_64, "prctl", PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if ctx.mm.thp_disabled:
        task.call(X86_64, "prctl", PR_SET_THP_DISABLE, 1, 0, 0, 0)
    for register in (MEMBARRIER_REGISTER_GLOBAL_EXPEDITED, *MEMBARRIER_REGISTRATIONS.values()):
        if ctx.mm.torpor_membarrier & register:
            got = task.syscall(X86_64, "membarrier", register, 0, 0)
            if got < 0:
                raise RestoreError(
                    f"cannot register process {ctx.image_pid} for membarrier command "
                    f"{register}: {os.strerror(-got)}"
                )


def _restore_oom_score_adj(ctx: RestoreContext, value: int) -> None:
    if not -1000 <= value <= 1000:
        raise RestoreError(f"process {ctx.image_pid}: oom_score_adj {value} out of range")
    path = f"/proc/{ctx.pid}/oom_score_adj"
    if _read_int(path) == value:
        return
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as e:
        raise RestoreError(
            f"cannot give process {ctx.image_pid} its oom_score_adj {value}: {e.strerror} "
            "(lowering it needs CAP_SYS_RESOURCE)"
        ) from None


def _restore_loginuid(ctx: RestoreContext, value: int) -> None:
    """Only a task itself may write its loginuid (and needs CAP_AUDIT_CONTROL to change one
    already set)."""
    if _read_int(f"/proc/{ctx.pid}/loginuid") == value:
        return
    task = ctx.task
    path = task.put(b"/proc/self/loginuid\0")
    fd = task.syscall(X86_64, "openat", AT_FDCWD, path, O_WRONLY, 0)
    if fd < 0:
        raise RestoreError(
            f"cannot open the loginuid of process {ctx.image_pid}: {os.strerror(-fd)}"
        )
    try:
        text = str(value).encode()
        got = task.syscall(X86_64, "write", fd, task.put(text), len(text))
    finally:
        task.syscall(X86_64, "close", fd)
    if got < 0:
        raise RestoreError(
            f"cannot give process {ctx.image_pid} its login UID {value}: {os.strerror(-got)} "
            "(changing it needs CAP_AUDIT_CONTROL, and an immutable one cannot change)"
        )


def restore_thread(ctx: RestoreContext) -> None:
    """The thread's parent-death signal, after its credentials (changing them clears it)."""
    sig = ctx.core.thread_core.pdeath_sig
    if not sig:
        return
    if not 0 < sig < signal.NSIG:
        raise RestoreError(f"thread {ctx.image_pid}: parent-death signal {sig}")
    ctx.task.call(X86_64, "prctl", PR_SET_PDEATHSIG, sig, 0, 0, 0)

"""Resource limits (getrlimit/setrlimit), every one of them, soft and hard, in CRIU's field
(core.tc.rlimits, one RlimitEntry per RLIMIT_* number).

They are read by torpor (prlimit64 on another process needs no injected call; for a
process of another uid, /proc/PID/limits) and set by
the restored process itself (prlimit64 injected): a process may lower its own limits and
raise a soft limit up to the hard one, but raising a hard limit needs CAP_SYS_RESOURCE,
which the restorer may lack. A restored task starts with torpor's limits, so a saved hard
limit above torpor's own refuses the restore, naming the limit and both values.
"""

import ctypes
import resource
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import ImageError, TargetError
from torpor.images import pb
from torpor.kernel import caps, libc
from torpor.kernel.procfs import proc

RLIM_INFINITY = (1 << 64) - 1
CAP_SYS_RESOURCE = 24

NAMES = (
    "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE", "RLIMIT_RSS",
    "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS", "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME",
)  # fmt: skip


def _prlimit(pid: int, which: int) -> tuple[int, int]:
    """(soft, hard) of limit `which` of process `pid`, as unsigned 64-bit values."""
    old = (ctypes.c_uint64 * 2)()
    libc.syscall(libc.SYS_PRLIMIT64, pid, which, 0, ctypes.addressof(old))
    return old[0], old[1]


def _limits(pid: int) -> list[tuple[int, int]]:
    """Every (soft, hard) of process `pid`, in NAMES' order: prlimit(2), or where torpor
    may not ask it that way (a process of another uid, to a root without
    CAP_SYS_RESOURCE), /proc/PID/limits, which shows the same values in the same order."""
    try:
        return [_prlimit(pid, which) for which in range(len(NAMES))]
    except PermissionError:
        pass
    with open(proc(pid, "limits")) as f:
        rows = f.read().splitlines()[1:]
    if len(rows) < len(NAMES):
        raise TargetError(f"/proc/{pid}/limits shows {len(rows)} limits, not {len(NAMES)}")
    return [
        tuple(RLIM_INFINITY if v == "unlimited" else int(v) for v in row[26:].split()[:2])
        for row in rows[: len(NAMES)]
    ]


def dump(ctx: DumpContext) -> None:
    limits = ctx.core.tc.rlimits
    for cur, hard in _limits(ctx.pid):
        limits.rlimits.append(pb.RlimitEntry(cur=cur, max=hard))


def _show(value: int) -> str:
    return "unlimited" if value == RLIM_INFINITY else str(value)


def check(core) -> str | None:
    """Why this side cannot give the process its limits back; None if it can."""
    if not core.tc.HasField("rlimits"):
        return None
    saved = core.tc.rlimits.rlimits
    if len(saved) > len(NAMES):
        raise ImageError(f"core image: {len(saved)} resource limits, at most {len(NAMES)}")
    if caps.own_sets()["CapEff"] >> CAP_SYS_RESOURCE & 1:
        return None
    for which, entry in enumerate(saved):
        if entry.cur > entry.max:
            raise ImageError(f"core image: {NAMES[which]} soft limit above its hard limit")
        own = resource.getrlimit(which)[1] % (1 << 64)  # -1 (infinity) as unsigned
        if entry.max > own:
            return (
                f"the process had {NAMES[which]} hard limit {_show(entry.max)}, above this "
                f"side's {_show(own)}, and raising it needs CAP_SYS_RESOURCE"
            )
    return None


def restore(ctx: RestoreContext) -> None:
    """Set every saved limit in the restored process (after its threads and children exist:
    a low RLIMIT_NPROC must not stop the restore creating them)."""
    if not ctx.core.tc.HasField("rlimits"):
        return
    task = ctx.task
    for which, entry in enumerate(ctx.core.tc.rlimits.rlimits):
        if _prlimit(ctx.pid, which) != (entry.cur, entry.max):
            new = task.put(struct.pack("<QQ", entry.cur, entry.max))
            task.call(X86_64, "prlimit64", 0, which, new, 0)

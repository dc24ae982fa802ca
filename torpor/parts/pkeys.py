"""Memory protection keys: which keys a process allocated (pkey_alloc) and which key guards
each of its mappings (pkey_mprotect).

The rights of each key live in the PKRU register, saved with the rest of the xstate (see
parts.regs). The kernel shows a mapping's key in smaps (ProtectionKey, read into
VmaEntry.torpor_pkey) but not which keys are allocated: a dump finds that out by allocating
every free key in the task and freeing them again (keys come lowest first, so this leaves
the allocation as it was; the task's PKRU, which pkey_alloc writes, is put back after).
A restore allocates the same keys and gives each mapping its key back.
"""

import errno

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext, log
from torpor.errors import ImageError, RestoreError, TargetError
from torpor.kernel import cpuid, ptrace

KEYS = 16  # x86: PKRU holds two bits for each of 16 keys; key 0 is every mapping's default
ALL_KEYS = (1 << KEYS) - 2


def _keys(mask: int) -> list[int]:
    return [k for k in range(1, KEYS) if mask >> k & 1]


def dump(ctx: DumpContext) -> None:
    """Record the allocated keys (after memory.dump, which records each mapping's key)."""
    if not cpuid.protection_keys():
        return
    task = ctx.task
    xstate = ptrace.get_regset(task.pid, ptrace.NT_X86_XSTATE)
    free = []
    try:
        while True:
            key = task.syscall(X86_64, "pkey_alloc", 0, 0)
            if key < 0:
                if -key != errno.ENOSPC:
                    name = errno.errorcode.get(-key, str(-key))
                    raise TargetError(f"pkey_alloc in process {ctx.pid} failed: {name}")
                break
            free.append(key)
    finally:
        for key in free:
            task.call(X86_64, "pkey_free", key)
        ptrace.set_regset(task.pid, ptrace.NT_X86_XSTATE, xstate)
    ctx.mm.torpor_pkeys = ALL_KEYS & ~sum(1 << k for k in free)
    if ctx.mm.torpor_pkeys:
        log.info("process %d: protection keys %s allocated", ctx.pid, _keys(ctx.mm.torpor_pkeys))


def _used(mm) -> int:
    """The keys the process holds: allocated ones and those guarding a mapping."""
    used = mm.torpor_pkeys
    for vma in mm.vmas:
        if vma.torpor_pkey:
            if not 0 < vma.torpor_pkey < KEYS:
                raise ImageError(f"mapping {vma.start:#x}: protection key {vma.torpor_pkey}")
            used |= 1 << vma.torpor_pkey
    return used & ALL_KEYS


def in_use(mm) -> str | None:
    """What of protection keys the process uses, for a message; None if nothing."""
    used = _used(mm)
    if not used:
        return None
    keyed = sum(1 for v in mm.vmas if v.torpor_pkey)
    keys = ", ".join(map(str, _keys(used)))
    return f"protection keys {keys} ({keyed} mappings guarded by them)"


def check(mm) -> str | None:
    """Why this CPU cannot restore the process's keys; None when it can."""
    what = in_use(mm)
    if what and not cpuid.protection_keys():
        return f"the process uses {what}, and this CPU has no protection keys"
    return None


def restore(ctx: RestoreContext) -> None:
    """Allocate the dumped keys and give each mapping its key (after memory protection)."""
    wanted = _used(ctx.mm)
    if not wanted:
        return
    task = ctx.task
    extra = []
    allocated = 0
    while wanted & ~allocated:
        key = task.syscall(X86_64, "pkey_alloc", 0, 0)
        if key == -errno.ENOSPC:
            break  # every key is taken: the rest went to the kernel's execute-only mappings
        if key < 0:
            raise RestoreError(
                f"cannot allocate protection keys {_keys(wanted & ~allocated)}: "
                f"{errno.errorcode.get(-key, -key)}"
            )
        allocated |= 1 << key
        if not wanted >> key & 1:
            extra.append(key)
    for key in extra:
        task.call(X86_64, "pkey_free", key)
    for vma in ctx.mm.vmas:
        if vma.torpor_pkey:
            task.call(
                X86_64, "pkey_mprotect", vma.start, vma.end - vma.start, vma.prot, vma.torpor_pkey
            )

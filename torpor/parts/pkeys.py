"""Memory protection keys: which keys a process allocated (pkey_alloc) and which key guards
each of its mappings (pkey_mprotect).

The rights of each key live in the PKRU register, saved with the rest of the xstate (see
parts.regs). The kernel shows a mapping's key in smaps (ProtectionKey, read into
VmaEntry.torpor_pkey) but not which keys are allocated: a dump finds that out by giving
torpor's scratch page each key in turn (pkey_mprotect refuses a key not allocated), and then
key 0 again; nothing of the task's own changes, not even for a moment.
A restore allocates the same keys and gives each mapping its key back.
"""

import errno

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext, log
from torpor.errors import ImageError, RestoreError, TargetError
from torpor.kernel import cpuid
from torpor.remote import PROT_EXEC, PROT_READ, PROT_WRITE

KEYS = 16  # x86: PKRU holds two bits for each of 16 keys; key 0 is every mapping's default
ALL_KEYS = (1 << KEYS) - 2
SCRATCH_PROT = PROT_READ | PROT_WRITE | PROT_EXEC  # as the scratch page is mapped


def _keys(mask: int) -> list[int]:
    return [k for k in range(1, KEYS) if mask >> k & 1]


def dump(ctx: DumpContext) -> None:
    """Record the allocated keys (after memory.dump, which records each mapping's key)."""
    if not cpuid.protection_keys():
        return
    task = ctx.task
    allocated = 0
    try:
        for key in range(1, KEYS):
            got = task.syscall(
                X86_64, "pkey_mprotect", task.scratch, task.scratch_size, SCRATCH_PROT, key
            )
            if got == 0:
                allocated |= 1 << key
            elif -got != errno.EINVAL:
                name = errno.errorcode.get(-got, str(-got))
                raise TargetError(f"pkey_mprotect in process {ctx.pid} failed: {name}")
    finally:
        if allocated:  # the scratch page's own key back: the task reads its arguments there
            task.call(X86_64, "pkey_mprotect", task.scratch, task.scratch_size, SCRATCH_PROT, 0)
    ctx.mm.torpor_pkeys = allocated
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

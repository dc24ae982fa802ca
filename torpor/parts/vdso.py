"""Putting a vDSO back into a restored task.

If the kernel's vDSO (and its vvar layout) is the one that was dumped, it is mapped at the
dumped address. Otherwise the dumped copy is restored as ordinary memory at the old address,
the kernel's vDSO is mapped at a free address, and each exported symbol of the old copy jumps
to the same symbol of the new one; symbols the new one lacks trap. AT_SYSINFO_EHDR in the
saved auxv then names the kernel's copy, so a later dump tells the two apart.
"""

from dataclasses import dataclass

from torpor import vdso as vdsolib
from torpor.arch import X86_64
from torpor.context import RestoreContext, log
from torpor.errors import RestoreError
from torpor.images import constants as C
from torpor.kernel.procfs import PAGE_SIZE
from torpor.parts import memory
from torpor.vdso_probe import layout_of

AT_SYSINFO_EHDR = 33


@dataclass
class VdsoPlan:
    """What the vDSO stage decided; memory restore and the final stages consult it."""

    kernel_vmas: set  # (start, end) of dumped VMAs now provided by the kernel's own mapping
    new_base: int = 0  # where the kernel's vDSO ended up when it moved
    trampolines: object = None  # vdsolib.TrampolinePlan applied to the old copy
    old_start: int = 0


def _dumped_layout(ctx: RestoreContext):
    entries = []
    ehdr = 0
    for v in ctx.mm.vmas:
        if v.status & C.VMA_AREA_VDSO:
            entries.append(vdsolib.MapsEntry(v.start, v.end, "[vdso]"))
            ehdr = v.start
        elif v.status & C.VMA_AREA_VVAR:
            entries.append(vdsolib.MapsEntry(v.start, v.end, "[vvar]"))
    return vdsolib.VdsoLayout.from_maps(entries, ehdr) if ehdr else None


def _map_kernel_vdso(ctx: RestoreContext, at: int):
    got = ctx.task.syscall(X86_64, "arch_prctl", ctx.abi.map_vdso_code, at)
    if got < 0:
        raise RestoreError(f"arch_prctl(ARCH_MAP_VDSO) failed: error {-got}")
    layout = layout_of(ctx.pid)
    return ctx.task.read(layout.vdso_start, layout.vdso_size), layout


def _unmap_kernel_vdso(ctx: RestoreContext, layout) -> None:
    for region in layout.regions:
        ctx.task.call(X86_64, "munmap", region.start, region.end - region.start)


def _free_span(ctx: RestoreContext, size: int) -> int:
    """An address range of `size` bytes free of every dumped VMA (below 4 GiB for ia32)."""
    taken = [(v.start, v.end) for v in ctx.mm.vmas]
    taken.append((ctx.task.scratch, ctx.task.scratch + ctx.task.scratch_size))
    return memory.free_range(
        taken, size, 0x10000000, ctx.abi.address_limit, PAGE_SIZE, "the kernel's vDSO"
    )


def _verdict(old: tuple[bytes, object], new: tuple[bytes, object], bits: int):
    """Whether the dumped vDSO (bytes, layout) is the kernel's (bytes, layout)."""
    (old_blob, dumped), (new_blob, running) = old, new
    if old_blob == new_blob and dumped.vvar_placements() == running.vvar_placements():
        return vdsolib.Verdict(True)  # the same bytes are the same vDSO: no symbol by symbol
    return vdsolib.same_vdso(
        (vdsolib.VdsoImage.from_bytes(old_blob, bits), dumped),
        (vdsolib.VdsoImage.from_bytes(new_blob, bits), running),
    )


def preview(ctx: RestoreContext, kernel: tuple[bytes, vdsolib.VdsoLayout]):
    """What a restore here would do with the process's vDSO, given this kernel's (bytes,
    layout) for its ABI: one line for `torpor check -D`, and the functions that would trap."""
    dumped = _dumped_layout(ctx)
    if dumped is None:
        return "the process had no vDSO", ()
    old_blob = memory.saved_bytes(ctx, dumped.vdso_start, dumped.vdso_size)
    verdict = _verdict((old_blob, dumped), kernel, ctx.abi.bits)
    if verdict:
        return "the same as this kernel's: mapped back in place", ()
    plan = vdsolib.trampolines(
        vdsolib.VdsoImage.from_bytes(old_blob, ctx.abi.bits),
        vdsolib.VdsoImage.from_bytes(kernel[0], ctx.abi.bits),
        kernel[1].vdso_start,
        ctx.abi.bits,
        old_base=dumped.vdso_start,
    )
    line = f"differs from this kernel's ({'; '.join(verdict.reasons)}): calls jump to it"
    if plan.missing:
        line += "; " + ", ".join(plan.missing) + " would trap (this kernel lacks them)"
    return line, plan.missing


def restore(ctx: RestoreContext) -> VdsoPlan:
    dumped = _dumped_layout(ctx)
    plan = VdsoPlan(kernel_vmas=set())
    if dumped is None:
        log.info("vdso: the task had none")
        return plan
    old_blob = memory.saved_bytes(ctx, dumped.vdso_start, dumped.vdso_size)
    new_blob, running = _map_kernel_vdso(ctx, dumped.span_start)
    in_place = running.vdso_start == dumped.vdso_start
    verdict = _verdict((old_blob, dumped), (new_blob, running), ctx.abi.bits)
    if verdict and in_place and not ctx.force_vdso_trampolines:
        plan.kernel_vmas = {(r.start, r.end) for r in dumped.regions}
        log.info("vdso: kernel's vDSO matches, mapped at %#x", running.vdso_start)
        return plan
    reasons = "; ".join(verdict.reasons) or ("forced" if ctx.force_vdso_trampolines else "moved")
    log.info("vdso: differs from the dumped one (%s): using trampolines", reasons)
    _unmap_kernel_vdso(ctx, running)
    new_blob, running = _map_kernel_vdso(ctx, _free_span(ctx, running.span_size))
    new_image = vdsolib.VdsoImage.from_bytes(new_blob, ctx.abi.bits)
    plan.new_base = running.vdso_start
    plan.old_start = dumped.vdso_start
    old_image = vdsolib.VdsoImage.from_bytes(old_blob, ctx.abi.bits)
    try:
        plan.trampolines = vdsolib.trampolines(
            old_image, new_image, plan.new_base, ctx.abi.bits, old_base=plan.old_start
        )
    except vdsolib.VdsoError as e:
        raise RestoreError(f"cannot redirect the dumped vDSO: {e}") from None
    for tid, core in [(ctx.image_pid, ctx.core), *ctx.thread_cores.items()]:
        ip = core.thread_info.gpregs.ip - dumped.vdso_start
        if 0 <= ip < dumped.vdso_size:
            log.info("vdso: thread %d was stopped at %s", tid, old_image.describe(ip))
        if plan.trampolines.torn([ip]):
            raise RestoreError(
                f"a thread was stopped {ip:#x} bytes into its vDSO, inside the entry of a "
                "function that must be redirected; dump it again (it will not be stopped "
                "there twice)"
            )
    if plan.trampolines.missing:
        ctx.notes.append(
            "the running kernel's vDSO lacks "
            + ", ".join(plan.trampolines.missing)
            + ": calls to them will trap"
        )
    _point_auxv_at(ctx, plan.new_base)
    return plan


def _point_auxv_at(ctx: RestoreContext, new_ehdr: int) -> None:
    words = list(ctx.mm.mm_saved_auxv)
    for i in range(0, len(words) - 1, 2):
        if words[i] == AT_SYSINFO_EHDR:
            words[i + 1] = new_ehdr
    del ctx.mm.mm_saved_auxv[:]
    ctx.mm.mm_saved_auxv.extend(words)


def patch_old_copy(ctx: RestoreContext, plan: VdsoPlan) -> None:
    """Write the jumps into the old vDSO copy (after its pages were restored)."""
    if not plan.trampolines:
        return
    for patch in plan.trampolines.patches:
        ctx.task.write(plan.old_start + patch.offset, patch.data)

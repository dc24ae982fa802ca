"""Registers: general registers, the whole xstate (FPU/SSE/AVX...), and ia32 TLS descriptors.

A task stopped inside an interrupted syscall is saved so that it re-issues the call when it
runs again (the kernel's own restart rule, applied at dump time, since the restart state
inside the kernel does not survive the checkpoint); one with a relative timeout the kernel
keeps to itself goes on for the time it had left, or fails with EINTR (parts.timeouts).
A 32-bit task caught just before the vDSO's fast syscall instruction is saved as before the
`int $0x80` after it, the one call instruction of ia32 code that means the same on every CPU
(and restored so from images that hold it raw).
"""

import struct

from torpor.arch import IA32, Abi
from torpor.arch import ia32 as ia32_arch
from torpor.arch import xstate as xsave
from torpor.arch.abi import ERESTART_RESTARTBLOCK
from torpor.context import DumpContext, RestoreContext, log
from torpor.errors import ImageError, RestoreError
from torpor.images import pb
from torpor.kernel import ptrace
from torpor.parts import cpu, timeouts
from torpor.remote import RemoteError, signed

# CRIU's UserX86RegsEntry field name for each user_regs_struct member.
_CRIU_NAMES = {
    "rbp": "bp",
    "rbx": "bx",
    "rax": "ax",
    "rcx": "cx",
    "rdx": "dx",
    "rsi": "si",
    "rdi": "di",
    "orig_rax": "orig_ax",
    "rip": "ip",
    "eflags": "flags",
    "rsp": "sp",
}

GDT_TLS_ENTRIES = (12, 13, 14)


def restart_adjusted(regs: ptrace.UserRegs, abi: Abi) -> ptrace.UserRegs:
    """The registers with an interrupted syscall turned into one that is re-issued."""
    out = regs.copy()
    fix = abi.restartable(signed(regs.rax), signed(regs.orig_rax))
    if fix:
        out.rax, delta = fix
        out.rip += delta
    out.orig_rax = (1 << 64) - 1
    return out


def fast_entry_adjusted(regs: ptrace.UserRegs, abi: Abi, read) -> ptrace.UserRegs:
    """The registers of a 32-bit task caught, in no call, at the fast syscall instruction of
    its vDSO's __kernel_vsyscall (`syscall` on AMD, `sysenter` on Intel), saved as at the
    `int $0x80` after it with the sixth argument in %ebp: the same call (the kernel moves a
    fast call onto that fallback, its sixth argument fetched from the stack, and both return
    to the landing pad that pops %ebp), which a restore on a CPU of the other vendor, whose
    vDSO has the other instruction there and needs another %ebp for it, makes too. `read`
    reads the task's memory; what it cannot read leaves the registers as they are."""
    if abi is not IA32 or signed(regs.orig_rax) >= 0:
        return regs
    try:
        if not ia32_arch.at_fast_entry(read(regs.rip, 8)):
            return regs
        (sixth,) = struct.unpack("<I", read(regs.rsp & 0xFFFFFFFF, 4))
    except (OSError, RemoteError):
        return regs
    out = regs.copy()
    out.rip, out.rbp = regs.rip + len(abi.syscall_insn), sixth
    return out


def time_left_adjusted(regs: ptrace.UserRegs, abi: Abi) -> ptrace.UserRegs:
    """The registers of a task stopped in a relative sleep, turned into a sleep for the
    time it had left (which the kernel wrote into the caller's remainder buffer) instead of
    the whole time again; the kernel's own restart would do the same. Only the request
    argument changes, which the sleep's caller does not read back."""
    mask = (1 << abi.bits) - 1
    args = [getattr(regs, r) & mask for r in abi.arg_regs]
    found = abi.time_left_request(signed(regs.rax), signed(regs.orig_rax), args)
    if found is None:
        return regs
    out = regs.copy()
    setattr(out, abi.arg_regs[found[0]], found[1])
    return out


def _gpregs(regs: ptrace.UserRegs, abi: Abi) -> pb.core_x86_pb2.UserX86RegsEntry:
    entry = pb.core_x86_pb2.UserX86RegsEntry()
    mask = (1 << abi.bits) - 1
    for name, value in regs.as_dict().items():
        setattr(entry, _CRIU_NAMES.get(name, name), value & mask)
    entry.mode = getattr(pb.core_x86_pb2, abi.criu_mode)
    return entry


def _regs_from_entry(entry, abi: Abi) -> ptrace.UserRegs:
    regs = ptrace.UserRegs()
    for name, _ in ptrace.UserRegs._fields_:
        value = getattr(entry, _CRIU_NAMES.get(name, name))
        if abi.bits == 32 and name in ("orig_rax", "rax") and value >= 1 << 31:
            value |= 0xFFFFFFFF00000000  # sign-extend what the 32-bit view holds
        setattr(regs, name, value)
    return regs


def _fpregs(xstate: bytes, layout=None) -> pb.core_x86_pb2.UserX86FpregsEntry:
    """The image's FPU entry for an xsave buffer (`layout`: the component offsets of the CPU
    that produced it, if not this one)."""
    cwd, swd, twd, fop, rip, rdp, mxcsr, mxcsr_mask = struct.unpack_from("<HHHHQQII", xstate)
    words = struct.unpack_from("<128I", xstate, 32)
    fp = pb.core_x86_pb2.UserX86FpregsEntry(
        cwd=cwd,
        swd=swd,
        twd=twd,
        fop=fop,
        rip=rip,
        rdp=rdp,
        mxcsr=mxcsr,
        mxcsr_mask=mxcsr_mask,
        st_space=words[0:32],
        xmm_space=words[32:96],
        padding=words[96:120],  # bytes 416-511 of the legacy area
    )
    if len(xstate) > xsave.HEADER_AT:
        fp.xsave.xstate_bv = xsave.xstate_bv(xstate)
        for name, values in xsave.split(xstate, layout).items():
            getattr(fp.xsave, name).extend(values)
    fp.torpor_xstate = xstate
    return fp


def _legacy_area(fp) -> bytes:
    return struct.pack(
        "<HHHHQQII32I64I24I",
        fp.cwd,
        fp.swd,
        fp.twd,
        fp.fop,
        fp.rip,
        fp.rdp,
        fp.mxcsr,
        fp.mxcsr_mask,
        *fp.st_space,
        *fp.xmm_space,
        *fp.padding,
    )


def _saved_components(fp) -> tuple[int, dict[str, list[int]]]:
    fields = {name: list(getattr(fp.xsave, name)) for name, *_ in xsave.COMPONENTS.values()}
    used = fp.xsave.xstate_bv if fp.HasField("xsave") else xsave.X87_SSE
    return xsave.in_use(used, fields), fields


def loadable_components(fp, available: int) -> int:
    """The xsave components of the saved state (`fp`) to load on a CPU whose kernel offers
    the components in `available`; RestoreError if the state does not fit.

    Every Linux process holds PKRU, at the kernel's default until it sets up protection
    keys: that default is dropped on a CPU without them (the process never used a key;
    the keys of its mappings are checked by parts.pkeys). A component in use that this CPU
    lacks refuses the restore, saying how to start a program that does not pick it.
    """
    return _fitted(fp, available)[0]


def _fitted(fp, available: int) -> tuple[int, dict[str, list[int]]]:
    """loadable_components, with the saved component values."""
    used, fields = _saved_components(fp)
    if used >> xsave.PKRU & 1 and not available >> xsave.PKRU & 1:
        value = xsave.pkru(fields)
        if value != xsave.DEFAULT_PKRU:
            raise RestoreError(
                f"this CPU has no protection keys, and the saved PKRU is {value:#x}, not the "
                f"default {xsave.DEFAULT_PKRU:#x}: the process set up protection keys"
            )
        log.debug("PKRU at its default dropped: this CPU has no protection keys")
        used &= ~(1 << xsave.PKRU)
    missing = xsave.lacking(used, available)
    if missing:
        lacks = ", ".join(xsave.describe(i) for i in missing)
        advice = cpu.portable_start(xsave.features_behind(missing))
        raise RestoreError(
            f"this CPU cannot hold the saved register state: it lacks {lacks}"
            + (f"; {advice}" if advice else "")
        )
    return used, fields


def xstate_for_this_cpu(fp, target: bytes, layout=None) -> bytes:
    """The saved FPU/vector state laid out for this CPU (`target`: the new task's own buffer;
    `layout`: the CPU's component offsets, when it is not the one this runs on).

    The buffer saved at dump is used as is when this CPU lays out the same features the same
    way; otherwise it is rebuilt from the image's components (loadable_components says which).
    """
    used, fields = _fitted(fp, xsave.enabled_features(target))
    raw = fp.torpor_xstate
    same_layout = xsave.enabled_features(raw or target) == xsave.enabled_features(target)
    if raw and len(raw) == len(target) and same_layout:
        return raw
    return xsave.compose(target, _legacy_area(fp), used, fields, layout)


def _tls_entry(desc: ptrace.UserDesc) -> pb.core_x86_pb2.UserDescT:
    f = desc.flags
    return pb.core_x86_pb2.UserDescT(
        entry_number=desc.entry_number,
        base_addr=desc.base_addr,
        limit=desc.limit,
        seg_32bit=bool(f & 1),
        contents_h=bool(f & 4),
        contents_l=bool(f & 2),
        read_exec_only=bool(f & 8),
        limit_in_pages=bool(f & 16),
        seg_not_present=bool(f & 32),
        usable=bool(f & 64),
    )


def _tls_desc(entry: pb.core_x86_pb2.UserDescT) -> ptrace.UserDesc:
    flags = (
        entry.seg_32bit
        | entry.contents_l << 1
        | entry.contents_h << 2
        | entry.read_exec_only << 3
        | entry.limit_in_pages << 4
        | entry.seg_not_present << 5
        | entry.usable << 6
    )
    return ptrace.UserDesc(entry.entry_number, entry.base_addr, entry.limit, flags)


def dump(ctx: DumpContext) -> None:
    info = ctx.core.thread_info
    regs = fast_entry_adjusted(ctx.task.regs, ctx.abi, ctx.task.read)
    regs, left = timeouts.dump_adjusted(
        time_left_adjusted(regs, ctx.abi), ctx.abi, ctx.task.timers_left, ctx.task.read
    )
    info.gpregs.CopyFrom(_gpregs(restart_adjusted(regs, ctx.abi), ctx.abi))
    if left is not None:
        info.torpor_time_left.CopyFrom(left)
    info.fpregs.CopyFrom(_fpregs(ptrace.get_regset(ctx.pid, ptrace.NT_X86_XSTATE)))
    if ctx.abi is IA32:
        for n in GDT_TLS_ENTRIES:
            info.tls.append(_tls_entry(ptrace.get_thread_area(ctx.pid, n)))


def restore(ctx: RestoreContext) -> None:
    """Load TLS descriptors, xstate and the final registers (applied when the task is let go)."""
    info = ctx.core.thread_info
    for entry in info.tls:
        if entry.entry_number not in GDT_TLS_ENTRIES:
            raise ImageError(
                f"core-{ctx.image_pid}.img: TLS entry {entry.entry_number} is not 12-14"
            )
        ptrace.set_thread_area(ctx.pid, entry.entry_number, _tls_desc(entry))
    target = ptrace.get_regset(ctx.pid, ptrace.NT_X86_XSTATE)
    xstate = xstate_for_this_cpu(info.fpregs, target)
    try:
        ptrace.set_regset(ctx.pid, ptrace.NT_X86_XSTATE, xstate)
    except OSError as e:
        raise RestoreError(
            f"this CPU cannot take the saved FPU/vector state ({e.strerror})"
        ) from None
    saved = _regs_from_entry(info.gpregs, ctx.abi)
    # images saved raw (by CRIU) at the fast instruction, made the same on this host's CPU
    saved = fast_entry_adjusted(saved, ctx.abi, ctx.task.read)
    ctx.task.regs = timeouts.restore_adjusted(ctx, saved)


def restart_adjusted_for_resume(regs: ptrace.UserRegs, abi: Abi) -> ptrace.UserRegs:
    """Registers for letting a dumped task go on as if never stopped: like the kernel, an
    interrupted call with restart state in the kernel resumes through restart_syscall."""
    out = restart_adjusted(regs, abi)
    if -signed(regs.rax) == ERESTART_RESTARTBLOCK and signed(regs.orig_rax) >= 0:
        out.rax = abi.nr("restart_syscall")
    return out


def image_problem(tid: int, core, abi) -> str | None:
    """What makes the saved registers of thread `tid` impossible (an address beyond the
    ABI's user space, an xstate too short or too long to be one); None if nothing."""
    gp = core.thread_info.gpregs
    for name in ("ip", "sp"):
        if getattr(gp, name) >= abi.task_size:
            return (
                f"thread {tid}: {name} {getattr(gp, name):#x} is not a user address of {abi.name}"
            )
    fp = core.thread_info.fpregs
    if fp.HasField("torpor_xstate") and not (
        xsave.HEADER_AT + xsave.HEADER_SIZE <= len(fp.torpor_xstate) <= 1 << 16
    ):
        return f"thread {tid}: an xstate of {len(fp.torpor_xstate)} bytes"
    return timeouts.image_problem(tid, core, abi)

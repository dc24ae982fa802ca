"""The x86_64 signal frame rt_sigreturn(2) takes, and the few instructions through which a
dumped task makes its injected calls: if torpor vanishes, the task itself undoes what
torpor did and carries on.

A dumped task runs torpor's calls from heal code in the unused tail of its vDSO's last
page (bytes the task never executes; the write makes the page the task's own copy). After
each call the code unmaps torpor's scratch page and returns, by rt_sigreturn, to a frame
torpor wrote below the task's stack pointer, where the kernel would write a signal frame:
the task's own registers, blocked signals and whole xstate (far enough below for a signal
handled meanwhile to leave it alone). Torpor stops every call at its
entry and exit and moves the task on itself, so while torpor lives the code after the call
never runs; once torpor is gone (killed at any instant: the kernel lets a tracee go when
its tracer dies), the task runs straight into it.

The frame (struct rt_sigframe, minus the siginfo sigreturn does not read):
  ucontext: uc_flags, uc_link, uc_stack, sigcontext, uc_sigmask (304 bytes), 64-aligned;
  above it the xstate, from PTRACE_GETREGSET (the standard XSAVE layout) up to the last
  component of those every task has (a component the kernel gives on request only, the
  AMX tiles, counts when in use), with the software bytes a signal frame carries and
  FP_XSTATE_MAGIC2 after it.
uc_stack holds an invalid mode, which rt_sigreturn ignores: the alternate stack stays.
"""

from __future__ import annotations

import functools
import struct

from torpor.arch import xstate as xs
from torpor.kernel.cpuid import cpuid
from torpor.kernel.ptrace import UserRegs

RED_ZONE = 128  # below the stack pointer, the x86_64 ABI's scratch; skipped like the kernel
# Room left between the stack pointer and the frame: a signal that reaches the task while it
# heals (its own mask is back a moment before its registers) puts its frame, and its
# handler its locals, above the heal frame instead of over it.
SIGNAL_ROOM = 32 << 10
UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS = 1, 2, 4
FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2 = 0x46505853, 0x46505845
SW_RESERVED_AT = 464  # struct _fpx_sw_bytes in the legacy FXSAVE area
UCONTEXT = struct.Struct("<QQQi4xQ" + "18Q" + "4H" + "5Q" + "64x" + "Q")
UCONTEXT_ROOM = 320  # 304 bytes, rounded up to keep the xstate above it 64-aligned
INVALID_STACK_MODE = 3  # neither SS_ONSTACK nor SS_DISABLE: rt_sigreturn leaves the stack be

NR_MUNMAP, NR_RT_SIGRETURN = 11, 15

# Entry points of the heal code, as offsets from its start.
BOOT_AT = 0  # `syscall` for the call that maps the scratch page: the heal unmaps its result
NATIVE_AT = 7  # `syscall`
COMPAT_AT = 21  # `int $0x80`
HEAL_SIZE = 70


XFD_CAPABLE = 1 << 2  # CPUID 0xD sub-leaf ECX: a component the kernel enables on request


@functools.cache
def _component(i: int) -> tuple[int, int, int]:
    """(size, offset, flags) of xsave component `i` in the standard format, from CPUID: the
    same for every task and every frame, so asked once (a dump asks for each thread)."""
    length, offset, flags, _ = cpuid(0xD, i)
    return length, offset, flags


def signal_xstate(xstate: bytes) -> bytes:
    """The part of a task's xstate register set a signal frame holds, software bytes set."""
    in_use = xs.xstate_bv(xstate)
    enabled = xs.enabled_features(xstate)
    features, size = 0, xs.HEADER_AT + xs.HEADER_SIZE
    for i in range(enabled.bit_length()):
        if not enabled >> i & 1:
            continue
        if i >= 2:
            length, offset, flags = _component(i)
            if flags & XFD_CAPABLE and not in_use >> i & 1:
                continue
            size = max(size, offset + length)
        features |= 1 << i
    if size > len(xstate):
        raise ValueError("a short xstate register set")
    out = bytearray(xstate[:size])
    struct.pack_into("<IIQI", out, SW_RESERVED_AT, FP_XSTATE_MAGIC1, size + 4, features, size)
    return bytes(out)


def xstate_room(xstate: bytes) -> int:
    return (len(signal_xstate(xstate)) + 4 + 63) & ~63


def frame_below(xstate: bytes) -> int:
    """How far below the 64-aligned base the frame starts (same for every thread of a
    process: their xstate is of one size)."""
    return xstate_room(xstate) + UCONTEXT_ROOM


def frame_address(rsp: int, xstate: bytes) -> int:
    """Where the ucontext of a frame for a task whose stack pointer is `rsp` goes."""
    return ((rsp - RED_ZONE - SIGNAL_ROOM) & ~63) - frame_below(xstate)


def frame(regs: UserRegs, sigmask: int, xstate: bytes) -> tuple[int, bytes]:
    """(address, bytes) of the frame that puts back `regs`, `sigmask` and `xstate`; it lies
    below regs.rsp, where the heal code finds it from the stack pointer alone."""
    fpstate = bytearray(signal_xstate(xstate)) + struct.pack("<I", FP_XSTATE_MAGIC2)
    fpstate += bytes(xstate_room(xstate) - len(fpstate))
    at = frame_address(regs.rsp, xstate)
    r = regs
    uc = UCONTEXT.pack(
        UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS,
        0,  # uc_link
        0,  # uc_stack.ss_sp
        INVALID_STACK_MODE,
        0,  # uc_stack.ss_size
        r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
        r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.eflags,
        r.cs & 0xFFFF, 0, 0, r.ss & 0xFFFF,  # cs, gs, fs (not restored), ss
        0, 0, 0, 0,  # err, trapno, oldmask, cr2
        at + UCONTEXT_ROOM,  # fpstate
        sigmask,
    )  # fmt: skip
    return at, uc + bytes(UCONTEXT_ROOM - len(uc)) + bytes(fpstate)


def is_heal_code(data: bytes) -> bool:
    """Whether `data` is heal code (left by a torpor that was killed), whatever its numbers."""
    if len(data) != HEAL_SIZE:
        return False
    template = heal_code(0, 0, 0)
    numbers = {*range(11, 19), *range(25, 33), *range(34, 38), *range(59, 63)}
    return all(data[i] == template[i] for i in range(HEAL_SIZE) if i not in numbers)


def heal_code(scratch: int, scratch_size: int, below: int) -> bytes:
    """The heal code (HEAL_SIZE bytes, position-independent): entry points for the call that
    maps the scratch page, native calls and compat calls, each followed by the unmapping of
    the scratch page (`scratch`, 0 while there is none) and rt_sigreturn on the frame
    `below` bytes under the 64-aligned base below the red zone and the signal room."""
    code = b"".join(
        (
            b"\x0f\x05",  # boot: syscall
            b"\x48\x89\xc7",  # mov rdi, rax: what was just mapped
            b"\xeb\x1a",  # jmp heal
            b"\x0f\x05",  # native: syscall
            b"\x48\xbf" + struct.pack("<Q", scratch),  # movabs rdi, scratch
            b"\xeb\x0c",  # jmp heal
            b"\xcd\x80",  # compat: int $0x80
            b"\x48\xbf" + struct.pack("<Q", scratch),  # movabs rdi, scratch
            b"\xbe" + struct.pack("<I", scratch_size),  # heal: mov esi, size
            b"\xb8" + struct.pack("<I", NR_MUNMAP),  # mov eax, munmap
            b"\x0f\x05",  # syscall
            b"\x48\x81\xec" + struct.pack("<I", RED_ZONE + SIGNAL_ROOM),  # sub rsp, ...
            b"\x48\x83\xe4\xc0",  # and rsp, -64
            b"\x48\x81\xec" + struct.pack("<I", below),  # sub rsp, below
            b"\xb8" + struct.pack("<I", NR_RT_SIGRETURN),  # mov eax, rt_sigreturn
            b"\x0f\x05",  # syscall
        )
    )
    assert len(code) == HEAL_SIZE
    return code

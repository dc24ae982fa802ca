"""What an ABI object holds; the two instances live in x86_64.py and ia32.py."""

import struct
from dataclasses import dataclass, field

# Kernel-internal restart codes a task interrupted in a syscall shows in its return register.
ERESTARTSYS = 512
ERESTARTNOINTR = 513
ERESTARTNOHAND = 514
ERESTART_RESTARTBLOCK = 516
EINTR = 4
TIMER_ABSTIME = 1
FUTEX_WAIT = 0
FUTEX_CMD_MASK = 0xFFFFFE7F  # the op without FUTEX_PRIVATE_FLAG (128) and FUTEX_CLOCK_REALTIME
SEMTIMEDOP = 4  # ipc(2) call number
ANY = (1 << 64) - 1  # a TimedCall condition's mask that takes the whole argument


@dataclass(frozen=True)
class TimedCall:
    """A call that sleeps at most a relative timeout whose time left the kernel keeps to
    itself when the call is interrupted: in the task's restart_block (poll, futex, a sleep
    without a remainder buffer) or nowhere (the call fails with EINTR: epoll_wait,
    sigtimedwait, semtimedop).
    Calls that write the time left back (select, pselect6, ppoll, a sleep with a remainder
    buffer) or take an absolute deadline (FUTEX_WAIT_BITSET, mq_timedreceive) are not here:
    re-issued as they are, they end when they would have."""

    name: str
    timeout: int  # argument number of the timeout
    # "ms": an int of milliseconds, negative for none; "ts32", "ts64": a pointer (NULL for
    # none) to a struct timespec of 32-bit (old_timespec32) or 64-bit fields
    kind: str
    # (argument, mask, value): the call has a relative timeout only where, for each,
    # args[argument] & mask == value (a futex op that is FUTEX_WAIT, a NULL remainder...)
    when: tuple[tuple[int, int, int], ...] = ()

    def applies(self, args: list[int]) -> bool:
        return all(args[arg] & mask == value for arg, mask, value in self.when)


@dataclass(frozen=True)
class SigAction:
    """One signal's disposition as the kernel stores it for the ABI that installed it."""

    handler: int
    flags: int
    restorer: int
    mask: int


@dataclass(frozen=True)
class AltStack:
    sp: int
    flags: int
    size: int


@dataclass(frozen=True)
class Abi:
    """One x86 user ABI: how to make syscalls in it and how its kernel structs are laid out."""

    name: str  # "x86_64" or "ia32"
    bits: int
    user_cs: int
    user_ss: int
    audit_arch: int
    syscall_insn: bytes  # the instruction that enters this ABI's syscall table from 64-bit code
    arg_regs: tuple[str, ...]
    syscalls: dict[str, int]
    sigaction_format: str  # struct.pack format of the ABI's `struct sigaction` for rt_sigaction
    stack_t_format: str
    robust_list_head_size: int
    map_vdso_code: int  # arch_prctl code that maps the vDSO of this ABI
    criu_mode: str  # UserX86RegsEntry.mode
    task_size: int  # the kernel's TASK_SIZE for a task of this ABI: end of its address space
    # relative sleeps: syscall number -> argument numbers of (request, remainder, flags or None)
    sleeps: dict[int, tuple[int, int, int | None]] = field(default_factory=dict)
    # calls with a relative timeout the kernel does not write back: syscall number -> call
    timed_calls: dict[int, TimedCall] = field(default_factory=dict)
    # calls that block signals with a mask of their own while they sleep (sigsuspend, ppoll,
    # pselect, epoll_pwait, io_pgetevents): syscall numbers
    calls_with_own_mask: frozenset[int] = frozenset()
    extra: dict = field(default_factory=dict)

    @property
    def word(self) -> int:
        return self.bits // 8

    @property
    def word_format(self) -> str:
        return "<Q" if self.bits == 64 else "<I"

    @property
    def address_limit(self) -> int:
        """Highest user address (exclusive) this ABI can reach."""
        return 1 << 47 if self.bits == 64 else 1 << 32

    def nr(self, name: str) -> int:
        return self.syscalls[name]

    def pack_sigaction(self, act: SigAction) -> bytes:
        return struct.pack(self.sigaction_format, act.handler, act.flags, act.restorer, act.mask)

    def unpack_sigaction(self, raw: bytes) -> SigAction:
        size = struct.calcsize(self.sigaction_format)
        return SigAction(*struct.unpack(self.sigaction_format, raw[:size]))

    @property
    def sigaction_size(self) -> int:
        return struct.calcsize(self.sigaction_format)

    def pack_stack(self, st: AltStack) -> bytes:
        return struct.pack(self.stack_t_format, st.sp, st.flags, st.size)

    def unpack_stack(self, raw: bytes) -> AltStack:
        size = struct.calcsize(self.stack_t_format)
        return AltStack(*struct.unpack(self.stack_t_format, raw[:size]))

    @property
    def stack_t_size(self) -> int:
        return struct.calcsize(self.stack_t_format)

    def restartable(self, ret: int, orig: int) -> tuple[int, int] | None:
        """For a task stopped inside syscall `orig` that returned `ret` (a signed value),
        the (return-register, ip-adjustment) that re-issues it, or None if there's nothing to
        restart. The kernel would do this itself on the way out; a restored task must do it
        from the images."""
        if orig < 0:
            return None
        if -ret in (ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK):
            return orig, -len(self.syscall_insn)
        return None

    def rewound_call_at(self, insn: bytes) -> bool:
        """Whether `insn`, the bytes at the instruction pointer of a task of this ABI that is
        in no call, is where a call rewound to be re-issued stands (restartable's ip -= 2):
        this ABI's own call instruction, which torpor may run the task into again. For ia32
        that is `int $0x80` only: a call made by the fast `syscall` (AMD) or `sysenter`
        (Intel) of the vDSO's __kernel_vsyscall has its saved ip moved by the kernel to the
        landing pad after the `int $0x80` that follows (do_fast_syscall_32), so a rewound one
        stands at that `int $0x80`; a task at the fast instruction itself has not made its
        call yet, and must run that instruction with its own registers (the kernel takes the
        sixth argument from the stack there, and returns to the landing pad)."""
        return insn[: len(self.syscall_insn)] == self.syscall_insn

    def time_left_request(self, ret: int, orig: int, args: list[int]) -> tuple[int, int] | None:
        """For a relative sleep (nanosleep, clock_nanosleep without TIMER_ABSTIME) stopped
        with ERESTART_RESTARTBLOCK and given a remainder buffer, into which the kernel then
        wrote the time left: (argument number of the request, address of that buffer), so
        that the sleep is re-issued for the time left rather than the whole of it."""
        spec = self.sleeps.get(orig)
        if spec is None or -ret != ERESTART_RESTARTBLOCK:
            return None
        request, remainder, flags = spec
        if not args[remainder] or (flags is not None and args[flags] & TIMER_ABSTIME):
            return None
        return request, args[remainder]

"""The ia32 (compat) ABI, reached from 64-bit code with `int $0x80`."""

from torpor.arch.abi import (
    ANY,
    FUTEX_CMD_MASK,
    FUTEX_WAIT,
    SEMTIMEDOP,
    TIMER_ABSTIME,
    Abi,
    TimedCall,
)

# __kernel_vsyscall of the ia32 vDSO, as the kernel's boot-time alternatives leave it: after
# pushing %ecx, %edx and %ebp (the sixth argument), `mov %ecx,%ebp; syscall` (AMD: the fast
# entry takes the second argument from %ebp) or `mov %esp,%ebp; sysenter` (Intel: it takes the
# user stack from %ebp), then the `int $0x80` fallback and the landing pad the kernel returns
# a fast call to: pop %ebp; pop %edx; pop %ecx; ret.
FAST_INSNS = (b"\x0f\x05", b"\x0f\x34")  # syscall, sysenter
FALLBACK_AND_LANDING_PAD = b"\xcd\x80\x5d\x5a\x59\xc3"


def at_fast_entry(code: bytes) -> bool:
    """Whether `code`, the 8 bytes at a 32-bit task's instruction pointer, is the fast
    instruction of __kernel_vsyscall: the instruction and what %ebp must hold for it are the
    CPU vendor's; the `int $0x80` after it makes the same call on any CPU with the sixth
    argument in %ebp (found at the stack pointer, where it was pushed). (The `mov` before it
    is not looked at: a trampoline at the function's entry may cover it.)"""
    return code[:2] in FAST_INSNS and code[2:8] == FALLBACK_AND_LANDING_PAD


_FUTEX_WAIT = ((1, FUTEX_CMD_MASK, FUTEX_WAIT),)
_RELATIVE_SLEEP = ((1, TIMER_ABSTIME, 0), (3, ANY, 0))  # clock_nanosleep: no TIMER_ABSTIME, no rem

IA32 = Abi(
    name="ia32",
    bits=32,
    user_cs=0x23,
    user_ss=0x2B,
    audit_arch=0x40000003,
    syscall_insn=b"\xcd\x80",  # int $0x80
    arg_regs=("rbx", "rcx", "rdx", "rsi", "rdi", "rbp"),
    syscalls={
        "restart_syscall": 0,
        "close": 6,
        "getpid": 20,
        "lseek": 19,
        "brk": 45,
        "umask": 60,
        "munmap": 91,
        "mprotect": 125,
        "personality": 136,
        "prctl": 172,
        "rt_sigaction": 174,
        "rt_sigprocmask": 175,
        "sigaltstack": 186,
        "mmap2": 192,
        "set_robust_list": 311,
        "get_robust_list": 312,
        "openat": 295,
        "rseq": 386,
    },
    sigaction_format="<IIIQ",  # compat struct sigaction: handler, flags, restorer, mask
    stack_t_format="<IiI",  # compat stack_t: ss_sp, ss_flags, ss_size
    robust_list_head_size=12,
    map_vdso_code=0x2002,  # ARCH_MAP_VDSO_32
    task_size=0xFFFFE000,
    criu_mode="COMPAT",
    sleeps={162: (0, 1, None), 267: (2, 3, 1), 407: (2, 3, 1)},  # nanosleep, clock_nanosleep(64)
    # sigsuspend, rt_sigsuspend, pselect6, ppoll, epoll_pwait, io_pgetevents, their time64
    # forms, epoll_pwait2
    calls_with_own_mask=frozenset({72, 179, 308, 309, 319, 385, 413, 414, 416, 441}),
    # glibc picks the time32 calls where the time fits in 32 bits, the *_time64 ones otherwise
    timed_calls={
        168: TimedCall("poll", 2, "ms"),
        256: TimedCall("epoll_wait", 3, "ms"),
        319: TimedCall("epoll_pwait", 3, "ms"),
        441: TimedCall("epoll_pwait2", 3, "ts64"),
        240: TimedCall("futex", 3, "ts32", _FUTEX_WAIT),
        422: TimedCall("futex_time64", 3, "ts64", _FUTEX_WAIT),
        177: TimedCall("rt_sigtimedwait", 2, "ts32"),
        421: TimedCall("rt_sigtimedwait_time64", 2, "ts64"),
        117: TimedCall("ipc SEMTIMEDOP", 5, "ts32", ((0, 0xFFFF, SEMTIMEDOP),)),
        420: TimedCall("semtimedop_time64", 3, "ts64"),
        162: TimedCall("nanosleep", 0, "ts32", ((1, ANY, 0),)),
        267: TimedCall("clock_nanosleep", 2, "ts32", _RELATIVE_SLEEP),
        407: TimedCall("clock_nanosleep_time64", 2, "ts64", _RELATIVE_SLEEP),
    },
)

"""The ia32 (compat) ABI, reached from 64-bit code with `int $0x80`."""

from torpor.arch.abi import Abi

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
)

"""The native x86_64 ABI."""

from torpor.arch.abi import Abi

X86_64 = Abi(
    name="x86_64",
    bits=64,
    user_cs=0x33,
    user_ss=0x2B,
    audit_arch=0xC000003E,
    syscall_insn=b"\x0f\x05",  # syscall
    arg_regs=("rdi", "rsi", "rdx", "r10", "r8", "r9"),
    syscalls={
        "close": 3,
        "lseek": 8,
        "mmap": 9,
        "mprotect": 10,
        "munmap": 11,
        "brk": 12,
        "rt_sigaction": 13,
        "rt_sigprocmask": 14,
        "mremap": 25,
        "madvise": 28,
        "getitimer": 36,
        "getpid": 39,
        "fcntl": 72,
        "chdir": 80,
        "umask": 95,
        "setpgid": 109,
        "setsid": 112,
        "setgroups": 116,
        "setresuid": 117,
        "setresgid": 119,
        "sigaltstack": 131,
        "personality": 135,
        "prctl": 157,
        "arch_prctl": 158,
        "set_tid_address": 218,
        "restart_syscall": 219,
        "openat": 257,
        "set_robust_list": 273,
        "get_robust_list": 274,
        "dup3": 292,
        "pipe2": 293,
        "rseq": 334,
        "close_range": 436,
        "rt_sigqueueinfo": 129,
        "capset": 126,
        "rt_tgsigqueueinfo": 297,
    },
    sigaction_format="<QQQQ",  # handler, flags, restorer, mask
    stack_t_format="<QixxxxQ",  # ss_sp, ss_flags, ss_size
    robust_list_head_size=24,
    map_vdso_code=0x2003,  # ARCH_MAP_VDSO_64
    task_size=(1 << 47) - 4096,
    criu_mode="NATIVE",
)

"""ptrace(2) on an x86_64 host: requests, options, stop decoding and the register structs.

The register struct is the host's 64-bit `user_regs_struct`: PTRACE_GETREGS returns it for
64-bit and ia32 tasks alike (an ia32 task shows cs=0x23), so the rest of torpor needs only one.
"""

import ctypes
import os
import signal
from dataclasses import dataclass

from torpor.kernel.libc import SYS_PTRACE, address_of, syscall

PTRACE_PEEKUSER = 3
PTRACE_POKEUSER = 6
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
PTRACE_SYSCALL = 24
PTRACE_GET_THREAD_AREA = 25
PTRACE_SET_THREAD_AREA = 26
PTRACE_ARCH_PRCTL = 30
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETREGSET = 0x4204
PTRACE_SETREGSET = 0x4205
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
PTRACE_PEEKSIGINFO = 0x4209
PTRACE_PEEKSIGINFO_SHARED = 1
PTRACE_GETSIGMASK = 0x420A
PTRACE_SETSIGMASK = 0x420B
PTRACE_GET_SYSCALL_INFO = 0x420E
PTRACE_GET_RSEQ_CONFIGURATION = 0x420F
PTRACE_SECCOMP_GET_FILTER = 0x420C
PTRACE_SECCOMP_GET_METADATA = 0x420D

PTRACE_O_TRACESYSGOOD = 0x1
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXEC = 0x10
PTRACE_O_EXITKILL = 0x100000
PTRACE_O_SUSPEND_SECCOMP = 0x200000

PTRACE_EVENT_FORK = 1
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXEC = 4
PTRACE_EVENT_STOP = 128

NT_PRSTATUS = 1
NT_X86_XSTATE = 0x202

SYSCALL_STOP = signal.SIGTRAP | 0x80

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003


class UserRegs(ctypes.Structure):
    """x86_64 `struct user_regs_struct` (216 bytes)."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs "
            "eflags rsp ss fs_base gs_base ds es fs gs"
        ).split()
    ]

    def copy(self) -> "UserRegs":
        return UserRegs.from_buffer_copy(self)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name, _ in self._fields_}


class UserDesc(ctypes.Structure):
    """`struct user_desc`: one GDT TLS descriptor of an ia32 task."""

    _fields_ = [
        ("entry_number", ctypes.c_uint32),
        ("base_addr", ctypes.c_uint32),
        ("limit", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
    ]


class RseqConfiguration(ctypes.Structure):
    """`struct ptrace_rseq_configuration`."""

    _fields_ = [
        ("rseq_abi_pointer", ctypes.c_uint64),
        ("rseq_abi_size", ctypes.c_uint32),
        ("signature", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
    ]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def ptrace(request: int, pid: int, addr: int = 0, data=0) -> int:
    """Raw ptrace; `data` may be an int or a ctypes object/bytearray passed by address."""
    # `data` keeps the object alive for the duration of the call.
    raw = data if isinstance(data, int) else address_of(data)
    return syscall(SYS_PTRACE, request, pid, addr, raw)


def seize(pid: int, options: int) -> None:
    ptrace(PTRACE_SEIZE, pid, 0, options)


def set_options(pid: int, options: int) -> None:
    ptrace(PTRACE_SETOPTIONS, pid, 0, options)


def event_message(pid: int) -> int:
    """PTRACE_GETEVENTMSG: for a fork or clone event, the new task's PID."""
    out = ctypes.c_ulong()
    ptrace(PTRACE_GETEVENTMSG, pid, 0, out)
    return out.value


def interrupt(pid: int) -> None:
    ptrace(PTRACE_INTERRUPT, pid)


def cont(pid: int, sig: int = 0) -> None:
    ptrace(PTRACE_CONT, pid, 0, sig)


def cont_syscall(pid: int, sig: int = 0) -> None:
    ptrace(PTRACE_SYSCALL, pid, 0, sig)


def detach(pid: int, sig: int = 0) -> None:
    ptrace(PTRACE_DETACH, pid, 0, sig)


def get_regs(pid: int) -> UserRegs:
    regs = UserRegs()
    ptrace(PTRACE_GETREGS, pid, 0, regs)
    return regs


def set_regs(pid: int, regs: UserRegs) -> None:
    ptrace(PTRACE_SETREGS, pid, 0, regs)


REGSET_ROOM = 1 << 16  # more than any register set: xstate with AMX tiles is 11 KiB


def get_regset(pid: int, note: int, size: int = REGSET_ROOM) -> bytes:
    """Read register set `note`; the kernel trims the iovec to the set's real size (which for
    the xstate depends on the CPU: read it whole, a set written back must be complete)."""
    buf = bytearray(size)
    iov = _Iovec(address_of(buf), size)
    ptrace(PTRACE_GETREGSET, pid, note, iov)
    return bytes(buf[: iov.len])


def set_regset(pid: int, note: int, data: bytes) -> None:
    buf = bytearray(data)
    iov = _Iovec(address_of(buf), len(buf))
    ptrace(PTRACE_SETREGSET, pid, note, iov)


def get_sigmask(pid: int) -> int:
    mask = ctypes.c_uint64()
    ptrace(PTRACE_GETSIGMASK, pid, 8, mask)
    return mask.value


def set_sigmask(pid: int, mask: int) -> None:
    ptrace(PTRACE_SETSIGMASK, pid, 8, ctypes.c_uint64(mask))


class _PeekSiginfoArgs(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("flags", ctypes.c_uint32), ("nr", ctypes.c_int32)]


SIGINFO_SIZE = 128


def pending_signals(pid: int, shared: bool) -> list[bytes]:
    """The queued siginfos of the task (or of its whole process), without dequeuing them."""
    result: list[bytes] = []
    batch = 32
    buf = bytearray(SIGINFO_SIZE * batch)
    while True:
        args = _PeekSiginfoArgs(len(result), PTRACE_PEEKSIGINFO_SHARED if shared else 0, batch)
        n = ptrace(PTRACE_PEEKSIGINFO, pid, address_of(args), buf)
        result += [bytes(buf[i * SIGINFO_SIZE : (i + 1) * SIGINFO_SIZE]) for i in range(n)]
        if n < batch:
            return result


def get_thread_area(pid: int, entry: int) -> UserDesc:
    desc = UserDesc()
    ptrace(PTRACE_GET_THREAD_AREA, pid, entry, desc)
    return desc


def set_thread_area(pid: int, entry: int, desc: UserDesc) -> None:
    ptrace(PTRACE_SET_THREAD_AREA, pid, entry, desc)


def get_rseq_configuration(pid: int) -> RseqConfiguration:
    conf = RseqConfiguration()
    ptrace(PTRACE_GET_RSEQ_CONFIGURATION, pid, ctypes.sizeof(conf), conf)
    return conf


SOCK_FILTER_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


def seccomp_filter(pid: int, index: int) -> bytes:
    """The classic BPF program of the task's seccomp filter `index`, as struct sock_filter[].
    Index 0 is the oldest filter (the kernel counts back from the newest by the number of
    filters less the index). OSError ENOENT past the newest, EINVAL when the task is not in
    filter mode."""
    count = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, 0)
    buf = bytearray(count * SOCK_FILTER_SIZE)
    count = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, buf)
    return bytes(buf[: count * SOCK_FILTER_SIZE])


def seccomp_filter_flags(pid: int, index: int) -> int:
    """The SECCOMP_FILTER_FLAG_* the kernel shows for filter `index` of the task
    (PTRACE_SECCOMP_GET_METADATA: only SECCOMP_FILTER_FLAG_LOG)."""
    metadata = (ctypes.c_uint64 * 2)(index, 0)  # struct seccomp_metadata: filter_off, flags
    ptrace(PTRACE_SECCOMP_GET_METADATA, pid, ctypes.sizeof(metadata), metadata)
    return metadata[1]


def syscall_arch(pid: int) -> int:
    """The AUDIT_ARCH of the syscall ABI the task is stopped in (PTRACE_GET_SYSCALL_INFO)."""
    buf = bytearray(88)
    ptrace(PTRACE_GET_SYSCALL_INFO, pid, len(buf), buf)
    return int.from_bytes(buf[4:8], "little")


@dataclass(frozen=True)
class Stop:
    """What waitpid reported for a traced task."""

    pid: int
    status: int

    @property
    def exited(self) -> bool:
        return os.WIFEXITED(self.status) or os.WIFSIGNALED(self.status)

    @property
    def stopped(self) -> bool:
        return os.WIFSTOPPED(self.status)

    @property
    def sig(self) -> int:
        return os.WSTOPSIG(self.status) if self.stopped else 0

    @property
    def event(self) -> int:
        return (self.status >> 16) & 0xFF

    @property
    def is_syscall_stop(self) -> bool:
        return self.stopped and self.sig == SYSCALL_STOP

    def describe(self) -> str:
        if os.WIFEXITED(self.status):
            return f"exited with status {os.WEXITSTATUS(self.status)}"
        if os.WIFSIGNALED(self.status):
            return f"killed by {signal.Signals(os.WTERMSIG(self.status)).name}"
        return f"stopped by signal {self.sig} (event {self.event})"


def wait(pid: int) -> Stop:
    """Wait for the next state change of traced task `pid` (__WALL: threads and children)."""
    while True:
        try:
            got, status = os.waitpid(pid, os.__dict__.get("__WALL", 0x40000000))
        except InterruptedError:
            continue
        return Stop(got, status)

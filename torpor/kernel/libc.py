"""Raw system calls from torpor's own process, through libc's syscall(2) wrapper.

Only calls that Python's os module lacks go through here (clone3, pidfd_*, process_vm_*,
ptrace); errors become OSError with the kernel's errno, like the os module's.
"""

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long

# The GIL must stay held across clone3: the child resumes in a copy of this interpreter.
_syscall_gil = ctypes.PyDLL(None, use_errno=True).syscall
_syscall_gil.restype = ctypes.c_long

# x86_64 syscall numbers of the calls torpor makes on its own behalf.
SYS_PROCESS_VM_READV = 310
SYS_PROCESS_VM_WRITEV = 311
SYS_PTRACE = 101
SYS_CLONE3 = 435
SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
SYS_TGKILL = 234
SYS_KILL = 62
SYS_GETTID = 186
SYS_PAUSE = 34
SYS_UNSHARE = 272
SYS_SETNS = 308
SYS_ARCH_PRCTL = 158
SYS_PRLIMIT64 = 302
SYS_IOPRIO_SET = 251
SYS_IOPRIO_GET = 252
SYS_GET_ROBUST_LIST = 274


def _arg(value):
    if isinstance(value, int):
        return ctypes.c_ulong(value & 0xFFFFFFFFFFFFFFFF)
    return value


def syscall(nr: int, *args) -> int:
    """Issue system call `nr`; return its non-negative result or raise OSError."""
    result = _syscall(ctypes.c_long(nr), *(_arg(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def robust_list(tid: int) -> tuple[int, int]:
    """(head, length) of the robust futex list thread `tid` registered with the native
    set_robust_list (a 32-bit task's compat registration is another field, not seen here)."""
    head, length = ctypes.c_uint64(), ctypes.c_uint64()
    syscall(SYS_GET_ROBUST_LIST, tid, ctypes.addressof(head), ctypes.addressof(length))
    return head.value, length.value


def syscall_holding_gil(nr: int, *args) -> int:
    """Like :func:`syscall`, but without releasing the GIL (needed around clone3)."""
    result = _syscall_gil(ctypes.c_long(nr), *(_arg(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def address_of(buffer) -> int:
    """The address of a writable buffer (bytearray or ctypes object) in this process."""
    if isinstance(buffer, bytearray | memoryview):
        return ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    return ctypes.addressof(buffer)

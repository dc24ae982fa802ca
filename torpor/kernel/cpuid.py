"""CPUID, run by torpor itself: which xsave components this CPU has and where they lie.

Python has no CPUID, so a few bytes of machine code are placed in an executable page of
torpor's own memory and called through ctypes. Nothing runs in any target.
"""

import ctypes
import functools
import mmap

# push rbx; mov r8,rdx; mov eax,edi; mov ecx,esi; cpuid;
# mov [r8],eax; mov [r8+4],ebx; mov [r8+8],ecx; mov [r8+12],edx; pop rbx; ret
_CODE = bytes.fromhex("53 4989d0 89f8 89f1 0fa2 418900 41895804 41894808 4189500c 5b c3")

_Func = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p)


@functools.cache
def _cpuid_function():
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(_CODE)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return page, _Func(address)


def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of CPUID leaf/subleaf on the CPU this runs on."""
    _page, func = _cpuid_function()
    out = (ctypes.c_uint32 * 4)()
    func(leaf, subleaf, ctypes.addressof(out))
    return tuple(out)


ARCH_GET_XCOMP_SUPP = 0x1021


def protection_keys() -> bool:
    """Whether this CPU has protection keys and the kernel enabled them (CPUID.7.0:ECX PKU
    and OSPKE)."""
    return cpuid(0)[0] >= 7 and cpuid(7)[2] >> 3 & 0b11 == 0b11


def xfeatures() -> int:
    """The xsave components the kernel gives user space on this machine (the mask a stopped
    task's NT_X86_XSTATE buffer carries as XCR0): ARCH_GET_XCOMP_SUPP, or where the kernel
    is older than 5.16, the user components CPUID offers."""
    from torpor.kernel import libc

    mask = ctypes.c_uint64()
    try:
        libc.syscall(libc.SYS_ARCH_PRCTL, ARCH_GET_XCOMP_SUPP, ctypes.addressof(mask))
        return mask.value
    except OSError:
        eax, _, _, edx = cpuid(0xD, 0)
        return eax | edx << 32

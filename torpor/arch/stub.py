"""Minimal static ELF programs that only wait, one per ABI, built here byte by byte.

A restored task starts by exec'ing the stub of its ABI: exec gives it a clean address space
with the kernel's settings for that ABI (for ia32: the 32-bit address limit, the mm flags of a
32-bit program, no [vsyscall] page) and moves it into the time namespace prepared for it.
torpor then rebuilds it by injected syscalls, starting from the `syscall` pair in the stub.
"""

import struct

from torpor.arch.abi import Abi

LOAD_ADDRESS = 0x08000000
PT_LOAD, PT_GNU_STACK = 1, 0x6474E551
PF_RX, PF_RW = 5, 6
ELFCLASS32, ELFCLASS64 = 1, 2
EM_386, EM_X86_64 = 3, 62
ET_EXEC = 2

# Both loop on pause(); both contain the bytes of a 64-bit `syscall` instruction.
_IA32_CODE = bytes.fromhex("b81d000000 cd80 ebf7 0f05")  # mov $29,%eax; int $0x80; jmp; syscall
_X86_64_CODE = bytes.fromhex("b822000000 0f05 ebf7")  # mov $34,%eax; syscall; jmp

# The init of a PID namespace made for a restore: every second, kill(-1, 0) asks whether any
# other process is left in the namespace; when none is (ESRCH), it exits, ending the namespace.
_INIT_CODE = bytes.fromhex(
    "488d3d29000000"  # lea ts(%rip),%rdi
    "b823000000 31f6 0f05"  # nanosleep(&ts, NULL)
    "b83e000000 bfffffffff 31f6 0f05"  # kill(-1, 0)
    "4883f8fd 75dc"  # cmp $-ESRCH,%rax; jne back to the start
    "b83c000000 31ff 0f05"  # exit(0)
    "909090"
    "0100000000000000 0000000000000000"  # ts: one second
)


def _ident(elf_class: int) -> bytes:
    return b"\x7fELF" + bytes([elf_class, 1, 1, 0]) + bytes(8)  # little-endian, SysV


def _ia32_elf() -> bytes:
    ehsize, phsize = 52, 32
    headers = ehsize + 2 * phsize
    size = headers + len(_IA32_CODE)
    ehdr = _ident(ELFCLASS32) + struct.pack(
        "<HHIIIIIHHHHHH",
        ET_EXEC,
        EM_386,
        1,
        LOAD_ADDRESS + headers,
        ehsize,
        0,
        0,
        ehsize,
        phsize,
        2,
        0,
        0,
        0,
    )
    load = struct.pack("<8I", PT_LOAD, 0, LOAD_ADDRESS, LOAD_ADDRESS, size, size, PF_RX, 0x1000)
    stack = struct.pack("<8I", PT_GNU_STACK, 0, 0, 0, 0, 0, PF_RW, 16)
    return ehdr + load + stack + _IA32_CODE


def _x86_64_elf(code: bytes = _X86_64_CODE) -> bytes:
    ehsize, phsize = 64, 56
    headers = ehsize + 2 * phsize
    size = headers + len(code)
    ehdr = _ident(ELFCLASS64) + struct.pack(
        "<HHIQQQIHHHHHH",
        ET_EXEC,
        EM_X86_64,
        1,
        LOAD_ADDRESS + headers,
        ehsize,
        0,
        0,
        ehsize,
        phsize,
        2,
        0,
        0,
        0,
    )
    load = struct.pack(
        "<IIQQQQQQ", PT_LOAD, PF_RX, 0, LOAD_ADDRESS, LOAD_ADDRESS, size, size, 0x1000
    )
    stack = struct.pack("<IIQQQQQQ", PT_GNU_STACK, PF_RW, 0, 0, 0, 0, 0, 16)
    return ehdr + load + stack + code


def idle_elf(abi: Abi) -> bytes:
    """The stub program for tasks of `abi`: a read-execute segment looping on pause(), and a
    PT_GNU_STACK header so the kernel does not give it READ_IMPLIES_EXEC."""
    return _ia32_elf() if abi.bits == 32 else _x86_64_elf()


def namespace_init_elf() -> bytes:
    """A 64-bit init for a PID namespace, which exits once it is alone in it."""
    return _x86_64_elf(_INIT_CODE)

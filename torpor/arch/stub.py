"""A minimal static ia32 ELF that only waits, built here byte by byte.

A restored ia32 task must be born from an ia32 exec: only exec gives a task the 32-bit address
limit, the mm flags of a 32-bit program and no [vsyscall] page. Exec'ing this stub is how the
new task becomes a genuine ia32 process before torpor rebuilds it by injected syscalls.
"""

import struct

LOAD_ADDRESS = 0x08000000
_EHDR_SIZE = 52
_PHDR_SIZE = 32
PT_GNU_STACK = 0x6474E551

_CODE = bytes(
    [0xB8, 29, 0, 0, 0]  # mov $__NR_pause, %eax
    + [0xCD, 0x80]  # int $0x80
    + [0xEB, 0xF7]  # jmp back to the mov
    + [0x0F, 0x05]  # a `syscall` pair, never run here: torpor's first injected calls use it
)


def ia32_idle_elf() -> bytes:
    """The stub: one read-execute PT_LOAD segment, entry point looping on pause(), and a
    PT_GNU_STACK header so the kernel does not give it READ_IMPLIES_EXEC."""
    headers = _EHDR_SIZE + 2 * _PHDR_SIZE
    size = headers + len(_CODE)
    entry = LOAD_ADDRESS + headers
    ident = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)  # ELFCLASS32, little-endian, SysV
    ehdr = ident + struct.pack(
        "<HHIIIIIHHHHHH", 2, 3, 1, entry, _EHDR_SIZE, 0, 0, _EHDR_SIZE, _PHDR_SIZE, 2, 0, 0, 0
    )  # ET_EXEC, EM_386
    load = struct.pack("<IIIIIIII", 1, 0, LOAD_ADDRESS, LOAD_ADDRESS, size, size, 5, 0x1000)
    gnu_stack = struct.pack("<IIIIIIII", PT_GNU_STACK, 0, 0, 0, 0, 0, 6, 16)
    return ehdr + load + gnu_stack + _CODE

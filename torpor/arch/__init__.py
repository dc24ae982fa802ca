"""The two ABIs a task on an x86_64 host can run: native x86_64 and ia32.

Everything that differs between them (syscall numbers and instruction, argument registers, struct
layouts, segment selectors, restart rules) lives in the ABI objects; other modules ask the task's
ABI instead of testing for compat mode themselves.
"""

from torpor.arch.abi import Abi
from torpor.arch.ia32 import IA32
from torpor.arch.x86_64 import X86_64

ABIS = (X86_64, IA32)


def abi_for_cs(cs: int) -> Abi | None:
    """The ABI of a task whose code segment selector is `cs`; None for an unknown one."""
    for abi in ABIS:
        if abi.user_cs == cs:
            return abi
    return None


def abi_by_name(name: str) -> Abi:
    for abi in ABIS:
        if abi.name == name:
            return abi
    raise KeyError(name)


__all__ = ["ABIS", "IA32", "X86_64", "Abi", "abi_by_name", "abi_for_cs"]

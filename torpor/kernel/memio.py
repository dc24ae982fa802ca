"""Bulk memory transfer between torpor and another process: process_vm_readv/writev.

Large vectors keep the kernel busy and Python out of the loop; IOV_MAX bounds one call.
"""

import ctypes

from torpor.kernel.libc import SYS_PROCESS_VM_READV, SYS_PROCESS_VM_WRITEV, address_of, syscall

IOV_MAX = 1024


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("len", ctypes.c_uint64)]


def _transfer(nr: int, pid: int, local: bytearray | memoryview, remote: list[tuple[int, int]]):
    """Move bytes between `local` and the remote (addr, len) ranges, in order, to the end."""
    base = address_of(local)
    done = 0
    for i in range(0, len(remote), IOV_MAX):
        chunk = remote[i : i + IOV_MAX]
        while chunk:
            total = sum(length for _, length in chunk)
            riov = (Iovec * len(chunk))(*[Iovec(a, n) for a, n in chunk])
            liov = Iovec(base + done, total)
            moved = syscall(nr, pid, ctypes.byref(liov), 1, riov, len(chunk), 0)
            if moved == 0:
                raise OSError(14, "Bad address")
            done += moved
            chunk = _advance(chunk, moved)


def _advance(ranges: list[tuple[int, int]], skip: int) -> list[tuple[int, int]]:
    """The part of `ranges` left after the first `skip` bytes were moved."""
    rest = []
    for addr, length in ranges:
        if skip >= length:
            skip -= length
            continue
        rest.append((addr + skip, length - skip))
        skip = 0
    return rest


def read_into(pid: int, local: bytearray | memoryview, remote: list[tuple[int, int]]) -> None:
    """Fill `local` from the remote ranges of `pid`, in order."""
    _transfer(SYS_PROCESS_VM_READV, pid, local, remote)


def write_from(pid: int, local: bytearray | memoryview, remote: list[tuple[int, int]]) -> None:
    """Copy `local` into the remote ranges of `pid`, in order."""
    _transfer(SYS_PROCESS_VM_WRITEV, pid, local, remote)


def read(pid: int, addr: int, size: int) -> bytes:
    buf = bytearray(size)
    read_into(pid, buf, [(addr, size)])
    return bytes(buf)


def batches(runs: list[tuple[int, int]], limit: int):
    """Group (address, length) runs into batches of at most `limit` bytes, cutting runs where
    needed: each batch is one transfer, its buffer never larger than `limit`."""
    batch: list[tuple[int, int]] = []
    size = 0
    for addr, length in runs:
        while length:
            take = min(length, limit - size)
            batch.append((addr, take))
            size += take
            addr += take
            length -= take
            if size == limit:
                yield batch, size
                batch, size = [], 0
    if batch:
        yield batch, size

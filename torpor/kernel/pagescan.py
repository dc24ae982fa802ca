"""Which pages of a range hold data worth saving: PAGEMAP_SCAN, or /proc/PID/pagemap before 6.7.

Both paths answer the same question with runs of pages, so the caller never loops over pages
itself when the kernel can do it.
"""

import ctypes
import fcntl
import os

from torpor.kernel.procfs import (
    PAGE_SIZE,
    PM_FILE_OR_SHARED_ANON,
    PM_PRESENT,
    PM_SWAP,
    proc,
    read_pagemap,
)

PAGEMAP_SCAN = 0xC0606610  # _IOWR('f', 16, struct pm_scan_arg)
PAGE_IS_FILE = 1 << 2
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
PAGE_IS_PFNZERO = 1 << 5


class _ScanArg(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "size flags start end walk_end vec vec_len max_pages category_inverted "
            "category_mask category_anyof_mask return_mask"
        ).split()
    ]


class _Region(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("cat", ctypes.c_uint64)]


class PageScanner:
    """Finds the runs of pages with private data in a task's memory ranges."""

    VEC = 4096

    def __init__(self, pid: int):
        self.pid = pid
        self.fd = os.open(proc(pid, "pagemap"), os.O_RDONLY)
        self._vec = (_Region * self.VEC)()
        self.use_scan = True

    def close(self) -> None:
        os.close(self.fd)

    def runs(self, start: int, end: int, anon_only: bool) -> list[tuple[int, int]]:
        """(address, length) runs in [start, end) that are present or swapped, excluding the
        shared zero page and, with anon_only, pages still backed by the file."""
        if self.use_scan:
            try:
                return self._scan(start, end, anon_only)
            except OSError:
                self.use_scan = False
        return self._walk(start, end, anon_only)

    def _scan(self, start: int, end: int, anon_only: bool) -> list[tuple[int, int]]:
        excluded = PAGE_IS_PFNZERO | (PAGE_IS_FILE if anon_only else 0)
        result: list[tuple[int, int]] = []
        while start < end:
            arg = _ScanArg(
                size=ctypes.sizeof(_ScanArg),
                start=start,
                end=end,
                vec=ctypes.addressof(self._vec),
                vec_len=self.VEC,
                category_inverted=excluded,
                category_mask=excluded,
                category_anyof_mask=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask=PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
            )
            n = fcntl.ioctl(self.fd, PAGEMAP_SCAN, arg)
            for region in self._vec[:n]:
                if result and result[-1][0] + result[-1][1] == region.start:
                    addr, length = result[-1]
                    result[-1] = (addr, length + region.end - region.start)
                else:
                    result.append((region.start, region.end - region.start))
            if arg.walk_end <= start:
                break
            start = arg.walk_end
        return result

    def _walk(self, start: int, end: int, anon_only: bool) -> list[tuple[int, int]]:
        entries = read_pagemap(self.pid, start, end, self.fd)
        result: list[tuple[int, int]] = []
        run_start = None
        for i, entry in enumerate(entries):
            wanted = entry & (PM_PRESENT | PM_SWAP) and not (
                anon_only and entry & PM_FILE_OR_SHARED_ANON
            )
            if wanted and run_start is None:
                run_start = i
            elif not wanted and run_start is not None:
                result.append((start + run_start * PAGE_SIZE, (i - run_start) * PAGE_SIZE))
                run_start = None
        if run_start is not None:
            result.append((start + run_start * PAGE_SIZE, (len(entries) - run_start) * PAGE_SIZE))
        return result

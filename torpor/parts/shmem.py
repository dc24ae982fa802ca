"""Shared memory objects of a tree being restored: MAP_SHARED anonymous memory and memfds.

Each object is created once, in torpor, as big as the largest offset any mapping of the tree
reaches; every process that maps it opens it through /proc and maps it from that fd, so the
processes share it again. Its saved pages are written through the mappings like any others.
"""

import ctypes
import mmap
import os

from torpor.images import constants as C
from torpor.kernel.procfs import PAGE_SIZE


def shared_vmas(vmas):
    """The mappings of shared memory objects among `vmas`."""
    return [v for v in vmas if v.status & (C.VMA_ANON_SHARED | C.VMA_AREA_MEMFD)]


def reach(vmas, into: dict[int, int]) -> None:
    """Record in `into` how far into each shared memory object (by shmid) `vmas` map it."""
    for vma in shared_vmas(vmas):
        into[vma.shmid] = max(into.get(vma.shmid, 0), vma.pgoff + vma.end - vma.start)


class SharedMemory:
    def __init__(self, mms):
        self._sizes: dict[int, int] = {}
        self._names: dict[int, str | None] = {}
        for mm in mms:
            reach(mm.vmas, self._sizes)
            for vma in shared_vmas(mm.vmas):
                memfd = vma.status & C.VMA_AREA_MEMFD
                self._names[vma.shmid] = vma.torpor_memfd_name if memfd else None
        self._paths: dict[int, str] = {}
        self._keep: list = []

    def path(self, shmid: int) -> str:
        """A path under /proc that opens object `shmid`, created on first use."""
        if shmid not in self._paths:
            size = -(-self._sizes[shmid] // PAGE_SIZE) * PAGE_SIZE
            name = self._names[shmid]
            if name is None:
                area = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
                first = ctypes.c_char.from_buffer(area)
                start = ctypes.addressof(first)
                del first  # release the buffer export, or the area cannot be closed later
                self._keep.append(area)
                self._paths[shmid] = f"/proc/{os.getpid()}/map_files/{start:x}-{start + size:x}"
            else:
                fd = os.memfd_create(name, os.MFD_CLOEXEC)
                os.ftruncate(fd, size)
                self._keep.append(fd)
                self._paths[shmid] = f"/proc/{os.getpid()}/fd/{fd}"
        return self._paths[shmid]

    def close(self) -> None:
        """Drop torpor's own hold on every object (the restored mappings keep them)."""
        for item in self._keep:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        self._keep.clear()

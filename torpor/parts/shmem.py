"""Shared memory objects of a tree being restored: MAP_SHARED anonymous memory and memfds.

Each object is created once, in torpor, as big as the largest offset any mapping of the tree
reaches (a memfd as big as it was); every process that maps it opens it through /proc and
maps it from that fd, so the processes share it again. Its saved pages are written through
the mappings like any others (a memfd's others by parts.memfds). Seals go on last; a
read-only shared mapping of a memfd sealed against writing is made again after them, the
only way the kernel makes it shared yet never writable (parts.memory).
"""

import ctypes
import fcntl
import mmap
import os

from torpor.errors import ImageError, RestoreError
from torpor.images import constants as C
from torpor.kernel.procfs import PAGE_SIZE

F_ADD_SEALS = 1033
F_SEAL_SEAL, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE = 1, 8, 16
LARGEST_FILE = (1 << 63) - 1  # MAX_LFS_FILESIZE: no memfd is larger
LARGEST_ANON = 1 << 47  # shared anonymous memory was made by one mapping of a 64-bit task


def shared_vmas(vmas):
    """The mappings of shared memory objects among `vmas`."""
    return [v for v in vmas if v.status & (C.VMA_ANON_SHARED | C.VMA_AREA_MEMFD)]


def reach(vmas, into: dict[int, int]) -> None:
    """Record in `into` how far into each shared memory object (by shmid) `vmas` map it."""
    for vma in shared_vmas(vmas):
        into[vma.shmid] = max(into.get(vma.shmid, 0), vma.pgoff + vma.end - vma.start)


def memfd_objects(mms, held: dict[int, tuple[str, int, int]]) -> dict[int, tuple[str, int, int]]:
    """The memfds of a tree being restored, id -> (name, size, seals): those its open files
    are (`held`, from parts.files.memory_objects) and those only its mappings in `mms`
    reach, whose VMAs carry the memfd's size and seals (images of older dumps lack them:
    such a memfd is as large as its mappings reach)."""
    found = {}
    for mm in mms:
        for vma in shared_vmas(mm.vmas):
            if vma.status & C.VMA_AREA_MEMFD and vma.HasField("torpor_memfd_size"):
                seals = vma.torpor_memfd_seals
                found[vma.shmid] = (vma.torpor_memfd_name, vma.torpor_memfd_size, seals)
    return found | held


def image_problem(mms, memfds: dict[int, tuple[str, int, int]]) -> str | None:
    """What makes the saved shared memory objects impossible: a mapping at an offset that
    is not page-aligned, or one reaching beyond what such an object can hold (a memfd's
    largest size; the address space a shared anonymous object was mapped from); None if
    nothing."""
    for mm in mms:
        for vma in shared_vmas(mm.vmas):
            memfd = vma.status & C.VMA_AREA_MEMFD
            limit = LARGEST_FILE if memfd else LARGEST_ANON
            if vma.pgoff % PAGE_SIZE or vma.pgoff + vma.end - vma.start > limit:
                return (
                    f"mapping {vma.start:#x}-{vma.end:#x} of memory object {vma.shmid} at "
                    f"offset {vma.pgoff:#x} is beyond what such an object holds"
                )
    for inode, (_, size, _) in memfds.items():
        if size > LARGEST_FILE:
            return f"memfd {inode} of {size} bytes is larger than a file can be"
    return None


class SharedMemory:
    """The shared memory objects of a restore: those the tree's mappings reach (`mms`) and
    its memfds (`memfds`: inode -> (name, size, seals), from memfd_objects(), whose size is the
    memfd's own, mapped or not). Seals go on once every page is in."""

    def __init__(self, mms, memfds: dict[int, tuple[str, int, int]]):
        self._sizes: dict[int, int] = {}
        self._names: dict[int, str | None] = {}
        for mm in mms:
            reach(mm.vmas, self._sizes)
            for vma in shared_vmas(mm.vmas):
                memfd = vma.status & C.VMA_AREA_MEMFD
                self._names[vma.shmid] = vma.torpor_memfd_name if memfd else None
        self._exact: set[int] = set()
        self._seals: dict[int, int] = {}
        for inode, (name, size, seals) in memfds.items():
            self._names[inode] = name
            self._sizes[inode] = size
            self._exact.add(inode)
            if seals != F_SEAL_SEAL:  # made with MFD_ALLOW_SEALING: seals come back as saved
                self._seals[inode] = seals
        self._fds: dict[int, int] = {}  # memfds torpor made, by id
        self._writers: dict[int, int] = {}  # torpor's read-write fd on an object, by id
        self._paths: dict[int, str] = {}
        self._keep: list = []
        self._after_sealing: list = []

    def path(self, shmid: int) -> str:
        """A path under /proc that opens object `shmid`, created on first use."""
        if shmid not in self._names:
            raise ImageError(f"no memory object {shmid} is mapped or open in the images")
        if shmid not in self._paths:
            size = self._sizes[shmid]
            if shmid not in self._exact:
                size = -(-size // PAGE_SIZE) * PAGE_SIZE
            try:
                self._create(shmid, size)
            except OSError as e:
                raise RestoreError(
                    f"cannot create memory object {shmid} of {size} bytes: {e.strerror}"
                ) from None
        return self._paths[shmid]

    def _create(self, shmid: int, size: int) -> None:
        """Make object `shmid` of `size` bytes: anonymous shared memory, or a memfd."""
        name = self._names[shmid]
        if name is None:
            area = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
            first = ctypes.c_char.from_buffer(area)
            start = ctypes.addressof(first)
            del first  # release the buffer export, or the area cannot be closed later
            self._keep.append(area)
            self._paths[shmid] = f"/proc/{os.getpid()}/map_files/{start:x}-{start + size:x}"
        else:
            sealing = os.MFD_ALLOW_SEALING if shmid in self._seals else 0
            fd = os.memfd_create(name, os.MFD_CLOEXEC | sealing)
            self._keep.append(fd)
            os.ftruncate(fd, size)
            self._fds[shmid] = fd
            self._paths[shmid] = f"/proc/{os.getpid()}/fd/{fd}"

    def write(self, shmid: int, offset: int, data) -> None:
        """Write `data` into object `shmid` at `offset`, through torpor's own hold on it; a
        page that runs past the end of a memfd is written up to its end only."""
        if shmid not in self._writers:
            self._writers[shmid] = os.open(self.path(shmid), os.O_RDWR | os.O_CLOEXEC)
            self._keep.append(self._writers[shmid])
        fd = self._writers[shmid]
        view = memoryview(data)
        if shmid in self._exact:
            view = view[: max(0, self._sizes[shmid] - offset)]
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n

    def write_sealed(self, shmid: int) -> bool:
        """Whether memfd `shmid` gets a seal against writing back (F_SEAL_WRITE or
        F_SEAL_FUTURE_WRITE)."""
        return bool(self._seals.get(shmid, 0) & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))

    def after_sealing(self, action) -> None:
        """Have seal() call `action` once every seal is on: a mapping that must be made on
        a sealed memfd (parts.memory)."""
        self._after_sealing.append(action)

    def seal(self) -> None:
        """Put back the seals of every memfd (once all its pages are written), then make
        what waited for them."""
        for shmid, seals in self._seals.items():
            if shmid in self._fds and seals:
                try:
                    fcntl.fcntl(self._fds[shmid], F_ADD_SEALS, seals)
                except OSError as e:
                    raise RestoreError(f"cannot seal memfd {shmid} again: {e.strerror}") from None
        for action in self._after_sealing:
            action()
        self._after_sealing.clear()

    def close(self) -> None:
        """Drop torpor's own hold on every object (the restored mappings keep them)."""
        for item in self._keep:
            if isinstance(item, int):
                os.close(item)
            else:
                item.close()
        self._keep.clear()

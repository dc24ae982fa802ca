"""The memfds of a tree, held by fds or only mapped, and their contents beyond what the
tree's mappings save of them. CRIU keeps a memory object's contents in
pagemap-shmem-ID.img (a PagemapHead naming the pages file, then one PagemapEntry per run,
its vaddr the offset in the object) and pages-N.img; torpor writes there the runs of a
memfd that hold data (SEEK_DATA) and that no mapping of the tree saved already (those are
in the processes' pagemaps, parts.memory), and at restore writes them into the object
parts.shmem recreated, before its seals go on. A memfd only mapped (its fd closed) is
reached through /proc/PID/map_files, so that it keeps what lies beyond its mappings too.
"""

from __future__ import annotations

import fcntl
import os

from torpor.errors import ImageError
from torpor.images import constants as C
from torpor.images import pb
from torpor.kernel import files
from torpor.kernel.procfs import PAGE_SIZE

CHUNK = 8 << 20  # bytes read and written at a time
F_GET_SEALS = 1034


class TreeMemfds:
    """The memfds of a tree being dumped, each opened once read-only by torpor through the
    first fd or mapping of the tree found on it; written once every process was dumped."""

    def __init__(self):
        self._held: dict[int, tuple[int, int]] = {}  # inode -> (torpor's fd on it, size)

    def hold(self, inode: int, path: str) -> tuple[int, int]:
        """The size and seals of memfd `inode`, which `path` (/proc/PID/fd/N or
        /proc/PID/map_files/START-END) opens; torpor keeps it open for write()."""
        if inode not in self._held:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            self._held[inode] = fd, os.fstat(fd).st_size
        fd, size = self._held[inode]
        return size, fcntl.fcntl(fd, F_GET_SEALS)

    def write(self, images, mapped) -> None:
        """The contents of every memfd held that no mapping of the tree saved, `mapped`
        being the (shmid, offset, length) ranges mappings saved (DumpContext.shmem_saved)."""
        ranges: dict[int, list] = {}
        for shmid, offset, length in mapped:
            ranges.setdefault(shmid, []).append((offset, length))
        for inode, (fd, size) in self._held.items():
            save(images, inode, fd, size, ranges.get(inode, []))

    def close(self) -> None:
        for fd, _ in self._held.values():
            os.close(fd)
        self._held.clear()


def image_name(shmid: int) -> str:
    return f"pagemap-shmem-{shmid}.img"


def unmapped(runs, mapped) -> list[tuple[int, int]]:
    """`runs` without the page-aligned (offset, length) ranges `mapped`."""
    left = []
    for start, length in runs:
        pieces = [(start, start + length)]
        for m_start, m_length in mapped:
            m_end = m_start + m_length
            pieces = [
                part
                for s, e in pieces
                for part in ((s, min(e, m_start)), (max(s, m_end), e))
                if part[0] < part[1]
            ]
        left += [(s, e - s) for s, e in pieces]
    return left


def save(images, shmid: int, fd: int, size: int, mapped) -> None:
    """Write the runs of memfd `shmid` (torpor's `fd` on it, `size` bytes) that hold data
    and lie outside the ranges `mapped` (offset, length) saved through mappings."""
    runs = unmapped(files.data_runs(fd, 0, size), mapped)
    if not runs:
        return
    pages_id = 1
    while images.has(f"pages-{pages_id}.img"):
        pages_id += 1
    entries = [pb.pagemap_pb2.PagemapHead(pages_id=pages_id)]
    with images.pages_writer(pages_id) as out:
        for offset, length in runs:
            entries.append(
                pb.pagemap_pb2.PagemapEntry(
                    vaddr=offset, nr_pages=length // PAGE_SIZE, flags=C.PE_PRESENT
                )
            )
            for at in range(offset, offset + length, CHUNK):
                want = min(CHUNK, offset + length - at)
                data = os.pread(fd, want, at)
                out.write(data + bytes(want - len(data)))  # the last page, past the end
    images.write(image_name(shmid), entries)


def _saved_runs(images, shmid: int, size: int) -> tuple[str, list[tuple[int, int]]]:
    """The pages file and the (offset, length) runs saved of memfd `shmid` (`size` bytes),
    checked: each run of whole pages inside the memfd, the pages file long enough."""
    name = image_name(shmid)
    if not images.has(name):
        return "", []
    head, *entries = images.read(name)
    runs, total = [], 0
    for e in entries:
        length = e.nr_pages * PAGE_SIZE
        if (
            not e.flags & C.PE_PRESENT
            or e.vaddr % PAGE_SIZE
            or e.vaddr + length > size + (-size % PAGE_SIZE)
        ):
            raise ImageError(
                f"{name}: pages at offset {e.vaddr:#x} lie beyond memfd {shmid} of {size} "
                "bytes (damaged image)"
            )
        runs.append((e.vaddr, length))
        total += length
    pages = f"pages-{head.pages_id}.img"
    with images.open_binary(pages) as f:
        if os.fstat(f.fileno()).st_size < total:
            raise ImageError(f"{pages}: shorter than {name} says (damaged image)")
    return pages, runs


def image_problem(images, objects: dict[int, tuple[str, int, int]]) -> str | None:
    """What makes the saved contents of the memfds `objects` (id -> (name, size, seals))
    impossible to put back; None if nothing."""
    for shmid, (_, size, _) in objects.items():
        try:
            _saved_runs(images, shmid, size)
        except ImageError as e:
            return str(e)
    return None


def restore(images, shmid: int, size: int, write) -> None:
    """Put the saved runs of memfd `shmid` (`size` bytes) in, each through
    `write(offset, data)`; nothing if no runs were saved."""
    pages, runs = _saved_runs(images, shmid, size)
    if not runs:
        return
    with images.open_binary(pages) as f:
        for offset, length in runs:
            for at in range(offset, offset + length, CHUNK):
                write(at, f.read(min(CHUNK, offset + length - at)))

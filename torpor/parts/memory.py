"""Memory: the VMAs of a task (mm-PID.img) and the pages worth saving (pagemap, pages-N.img).

Saved pages: present or swapped pages of anonymous and shared-anonymous memory and of the vDSO,
and the copied-on-write pages of private file mappings. Clean file pages come back from the file;
shared file mappings keep their data in the file. The shared zero page is never stored.
"""

import bisect
import mmap
import os
import stat

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext, log
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import constants as C
from torpor.images import pb
from torpor.kernel import memio
from torpor.kernel.files import data_runs
from torpor.kernel.pagescan import PageScanner
from torpor.kernel.procfs import PAGE_SIZE, Mapping, proc, read_maps
from torpor.parts.ghosts import is_ghost
from torpor.parts.shmem import F_SEAL_FUTURE_WRITE
from torpor.remote import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_GROWSDOWN,
    MAP_NORESERVE,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)

O_ACCMODE = 3
CHUNK = 8 << 20  # bytes moved per process_vm_* call: large enough to keep the kernel busy

# smaps VmFlags that come from madvise(2), and the advice that sets each.
MADVICE_BY_VMFLAG = {"dd": 16, "dc": 10, "hg": 14, "nh": 15, "mg": 12, "wf": 18}
AT_FDCWD = -100
MEMFD_PREFIX = "/memfd:"


class Ranges:
    """Disjoint address ranges, each with a label, looked up by address in O(log n)."""

    def __init__(self, ranges):
        self._ranges = sorted(ranges)  # (start, end, label)
        self._starts = [r[0] for r in self._ranges]

    def label(self, addr: int, length: int = 1):
        """The label of the range holding [addr, addr+length), or None."""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, end, label = self._ranges[i]
            if start <= addr and addr + length <= end:
                return label
        return None


def free_range(busy, size: int, lowest: int, end: int, gap: int, what: str) -> int:
    """The lowest address from `lowest` with `size` bytes free of every (start, end) range in
    `busy`, `gap` bytes away from each; it must end by `end`, else RestoreError naming `what`."""
    candidate = lowest
    for start, stop in sorted(busy):
        if start >= candidate + size + gap:
            break
        candidate = max(candidate, stop + gap)
    if candidate + size > end:
        raise RestoreError(f"no free address range for {what} below {end:#x}")
    return candidate


def _prot(perms: str) -> int:
    return (
        (PROT_READ if perms[0] == "r" else 0)
        | (PROT_WRITE if perms[1] == "w" else 0)
        | (PROT_EXEC if perms[2] == "x" else 0)
    )


AIO_RING = "/[aio] (deleted)"  # the ring io_setup(2) maps


def _add_file(ctx: DumpContext, m: Mapping) -> int:
    path = m.name
    if path == AIO_RING:
        raise UnsupportedError(
            f"mapping {m.start:#x}-{m.end:#x} of process {ctx.pid} is an AIO ring "
            "(io_setup), not supported yet"
        )
    if is_ghost(path):
        source = str(proc(ctx.pid, "map_files", f"{m.start:x}-{m.end:x}"))
        flags = os.O_RDWR if m.shared and "w" in m.perms else os.O_RDONLY
        what = f"mapping {m.start:#x}-{m.end:#x} of process {ctx.pid}"
        return ctx.ghosts.file_id(ctx, path, source, flags, what)
    try:
        st = os.stat(path)
    except OSError as e:
        raise UnsupportedError(f"mapped file {path} is not reachable: {e.strerror}") from None
    if (st.st_dev, st.st_ino) != (os.makedev(*m.dev), m.inode) and not stat.S_ISCHR(st.st_mode):
        raise UnsupportedError(f"mapped file {path} was replaced since it was mapped")

    return ctx.files.add_path(path)


def classify(ctx: DumpContext, m: Mapping) -> tuple[pb.vma_pb2.VmaEntry, str] | None:
    """The VmaEntry for mapping `m`, and which of its pages to save: "all", "anon", "none" or
    "shmem" (those of the shared memory object behind it)."""
    vma = pb.vma_pb2.VmaEntry(
        start=m.start,
        end=m.end,
        pgoff=0,
        shmid=0,
        prot=_prot(m.perms),
        flags=0,
        status=C.VMA_AREA_REGULAR,
        fd=-1,
    )
    madv = 0
    for flag, advice in MADVICE_BY_VMFLAG.items():
        if flag in m.vm_flags:
            madv |= 1 << advice
    if madv:
        vma.madv = madv
    if "gd" in m.vm_flags:
        vma.flags |= MAP_GROWSDOWN
    if "nr" in m.vm_flags:
        vma.flags |= MAP_NORESERVE
    if "ac" in m.vm_flags and not m.shared:
        vma.torpor_accounted = True
    if m.shared:  # mapped from a file opened for writing (VM_SHARED comes only from such a
        # file; a write-sealed memfd's read-only mapping has it without "may write") or not
        vma.fdflags = os.O_RDWR if "mw" in m.vm_flags or "sh" in m.vm_flags else os.O_RDONLY
    if m.pkey:
        vma.torpor_pkey = m.pkey
    if m.name == "[vsyscall]":
        return None
    if m.name == "[vdso]":
        vma.status |= C.VMA_AREA_VDSO
        vma.flags |= MAP_PRIVATE | MAP_ANONYMOUS
        return vma, "all"
    if m.name.startswith("[vvar"):
        vma.status |= C.VMA_AREA_VVAR
        vma.flags |= MAP_PRIVATE | MAP_ANONYMOUS
        return vma, "none"
    if m.is_special:
        raise UnsupportedError(f"mapping {m.start:#x}-{m.end:#x} {m.name} is not supported")
    if m.shared and (not m.is_file or m.name.startswith("/dev/zero") or m.name.startswith("/SYSV")):
        vma.status |= C.VMA_ANON_SHARED
        vma.flags |= MAP_SHARED | MAP_ANONYMOUS
        vma.shmid = m.inode
        vma.pgoff = m.offset
        return vma, "shmem"
    if m.name.startswith(MEMFD_PREFIX) and m.name.endswith(" (deleted)"):
        if not m.shared:
            raise UnsupportedError(f"mapping {m.start:#x}-{m.end:#x} is a private memfd mapping")
        vma.status |= C.VMA_FILE_SHARED | C.VMA_AREA_MEMFD
        vma.flags |= MAP_SHARED
        vma.shmid = m.inode
        vma.pgoff = m.offset
        vma.torpor_memfd_name = m.name[len(MEMFD_PREFIX) : -len(" (deleted)")]
        # The memfd itself, also when only mappings hold it: its size, seals and contents
        # beyond what the tree maps are saved (parts.memfds).
        path = str(proc(ctx.pid, "map_files", f"{m.start:x}-{m.end:x}"))
        vma.torpor_memfd_size, vma.torpor_memfd_seals = ctx.memfds.hold(m.inode, path)
        if vma.torpor_memfd_seals & F_SEAL_FUTURE_WRITE and _read_only_may_write(m):
            raise UnsupportedError(
                f"mapping {m.start:#x}-{m.end:#x} of memfd {vma.torpor_memfd_name!r} is "
                "read-only but may become writable (mapped before its seal against future "
                "writes), not supported yet"
            )
        return vma, "shmem"
    if m.is_file:
        vma.shmid = _add_file(ctx, m)
        vma.pgoff = m.offset
        if m.shared:
            vma.status |= C.VMA_FILE_SHARED
            vma.flags |= MAP_SHARED
            return vma, "none"
        vma.status |= C.VMA_FILE_PRIVATE
        vma.flags |= MAP_PRIVATE
        return vma, "anon"
    vma.status |= C.VMA_ANON_PRIVATE
    vma.flags |= MAP_PRIVATE | MAP_ANONYMOUS
    if m.name == "[heap]":
        vma.status |= C.VMA_AREA_HEAP
    if m.name == "[stack]":
        vma.status |= C.VMA_AREA_STACK
    return vma, "all"


def _read_only_may_write(m: Mapping) -> bool:
    """Whether shared mapping `m` is read-only yet may become writable. Of a memfd sealed
    against writing, such a mapping was made before the seal, but the restore makes the
    read-only ones after it (the images say only that their file was open for writing:
    VmaEntry.fdflags), where the kernel makes them never writable."""
    return "mw" in m.vm_flags and not _prot(m.perms) & PROT_WRITE


def dump(ctx: DumpContext) -> None:
    """Record every VMA in ctx.mm and stream the pages worth saving into pages-1.img."""
    scratch = ctx.task.scratch
    scanner = PageScanner(ctx.pid)
    runs: list[tuple[int, int]] = []
    unreadable: list[tuple[int, int]] = []  # VMAs process_vm_readv cannot read (PROT_NONE...)
    try:
        for m in read_maps(ctx.pid):
            if m.start == scratch:
                continue
            found = classify(ctx, m)
            if found is None:
                continue
            vma, pages = found
            ctx.mm.vmas.append(vma)
            if pages == "all" and m.name == "[vdso]":
                found_runs = [(m.start, m.size)]
            elif pages == "shmem":
                key = (vma.shmid, m.offset, m.size)
                found_runs = [] if key in ctx.shmem_saved else shmem_runs(ctx.pid, m)
                ctx.shmem_saved.add(key)
            elif pages != "none":
                found_runs = scanner.runs(m.start, m.end, anon_only=pages == "anon")
            else:
                found_runs = []
            if found_runs and m.perms[0] != "r":
                unreadable.append((m.start, m.end))
            runs += found_runs
    finally:
        scanner.close()
    _write_pages(ctx, runs, unreadable)


def shmem_runs(pid: int, m: Mapping) -> list[tuple[int, int]]:
    """The runs of mapping `m` where its shared memory object holds data (SEEK_DATA finds
    pages written through any mapping or fd, whether or not this process touched them)."""
    fd = os.open(f"/proc/{pid}/map_files/{m.start:x}-{m.end:x}", os.O_RDONLY)
    try:
        runs = data_runs(fd, m.offset, m.offset + m.size)
    finally:
        os.close(fd)
    return [(m.start + offset - m.offset, length) for offset, length in runs]


def _write_pages(
    ctx: DumpContext, runs: list[tuple[int, int]], unreadable: list[tuple[int, int]]
) -> None:
    pages_id = ctx.pages_id
    entries = [pb.pagemap_pb2.PagemapHead(pages_id=pages_id)]
    merged = sorted(runs)  # one entry per run: an entry never spans two VMAs
    for addr, length in merged:
        entries.append(
            pb.pagemap_pb2.PagemapEntry(
                vaddr=addr, nr_pages=length // PAGE_SIZE, flags=C.PE_PRESENT
            )
        )
    total = sum(length for _, length in merged)
    unreadable_ranges = Ranges((s, e, True) for s, e in unreadable)
    buf = bytearray(min(CHUNK, max(total, PAGE_SIZE)))
    view = memoryview(buf)
    done = 0
    with ctx.images.pages_writer(pages_id) as out:
        for batch, size in memio.batches(sorted(runs), len(buf)):
            if any(unreadable_ranges.label(addr) for addr, _ in batch):
                _read_forced(ctx, view[:size], batch)
            else:
                memio.read_into(ctx.pid, view[:size], batch)
            ctx.task.unpatched(view[:size], batch)  # the task's own bytes, not torpor's
            out.write(view[:size])
            done += size
            if ctx.progress:
                ctx.progress(done, total)
    ctx.images.write(f"pagemap-{ctx.pid}.img", entries)
    ctx.pages_bytes = total
    log.info("memory: %d VMAs, %d bytes of pages in %d runs", len(ctx.mm.vmas), total, len(merged))


def _read_forced(ctx: DumpContext, view: memoryview, batch: list[tuple[int, int]]) -> None:
    """Read through /proc/PID/mem, which also reaches pages the task itself cannot read."""
    at = 0
    for addr, length in batch:
        view[at : at + length] = ctx.task.read(addr, length)
        at += length


# --- restore ---------------------------------------------------------------------------------


def clear_address_space(ctx: RestoreContext) -> None:
    """Unmap everything the new task inherited except the scratch page and the VMAs already
    in place (put there before its children were forked, or inherited from its parent:
    torpor.parts.cow)."""
    task = ctx.task
    kept = [(task.scratch, task.scratch + task.scratch_size), *in_place(ctx)]
    at = 0
    for start, end in sorted(kept):
        if start > at:
            task.call(X86_64, "munmap", at, start - at)
        at = max(at, end)
    if at < ctx.abi.task_size:
        task.call(X86_64, "munmap", at, ctx.abi.task_size - at)


def in_place(ctx: RestoreContext) -> dict:
    """(start, end) -> VMA of the process's VMAs that are mapped already."""
    return ctx.cow.in_place(ctx) if ctx.cow else {}


def _open_in_task(ctx: RestoreContext, file_id: int, flags: int, opened: dict) -> int:
    entry = ctx.files.get(file_id)
    if entry is None or not entry.HasField("reg"):
        raise ImageError(f"mm-{ctx.image_pid}.img: mapping refers to unknown file id {file_id}")
    return _open_path(ctx, entry.reg.name, flags, opened, "mapped file")


def _open_path(ctx: RestoreContext, path: str, flags: int, opened: dict, what: str) -> int:
    """An fd in the task for `path`, opened once per (path, flags) for all its mappings
    (without blocking, should the path now be a FIFO: mmap then refuses it)."""
    key = (path, flags)
    if key not in opened:
        how = flags | os.O_NONBLOCK | os.O_NOCTTY
        try:
            opened[key] = ctx.task.call(
                X86_64, "openat", AT_FDCWD, ctx.task.put(path.encode() + b"\0"), how, 0
            )
        except OSError as e:
            raise RestoreError(f"cannot open {what} {path}: {os.strerror(e.errno)}") from None
    return opened[key]


def restore(ctx: RestoreContext, kernel_vmas: set) -> None:
    """Map every VMA of the image but those the kernel provides (its vDSO, mapped in place)
    and those in place already, and fill in the saved pages."""
    placed = in_place(ctx)
    opened: dict = {}
    try:
        for vma in ctx.mm.vmas:
            if (vma.start, vma.end) not in kernel_vmas and (vma.start, vma.end) not in placed:
                map_vma(ctx, vma, opened)
    finally:
        for fd in opened.values():
            ctx.task.syscall(X86_64, "close", fd)
    if not placed:
        fill_pages(ctx, kernel_vmas)
        return
    rest = [(v.start, v.end) for v in ctx.mm.vmas if (v.start, v.end) not in placed]
    # with the pages of those in place that are not right yet, in one pass over the file
    fill_pages(ctx, kernel_vmas, only=sorted(rest + ctx.cow.complete(ctx)))


def map_vma(ctx: RestoreContext, vma, opened: dict) -> None:
    """Map `vma` at its place, with mapped_prot(vma); `opened` holds the task's fds of the
    files behind mappings, opened once each (the caller closes them)."""
    flags = (
        vma.flags & (MAP_SHARED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN | MAP_NORESERVE)
    ) | MAP_FIXED
    fd, offset = -1, 0
    if vma.status & (C.VMA_ANON_SHARED | C.VMA_AREA_MEMFD):
        path = ctx.shared_memory.path(vma.shmid)
        mode = _shared_open_flags(vma)
        if _mapped_once_sealed(ctx, vma):  # until then from a read-only open, in its place
            mode = os.O_RDONLY
            ctx.shared_memory.after_sealing(lambda: _map_sealed(ctx, vma, path))
        fd = _open_path(ctx, path, mode, opened, "shared memory")
        flags &= ~MAP_ANONYMOUS
        offset = vma.pgoff
    elif vma.status & (C.VMA_FILE_PRIVATE | C.VMA_FILE_SHARED):
        writable = os.O_RDWR if vma.prot & PROT_WRITE else os.O_RDONLY
        shared = vma.status & C.VMA_FILE_SHARED
        mode = _shared_open_flags(vma, writable) if shared else os.O_RDONLY
        fd = _open_in_task(ctx, vma.shmid, mode, opened)
        offset = vma.pgoff
    _mmap_at(ctx.task, vma, mapped_prot(vma), flags, fd, offset)


def _mmap_at(task, vma, prot: int, flags: int, fd: int, offset: int, again: bool = False):
    """mmap in the task at `vma`'s place (MAP_FIXED in `flags`), or RestoreError."""
    got = task.syscall(X86_64, "mmap", vma.start, vma.end - vma.start, prot, flags, fd, offset)
    if got != vma.start:
        what = os.strerror(-got) if got < 0 else f"landed at {got:#x}"
        raise RestoreError(
            f"cannot map {vma.start:#x}-{vma.end:#x}{' again' if again else ''}: {what}"
        )


def _advise(task, vma) -> None:
    """Give `vma` each madvise advice of its saved state (VmaEntry.madv)."""
    if not vma.madv:
        return
    for advice in range(64):
        if vma.madv & (1 << advice):
            task.call(X86_64, "madvise", vma.start, vma.end - vma.start, advice)


def mapped_prot(vma) -> int:
    """The protection a VMA is mapped with while its pages come in; finish() sets its own."""
    if _charged_while_filling(vma):
        return vma.prot | PROT_WRITE | PROT_READ
    return vma.prot


def _shared_open_flags(vma, default: int = os.O_RDWR) -> int:
    """How to open the file behind a shared mapping: as the dumped one was (VmaEntry.fdflags,
    from smaps "mw": whether it may become writable), else `default`."""
    return vma.fdflags & O_ACCMODE if vma.HasField("fdflags") else default


def _mapped_once_sealed(ctx: RestoreContext, vma) -> bool:
    """Whether `vma` is a read-only mapping, from a file opened for writing, of a memfd
    sealed against writing: the kernel makes such a mapping shared (VM_SHARED) but never
    writable (no VM_MAYWRITE) only when the seal is on as it maps it (mm/memfd.c: a mapping
    made before it may write, and F_SEAL_WRITE refuses a memfd mapped so)."""
    return bool(
        vma.status & C.VMA_AREA_MEMFD
        and _shared_open_flags(vma) == os.O_RDWR
        and not vma.prot & PROT_WRITE
        and ctx.shared_memory.write_sealed(vma.shmid)
    )


def _map_sealed(ctx: RestoreContext, vma, path: str) -> None:
    """Map `vma` again, over what holds its place, from a read-write open of its memfd now
    sealed, with its madvise state and protection key (which the first mapping had)."""
    task, opened = ctx.task, {}
    fd = _open_path(ctx, path, os.O_RDWR, opened, "shared memory")
    try:
        flags = MAP_SHARED | MAP_FIXED | (vma.flags & (MAP_GROWSDOWN | MAP_NORESERVE))
        _mmap_at(task, vma, vma.prot, flags, fd, vma.pgoff, again=True)
    finally:
        task.syscall(X86_64, "close", fd)
    _advise(task, vma)
    if vma.torpor_pkey:
        task.call(
            X86_64, "pkey_mprotect", vma.start, vma.end - vma.start, vma.prot, vma.torpor_pkey
        )


def _charged_while_filling(vma) -> bool:
    """Whether a read-only private VMA is mapped writable first: only those that were
    writable once, which the kernel remembers in their commit charge."""
    return bool(
        not vma.status & C.VMA_FILE_SHARED and not vma.prot & PROT_WRITE and vma.torpor_accounted
    )


def finish(ctx: RestoreContext, kernel_vmas: set) -> None:
    """Give every VMA its final protection and madvise state, once its contents are in."""
    task = ctx.task
    for vma in ctx.mm.vmas:
        if (vma.start, vma.end) in kernel_vmas:
            continue
        if _charged_while_filling(vma):
            task.call(X86_64, "mprotect", vma.start, vma.end - vma.start, vma.prot)
        _advise(task, vma)


def read_pagemap(ctx: RestoreContext) -> tuple[int, list[tuple[int, int]]]:
    """The pages file id and the (address, length) runs stored in it, checked against the VMAs."""
    name = f"pagemap-{ctx.image_pid}.img"
    head, *entries = ctx.images.read(name)
    if head.pages_id != ctx.pages_id:
        raise ImageError(f"{name}: pages file {head.pages_id}, expected {ctx.pages_id}")
    runs = []
    bounds = Ranges((v.start, v.end, v) for v in ctx.mm.vmas)
    for e in entries:
        if not e.flags & C.PE_PRESENT:
            continue
        addr, length = e.vaddr, e.nr_pages * PAGE_SIZE
        vma = bounds.label(addr, length) if length else None
        if addr % PAGE_SIZE or vma is None:
            raise ImageError(f"{name}: pages at {addr:#x} lie outside every VMA (damaged image)")
        if _file_holds_pages(vma):
            raise ImageError(
                f"{name}: pages at {addr:#x} of a shared file mapping, whose file holds them "
                "(damaged image)"
            )
        runs.append((addr, length))
    return head.pages_id, runs


def _file_holds_pages(vma) -> bool:
    """Whether `vma` maps a file MAP_SHARED: its pages are the file's, never saved by a dump
    (torpor's or CRIU's) and never written by a restore, which would write them into the
    file. Memfds are memory objects of the tree (parts.shmem), their pages saved."""
    return bool(vma.status & C.VMA_FILE_SHARED and not vma.status & C.VMA_AREA_MEMFD)


def _write_by_run(ctx, view: memoryview, pieces, targets: Ranges) -> None:
    """Write (address, length, offset in view) pieces one by one: leave out those inside the
    kernel's own mappings, write through /proc/PID/mem (which reaches read-only pages) into
    private VMAs not writable now, and into the memory object itself for shared ones
    (/proc/PID/mem cannot write those)."""
    for addr, length, at in pieces:
        chunk = view[at : at + length]
        how, vma = targets.label(addr)
        if how == "forced":
            ctx.task.write(addr, chunk)
        elif how == "object":
            ctx.shared_memory.write(vma.shmid, vma.pgoff + addr - vma.start, chunk)
        elif how == "direct":
            memio.write_from(ctx.pid, chunk, [(addr, length)])


def _pieces(batch, only: list[tuple[int, int]] | None) -> list[tuple[int, int, int]]:
    """The (address, length, offset in the batch's buffer) pieces of `batch` to write: all of
    it, or what lies in the sorted disjoint (start, end) ranges of `only`."""
    pieces = []
    at = 0
    for addr, length in batch:
        if only is None:
            pieces.append((addr, length, at))
        else:
            i = max(bisect.bisect_right(only, (addr, addr)) - 1, 0)
            while i < len(only) and only[i][0] < addr + length:
                start, end = max(only[i][0], addr), min(only[i][1], addr + length)
                if start < end:
                    pieces.append((start, end - start, at + start - addr))
                i += 1
        at += length
    return pieces


def saved_bytes(ctx: RestoreContext, addr: int, size: int) -> bytes:
    """The saved contents of [addr, addr+size), which must lie in one stored run."""
    for start, length, offset in stored_runs(ctx):
        if start <= addr and addr + size <= start + length:
            with ctx.images.open_binary(f"pages-{ctx.pages_id}.img") as f:
                f.seek(offset + addr - start)
                data = f.read(size)
            if len(data) == size:
                return data
            break
    raise ImageError(
        f"pagemap-{ctx.image_pid}.img: no saved contents for {addr:#x}-{addr + size:#x}"
    )


def fill_pages(ctx: RestoreContext, kernel_vmas: set, only=None) -> None:
    """Copy the saved pages into the task, window by window from the mapped pages file: one
    copy, no buffer, and never more of the file mapped than one window. `only`, if given:
    the sorted disjoint (start, end) ranges to fill, the rest left as it is."""
    pages_id, runs = read_pagemap(ctx)
    targets = Ranges((v.start, v.end, (_fill_method(v, kernel_vmas), v)) for v in ctx.mm.vmas)
    total = sum(length for _, length in runs)
    name = f"pages-{pages_id}.img"
    done = 0
    with ctx.images.open_binary(name) as f:
        held = os.fstat(f.fileno()).st_size
        if held != total:
            raise ImageError(f"{name}: holds {held} bytes, pagemap says {total}")
        for batch, size in memio.batches(runs, CHUNK):
            pieces = _pieces(batch, only)
            if not pieces:
                done += size
                continue
            failure = None
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY, offset=done) as window:
                with memoryview(window) as chunk:
                    try:
                        if only is None and all(targets.label(a)[0] == "direct" for a, _ in batch):
                            memio.write_from(ctx.pid, chunk, batch)
                        else:
                            _write_by_run(ctx, chunk, pieces, targets)
                    except BaseException as e:  # raised below, once no view of the window is
                        failure = e.with_traceback(None)  # left: its frames hold views of it
            if isinstance(failure, OSError):
                why = failure.strerror or str(failure)
                raise RestoreError(
                    f"process {ctx.image_pid}: cannot write the saved pages at "
                    f"{pieces[0][0]:#x}: {why}"
                ) from None
            if failure is not None:
                raise failure
            done += size
            if ctx.progress:
                ctx.progress(done, total)


def stored_runs(ctx: RestoreContext) -> list[tuple[int, int, int]]:
    """The (address, length, offset in the pages file) of every stored run, in file order."""
    _, runs = read_pagemap(ctx)
    stored = []
    offset = 0
    for addr, length in runs:
        stored.append((addr, length, offset))
        offset += length
    return stored


def _fill_method(vma, kernel_vmas: set) -> str:
    """How saved pages reach a VMA: "skip" (the kernel's own), "forced" (/proc/PID/mem, the
    VMA is not writable now), "object" (a shared memory object not writable through this
    VMA: written into the object) or "direct" (process_vm_writev)."""
    if (vma.start, vma.end) in kernel_vmas:
        return "skip"
    if not vma.prot & PROT_WRITE and not _charged_while_filling(vma):
        return "object" if vma.status & (C.VMA_ANON_SHARED | C.VMA_AREA_MEMFD) else "forced"
    return "direct"


_KINDS = C.VMA_FILE_PRIVATE | C.VMA_FILE_SHARED | C.VMA_ANON_SHARED | C.VMA_ANON_PRIVATE


def image_problem(mm, abi) -> str | None:
    """What makes a saved mapping impossible (not page-aligned, empty or reversed, beyond
    the ABI's user space, overlapping another, of two kinds at once, or mapped shared or
    private against its kind: a restore maps it as its flags say and writes pages as its
    kind says); None if nothing."""
    end = 0
    for vma in sorted(mm.vmas, key=lambda v: v.start):
        where = f"mapping {vma.start:#x}-{vma.end:#x}"
        if (
            vma.start % PAGE_SIZE or vma.end % PAGE_SIZE or not vma.start < vma.end
            or vma.end > abi.task_size
        ):  # fmt: skip
            return f"{where} is not one this ABI can have"
        if vma.start < end:
            return f"{where} overlaps another"
        end = vma.end
        kind = vma.status & _KINDS
        if kind & (kind - 1):
            return f"{where} is of two kinds at once (status {vma.status:#x})"
        shared = bool(kind & (C.VMA_FILE_SHARED | C.VMA_ANON_SHARED))
        sharing = vma.flags & (MAP_SHARED | MAP_PRIVATE)
        if sharing != (MAP_SHARED if shared else MAP_PRIVATE):
            return f"{where} has sharing flags {vma.flags:#x} against its kind"
    return None

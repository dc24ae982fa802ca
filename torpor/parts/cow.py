"""Copy-on-write sharing: the private anonymous pages a process still shares with the children
it forked (and they with theirs) come back shared, so that a forked tree uses as much memory
after a restore as before, not a copy of its parent's memory per child.

Nothing in procfs says which pages a fork still shares; the images do. A child with its
parent's ABI that has some of its parent's private anonymous VMAs (same range, same flags) is
forked by its parent without exec, once the parent has those VMAs in place with its own pages
(`prepare`, from torpor.family); the child inherits them as fork shares them. The child then
writes only the pages whose saved bytes differ from its parent's and drops those it did not
have, so every other page stays one page shared by both, as it was. A child whose parent's
scratch page lies in one of its VMAs, or that has nothing to share, is made as any other.
"""

from __future__ import annotations

import os

from torpor.arch import X86_64
from torpor.images import constants as C
from torpor.kernel.procfs import PAGE_SIZE
from torpor.parts import memory

MADV_DONTNEED = 4
BLOCK = 1 << 20  # bytes compared at once: most blocks of a forked tree are equal


def _shareable(vma) -> bool:
    return bool(vma.status & C.VMA_ANON_PRIVATE)


def _same(a, b) -> bool:
    """Whether VMAs `a` (a parent's) and `b` (its child's) are one VMA inherited by fork."""
    return (
        a.start == b.start
        and a.end == b.end
        and a.status == b.status
        and a.flags == b.flags
        and a.torpor_accounted == b.torpor_accounted
    )


class Sharing:
    """The VMAs each process of a restore shares copy-on-write with its parent, and those it
    puts in place for its children before they are forked. `context_of(pid)` gives the
    RestoreContext of a process that exists already."""

    def __init__(self, procs, context_of):
        self._context_of = context_of
        self._parent: dict[int, int] = {}
        self._candidates: dict[int, dict] = {}  # child pid -> its VMAs its parent also has
        self._for_children: dict[int, dict] = {}  # pid -> (start, end) -> VMA, for its children
        self.inherited: dict[int, dict] = {}  # pid -> (start, end) -> VMA, inherited by fork
        self._prepared: set[int] = set()  # the processes prepare() put VMAs in place for
        self._runs: dict[int, list] = {}
        self._mms = {p.pid: p.mm for p in procs}
        by_pid = {p.pid: p for p in procs}
        for proc in procs:
            parent = by_pid.get(proc.entry.ppid)
            if proc.zombie or parent is None or parent.zombie or parent.abi is not proc.abi:
                continue
            theirs = {(v.start, v.end): v for v in parent.mm.vmas if _shareable(v)}
            common = {
                key: v
                for v in proc.mm.vmas
                if _shareable(v) and (key := (v.start, v.end)) in theirs and _same(theirs[key], v)
            }
            if common:
                self._parent[proc.pid] = parent.pid
                self._candidates[proc.pid] = common
                self._for_children.setdefault(parent.pid, {}).update(
                    (key, theirs[key]) for key in common
                )

    # --- creating the tree (torpor.family) ----------------------------------------------------

    def prepare(self, pid: int) -> None:
        """Before process `pid` forks its children: the VMAs they will inherit, in place with
        the process's own pages (those it inherited itself put right first)."""
        wanted = self._for_children.get(pid)
        if not wanted or pid in self._prepared:
            return
        ctx = self._context_of(pid)
        memory.clear_address_space(ctx)  # the stub's vDSO cannot be mapped over in part
        fresh = [v for key, v in wanted.items() if key not in self.inherited.get(pid, {})]
        for vma in fresh:
            memory.map_vma(ctx, vma, {})
        writes = self._put_right(ctx, [k for k in wanted if k in self.inherited.get(pid, {})])
        writes += [(v.start, v.end) for v in fresh]
        if writes:
            memory.fill_pages(ctx, set(), only=sorted(writes))
        self._prepared.add(pid)

    def prepares(self, pid: int) -> bool:
        """Whether process `pid` puts VMAs in place for its children before forking them."""
        return pid in self._for_children

    def inherits(self, parent: int, child: int, scratch: tuple[int, int]) -> bool:
        """Whether `child` is to be forked by `parent` without exec, keeping its memory; if
        so, it is recorded as inheriting. `scratch`: the parent's scratch page (start, end),
        which the child inherits and which must not lie in one of its VMAs."""
        common = self._candidates.get(child)
        if not common or self._parent[child] != parent or parent not in self._prepared:
            return False
        lo, hi = scratch
        if any(v.start < hi and lo < v.end for v in self._mms[child].vmas):
            return False
        self.inherited[child] = common
        return True

    # --- restoring memory (torpor.parts.memory) ---------------------------------------------

    def in_place(self, ctx) -> dict:
        """(start, end) -> VMA of the process's VMAs mapped already: inherited from its parent
        or put in place for its children."""
        pid = ctx.image_pid
        placed = dict(self.inherited.get(pid, {}))
        if pid in self._prepared:
            placed.update(self._for_children[pid])
        return placed

    def complete(self, ctx) -> list[tuple[int, int]]:
        """The inherited VMAs that prepare() did not put right: put right but for their
        pages; returns the ranges of those to write (memory.restore writes them)."""
        pid = ctx.image_pid
        prepared = self._for_children[pid] if pid in self._prepared else {}
        return self._put_right(ctx, [k for k in self.inherited.get(pid, {}) if k not in prepared])

    def _put_right(self, ctx, keys) -> list[tuple[int, int]]:
        """For the inherited VMAs `keys` of ctx's process: give each the protection it is
        mapped with, drop the pages its parent has and it had not, and return the ranges
        whose saved bytes differ from its parent's, to be written."""
        if not keys:
            return []
        pid = ctx.image_pid
        parent_ctx = self._context_of(self._parent[pid])
        mine, theirs = self._stored(ctx), self._stored(parent_ctx)
        parents_vmas = self._for_children[self._parent[pid]]
        writes: list[tuple[int, int]] = []
        with (
            ctx.images.open_binary(f"pages-{ctx.pages_id}.img") as own,
            ctx.images.open_binary(f"pages-{parent_ctx.pages_id}.img") as parents,
        ):
            for key in keys:
                vma = self.inherited[pid][key]
                prot = memory.mapped_prot(vma)
                if prot != memory.mapped_prot(parents_vmas[key]):
                    ctx.task.call(X86_64, "mprotect", vma.start, vma.end - vma.start, prot)
                own_runs, parent_runs = _within(mine, *key), _within(theirs, *key)
                lost = [(a, a + n) for a, n, _, _ in _split(parent_runs, own_runs)]
                for start, end in _merged(lost):
                    ctx.task.call(X86_64, "madvise", start, end - start, MADV_DONTNEED)
                for addr, length, at, their_at in _split(own_runs, parent_runs, keep_both=True):
                    if their_at is None:
                        writes.append((addr, addr + length))
                    else:
                        writes += _differing(
                            own.fileno(), at, parents.fileno(), their_at, addr, length
                        )
        return _merged(writes)

    def _stored(self, ctx) -> list:
        if ctx.image_pid not in self._runs:
            self._runs[ctx.image_pid] = memory.stored_runs(ctx)
        return self._runs[ctx.image_pid]


def _within(runs, start: int, end: int) -> list[tuple[int, int, int]]:
    """The (address, length, file offset) runs clipped to [start, end), sorted by address."""
    out = []
    for addr, length, offset in runs:
        lo, hi = max(addr, start), min(addr + length, end)
        if lo < hi:
            out.append((lo, hi - lo, offset + lo - addr))
    out.sort()
    return out


def _split(a, b, keep_both: bool = False):
    """The pieces of runs `a` as (address, length, a's offset, b's offset or None): each
    piece lies wholly in a run of `b` or wholly outside every one. Without `keep_both`, only
    the pieces outside `b`."""
    j = 0
    for addr, length, offset in a:
        end = addr + length
        while addr < end:
            while j < len(b) and b[j][0] + b[j][1] <= addr:
                j += 1
            if j < len(b) and b[j][0] <= addr:
                stop = min(end, b[j][0] + b[j][1])
                if keep_both:
                    yield addr, stop - addr, offset, b[j][2] + addr - b[j][0]
            else:
                stop = min(end, b[j][0]) if j < len(b) else end
                yield addr, stop - addr, offset, None
            offset += stop - addr
            addr = stop


def _differing(fd_a: int, at_a: int, fd_b: int, at_b: int, addr: int, length: int):
    """The (start, end) page ranges of [addr, addr+length) whose bytes differ between file
    `fd_a` at `at_a` and file `fd_b` at `at_b`."""
    ranges = []
    for done in range(0, length, BLOCK):
        size = min(BLOCK, length - done)
        mine = os.pread(fd_a, size, at_a + done)
        theirs = os.pread(fd_b, size, at_b + done)
        if mine == theirs:
            continue
        for page in range(0, size, PAGE_SIZE):
            if mine[page : page + PAGE_SIZE] != theirs[page : page + PAGE_SIZE]:
                start = addr + done + page
                ranges.append((start, start + PAGE_SIZE))
    return ranges


def _merged(ranges) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and out[-1][1] >= start:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out

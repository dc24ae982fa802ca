"""Copy-on-write sharing in a forked tree (torpor.parts.cow): the pages a parent and its
children still share since fork come back shared, and each process still sees its own.

- The ``cow`` workload (a parent, three children and a grandchild over a private region, each
  having changed or dropped some pages after the forks) is restored, its summed Pss measured
  from outside before the dump and after the restore: equal within the pages of files that
  come back as they are read, where one copy per process would be four times the region.
  The workload then checks every page of every process and that no process's writes after
  the restore reach another.
- The plan (which VMAs a child inherits, which it cannot) and the page comparison are checked
  over crafted images and files.
"""

from __future__ import annotations

import os
import signal
from types import SimpleNamespace

import harness
import pytest
from test_end_to_end import checkpoint_and_restore, images_dir

from torpor.arch import IA32, X86_64
from torpor.images import constants as C
from torpor.images import pb
from torpor.parts import cow
from torpor.remote import MAP_ANONYMOUS, MAP_PRIVATE

REGION_MB = 64


def tree_pss_kb(top: int) -> int:
    """The summed Pss of `top` and its descendants, in kB."""
    return sum(
        int(line.split()[1])
        for pid in harness.tree_pids(top)
        for line in open(f"/proc/{pid}/smaps_rollup")
        if line.startswith("Pss:")
    )


def test_forked_tree_memory_use_is_the_same_after_restore(start_workload, tmp_path):
    w = start_workload(harness.Spec("cow", args=(str(REGION_MB),)))
    w.wait_ready()
    before = tree_pss_kb(w.pid)
    assert len(harness.tree_pids(w.pid)) == 5, "the workload has three children and a grandchild"
    top = checkpoint_and_restore(w, images_dir(tmp_path))
    after = tree_pss_kb(top)
    region_kb = REGION_MB * 1024
    # One copy of the region per process would be 5 regions; the pages the parent changed
    # after the forks (64 KiB) come back as each child's own copy, which they shared.
    assert after <= before + 1024, f"Pss {before} kB before the dump, {after} kB after"
    assert after < 2 * region_kb, f"Pss {after} kB: the region is not shared"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- the plan, over crafted images ------------------------------------------------------------


def vma(start: int, end: int, status=C.VMA_AREA_REGULAR | C.VMA_ANON_PRIVATE, **fields):
    return pb.vma_pb2.VmaEntry(
        start=start, end=end, pgoff=0, shmid=0, prot=3, flags=MAP_PRIVATE | MAP_ANONYMOUS,
        status=status, fd=-1, **fields,
    )  # fmt: skip


def proc(pid: int, ppid: int, vmas, abi=X86_64, zombie=False):
    return SimpleNamespace(
        pid=pid,
        entry=SimpleNamespace(ppid=ppid),
        abi=abi,
        zombie=zombie,
        mm=pb.mm_pb2.MmEntry(vmas=vmas) if vmas is not None else None,
    )


REGION = (0x10000000, 0x20000000)


def plan(*procs):
    return cow.Sharing(list(procs), context_of=lambda pid: pytest.fail("no context needed"))


def test_a_child_inherits_the_vmas_its_parent_has_alike():
    heap = vma(0x5000000, 0x5100000, C.VMA_AREA_REGULAR | C.VMA_ANON_PRIVATE | C.VMA_AREA_HEAP)
    parent = proc(10, 1, [vma(*REGION), heap, vma(0x30000000, 0x30001000)])
    child = proc(11, 10, [vma(*REGION), heap, vma(0x30000000, 0x30002000)])
    sharing = plan(parent, child)
    assert sharing.prepares(10) and not sharing.prepares(11)
    sharing._prepared.add(10)  # as prepare() leaves it
    assert sharing.inherits(10, 11, (0x1000, 0x2000))
    assert set(sharing.inherited[11]) == {REGION, (heap.start, heap.end)}


@pytest.mark.parametrize(
    "child_vmas, abi, zombie",
    [
        ([vma(*REGION, torpor_accounted=True)], X86_64, False),  # accounted in one only
        ([vma(REGION[0], REGION[1] + 0x1000)], X86_64, False),  # another range
        ([vma(*REGION, status=C.VMA_AREA_REGULAR | C.VMA_FILE_PRIVATE)], X86_64, False),
        ([vma(*REGION)], IA32, False),  # an exec'd program of the other ABI
        ([vma(*REGION)], X86_64, True),  # a zombie has no memory left
    ],
    ids=["accounting", "range", "file", "abi", "zombie"],
)
def test_what_a_child_cannot_inherit(child_vmas, abi, zombie):
    sharing = plan(proc(10, 1, [vma(*REGION)]), proc(11, 10, child_vmas, abi=abi, zombie=zombie))
    assert not sharing.prepares(10)
    sharing._prepared.add(10)
    assert not sharing.inherits(10, 11, (0x1000, 0x2000))
    assert 11 not in sharing.inherited


def test_a_child_whose_vma_holds_the_parents_scratch_page_is_made_apart():
    sharing = plan(proc(10, 1, [vma(*REGION)]), proc(11, 10, [vma(*REGION), vma(0x3000, 0x5000)]))
    sharing._prepared.add(10)
    assert not sharing.inherits(10, 11, (0x4000, 0x5000))
    assert sharing.inherits(10, 11, (0x6000, 0x7000))


def test_nothing_is_inherited_from_a_parent_that_did_not_prepare():
    sharing = plan(proc(10, 1, [vma(*REGION)]), proc(11, 10, [vma(*REGION)]))
    assert not sharing.inherits(10, 11, (0x1000, 0x2000))


# --- the page comparison ----------------------------------------------------------------------

PAGE = 4096


def test_split_cuts_runs_where_the_other_side_starts_and_stops():
    mine = [(0x1000, 4 * PAGE, 0)]
    theirs = [(0x2000, PAGE, 100 * PAGE), (0x4000, 4 * PAGE, 200 * PAGE)]
    assert list(cow._split(mine, theirs, keep_both=True)) == [
        (0x1000, PAGE, 0, None),
        (0x2000, PAGE, PAGE, 100 * PAGE),
        (0x3000, PAGE, 2 * PAGE, None),
        (0x4000, PAGE, 3 * PAGE, 200 * PAGE),
    ]
    # what the other side has that this one lacks: dropped at restore
    assert list(cow._split(theirs, mine)) == [(0x5000, 3 * PAGE, 201 * PAGE, None)]


def test_differing_finds_exactly_the_changed_pages(tmp_path):
    pages = 600  # more than one comparison block
    theirs = bytearray(os.urandom(pages * PAGE))
    mine = bytearray(b"\0" * PAGE) + theirs  # stored one page further on
    for page in (3, 256, 257, 599):
        mine[PAGE + page * PAGE + 17] ^= 0xFF
    (tmp_path / "mine").write_bytes(mine)
    (tmp_path / "theirs").write_bytes(theirs)
    a = os.open(tmp_path / "mine", os.O_RDONLY)
    b = os.open(tmp_path / "theirs", os.O_RDONLY)
    try:
        found = cow._differing(a, PAGE, b, 0, 0x100000, pages * PAGE)
    finally:
        os.close(a)
        os.close(b)
    assert cow._merged(found) == [
        (0x100000 + 3 * PAGE, 0x100000 + 4 * PAGE),
        (0x100000 + 256 * PAGE, 0x100000 + 258 * PAGE),
        (0x100000 + 599 * PAGE, 0x100000 + 600 * PAGE),
    ]

"""Processes that share their fd table (clone CLONE_FILES) or their fs (CLONE_FS: working
directory, root, umask) with their parent, as CRIU saves them: the same files_id / fs_id in
both TaskKobjIdsEntry, one fdinfo-N.img for the shared table; restored sharing it again.

- The ``sharing`` workload (files, fs, and fs-mixed: a child of the other mode, which an exec
  made, sharing its fs) is dumped and restored: its images give parent and
  child the ids of what they share, the restored pair shares it (kcmp), and the workload
  checks, after the restore, that a change one makes is seen by the other; with and without
  the child keeping its parent's memory copy-on-write, which decides whether it execs.
- Images in which processes share an fd table or fs other than a child with its parent, or
  a child shares its parent's table in another mode, are refused in one line before
  anything is created (crafted from a mixed-mode tree).
- The plan over crafted processes: a chain of sharers is forked with CLONE_FILES and the
  top's scratch page, which they all keep, avoids all their VMAs; siblings sharing refused.
"""

from __future__ import annotations

import signal
from types import SimpleNamespace

import harness
import imagecraft
import pytest
from test_end_to_end import checkpoint_and_restore, images_dir

import torpor
from torpor import family
from torpor.arch import X86_64
from torpor.errors import ImageError
from torpor.images import ImageDir, pb
from torpor.images import constants as C
from torpor.kernel.files import KCMP_FILES, KCMP_FS, shared_with
from torpor.parts import cow

MODES = {  # mode -> (the ids field shared, the one not shared, its kcmp type, the other's)
    "files": ("files_id", "fs_id", KCMP_FILES, KCMP_FS),
    "fs": ("fs_id", "files_id", KCMP_FS, KCMP_FILES),
    "fs-mixed": ("fs_id", "files_id", KCMP_FS, KCMP_FILES),  # the child of the other mode
}


@pytest.mark.parametrize("cow_sharing", [True, False], ids=["cow", "no-cow"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_shared_with_the_parent_after_restore(
    mode, cow_sharing, start_workload, tmp_path, monkeypatch
):
    """The child also keeps its parent's memory copy-on-write (torpor.parts.cow) here; with
    that turned off, sharing the fs it execs the stub as any child (and keeps the fs), sharing
    the fd table it keeps its parent's stub (an exec would unshare the table)."""
    shared, own, kcmp_shared, kcmp_own = MODES[mode]
    if not cow_sharing:
        monkeypatch.setattr(cow.Sharing, "inherits", lambda *args: False)
    w = start_workload("sharing", mode)
    w.wait_ready()
    (child,) = harness.child_pids(w.pid)
    images = images_dir(tmp_path)
    top = checkpoint_and_restore(w, images)
    saved = ImageDir(images)
    parent_ids = saved.read_one(f"core-{top}.img").ids
    child_ids = saved.read_one(f"core-{child}.img").ids
    assert getattr(child_ids, shared) == getattr(parent_ids, shared), (parent_ids, child_ids)
    modes = {saved.read_one(f"core-{p}.img").thread_info.gpregs.mode for p in (top, child)}
    assert len(modes) == (2 if mode == "fs-mixed" else 1), modes
    assert getattr(child_ids, own) != getattr(parent_ids, own), (parent_ids, child_ids)
    fdinfo = sorted(p.name for p in images.iterdir() if p.name.startswith("fdinfo-"))
    tables = {parent_ids.files_id, child_ids.files_id}
    assert fdinfo == sorted(f"fdinfo-{n}.img" for n in tables), fdinfo
    assert harness.child_pids(top) == {child}, "the child was not restored as the parent's"
    assert shared_with(top, child, kcmp_shared), f"the restored pair does not share its {mode}"
    assert not shared_with(top, child, kcmp_own), "the restored pair shares what it did not"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- images no fork can restore ---------------------------------------------------------------


def _tree_mixed(start_workload, tmp_path):
    """The images of the mixed tree (parent, a child of the other mode, a grandchild of the
    parent's mode), its original gone; returns (images, [pids from the top down])."""
    w = start_workload("tree", "mixed")
    w.wait_ready()
    (child,) = harness.child_pids(w.pid)
    (grandchild,) = harness.child_pids(child)
    images = images_dir(tmp_path)
    torpor.dump(w.pid, str(images))
    w.reap_original()
    return images, [w.pid, child, grandchild]


def _share(images, field_name: str, pids) -> None:
    """Give processes `pids` the first one's `field_name` id, in their core images."""

    def mutate(decoded):
        first = decoded[f"core-{pids[0]}.img"][0][0].ids
        for pid in pids[1:]:
            setattr(decoded[f"core-{pid}.img"][0][0].ids, field_name, getattr(first, field_name))

    imagecraft.rewrite(images, mutate)


def _refused(images) -> str:
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    return message


@pytest.mark.parametrize("field_name, what", [("files_id", "fd table"), ("fs_id", "umask")])
def test_sharing_not_through_the_parent_is_refused(field_name, what, start_workload, tmp_path):
    """The top and its grandchild sharing, the child between them not: refused."""
    images, (top, _, grandchild) = _tree_mixed(start_workload, tmp_path)
    _share(images, field_name, [top, grandchild])
    message = _refused(images)
    assert f"process {grandchild} shares its " in message and what in message, message
    assert f"with process {top} but not with its parent" in message, message
    assert not harness.pid_alive(top), "a process was made"


def test_parents_fd_table_in_another_mode_is_refused(start_workload, tmp_path):
    images, (top, child, _) = _tree_mixed(start_workload, tmp_path)
    _share(images, "files_id", [top, child])
    message = _refused(images)
    assert f"process {child} shares its parent's fd table but runs in another mode" in message
    assert not harness.pid_alive(top), "a process was made"


# --- the plan, over crafted processes ---------------------------------------------------------


def _proc(pid: int, ppid: int, files_id: int, vmas=(), abi=X86_64):
    core = pb.core_pb2.CoreEntry(ids=pb.core_pb2.TaskKobjIdsEntry(files_id=files_id, fs_id=pid))
    core.tc.task_state = C.TASK_ALIVE
    return SimpleNamespace(
        pid=pid, entry=SimpleNamespace(pid=pid, ppid=ppid), core=core, abi=abi, zombie=False,
        mm=pb.mm_pb2.MmEntry(vmas=[pb.vma_pb2.VmaEntry(start=a, end=b) for a, b in vmas]),
        children=[], thread_cores={},
    )  # fmt: skip


def _tree(*procs):
    by_pid = {p.pid: p for p in procs}
    for p in procs[1:]:
        by_pid[p.entry.ppid].children.append(p)
    return list(procs)


def test_a_chain_of_sharers_is_forked_sharing_and_its_scratch_page_avoids_them_all():
    """A grandchild sharing its parent's table, shared with the top: each is forked with
    CLONE_FILES; they keep the top's scratch page, which must lie outside all their VMAs.
    A sibling with a table of its own is forked without."""
    procs = _tree(
        _proc(10, 1, 10, [(0x1000, 0x2000)]),
        _proc(11, 10, 10, [(0x3000, 0x4000)]),
        _proc(12, 11, 10, [(0x5000, 0x6000)]),
        _proc(13, 10, 13, [(0x7000, 0x8000)]),
    )
    family.check_sharing(procs)
    tasks = family.Family(procs, timens_offsets=None, pid_ns=None, scratch_at=None)
    assert [tasks.clone_flags(p.pid) for p in procs] == [
        0,
        family.CLONE_FILES,
        family.CLONE_FILES,
        0,
    ]
    avoided = {(v.start, v.end) for v in tasks._scratch_mm(procs[0]).vmas}
    assert avoided == {(0x1000, 0x2000), (0x3000, 0x4000), (0x5000, 0x6000)}


def test_sharers_that_are_siblings_are_refused():
    procs = _tree(_proc(10, 1, 10), _proc(11, 10, 11), _proc(12, 10, 11))
    with pytest.raises(ImageError, match="process 12 shares its fd table with process 11 but"):
        family.check_sharing(procs)

"""Processes that share their fd table (clone CLONE_FILES) or their fs (CLONE_FS: working
directory, root, umask) with their parent, as CRIU saves them: the same files_id / fs_id in
both TaskKobjIdsEntry, one fdinfo-N.img for the shared table; restored sharing it again.

- The ``sharing`` workload (files, fs) is dumped and restored: its images give parent and
  child the ids of what they share, the restored pair shares it (kcmp), and the workload
  checks, after the restore, that a change one makes is seen by the other.
- Images in which processes share an fd table or fs other than a child with its parent, or
  a child shares its parent's table in another mode, are refused in one line before
  anything is created (crafted from a mixed-mode tree).
"""

from __future__ import annotations

import signal

import harness
import imagecraft
import pytest
from test_end_to_end import checkpoint_and_restore, images_dir

import torpor
from torpor.errors import ImageError
from torpor.images import ImageDir
from torpor.kernel.files import KCMP_FILES, KCMP_FS, shared_with

MODES = {  # mode -> (the ids field shared, the one not shared, its kcmp type, the other's)
    "files": ("files_id", "fs_id", KCMP_FILES, KCMP_FS),
    "fs": ("fs_id", "files_id", KCMP_FS, KCMP_FILES),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_shared_with_the_parent_after_restore(mode, start_workload, tmp_path):
    shared, own, kcmp_shared, kcmp_own = MODES[mode]
    w = start_workload("sharing", mode)
    w.wait_ready()
    (child,) = harness.child_pids(w.pid)
    images = images_dir(tmp_path)
    top = checkpoint_and_restore(w, images)
    saved = ImageDir(images)
    parent_ids = saved.read_one(f"core-{top}.img").ids
    child_ids = saved.read_one(f"core-{child}.img").ids
    assert getattr(child_ids, shared) == getattr(parent_ids, shared), (parent_ids, child_ids)
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

"""Deleted files (the ghosts workload, restored in test_end_to_end): one larger than the
ghost limit refuses the dump, naming --ghost-limit, and the process runs on; the restore
leaves no file of its own behind."""

from __future__ import annotations

import os

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError


def test_ghost_limit_refuses(start_workload, tmp_path):
    w = start_workload("ghosts")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError, match=r"of 5000 bytes.*--ghost-limit 5000"):
        torpor.dump(w.pid, str(images), ghost_limit=4096)
    assert not os.listdir(images)
    w.signal()
    w.verdict().assert_passed()


def test_restore_leaves_no_file_behind(start_workload, tmp_path):
    w = start_workload("ghosts")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    before = sorted(os.listdir(w.cwd))
    w.adopt(torpor.restore(str(images)))
    assert sorted(os.listdir(w.cwd)) == before, "a recreated deleted file was left behind"
    w.signal()
    w.verdict().assert_passed()

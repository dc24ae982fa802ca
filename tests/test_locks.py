"""File locks (the locks workload, restored in test_end_to_end, checks them from another
process): a lock another process took between the dump and the restore fails the restore,
naming it, and leaves nothing behind."""

from __future__ import annotations

import fcntl
import os

import harness
import pytest

import torpor
from torpor.errors import RestoreError


def test_lock_taken_meanwhile_refuses_the_restore(start_workload, tmp_path):
    """A POSIX lock another process took between the dump and the restore: the restore fails
    naming the lock, and leaves nothing behind; once it is free again the restore works."""
    w = start_workload("locks", "hold")
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    with open(w.cwd / "locks.dat", "r+b") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 5)
        with pytest.raises(RestoreError, match=r"POSIX lock on fd 3 .* \(bytes 0-9\): another"):
            torpor.restore(str(images))
        assert not os.path.exists(f"/proc/{pid}")
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()

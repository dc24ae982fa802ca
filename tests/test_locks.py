"""File locks and leases (the locks workload, restored in test_end_to_end, checks them from
another process): a lock another process took between the dump and the restore, or a
leased file another process opened meanwhile, fails the restore, naming it, and leaves
nothing behind; a lease being broken refuses the dump; a lease image no lease can be made
of is refused before anything is created."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os

import harness
import pytest

import torpor
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import ImageDir
from torpor.parts import locks

READ_LEASED_FD, WRITE_LEASED_FD = 6, 7  # the locks workload's fds R and W


def _refused_while_held(start_workload, tmp_path, mode, hold, match) -> None:
    """Dump the locks workload (in `mode`), then restore it inside the `hold(cwd)` context:
    the restore must fail matching `match` and leave nothing behind; once the context has
    ended, the restore works and the workload passes."""
    w = start_workload("locks", *mode)
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    with hold(w.cwd):
        with pytest.raises(RestoreError, match=match):
            torpor.restore(str(images))
        assert not os.path.exists(f"/proc/{pid}")
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


@contextlib.contextmanager
def _posix_lock_taken(cwd):
    with open(cwd / "locks.dat", "r+b") as f:
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 5)
        yield


def test_lock_taken_meanwhile_refuses_the_restore(start_workload, tmp_path):
    """A POSIX lock another process took between the dump and the restore: the restore fails
    naming the lock, and leaves nothing behind; once it is free again the restore works."""
    _refused_while_held(
        start_workload,
        tmp_path,
        ["hold"],
        _posix_lock_taken,
        r"POSIX lock on fd 3 .* \(bytes 0-9\): another",
    )


def test_leased_file_open_for_writing_refuses_the_restore(start_workload, tmp_path):
    """The read-leased file open for writing by another process at the restore: the lease
    cannot be taken again, the restore fails naming it, and works once the file is closed."""
    _refused_while_held(
        start_workload,
        tmp_path,
        [],
        lambda cwd: open(cwd / "lease-r.dat", "wb"),
        rf"read lease on fd {READ_LEASED_FD} .*lease-r.dat\): the file is open for wr",
    )


def test_lease_being_broken_refuses_the_dump(start_workload, tmp_path):
    """A lease a process has started to break (its open failed with EWOULDBLOCK): the dump
    refuses in one line naming the fd, the process and the file, and lets the tree go."""
    w = start_workload("locks")
    w.wait_ready()
    with pytest.raises(OSError) as opened:
        os.open(w.cwd / "lease-w.dat", os.O_RDONLY | os.O_NONBLOCK)
    assert opened.value.errno == errno.EWOULDBLOCK
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert f"fd {WRITE_LEASED_FD} of process {w.pid}" in message, message
    assert "lease-w.dat" in message and "being broken" in message and "\n" not in message
    assert harness.pid_alive(w.pid), "a refused dump killed the tree"
    w.kill()


@pytest.mark.parametrize(
    "lease_type", [3, locks.LEASE_BREAKING | locks.F_RDLCK], ids=["unknown", "breaking"]
)
def test_lease_image_of_no_lease_is_refused(lease_type, start_workload, tmp_path):
    """A lease in file-locks.img of an unknown type, or one being broken (CRIU's
    LEASE_BREAKING): ImageError before anything is created."""
    w = start_workload("locks")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    d = ImageDir(images)
    entries = d.read("file-locks.img")
    assert [e.type for e in entries if e.flag == locks.FL_LEASE] == [0, 1]
    for e in entries:
        if e.flag == locks.FL_LEASE:
            e.type = lease_type
    inventory = d.read_one("inventory.img")
    out = ImageDir(images)
    out.write("file-locks.img", entries)
    out.commit(inventory)
    harness.assert_restore_refused(images, w.pid, "file-locks.img")

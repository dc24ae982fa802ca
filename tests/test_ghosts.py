"""Deleted files (the ghosts workload, restored in test_end_to_end): one larger than the
ghost limit refuses the dump, naming --ghost-limit, and the process runs on; the restore
leaves no file of its own behind."""

from __future__ import annotations

import os
import signal

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


# A Python temporary file (tempfile.TemporaryFile: O_TMPFILE, never linked) and a linkable
# O_TMPFILE file; after the restore each is read, its open flags checked, and the linkable
# one given a name (linkat through /proc/self/fd), which only an O_TMPFILE file allows.
TMPFILES = """
import ctypes, fcntl, os, signal, tempfile
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
O_TMPFILE = os.O_TMPFILE
DIR = os.environ["DIR"]
tmp = tempfile.TemporaryFile(dir=DIR)
tmp.write(b"temporary " * 100)
tmp.flush()
tmp.seek(7)
linkable = os.open(DIR, O_TMPFILE | os.O_RDWR, 0o640)
os.write(linkable, b"to be named")
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = [os.lseek(tmp.fileno(), 0, os.SEEK_CUR), tmp.read(9), os.pread(linkable, 20, 0)]
got += [fcntl.fcntl(fd, fcntl.F_GETFL) & O_TMPFILE == O_TMPFILE for fd in (tmp.fileno(), linkable)]
libc = ctypes.CDLL(None, use_errno=True)  # linkat: os.link does not follow /proc/self/fd
AT_FDCWD, AT_SYMLINK_FOLLOW = -100, 0x400
src, dst = f"/proc/self/fd/{linkable}".encode(), os.path.join(DIR, "named").encode()
if libc.linkat(AT_FDCWD, src, AT_FDCWD, dst, AT_SYMLINK_FOLLOW) != 0:
    raise OSError(ctypes.get_errno(), "linkat")
got.append(open(os.path.join(DIR, "named"), "rb").read())
got.append(oct(os.stat(os.path.join(DIR, "named")).st_mode & 0o777))
print(got, flush=True)
"""


def test_o_tmpfile_files_come_back_made_by_o_tmpfile(tmp_path, monkeypatch):
    monkeypatch.setenv("DIR", str(tmp_path))
    out = tmp_path / "out"
    images = harness.dump_program(harness.start_python(TMPFILES, out), tmp_path)
    restored = torpor.restore(str(images))
    os.kill(restored, signal.SIGUSR1)
    _, status = os.waitpid(restored, 0)
    assert status == 0, out.read_text()
    expected = [7, b"ry tempor", b"to be named", True, True, b"to be named", "0o640"]
    assert out.read_text().splitlines()[-1] == repr(expected), out.read_text()
    assert sorted(os.listdir(tmp_path)) == ["images", "named", "out"]


MAPPED_TMPFILE = """
import mmap, os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
fd = os.open(os.environ["DIR"], os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(fd, b"x" * 4096)
view = mmap.mmap(fd, 4096)
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
print(view[:3], flush=True)
"""


def test_o_tmpfile_file_also_mapped_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("DIR", str(tmp_path))
    out = tmp_path / "out"
    proc = harness.start_python(MAPPED_TMPFILE, out)
    images = tmp_path / "images"
    images.mkdir()
    try:
        with pytest.raises(UnsupportedError, match=r"O_TMPFILE file .* open or mapped in 2 ways"):
            torpor.dump(proc.pid, str(images))
        assert not os.listdir(images)
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0
        assert out.read_text().splitlines()[-1] == "b'xxx'"
    finally:
        proc.kill()
        proc.wait()

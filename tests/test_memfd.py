"""memfds held through fds (mapped or not): their size, contents and seals come back; a
read-only shared mapping of a sealed memfd keeps it sealable; an fd on a namespace file
refuses the dump. Contents no mapping reaches (workload memfds, both bitnesses) are saved
in CRIU's pagemap-shmem-ID.img and come back before the seals, also of a memfd that only
mappings hold (its fd closed), which keeps its size and seals too. Read-only shared mappings
of memfds sealed against writing (F_SEAL_WRITE, F_SEAL_FUTURE_WRITE) come back shared and
never writable, as the kernel made them (the workload checks smaps and mprotect, the strict
audit every VmFlags); one made before a seal against future writes, which may still
become writable, is refused."""

from __future__ import annotations

import os
import signal
import time

import harness
import pytest
from test_end_to_end import crit_decodes_every_image

import torpor
from torpor.errors import UnsupportedError

PROGRAM = r"""
import ctypes, fcntl, os, signal
F_ADD_SEALS, F_GET_SEALS = 1033, 1034
SEAL_SEAL, SEAL_SHRINK, SEAL_GROW, SEAL_WRITE = 1, 2, 4, 8
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
sealed = os.memfd_create("sealed", os.MFD_ALLOW_SEALING)
os.write(sealed, b"hello")
fcntl.fcntl(sealed, F_ADD_SEALS, SEAL_SEAL | SEAL_SHRINK | SEAL_WRITE)
sealable = os.memfd_create("sealable", os.MFD_ALLOW_SEALING)
os.write(sealable, b"abc")
plain = os.memfd_create("plain")
os.write(plain, b"x" * 10)
for fd in (sealed, sealable, plain):
    libc.mmap(None, 4096, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED, past the end of each
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
got = [fcntl.fcntl(sealed, F_GET_SEALS), os.pread(sealed, 5, 0), os.fstat(sealed).st_size]
try:
    os.write(sealed, b"!")
    got.append("written")
except PermissionError:
    got.append("refused")
fcntl.fcntl(sealable, F_ADD_SEALS, SEAL_GROW)
got += [fcntl.fcntl(sealable, F_GET_SEALS), os.fstat(sealable).st_size]
got += [fcntl.fcntl(plain, F_GET_SEALS), os.fstat(plain).st_size, os.pread(plain, 10, 0)]
print(got, flush=True)
"""


def _start(tmp_path, code: str):
    out = tmp_path / "out"
    return harness.start_python(code, out), out


def test_memfd_size_contents_and_seals(tmp_path):
    proc, out = _start(tmp_path, PROGRAM)
    images = harness.dump_program(proc, tmp_path)
    restored = torpor.restore(str(images))
    time.sleep(0.1)
    os.kill(restored, signal.SIGUSR1)
    _, status = os.waitpid(restored, 0)
    assert status == 0, out.read_text()
    expected = [11, b"hello", 5, "refused", 4, 3, 1, 10, b"x" * 10]
    assert out.read_text().splitlines()[-1] == str(expected), out.read_text()


def test_memfd_contents_beyond_the_mapped_range_come_back(start_workload, tmp_path):
    w = start_workload("memfds")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    assert len(list(images.glob("pagemap-shmem-*.img"))) == 2
    crit_decodes_every_image(images)
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


def test_memfd_only_mapped_keeps_its_size_and_contents_beyond_the_mapping(start_workload, tmp_path):
    w = start_workload("memfds", "mapped")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    assert len(list(images.glob("pagemap-shmem-*.img"))) == 1
    crit_decodes_every_image(images)
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


# A read-only shared mapping made before its memfd was sealed against future writes: it may
# still become writable (mprotect), which a mapping made again on the sealed memfd cannot.
MAPPED_BEFORE_FUTURE_SEAL = r"""
import ctypes, fcntl, os, signal
F_ADD_SEALS, F_SEAL_FUTURE_WRITE = 1033, 16
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
fd = os.memfd_create("early", os.MFD_ALLOW_SEALING)
os.ftruncate(fd, 4096)
addr = libc.mmap(None, 4096, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
ok = libc.mprotect(ctypes.c_void_p(addr), 4096, 3) == 0
ctypes.memmove(addr, b"w", 1)
print("writable" if ok and os.pread(fd, 1, 0) == b"w" else "not writable", flush=True)
"""


def test_read_only_mapping_that_may_write_on_a_future_sealed_memfd_is_refused(tmp_path):
    """Refused at dump, naming the mapping and the memfd; the program goes on and makes
    the mapping writable."""
    proc, out = _start(tmp_path, MAPPED_BEFORE_FUTURE_SEAL)
    images = tmp_path / "images"
    images.mkdir()
    try:
        with pytest.raises(UnsupportedError) as exc:
            torpor.dump(proc.pid, str(images))
        message = str(exc.value)
        assert "memfd 'early'" in message and "may become writable" in message, message
        assert list(images.iterdir()) == []
        os.kill(proc.pid, signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert out.read_text().splitlines()[-1] == "writable", out.read_text()
    finally:
        proc.kill()
        proc.wait()

"""Kinds of fd without a workload of their own: namespace files (restored, and used), and
the files torpor refuses by name — each refused dump leaves the program working."""

from __future__ import annotations

import os
import signal
import time

import harness
import pytest

import torpor
from torpor.errors import UnsupportedError

PRELUDE = """
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
signal.signal(signal.SIGUSR1, lambda *a: None)
"""

# An fd on its own net namespace and one on its pid namespace for children; after SIGUSR1 it
# enters the net namespace through it (setns) and checks they are its own.
NAMESPACES = (
    PRELUDE
    + """
net = os.open("/proc/self/ns/net", os.O_RDONLY)
kids = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY)
print("READY", flush=True)
signal.pause()
ok = libc.setns(net, 0x40000000) == 0
ok = ok and os.fstat(net).st_ino == os.stat("/proc/self/ns/net").st_ino
ok = ok and os.fstat(kids).st_ino == os.stat("/proc/self/ns/pid_for_children").st_ino
print("OK" if ok else "BAD", flush=True)
"""
)

# What each refused kind opens, and the words the refusal must hold.
REFUSED = {
    "io_uring": (
        "fd = libc.syscall(425, 4, ctypes.create_string_buffer(120))",
        "io_uring instance",
    ),
    "userfaultfd": ("fd = libc.syscall(323, 0)", "a userfaultfd"),
    "other-netns": (
        "r, w = os.pipe()\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    libc.unshare(0x40000000); os.write(w, b'x'); signal.pause(); os._exit(0)\n"
        "os.read(r, 1)\n"
        "fd = os.open(f'/proc/{child}/ns/net', os.O_RDONLY)\n"
        "os.kill(child, 9); os.waitpid(child, 0)",
        "net namespace the tree is not in",
    ),
    "mqueue": (
        "name = b'/torpor-test-%d' % os.getpid()\n"
        "fd = libc.mq_open(name, os.O_RDWR | os.O_CREAT, 0o600, None)\n"
        "assert fd >= 0 and libc.mq_unlink(name) == 0, ctypes.get_errno()",
        "a POSIX message queue",
    ),
    "non-utf8-path": (
        "import tempfile; path = tempfile.mkdtemp().encode() + b'/caf\\xe9'\n"
        "fd = os.open(path, os.O_RDWR | os.O_CREAT)\n"
        "os.unlink(path); os.rmdir(os.path.dirname(path))",
        "not UTF-8",
    ),
    "procfs-outside": ("fd = os.open('/proc/1/status', os.O_RDONLY)", "a file of task 1"),
    "aio": (
        "ctx = ctypes.c_ulong(0); assert libc.syscall(206, 8, ctypes.byref(ctx)) == 0",
        "an AIO ring (io_setup)",
    ),
}


def _wait_out(out, words=("OK", "BAD", "Error")) -> str:
    deadline = time.monotonic() + 10
    while not any(w in out.read_text() for w in words):
        assert time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)
    return out.read_text()


def test_namespace_files_come_back_as_the_processes_own(tmp_path):
    out = tmp_path / "out"
    proc = harness.start_python(NAMESPACES, out)
    restored = None
    try:
        images = tmp_path / "images"
        images.mkdir()
        torpor.dump(proc.pid, str(images))
        proc.wait()
        assert harness.wait_gone(proc.pid, 5)
        restored = torpor.restore(str(images))
        os.kill(restored, signal.SIGUSR1)
        assert "OK" in _wait_out(out), out.read_text()
    finally:
        harness.kill_tree(restored or proc.pid, restored or proc.pid)
        proc.poll()


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_refused_kinds_are_named(kind, tmp_path):
    opening, words = REFUSED[kind]
    code = PRELUDE + opening + "\nprint('READY', flush=True)\nsignal.pause()\nprint('OK')\n"
    out = tmp_path / "out"
    proc = harness.start_python(code, out)
    try:
        images = tmp_path / "images"
        images.mkdir()
        with pytest.raises(UnsupportedError) as exc:
            torpor.dump(proc.pid, str(images))
        assert "\n" not in str(exc.value) and words in str(exc.value), str(exc.value)
        assert list(images.iterdir()) == []
        proc.send_signal(signal.SIGUSR1)
        assert proc.wait(timeout=10) == 0, out.read_text()
        assert "OK" in out.read_text()
    finally:
        harness.kill_tree(proc.pid, proc.pid)
        proc.poll()

"""fanotify instances that cannot be saved refuse the dump by name and leave the program as
it was: one holding events not read yet, one of a permission class while a task waits for
its answer, one asking permission for a whole mount or filesystem; a restore whose marked
file is gone fails cleanly (workload fanotify, both bitnesses; the round trip itself is in
test_end_to_end)."""

from __future__ import annotations

import os

import harness
import pytest

import torpor
from torpor.context import DumpOptions
from torpor.errors import RestoreError, UnsupportedError
from torpor.kernel import fdinfo
from torpor.kernel.files import FdDescription
from torpor.parts.fds import fanotify


def _fanotify_fds(pid: int) -> list[int]:
    return sorted(
        int(fd)
        for fd in os.listdir(f"/proc/{pid}/fd")
        if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[fanotify]"
    )


def _refused(w: harness.Workload, tmp_path) -> str:
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    assert os.listdir(images) == []
    assert harness.tracer_pid(w.pid) == 0, "the original is still traced"
    return message


def test_unread_events_refuse(start_workload, tmp_path):
    """Events queued and not read: refused naming the fd; they are still queued after."""
    w = start_workload("fanotify", "unread")
    w.wait_ready()
    fd = _fanotify_fds(w.pid)[0]  # the first of the instances holding events
    message = _refused(w, tmp_path)
    for words in (f"fd {fd} of process {w.pid}", "a fanotify instance", "not read yet"):
        assert words in message, message
    w.signal()
    w.verdict().assert_passed()


def test_permission_event_waiting_refuses(start_workload, tmp_path):
    """A task (outside the tree) waits for a permission-class instance to answer: refused
    naming the fd and the task; the program then answers and the open goes through."""
    w = start_workload("fanotify", "permission")
    w.wait_ready()
    fds = _fanotify_fds(w.pid)
    opener = int((w.cwd / "opener.pid").read_text())
    try:
        with open(f"/proc/{opener}/wchan") as f:
            assert f.read() == "fanotify_handle_event", "the open does not wait for an answer"
        message = _refused(w, tmp_path)
        assert f"fd {fds[-1]} of process {w.pid} is a fanotify instance" in message, message
        assert f"task {opener} waits" in message, message
        assert harness.pid_alive(opener), "the waiting open finished while the program was held"
        w.signal()
        w.verdict().assert_passed()
        assert harness.wait_gone(opener), "the open was not let through"
    finally:
        if harness.pid_alive(opener):
            os.kill(opener, 9)


def test_restore_without_the_marked_file_fails_cleanly(start_workload, tmp_path):
    """The file an inode mark was on is gone at restore: a RestoreError naming it, and
    nothing of the tree is left."""
    w = start_workload("fanotify")
    w.wait_ready()
    pid = w.pid
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(pid, str(images))
    w.reap_original()
    assert harness.wait_gone(pid, 5)
    marked = w.cwd / "marked" / "g"
    marked.unlink()
    with pytest.raises(RestoreError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "\n" not in message, message
    assert f"cannot mark {marked} with fanotify again" in message, message
    assert harness.wait_gone(pid, 5), "the half-restored process was left"


@pytest.mark.parametrize("kind", ["mount", "filesystem"])
def test_permission_mark_on_a_mount_or_filesystem_refuses(kind, monkeypatch):
    """Such a mark, made again before the program runs, would hold every open there (the
    restore's own too) with no one to answer: refused, naming the fd and the mask. Asked
    of the kind with fdinfo stubbed: a real one would hold the whole host's opens."""
    mark = fdinfo.FanotifyMark(kind, mflags=0, mask=0x10000, ignored_mask=0, mnt_id=1, sdev=1)
    shown = fdinfo.Fanotify(flags=0x4, event_flags=0, marks=(mark,))  # FAN_CLASS_CONTENT
    monkeypatch.setattr(fanotify.fdinfo, "fanotify", lambda pid, fd: shown)
    monkeypatch.setattr(fanotify, "_queued", lambda pid, fd: 0)
    d = FdDescription(fd=5, target="anon_inode:[fanotify]", mode=0, rdev=0, inode=1, pos=0, flags=2)
    with pytest.raises(UnsupportedError) as exc:
        fanotify.KIND.inspect([(1234, d)], DumpOptions(root=1234), {})
    message = str(exc.value)
    assert "fd 5 of process 1234 is a fanotify instance asking permission" in message, message
    assert f"every file of a {kind} (mask 0x10000)" in message, message

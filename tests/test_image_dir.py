"""The images directory cannot be subverted: links and FIFOs planted in it during a dump are
never followed or opened, a dump killed half-way leaves nothing that looks like an image,
and a restore refuses images another user could have written or that are not regular files.
"""

from __future__ import annotations

import os
import signal
import stat

import harness
import pytest

import torpor
from torpor import dumper
from torpor.errors import ImageError
from torpor.images.imagedir import STAGING_PREFIX
from torpor.kernel import ptrace


@pytest.fixture
def dumped(start_workload, tmp_path):
    """A counter workload dumped (killed) into tmp_path/images: (workload, images)."""
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    return w, images


def test_links_and_fifos_planted_during_a_dump_are_not_followed(
    start_workload, tmp_path, monkeypatch
):
    """Links named like the images (to a file, dangling, to a directory) and a FIFO, planted
    once the dump has checked the directory: the targets stay as they were, the dump's own
    files replace the plants, and the images restore."""
    w = start_workload("counter")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    collect = dumper._collect

    def planting(tree, imagedir, *args):
        os.symlink(victim, images / f"core-{w.pid}.img")
        os.symlink(tmp_path / "created-by-torpor", images / "pages-1.img")
        os.symlink(tmp_path, images / "files.img")
        os.mkfifo(images / "inventory.img")
        return collect(tree, imagedir, *args)

    monkeypatch.setattr(dumper, "_collect", planting)
    torpor.dump(w.pid, str(images))
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "created-by-torpor").exists()
    for name in (f"core-{w.pid}.img", "pages-1.img", "files.img", "inventory.img"):
        st = os.lstat(images / name)
        assert stat.S_ISREG(st.st_mode), f"{name} is still the planted {stat.filemode(st.st_mode)}"
    assert not [p for p in os.listdir(images) if p.startswith(STAGING_PREFIX)]
    w.reap_original()
    assert harness.wait_gone(w.pid, 5)
    w.adopt(torpor.restore(str(images)))
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def test_a_killed_dump_leaves_no_image(start_workload, tmp_path):
    """torpor killed half-way through writing: the directory holds no image file (only the
    dump's private directory, hidden), and the next dump into it succeeds."""
    w = start_workload("memory")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    original, calls = ptrace.cont_syscall, [0]

    def counting(*args):
        calls[0] += 1
        return original(*args)

    ptrace.cont_syscall = counting  # how many stops a whole dump takes: die half-way
    try:
        (tmp_path / "whole").mkdir()
        torpor.dump(w.pid, str(tmp_path / "whole"), leave_running=True)
    finally:
        ptrace.cont_syscall = original
    assert calls[0] > 10, calls
    child = os.fork()
    if child == 0:
        try:
            seen = [0]

            def dying(*args):
                seen[0] += 1
                if seen[0] == calls[0] // 2:
                    os.kill(os.getpid(), signal.SIGKILL)
                return original(*args)

            ptrace.cont_syscall = dying
            torpor.dump(w.pid, str(images), leave_running=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    left = os.listdir(images)
    assert left and all(name.startswith(STAGING_PREFIX) for name in left), left
    torpor.dump(w.pid, str(images), leave_running=True)
    assert "inventory.img" in os.listdir(images)
    assert not [p for p in os.listdir(images) if p.startswith(STAGING_PREFIX)]
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def test_restore_refuses_images_others_could_write(dumped):
    """A directory writable by other users, or an image file of another user, refuses the
    restore in one line naming --trust-images; with it, the restore goes ahead."""
    w, images = dumped
    os.chmod(images, 0o777)
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    assert "writable by other users" in str(exc.value) and "--trust-images" in str(exc.value)
    os.chmod(images, 0o1777)  # sticky: others cannot replace root's files
    os.chown(images / "files.img", 1234, 1234)
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    assert "files.img belongs to user 1234" in str(exc.value), str(exc.value)
    assert "\n" not in str(exc.value)
    assert not harness.pid_alive(w.pid), "a refused restore created a process"
    w.adopt(torpor.restore(str(images), trust_images=True))
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


@pytest.mark.parametrize("plant", ["fifo", "symlink", "directory"])
def test_restore_refuses_what_is_not_a_regular_file(dumped, tmp_path, plant):
    """An image replaced by a FIFO (which would block), a link to a device (which would never
    end) or a directory is refused at once, naming it."""
    _, images = dumped
    target = images / "files.img"
    target.unlink()
    if plant == "fifo":
        os.mkfifo(target)
    elif plant == "symlink":
        os.symlink("/dev/zero", target)
    else:
        target.mkdir()
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert message.startswith("files.img: ") and "\n" not in message, message
    assert ("symbolic link" if plant == "symlink" else "not a regular file") in message

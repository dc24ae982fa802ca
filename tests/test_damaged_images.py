"""A damaged image directory is refused before anything is restored, never half-restored.

One good dump of the ``memory`` workload is made per flavour (the original is killed and
reaped, so its PID is free). Then every file of that dump, one kind at a time, is damaged
in a fresh copy of the directory in each of three ways: truncated to half its size, one
byte in the middle flipped, or deleted. Each time ``torpor.restore`` must raise ImageError
with a one-line message naming the damaged file; no process with the dumped PID may exist
afterwards and no new child may be left; and the damaged copy must be byte-identical
before and after the attempt, because a restore only ever reads images. The pristine copy
is restored last and must PASS, which proves the refusals were about the damage and not
about a bad dump.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import harness
import pytest

import torpor
from torpor.errors import ImageError

# Every kind of file a dump of the memory workload holds, as a glob in the images dir.
KINDS = {
    "inventory": "inventory.img",
    "pstree": "pstree.img",
    "core": "core-*.img",
    "mm": "mm-*.img",
    "pagemap": "pagemap-*.img",
    "pages": "pages-*.img",
    "files": "files.img",
    "fdinfo": "fdinfo-*.img",
    "fs": "fs-*.img",
    "cpuinfo": "cpuinfo.img",
    "timens": "timens-*.img",
    "cgroup": "cgroup.img",
}

DAMAGES = ("truncate", "flip", "delete")


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the damaged-image tests must run as root"


@dataclass
class Dump:
    """A good dump of the memory workload: its directory, the dumped PID, the workload."""

    path: Path
    pid: int
    workload: harness.Workload


@pytest.fixture(scope="module")
def dump_cache():
    """The good dumps of this module, made once per flavour on first use."""
    cache: dict[str, Dump] = {}
    yield cache
    for d in cache.values():
        d.workload.kill()


@pytest.fixture
def pristine(dump_cache, flavour, built_workloads, tmp_path_factory) -> Dump:
    """The good dump for this flavour (the original killed by the dump and reaped)."""
    if flavour not in dump_cache:
        workdir = tmp_path_factory.mktemp(f"memory-{flavour}")
        w = harness.start(harness.Spec("memory"), flavour, workdir)
        try:
            w.wait_ready()
            images = workdir / "images"
            images.mkdir()
            torpor.dump(w.pid, str(images), leave_running=False)
            status = w.reap_original()
        except BaseException:
            w.kill()
            raise
        assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
        assert harness.wait_gone(w.pid, 5), f"pid {w.pid} still exists after the dump"
        assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
        dump_cache[flavour] = Dump(images, w.pid, w)
    return dump_cache[flavour]


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of a directory with its content."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def the_file(path: Path, kind: str) -> Path:
    """The one file of ``kind`` in an images directory."""
    found = sorted(path.glob(KINDS[kind]))
    assert len(found) == 1, f"{KINDS[kind]} matches {[p.name for p in found]} in the dump"
    return found[0]


def damage(file: Path, how: str) -> None:
    """Truncate ``file`` to half, flip every bit of its middle byte, or delete it."""
    data = file.read_bytes()
    assert len(data) >= 2, f"{file.name} is too small to damage ({len(data)} bytes)"
    if how == "truncate":
        file.write_bytes(data[: len(data) // 2])
    elif how == "flip":
        flipped = bytearray(data)
        flipped[len(flipped) // 2] ^= 0xFF
        file.write_bytes(bytes(flipped))
    elif how == "delete":
        file.unlink()
    else:
        raise ValueError(how)


assert_refused = harness.assert_restore_refused


def test_dump_holds_every_kind(pristine):
    """The dump consists of exactly one file of each kind, so the damage tests cover it all."""
    names = sorted(p.name for p in pristine.path.iterdir())
    matched = {kind: [n for n in names if Path(n).match(glob)] for kind, glob in KINDS.items()}
    for kind, found in matched.items():
        assert len(found) == 1, f"{kind}: {found} in {names}"
    assert sorted(n for found in matched.values() for n in found) == names


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_damaged_file_refused(kind, how, pristine, tmp_path):
    """One damaged file makes the restore fail with an ImageError naming that file."""
    images = tmp_path / "images"
    shutil.copytree(pristine.path, images)
    target = the_file(images, kind)
    damage(target, how)
    assert snapshot(images) != snapshot(pristine.path)
    assert_refused(images, pristine.pid, target.name)


def test_empty_dir_refused(tmp_path):
    """An empty directory is not an image: ImageError naming inventory.img."""
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "\n" not in message and "inventory.img" in message, message
    assert os.listdir(images) == []


def test_missing_dir_refused(tmp_path):
    """A directory that does not exist is an ImageError naming it; it is not created."""
    images = tmp_path / "no-such-dir"
    with pytest.raises(ImageError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert "\n" not in message and str(images) in message, message
    assert not images.exists()


def test_dir_without_inventory_refused(pristine, tmp_path):
    """Every image but inventory.img (a dump cut short) is refused as incomplete."""
    images = tmp_path / "images"
    shutil.copytree(pristine.path, images)
    (images / "inventory.img").unlink()
    assert len(os.listdir(images)) == len(KINDS) - 1
    message = assert_refused(images, pristine.pid, "inventory.img")
    assert "missing" in message, message


def test_pristine_copy_restores(pristine, tmp_path):
    """The undamaged dump restores with the same PID and passes: the refusals above were
    caused by the damage alone."""
    images = tmp_path / "images"
    shutil.copytree(pristine.path, images)
    before = snapshot(images)
    w = pristine.workload
    pid = torpor.restore(str(images))
    assert pid == pristine.pid, f"restored as pid {pid}, expected {pristine.pid}"
    w.adopt(pid)
    state = harness.proc_state(pid)
    assert state is not None and state[1] == os.getpid(), f"restored task state {state}"
    assert snapshot(images) == before, "the restore changed the images"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()

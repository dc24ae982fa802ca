"""Memory protection keys: the keys a process allocated, the key of each mapping and the
rights in PKRU come back, and a dump that leaves the process running leaves them as they
were (the dump allocates and frees keys in the process to learn which are taken); on a CPU
without protection keys, images that hold some are refused, naming them, and a PKRU at the
kernel's default is dropped.

Every test runs on every host. Where this CPU has protection keys the pkeys workload sets
up keys and is restored; where it has none, no process here can hold a key: the workload
says so, and the images of a process with keys are those a dump on a CPU with keys writes
(the counter's images given keys 1 and 3, one mapping under key 1), which must be refused.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import harness
import pytest

import torpor
from torpor.errors import RestoreError
from torpor.images import ImageDir
from torpor.images import constants as C
from torpor.images.kinds import PAGES_PREFIX, kind_of
from torpor.kernel import cpuid
from torpor.restorer import check

HAS_PKU = cpuid.protection_keys()
KEYED = "protection keys 1, 3 (1 mappings guarded by them)"


def _no_keys_here(start_workload) -> None:
    """On a CPU without protection keys the workload cannot allocate one, as torpor says."""
    w = start_workload("pkeys")
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while w.proc.poll() is None:
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.02)
    assert w.proc.returncode == 0 and w.log().startswith("NOPKU"), w.log()


def _given_keys(images: Path, pid: int, out: Path) -> Path:
    """A copy of `images` in which process `pid` holds keys 1 and 3, its first anonymous
    mapping under key 1: every image written again, so that the digests match."""
    old, new = ImageDir(images), ImageDir(out)
    for name in sorted(os.listdir(images)):
        if name == "inventory.img":
            continue
        if name.startswith(PAGES_PREFIX + "-"):
            with new.pages_writer(int(name[len(PAGES_PREFIX) + 1 : -4])) as w:
                w.write((images / name).read_bytes())
            continue
        payloads = kind_of(name).payload_field is not None
        entries = old.read_with_payloads(name) if payloads else old.read(name)
        if name == f"mm-{pid}.img":
            (mm,) = entries
            mm.torpor_pkeys = 0b1010
            next(v for v in mm.vmas if v.status & C.VMA_ANON_PRIVATE).torpor_pkey = 1
        new.write(name, entries)
    new.commit(old.read_one("inventory.img"))
    return out


def _keyed_images(start_workload, tmp_path, live: bool) -> tuple[Path, int]:
    """Images of a process holding keys 1 and 3, and its PID: the pkeys workload's when
    `live` (where this CPU has keys), else the counter's given keys."""
    w = start_workload("pkeys" if live else "counter")
    w.wait_ready()
    pid = w.pid
    where = tmp_path / ("live" if live else "given")
    where.mkdir()
    images = harness.dump_killed(w, where)
    if live:
        return images, pid
    (where / "keyed").mkdir()
    return _given_keys(images, pid, where / "keyed"), pid


def _assert_refused_here(images: Path, pid: int) -> None:
    refused = [f for f in check(str(images)) if f.refused]
    assert any(f.topic == "protection keys" and KEYED in f.message for f in refused), refused
    with pytest.raises(RestoreError, match="protection keys|PKRU"):
        torpor.restore(str(images))
    assert not os.path.exists(f"/proc/{pid}"), "a refused restore left a process behind"


def _play_a_cpu_without_keys(monkeypatch) -> None:
    """From now on (after the dump), play a restoring CPU without protection keys: no PKU,
    no PKRU component."""
    monkeypatch.setattr(cpuid, "protection_keys", lambda: False)
    xfeatures = cpuid.xfeatures() & ~(1 << 9)
    monkeypatch.setattr(cpuid, "xfeatures", lambda: xfeatures)


@pytest.mark.parametrize("mode", [None, "default"], ids=["keys", "default"])
def test_keys_restored(mode, start_workload, tmp_path):
    """Where this CPU has keys: they come back, or the default PKRU does. Where it has none:
    no process can hold one, and images that hold some are refused."""
    if not HAS_PKU:
        _no_keys_here(start_workload)
        _assert_refused_here(*_keyed_images(start_workload, tmp_path, live=False))
        return
    w = start_workload("pkeys", mode)
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    found = {f.topic: f for f in check(str(images)) if f.topic == "protection keys"}
    if mode is None:
        assert KEYED in found["protection keys"].message, found
    else:
        assert "none in use" in found["protection keys"].message, found
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


def test_keys_refused_on_a_cpu_without_them(monkeypatch, start_workload, tmp_path):
    """Images as a dump on a CPU with keys writes them, and (where this CPU has keys) those
    of the pkeys workload itself, restored on a CPU without keys: refused, naming them."""
    made = [_keyed_images(start_workload, tmp_path, live=False)]
    if HAS_PKU:
        made.append(_keyed_images(start_workload, tmp_path, live=True))
    _play_a_cpu_without_keys(monkeypatch)
    for images, pid in made:
        _assert_refused_here(images, pid)


def test_default_pkru_dropped_on_a_cpu_without_keys(monkeypatch, start_workload, tmp_path):
    """A process that never set up a key (every process has PKRU at the kernel's default)
    moves to a CPU without keys and carries on."""
    w = start_workload("counter")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _play_a_cpu_without_keys(monkeypatch)
    assert not [f for f in check(str(images)) if f.refused]
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


def test_dump_leaves_keys_alone(start_workload, tmp_path):
    """The key probe leaves the allocation and PKRU as they were; on a CPU without keys
    there is nothing to probe and the images record no allocation."""
    w = start_workload("pkeys" if HAS_PKU else "counter")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images), leave_running=True)
    mm = ImageDir(images).read_one(f"mm-{w.pid}.img")
    assert mm.HasField("torpor_pkeys") == HAS_PKU
    w.signal()
    w.verdict().assert_passed()

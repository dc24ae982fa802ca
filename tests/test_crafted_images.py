"""Crafted images (fields changed, digests recomputed: they are no secret) are refused with
one line before anything is created, never with a traceback, and leave nothing behind."""

from __future__ import annotations

import os

import harness
import pytest

import torpor
from torpor.errors import TorporError
from torpor.images import ImageDir, kind_of


def _rewrite(images, mutate, pid: int) -> None:
    """Apply `mutate` to the decoded images and write them back with fresh digests."""
    src = ImageDir(images)
    src.verify()
    decoded = {}
    for name in os.listdir(images):
        if name == "inventory.img" or name.startswith("pages-"):
            continue
        reader = src.read_with_payloads if kind_of(name).payload_field else src.read
        decoded[name] = reader(name)
    inventory = src.read_one("inventory.img")
    mutate(decoded, pid)
    out = ImageDir(images)
    for name, entries in decoded.items():
        out.write(name, entries)
    for name in os.listdir(images):
        if name.startswith("pages-"):
            data = (images / name).read_bytes()
            os.unlink(images / name)
            with out.pages_writer(int(name[len("pages-") : -len(".img")])) as w:
                w.write(data)
    out.commit(inventory)


def _core(d, pid):
    return d[f"core-{pid}.img"][0]


def _mm(d, pid):
    return d[f"mm-{pid}.img"][0]


def empty_tree(d, pid):
    d["pstree.img"] = []


def zombie_root(d, pid):
    _core(d, pid).tc.task_state = 2


def kernel_ip(d, pid):
    _core(d, pid).thread_info.gpregs.ip = 0xFFFFFFFF81000000


def highest_sp(d, pid):
    _core(d, pid).thread_info.gpregs.sp = (1 << 64) - 1


def short_xstate(d, pid):
    _core(d, pid).thread_info.fpregs.torpor_xstate = bytes(100)


def kernel_handler(d, pid):
    _core(d, pid).tc.sigactions[9].sigaction = 1 << 63


def kernel_mapping(d, pid):
    vma = _mm(d, pid).vmas[0]
    vma.start, vma.end = 0xFFFF800000000000, 0xFFFF800000001000


def reversed_mapping(d, pid):
    vma = _mm(d, pid).vmas[0]
    vma.start, vma.end = vma.end, vma.start


def unaligned_mapping(d, pid):
    _mm(d, pid).vmas[0].end += 1


def unknown_file(d, pid):
    for name, entries in d.items():
        if name.startswith("fdinfo-"):
            for e in entries:
                e.id = 9999


CRAFTS = [
    empty_tree, zombie_root, kernel_ip, highest_sp, short_xstate, kernel_handler,
    kernel_mapping, reversed_mapping, unaligned_mapping, unknown_file,
]  # fmt: skip


@pytest.mark.parametrize("craft", CRAFTS, ids=lambda c: c.__name__)
def test_crafted_image_is_refused(craft, start_workload, tmp_path):
    w = start_workload("counter")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images))
    w.reap_original()
    assert harness.wait_gone(w.pid, 5)
    _rewrite(images, craft, w.pid)
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before, "images changed"


def test_a_saved_file_now_a_fifo_is_refused(start_workload, tmp_path):
    """The regular file a process had open replaced by a FIFO before the restore (opening
    it would block): refused at once, naming the path, nothing created."""
    w = start_workload("files")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images))
    w.reap_original()
    assert harness.wait_gone(w.pid, 5)
    entries = ImageDir(images).read("files.img")
    regular = next(
        f.reg.name for f in entries
        if f.HasField("reg") and f.reg.name.startswith(str(tmp_path)) and os.path.isfile(f.reg.name)
    )  # fmt: skip
    os.unlink(regular)
    os.mkfifo(regular)
    with pytest.raises(TorporError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert regular in message and "FIFO" in message and "\n" not in message, message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"

"""FIFOs whose other side is outside the tree (workload fifoext, both bitnesses): the test
holds the other side of two FIFOs, one the workload reads and one it writes. Kept open
across the dump and restore, the test's sides reach the restored ends again and no saved
byte comes twice; closed, the restored ends hold the saved data and have no other side;
handed in with --inherit-fd (CRIU's key: the path without its leading "/"), the restored
ends are the handed pipes, the saved data in them. `torpor show` lists both outside ends."""

from __future__ import annotations

import os

import command
import harness
from test_end_to_end import crit_decodes_every_image

import torpor


def _set_up(start_workload, mode: str):
    """The workload started and its FIFOs' outside sides open: "in" written, "out" read."""
    w = start_workload("fifoext", mode)
    w.wait_ready()
    writer = os.open(w.cwd / "in", os.O_WRONLY)
    os.write(writer, b"before")
    reader = os.open(w.cwd / "out", os.O_RDONLY | os.O_NONBLOCK)
    return w, writer, reader


def _read_to_end(fd: int) -> bytes:
    os.set_blocking(fd, True)
    got = b""
    while chunk := os.read(fd, 100):
        got += chunk
    return got


def _keys(w) -> list[str]:
    return [str((w.cwd / name).resolve()).removeprefix("/") for name in ("in", "out")]


def test_fifo_sides_kept_outside_reach_the_restored_ends(start_workload, tmp_path):
    w, writer, reader = _set_up(start_workload, "kept")
    try:
        images = harness.dump_killed(w, tmp_path)
        crit_decodes_every_image(images)
        shown = command.torpor("show", "-D", str(images)).stdout
        for key in _keys(w):
            assert f"outside end: the FIFO /{key}" in shown, shown
            assert f"--inherit-fd fd[N]:{key}" in shown, shown
        w.adopt(torpor.restore(str(images)))
        os.write(writer, b"after")
        os.close(writer)
        writer = -1
        w.signal()
        w.verdict().assert_passed()
        assert _read_to_end(reader) == b"w-beforew-after"
    finally:
        for fd in (writer, reader):
            if fd >= 0:
                os.close(fd)


def test_fifo_sides_closed_outside_come_back_with_the_saved_data(start_workload, tmp_path):
    w, writer, reader = _set_up(start_workload, "closed")
    try:
        images = harness.dump_killed(w, tmp_path)
    finally:
        os.close(writer)
        os.close(reader)
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


def test_fifo_ends_take_the_pipes_handed_in(start_workload, tmp_path):
    w, writer, reader = _set_up(start_workload, "handed")
    try:
        images = harness.dump_killed(w, tmp_path)
    finally:
        os.close(writer)
        os.close(reader)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    key_in, key_out = _keys(w)
    try:
        handed = {key_in: in_r, key_out: out_w}
        w.adopt(torpor.restore(str(images), inherit_fds=handed))
        os.close(in_r)
        os.close(out_w)
        in_r = out_w = -1
        os.write(in_w, b"handed")
        os.close(in_w)
        in_w = -1
        w.signal()
        w.verdict().assert_passed()
        assert _read_to_end(out_r) == b"w-beforew-after"
    finally:
        for fd in (in_r, in_w, out_r, out_w):
            if fd >= 0:
                os.close(fd)

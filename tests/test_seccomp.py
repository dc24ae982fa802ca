"""Seccomp filters, strict mode and no_new_privs come back as they were: the seccomp workload
uses every filter after the restore (errno returns, a kill by SIGSYS, a TSYNC that works only
while threads share their filters) and compares /proc. The images hold each distinct filter
once and crit reads them. A filter whose listener lives in another process is refused by
name, and the process runs on with its listener."""

from __future__ import annotations

import json
import subprocess

import harness
import pytest
from test_end_to_end import CRIT, crit_decodes_every_image

import torpor
from torpor.errors import UnsupportedError
from torpor.images import ImageDir

# mode -> (filters in seccomp.img, the main thread's chain, the second thread's chain)
MODES = {
    "shared": (2, [0, 1], [0, 1]),
    "partial": (2, [0], [0, 1]),
    "no-nnp": (2, [0, 1], [0, 1]),
    "strict": (0, [], []),
}


def _crit(path) -> dict:
    out = subprocess.run([CRIT, "decode", "-i", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)["entries"][0]


def _chain(filters: list[dict], newest: int) -> list[int]:
    chain = [newest]
    while "prev" in filters[chain[-1]]:
        chain.append(filters[chain[-1]]["prev"])
    return chain[::-1]


def _check_images(images, mode: str, pid: int) -> None:
    """What the images say, as crit reads them: each filter once, each thread's chain."""
    count, main_chain, thread_chain = MODES[mode]
    tids = ImageDir(images).read("pstree.img")[0].threads
    assert tids[0] == pid and len(tids) == 2
    filters = _crit(images / "seccomp.img")["seccomp_filters"] if count else []
    assert len(filters) == count
    for tid, chain in zip(tids, (main_chain, thread_chain), strict=True):
        thread = _crit(images / f"core-{tid}.img")["thread_core"]
        if mode == "strict":
            assert thread["seccomp_mode"] == ("disabled" if tid == pid else "strict")
            continue
        assert thread["seccomp_mode"] == "filter"
        assert _chain(filters, thread["seccomp_filter"]) == chain
        creds = ImageDir(images).read_one(f"core-{tid}.img").thread_core.creds
        assert creds.no_new_privs == (mode != "no-nnp")


@pytest.mark.parametrize("mode", list(MODES))
def test_checkpoint_restore(mode, start_workload, tmp_path):
    w = start_workload("seccomp", mode)
    w.wait_ready()
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    crit_decodes_every_image(images)
    _check_images(images, mode, pid)
    restored = torpor.restore(str(images))
    assert restored == pid
    w.adopt(restored)
    w.signal()
    w.verdict().assert_passed()


def test_notification_listener_refused(start_workload, tmp_path):
    w = start_workload("seccomp", "listener")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as refused:
        torpor.dump(w.pid, str(images))
    message = str(refused.value)
    assert "SECCOMP_FILTER_FLAG_NEW_LISTENER" in message and str(w.pid) in message, message
    assert "\n" not in message
    assert list(images.iterdir()) == []
    w.signal()
    w.verdict().assert_passed()

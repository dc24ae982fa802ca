"""State torpor does not save yet is refused, not lost: an armed alarm or interval timer, a
POSIX timer, a seccomp filter. The dump fails naming it and the process runs on with it."""

from __future__ import annotations

import pytest

import torpor
from torpor.errors import UnsupportedError

CASES = {
    "alarm": "ITIMER_REAL",
    "itimer-prof": "ITIMER_PROF",
    "posix-timer": "POSIX timers",
    "seccomp": "seccomp",
}


@pytest.mark.parametrize("mode", list(CASES))
def test_unsaved_state_refused(mode, start_workload, tmp_path):
    w = start_workload("unsaved", mode)
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    with pytest.raises(UnsupportedError) as refused:
        torpor.dump(w.pid, str(images))
    message = str(refused.value)
    assert CASES[mode] in message and str(w.pid) in message and "\n" not in message
    assert list(images.iterdir()) == []
    w.signal()
    w.verdict().assert_passed()

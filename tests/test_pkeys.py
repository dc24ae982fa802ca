"""Memory protection keys: the keys a process allocated, the key of each mapping and the
rights in PKRU come back, and a dump that leaves the process running leaves them as they
were (the dump allocates and frees keys in the process to learn which are taken).

These run where this CPU has protection keys; where it has none the workload cannot set up
any, and the restore rules for such CPUs are covered over recorded data in
test_cpu_portability.py (and live by the cross-kernel tests, whose guest CPU has them).
"""

from __future__ import annotations

import harness
import pytest

import torpor
from torpor.kernel import cpuid
from torpor.restorer import check

pytestmark = pytest.mark.skipif(
    not cpuid.protection_keys(), reason="this CPU has no protection keys"
)


@pytest.mark.parametrize("mode", [None, "default"], ids=["keys", "default"])
def test_keys_restored(mode, start_workload, tmp_path):
    w = start_workload("pkeys", mode)
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    found = {f.topic: f for f in check(str(images)) if f.topic == "protection keys"}
    if mode is None:
        assert "protection keys 1, 3 (1 mappings" in found["protection keys"].message, found
    else:
        assert "none in use" in found["protection keys"].message, found
    w.adopt(torpor.restore(str(images)))
    w.signal()
    w.verdict().assert_passed()


def test_dump_leaves_keys_alone(start_workload, tmp_path):
    w = start_workload("pkeys")
    w.wait_ready()
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images), leave_running=True)
    w.signal()
    w.verdict().assert_passed()

"""A restore names the CPU features of the dumping machine that this CPU lacks.

The dumping CPU is recorded in cpuinfo.img. To play a restoring CPU with fewer features than
this one, the restore sees this CPU's feature words with one feature it has cleared (sse4_2
where it has that, which any x86_64 host torpor runs on has); the restore must then warn about
it by name, or, with strict checking, refuse before creating anything.
"""

from __future__ import annotations

import logging
import os

import harness
import pytest

import torpor
from torpor.errors import RestoreError
from torpor.parts import cpu

# A feature this CPU has, to take away: (word, bit, name). sse4_2 is first in line.
PRESENT = sorted(
    ((w, b, n) for (w, b), n in cpu.FEATURES.items() if cpu.capability_words()[w] >> b & 1),
    key=lambda f: f[2] != "sse4_2",
)[0]


def test_feature_table_reads_this_cpu():
    """This CPU has sse3 and xsave (every x86_64 CPU torpor runs on does); none is missing."""
    words = cpu.capability_words()
    assert words[4] & 1 and words[4] >> 26 & 1
    assert cpu.missing_features(words, words) == []


def test_missing_features_named():
    word, bit, name = PRESENT
    poorer = cpu.capability_words()
    poorer[word] &= ~(1 << bit)
    assert cpu.missing_features(cpu.capability_words(), poorer) == [name]


@pytest.mark.parametrize("strict", [False, True], ids=["warn", "strict"])
def test_restore_on_a_poorer_cpu(strict, start_workload, tmp_path, monkeypatch, caplog):
    word, bit, name = PRESENT
    real = cpu.capability_words
    w = start_workload("counter")
    w.wait_ready()

    def poorer():
        words = real()
        words[word] &= ~(1 << bit)
        return words

    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    monkeypatch.setattr(cpu, "capability_words", poorer)
    if strict:
        with pytest.raises(RestoreError, match=name):
            torpor.restore(str(images), strict_cpu_check=True)
        assert not os.path.exists(f"/proc/{pid}"), "a refused restore left a process behind"
        return
    with caplog.at_level(logging.WARNING, logger="torpor"):
        restored = torpor.restore(str(images))
    w.adopt(restored)
    assert any(name in r.getMessage() for r in caplog.records), caplog.text
    w.signal()
    w.verdict().assert_passed()

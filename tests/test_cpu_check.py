"""A restore names the CPU features of the dumping machine that this CPU lacks.

The dumping CPU is recorded in cpuinfo.img. To play a CPU with more features than this one,
the dump records this CPU's feature words with one extra feature set; the restore must then
warn about it by name, or, with strict checking, refuse before creating anything.
"""

from __future__ import annotations

import logging
import os

import harness
import pytest

import torpor
from torpor.errors import RestoreError
from torpor.parts import cpu

# A feature bit this CPU lacks, found at run time: (word, bit, name).
ABSENT = next(
    ((w, b, n) for (w, b), n in cpu.FEATURES.items() if not cpu.capability_words()[w] >> b & 1),
    None,
)


def test_feature_table_reads_this_cpu():
    """This CPU has sse3 and xsave (every x86_64 CPU torpor runs on does); none is missing."""
    words = cpu.capability_words()
    assert words[4] & 1 and words[4] >> 26 & 1
    assert cpu.missing_features(words, words) == []
    assert ABSENT is not None, "this CPU has every feature in the table: nothing to play"


def test_missing_features_named():
    word, bit, name = ABSENT
    richer = cpu.capability_words()
    richer[word] |= 1 << bit
    assert cpu.missing_features(richer, cpu.capability_words()) == [name]


@pytest.mark.parametrize("strict", [False, True], ids=["warn", "strict"])
def test_restore_on_a_poorer_cpu(strict, start_workload, tmp_path, monkeypatch, caplog):
    word, bit, name = ABSENT
    real = cpu.capability_words
    w = start_workload("counter")
    w.wait_ready()

    def richer():
        words = real()
        words[word] |= 1 << bit
        return words

    monkeypatch.setattr(cpu, "capability_words", richer)
    pid = w.pid
    images = harness.dump_killed(w, tmp_path)
    monkeypatch.setattr(cpu, "capability_words", real)
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

"""The crafted-image fuzzer: images are input, and no image makes torpor misbehave.

A few small workloads are dumped once per bitness (a process with every kind of memory,
among them a file it maps MAP_SHARED; a tree with pipes, a shared file, zombies and shared
memory; a process with threads). Then one change at a time (tests/imagecraft.py: any field
of any message, any pages file's length, digests recomputed) is restored with ``torpor
restore -D DIR -d``, which must exit 0 (what it restored is then killed) or refuse in one
line with no traceback, within a bound, leaving no process, the images untouched and the
mapped files as they were.

The changes tried are a seeded sample spread over the kinds of file and their fields, the
same on every run: a failure names the change (file, field path, value) and comes back with
the same seed. TORPOR_FUZZ_SECONDS (default 70, for each bitness) bounds a run;
TORPOR_FUZZ_SEED picks another sample, for a longer soak.
"""

from __future__ import annotations

import os
import random
import time

import harness
import imagecraft
from command import child_subreaper

SECONDS = float(os.environ.get("TORPOR_FUZZ_SECONDS", "70"))
SEED = int(os.environ.get("TORPOR_FUZZ_SEED", "1"))
WORKLOADS = (harness.Spec("memory"), harness.Spec("tree", "family"), harness.Spec("threads"))
WATCHED = ("shared.dat", "private.dat")  # files the memory workload maps


def ordered_sample(mutants: list[imagecraft.Mutant], seed: int) -> list[imagecraft.Mutant]:
    """`mutants` in a seeded order that takes one of every group (kind of file, field,
    operation) before a second of any: a short run tries every field."""
    rng = random.Random(seed)
    groups: dict[tuple, list] = {}
    for m in mutants:
        groups.setdefault(m.group, []).append(m)
    keys = sorted(groups)
    rng.shuffle(keys)
    for key in keys:
        rng.shuffle(groups[key])
    out = []
    for round_ in range(max(len(g) for g in groups.values())):
        out.extend(groups[k][round_] for k in keys if round_ < len(groups[k]))
    return out


def _dump(spec, flavour, workdir):
    w = harness.start(spec, flavour, workdir)
    try:
        w.wait_ready()
        watched = {
            w.cwd / name: (w.cwd / name).read_bytes()
            for name in WATCHED
            if spec.name == "memory"
        }  # fmt: skip
        images = harness.dump_killed(w, workdir)
    except BaseException:
        w.kill()
        raise
    return images, watched


def test_crafted_images_never_misbehave(built_workloads, flavour, tmp_path):
    bases = []
    for n, spec in enumerate(WORKLOADS):
        workdir = tmp_path / f"{spec.id}-{n}"
        workdir.mkdir()
        images, watched = _dump(spec, flavour, workdir)
        pids = imagecraft.image_pids(images)
        order = ordered_sample(imagecraft.mutants(images), SEED * 1000 + int(flavour) + n)
        bases.append((spec, images, watched, pids, order))
    tried, restored, failures = 0, 0, []
    deadline = time.monotonic() + SECONDS
    with child_subreaper():
        for i in range(max(len(b[4]) for b in bases)):
            if time.monotonic() > deadline:
                break
            for spec, images, watched, pids, order in bases:
                if i >= len(order) or time.monotonic() > deadline:
                    continue
                mutant = order[i]
                crafted = tmp_path / f"mutant-{tried}"
                imagecraft.apply(images, crafted, mutant)
                outcome = imagecraft.restore_and_judge(crafted, pids, watched)
                tried += 1
                restored += outcome.status == 0
                print(f"{spec.id}: {mutant.describe()}: exit {outcome.status}")
                if outcome.broken:
                    failures.append(f"{spec.id}: {mutant.describe()}: {'; '.join(outcome.broken)}")
                    print(f"FAILED {failures[-1]}")
                    if len(failures) >= 10:
                        break
                else:
                    _remove(crafted)
            if len(failures) >= 10:
                break
    print(f"{tried} mutants tried (seed {SEED}), {restored} restored, {len(failures)} failed")
    assert not failures, "\n".join(failures)
    assert tried >= len(bases), "no mutant tried"


def _remove(directory) -> None:
    for name in os.listdir(directory):
        os.unlink(directory / name)
    directory.rmdir()

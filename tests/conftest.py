"""Shared pytest fixtures: the workloads, built once per session, and the two flavours.

Every test that starts a workload runs twice, once per flavour ("64": gcc -m64 build,
"32": gcc -m32 build), through the ``flavour`` fixture. Nothing is skipped quietly: when
the 32-bit toolchain is missing the build fixture fails with a message saying what to
install, because a skipped 32-bit run would hide exactly what torpor promises to support.

Every restore the tests make, through the API or the command, verifies the restored tree
against the dump's audit and refuses on any difference (TORPOR_VERIFY=strict, which the
torpor commands the tests run inherit): a piece of state torpor forgets fails a test the
first time it is restored. A test that needs otherwise says so with its own verify option.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import harness
import pytest

os.environ["TORPOR_VERIFY"] = "strict"


@pytest.fixture(scope="session")
def built_workloads():
    """Run ``make -C tests/workloads`` once per session; fail clearly if it cannot."""
    try:
        return harness.build_workloads()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(params=harness.FLAVOURS, ids=[f"m{f}" for f in harness.FLAVOURS])
def flavour(request) -> str:
    """The workload flavour: "64" or "32"."""
    return request.param


@pytest.fixture
def start_workload(built_workloads, flavour, tmp_path) -> Iterator[Callable[..., harness.Workload]]:
    """Factory: ``start_workload(spec_or_name, mode=None)`` starts a workload in this flavour.

    Each workload gets its own directory under tmp_path (cwd and log). Whatever is still
    running at the end of the test is killed, so a failing test leaves no process behind.
    """
    started: list[harness.Workload] = []

    def start(spec: harness.Spec | str, mode: str | None = None) -> harness.Workload:
        if isinstance(spec, str):
            spec = harness.Spec(spec, mode)
        workdir = tmp_path / f"{spec.id}-{flavour}-{len(started)}"
        workdir.mkdir()
        w = harness.start(spec, flavour, workdir)
        started.append(w)
        return w

    yield start
    for w in started:
        w.kill()

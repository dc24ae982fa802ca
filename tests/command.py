"""Run the ``torpor`` command the way a user does, for the tests that go through it."""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PR_SET_CHILD_SUBREAPER = 36
CLI_TIMEOUT = 60


def torpor_exe() -> str:
    """The torpor command installed next to the running Python (the venv), else the repo's."""
    for candidate in (Path(sys.executable).parent / "torpor", REPO / ".venv" / "bin" / "torpor"):
        if candidate.exists():
            return str(candidate)
    raise AssertionError("no torpor command next to the Python interpreter or in .venv/bin")


TORPOR = torpor_exe()


def cli_env() -> dict[str, str]:
    """The environment for the command: wide, plain output so lines are never wrapped."""
    env = dict(os.environ)
    env.update(COLUMNS="300", TERM="dumb", NO_COLOR="1")
    return env


def torpor(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``torpor ARGS`` to completion, capturing text output unless told otherwise."""
    if "stdout" not in kwargs:
        kwargs["capture_output"] = True
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [TORPOR, *args], text=True, env=cli_env(), timeout=CLI_TIMEOUT, check=False, **kwargs
    )


def assert_ok(res: subprocess.CompletedProcess) -> None:
    """Exit status 0 and no error on stderr."""
    assert res.returncode == 0, f"{res.args} exited {res.returncode}:\n{res.stdout}{res.stderr}"
    assert "torpor: error" not in (res.stderr or ""), res.stderr


@contextlib.contextmanager
def child_subreaper() -> Iterator[None]:
    """Within the block this process is a child subreaper: a process restored by
    ``torpor restore -d`` (whose parent exits) is reparented here and can be waited for."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)

"""A full-screen terminal program, checkpointed in one tmux pane and restored with
--shell-job from the shell of another: the restored program gets the terminal (its process
group is the foreground one) in the raw mode it had set (a key arrives without Enter and is
not echoed), answers keys and, when it ends, hands the pane back to its shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import harness
import pytest
from command import TORPOR

KEYS = r"""
import os, sys, tty
tty.setraw(0)
os.write(1, b"keys READY\r\n")
while True:
    key = os.read(0, 1)
    if key == b"q":
        break
    os.write(1, b"got " + key + b"\r\n")
"""


class Tmux:
    def __init__(self, tmp_path):
        self.socket = f"torpor-{uuid.uuid4().hex[:8]}"
        self.env = {"PATH": "/usr/bin:/bin", "TERM": "xterm", "LC_ALL": "C", "HOME": str(tmp_path)}

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env,
            timeout=30, check=True,
        )  # fmt: skip
        return done.stdout

    def screen(self, target: str) -> str:
        return self("capture-pane", "-p", "-t", target)

    def wait_for(self, target: str, text: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (screen := self.screen(target)):
            assert time.monotonic() < deadline, f"no {text!r} in pane {target}:\n{screen}"
            time.sleep(0.05)
        return screen


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: scripts/setup.sh installs it")
    t = Tmux(tmp_path)
    t("new-session", "-d", "-s", "t", "-x", "100", "-y", "30", "bash --norc --noprofile")
    yield t
    subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, check=False)


def test_full_screen_program_moves_between_panes(tmux, tmp_path):
    program = tmp_path / "keys.py"
    program.write_text(KEYS)
    images = tmp_path / "images"
    images.mkdir()
    shell = int(tmux("display-message", "-p", "-t", "t:0", "#{pane_pid}"))
    tmux("send-keys", "-t", "t:0", f"/usr/bin/python3 {program}", "Enter")
    tmux.wait_for("t:0", "keys READY")
    (pid,) = harness.child_pids(shell)
    dumped = subprocess.run(
        [TORPOR, "dump", "-t", str(pid), "-D", str(images), "--shell-job"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert dumped.returncode == 0, dumped.stderr
    assert harness.wait_gone(pid, 10)

    tmux("new-window", "-t", "t:1", "bash --norc --noprofile")
    tmux(
        "send-keys",
        "-t",
        "t:1",
        f"{TORPOR} restore -D {images} --shell-job; echo status=$?",
        "Enter",
    )
    deadline = time.monotonic() + 15
    while not os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, tmux.screen("t:1")
        time.sleep(0.05)
    time.sleep(0.3)
    tmux("send-keys", "-t", "t:1", "x")
    screen = tmux.wait_for("t:1", "got x")
    assert "xgot" not in screen, f"the key was echoed: the terminal is not raw:\n{screen}"
    tmux("send-keys", "-t", "t:1", "q")
    tmux.wait_for("t:1", "status=0")

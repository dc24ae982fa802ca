"""Progress on a terminal: bytes done and rate for a dump or restore that runs past a threshold
(one second; $TORPOR_PROGRESS_AFTER here, so the test needs no slow dump), and nothing extra
when stderr is not a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

from command import TORPOR

REPO = Path(__file__).resolve().parent.parent
MEMHOG = REPO / "bench" / "workloads" / "build" / "memhog-64"


def _memhog(tmp_path) -> subprocess.Popen:
    subprocess.run(["make", "-s", "-C", str(MEMHOG.parent.parent)], check=True)
    log = open(tmp_path / "memhog.log", "wb")
    proc = subprocess.Popen(
        [str(MEMHOG), "64"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    while b"READY" not in (tmp_path / "memhog.log").read_bytes():
        assert proc.poll() is None
        time.sleep(0.01)
    return proc


def _on_terminal(argv: list[str]) -> tuple[int, str]:
    """Run argv with its stdio on a new pty; return its exit status and what it printed."""
    master, slave = pty.openpty()
    env = dict(os.environ, TORPOR_PROGRESS_AFTER="0", COLUMNS="100")
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(), out.decode(errors="replace")


def test_progress_on_a_terminal(tmp_path):
    proc = _memhog(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    status, out = _on_terminal([str(TORPOR), "dump", "-t", str(proc.pid), "-D", str(images)])
    proc.wait()
    assert status == 0, out
    assert "dumping" in out and "MB" in out and "/s" in out, out
    pidfile = tmp_path / "pid"
    argv = [str(TORPOR), "restore", "-d", "-D", str(images), "--pidfile", str(pidfile)]
    status, out = _on_terminal(argv)
    assert status == 0, out
    assert "restoring" in out and "MB" in out, out
    os.kill(int(pidfile.read_text()), 9)


def test_nothing_extra_off_a_terminal(tmp_path):
    proc = _memhog(tmp_path)
    images = tmp_path / "images"
    images.mkdir()
    env = dict(os.environ, TORPOR_PROGRESS_AFTER="0")
    done = subprocess.run(
        [str(TORPOR), "dump", "-t", str(proc.pid), "-D", str(images)], capture_output=True, env=env
    )
    proc.wait()
    assert done.returncode == 0 and done.stdout == b"" and done.stderr == b"", done
    pidfile = tmp_path / "pid"
    done = subprocess.run(
        [str(TORPOR), "restore", "-d", "-D", str(images), "--pidfile", str(pidfile)],
        capture_output=True,
        env=env,
    )
    assert done.returncode == 0 and done.stdout == b"" and done.stderr == b"", done
    os.kill(int(pidfile.read_text()), 9)

"""Stopping `torpor dump` with SIGINT, SIGTERM or SIGHUP while the tree is frozen: the command
says "interrupted" on one line and exits 1, the images directory is left empty, and the
process runs on exactly as before (not traced, not stopped, its signal mask as it was, its
512 MiB of memory intact)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import harness
import pytest
from command import TORPOR, cli_env

HOLDER = r"""
import hashlib, signal
data = bytearray(range(256)) * (2 << 20)
digest = hashlib.sha256(data).hexdigest()
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
print("PASS" if hashlib.sha256(data).hexdigest() == digest else "FAIL", flush=True)
"""


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name
)
def test_interrupted_dump_leaves_the_process_as_it_was(sig, tmp_path):
    out = tmp_path / "holder.out"
    holder = harness.start_python(HOLDER, out)
    try:
        before = _status(holder.pid)
        images = tmp_path / "images"
        images.mkdir()
        dump = subprocess.Popen(
            [TORPOR, "dump", "-t", str(holder.pid), "-D", str(images)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        )  # fmt: skip
        while _status(holder.pid)["TracerPid"] == "0":
            assert dump.poll() is None, dump.communicate()
        time.sleep(0.05)
        dump.send_signal(sig)
        stdout, stderr = dump.communicate(timeout=60)
        assert dump.returncode == 1, (dump.returncode, stderr)
        assert stderr == "torpor: error: interrupted\n", stderr
        assert not os.listdir(images), os.listdir(images)
        after = _status(holder.pid)
        assert after["TracerPid"] == "0" and after["State"][0] in "SR", after["State"]
        assert after["SigBlk"] == before["SigBlk"], (before["SigBlk"], after["SigBlk"])
        holder.send_signal(signal.SIGUSR1)
        assert holder.wait(timeout=60) == 0
        assert out.read_text() == "READY\nPASS\n", out.read_text()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

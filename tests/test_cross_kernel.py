"""Restore across real kernels: dumped under Debian's 6.1 or 6.12 and restored here, and the
reverse, for a 64-bit and a 32-bit program.

The other kernels run under QEMU through the xk rig (shared/xk next to the repository or its
origin, or $TORPOR_XK), on this machine's own root filesystem. The program is the vdso workload:
before the dump and after the restore it calls clock_gettime (several clocks), gettimeofday,
time and getcpu through glibc's cached pointers and through pointers into the vDSO it looked up
itself, checks them against the syscalls and checks that the monotonic clocks never went
backwards; its SIGUSR1 handler runs on the other kernel. Each case checks the program's own
verdict.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import harness
import pytest
import xk_guest

REPO = Path(__file__).resolve().parent.parent


def _find_rig() -> Path:
    """$TORPOR_XK, else shared/xk next to this repository or next to the one it was cloned
    from (a fresh clone elsewhere still finds the rig of its origin)."""
    if "TORPOR_XK" in os.environ:
        return Path(os.environ["TORPOR_XK"])
    places = [REPO.parent]
    origin = subprocess.run(
        ["git", "-C", str(REPO), "config", "--get", "remote.origin.url"],
        capture_output=True,
        text=True,
    )
    if origin.returncode == 0 and origin.stdout.strip().startswith("/"):
        places.append(Path(origin.stdout.strip()).resolve().parent)
    for place in places:
        if (place / "shared" / "xk" / "run").exists():
            return place / "shared" / "xk"
    return REPO.parent / "shared" / "xk"


XK = _find_rig()
XK_DIR = Path(os.environ.get("XK_DIR", "/var/tmp/xk"))
KERNELS = ("6.1", "6.12")
FLAVOURS = ("64", "32")
GUEST_TIMEOUT = 240


@pytest.fixture(scope="module")
def rig(built_workloads):
    """The xk rig, set up once (about 30 s) if its kernels are not there yet."""
    assert (XK / "run").exists(), f"the cross-kernel rig is missing: no {XK}/run (set TORPOR_XK)"
    if not all((XK_DIR / f"k{k}" / "vmlinux").exists() for k in KERNELS):
        subprocess.run(["bash", str(XK / "setup.sh")], check=True, capture_output=True)
    return XK


@pytest.fixture
def shared_dir():
    """A directory the guest sees too (the rig shares / but gives the guest its own /run)."""
    path = Path("/var/tmp") / f"torpor-xk-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_guest(kernel: str, script: Path) -> None:
    """Run a shell script under `kernel`; the command line itself must stay short."""
    script.chmod(0o755)
    done = subprocess.run(
        [str(XK / "run"), kernel, str(script)],
        capture_output=True,
        text=True,
        timeout=GUEST_TIMEOUT,
    )
    assert done.returncode == 0, f"guest {kernel} failed:\n{done.stdout[-3000:]}{done.stderr}"


def guest_python(args: list[str]) -> str:
    return " ".join([str(REPO / ".venv/bin/python"), str(REPO / "tests/xk_guest.py"), *args])


def free_pid() -> int:
    """A PID free here (the guest's task gets it, so the restore here can have it too)."""
    while True:
        pid = random.randint(20000, 30000)
        if not os.path.exists(f"/proc/{pid}"):
            return pid


def check_result(result: dict, what: str) -> None:
    assert "error" not in result, f"{what}: restore failed: {result['error']}"
    log = result["log"]
    assert result["status"] == 0, f"{what}: exit status {result['status']}:\n{log}"
    assert "PASS vdso" in log and "FAIL" not in log, f"{what}:\n{log}"


@pytest.mark.parametrize("kernel", KERNELS)
def test_dumped_here_restored_there(kernel, rig, shared_dir):
    lines = ["#!/bin/sh", f"cd {REPO}"]
    for flavour in FLAVOURS:
        workdir = shared_dir / f"wd{flavour}"
        workdir.mkdir()
        images = shared_dir / f"img{flavour}"
        images.mkdir()
        proc = xk_guest.start(str(harness.binary("vdso", flavour)), None, str(workdir))
        import torpor

        torpor.dump(proc.pid, str(images))
        proc.wait()
        lines.append(
            guest_python(["restore", str(images), str(workdir), str(shared_dir / f"r{flavour}")])
        )
    script = shared_dir / "guest.sh"
    script.write_text("\n".join(lines) + "\n")
    run_guest(kernel, script)
    for flavour in FLAVOURS:
        result = json.loads((shared_dir / f"r{flavour}").read_text())
        check_result(result, f"6.18 -> {kernel}, {flavour}-bit")
        if kernel == "6.1" and flavour == "64":
            assert any("lacks" in w and "getrandom" in w for w in result["warnings"]), result
        with open(shared_dir / f"wd{flavour}" / "vdso-missing") as f:
            missing = f.read().split()
        assert all(any(name in w for w in result["warnings"]) for name in missing)


@pytest.mark.parametrize("kernel", KERNELS)
def test_dumped_there_restored_here(kernel, rig, shared_dir):
    lines = ["#!/bin/sh", f"cd {REPO}"]
    for flavour in FLAVOURS:
        (shared_dir / f"wd{flavour}").mkdir()
        (shared_dir / f"img{flavour}").mkdir()
        binary = harness.binary("vdso", flavour)
        args = ["dump", str(binary), str(free_pid()), str(shared_dir / f"wd{flavour}")]
        lines.append(guest_python([*args, str(shared_dir / f"img{flavour}")]))
    script = shared_dir / "guest.sh"
    script.write_text("\n".join(lines) + "\n")
    run_guest(kernel, script)
    for flavour in FLAVOURS:
        result_path = shared_dir / f"r{flavour}"
        xk_guest.restore(
            str(shared_dir / f"img{flavour}"), str(shared_dir / f"wd{flavour}"), str(result_path)
        )
        check_result(json.loads(result_path.read_text()), f"{kernel} -> 6.18, {flavour}-bit")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))

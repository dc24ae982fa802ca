"""Restore across real kernels and CPUs: dumped under Debian's 6.1 or 6.12 (on QEMU's CPU) and
restored here, and the reverse, for 64-bit and 32-bit programs.

The other kernels run under QEMU through the xk rig (shared/xk next to the repository or its
origin, or $TORPOR_XK), on this machine's own root filesystem. The program is the vdso workload:
before the dump and after the restore it calls clock_gettime (several clocks), gettimeofday,
time and getcpu through glibc's cached pointers and through pointers into the vDSO it looked up
itself, checks them against the syscalls and checks that the monotonic clocks never went
backwards; its SIGUSR1 handler runs on the other kernel. Each case checks the program's own
verdict.

The two sides' CPUs differ, and differently on every host. Programs are started portably for
the pair at hand (GLIBC_TUNABLES off the features the other side lacks, from each side's
/proc/cpuinfo), so that the tests pass on any x86_64 host; a program started as is and a
program holding protection keys check the refusals, whichever way this host's CPU goes.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import harness
import pytest
import xk_guest

from torpor.kernel import cpuid
from torpor.parts import cpu, regs

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


def cpu_flags(cpuinfo: str) -> set[str]:
    line = next(x for x in cpuinfo.splitlines() if x.startswith("flags"))
    return set(line.split(":", 1)[1].split())


HOST_FLAGS = cpu_flags(Path("/proc/cpuinfo").read_text())
_guest_flags: dict[str, set[str]] = {}


@pytest.fixture
def guest_flags(rig, shared_dir):
    """The CPU flags the guest of a kernel sees (its /proc/cpuinfo), read once per kernel."""

    def read(kernel: str) -> set[str]:
        if kernel not in _guest_flags:
            script = shared_dir / "cpuinfo.sh"
            script.write_text(f"#!/bin/sh\ncat /proc/cpuinfo > {shared_dir}/cpuinfo\n")
            run_guest(kernel, script)
            _guest_flags[kernel] = cpu_flags((shared_dir / "cpuinfo").read_text())
        return _guest_flags[kernel]

    return read


def portable(target_flags: set[str], source_flags: set[str]) -> str:
    """GLIBC_TUNABLES for a program started on `source` that must run on `target` too."""
    return cpu.glibc_tunables(sorted(source_flags - target_flags)) or "-"


def free_pid() -> int:
    """A PID free here (the guest's task gets it, so the restore here can have it too)."""
    while True:
        pid = random.randint(20000, 30000)
        if not os.path.exists(f"/proc/{pid}"):
            return pid


@dataclass(frozen=True)
class Case:
    """One program moved across: its workload, mode, flavour, and whether it is started
    portably for the other side's CPU."""

    name: str
    mode: str | None
    flavour: str
    portable: bool = True

    @property
    def key(self) -> str:
        return f"{self.name}-{self.mode or 'plain'}-{self.flavour}-{int(self.portable)}"

    @property
    def binary(self) -> str:
        return str(harness.binary(self.name, self.flavour))


VDSO_CASES = [Case("vdso", "trampolines", f) for f in FLAVOURS]


def result_of(shared_dir: Path, case: Case) -> dict:
    return json.loads((shared_dir / f"r-{case.key}").read_text())


def assert_restored(result: dict, case: Case, what: str) -> None:
    assert "error" not in result, f"{what}: restore failed: {result['error']}"
    log = result["log"]
    assert result["status"] == 0, f"{what}: exit status {result['status']}:\n{log}"
    assert f"PASS {case.name}" in log and "FAIL" not in log, f"{what}:\n{log}"
    refused = [f for f in result["findings"] if f[1] == "refuse"]
    assert not refused, f"{what}: check -D would refuse what restore did: {refused}"


def assert_refused(result: dict, what: str, *needles: str) -> None:
    assert "error" in result, f"{what}: restored, but it should have been refused: {result}"
    assert all(n in result["error"] for n in needles), f"{what}: {result['error']}"
    assert "\n" not in result["error"], result["error"]
    refused = [f[2] for f in result["findings"] if f[1] == "refuse"]
    assert result["error"] in refused, f"{what}: check -D did not say it: {result['findings']}"


def uses_avx512(images: Path) -> bool:
    """Whether the dumped process holds AVX-512 state (glibc picked it on this CPU)."""
    from torpor.images import ImageDir

    dir_ = ImageDir(images)
    core = dir_.read_one(next(p.name for p in images.iterdir() if p.name.startswith("core-")))
    return bool(regs.loadable_components(core.thread_info.fpregs, -1) & 0b11100000)


@pytest.mark.parametrize("kernel", KERNELS)
def test_dumped_here_restored_there(kernel, rig, shared_dir, guest_flags):
    """Programs started portably move to the guest; one started as is moves too unless glibc
    gave it AVX-512 state the guest's CPU cannot hold, which the guest refuses, saying how
    to start it; protection keys move with their mappings where both CPUs have them."""
    import torpor

    flags = guest_flags(kernel)
    cases = [*VDSO_CASES, Case("vdso", "trampolines", "64", portable=False)]
    if cpuid.protection_keys():
        cases.append(Case("pkeys", None, "64"))
    lines = ["#!/bin/sh", f"cd {REPO}"]
    for case in cases:
        workdir, images = shared_dir / f"wd-{case.key}", shared_dir / f"img-{case.key}"
        workdir.mkdir()
        images.mkdir()
        tunables = portable(flags, HOST_FLAGS) if case.portable else None
        proc = xk_guest.start(case.binary, case.mode, None, str(workdir), tunables)
        torpor.dump(proc.pid, str(images))
        proc.wait()
        result = shared_dir / f"r-{case.key}"
        lines.append(guest_python(["restore", str(images), str(workdir), str(result)]))
    script = shared_dir / "guest.sh"
    script.write_text("\n".join(lines) + "\n")
    run_guest(kernel, script)
    for case in cases:
        result, what = result_of(shared_dir, case), f"6.18 -> {kernel}, {case.key}"
        if not case.portable and uses_avx512(shared_dir / f"img-{case.key}"):
            assert "avx512f" in HOST_FLAGS and "avx512f" not in flags
            assert_refused(result, what, "AVX-512", "GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F")
            continue
        assert_restored(result, case, what)
        if case.name != "vdso":
            continue
        if kernel == "6.1" and case.flavour == "64":
            assert any("lacks" in w and "getrandom" in w for w in result["warnings"]), result
        missing = (shared_dir / f"wd-{case.key}" / "vdso-missing").read_text().split()
        assert all(any(name in w for w in result["warnings"]) for name in missing)


@pytest.mark.parametrize("kernel", KERNELS)
def test_dumped_there_restored_here(kernel, rig, shared_dir, guest_flags):
    """Programs dumped in the guest come back here: `torpor check -D` says so first (the vDSO
    differs: calls jump to this kernel's); the guest's protection keys come back where this
    CPU has them and are refused, named, where it has none; a PKRU left at its default is
    dropped there."""
    flags = guest_flags(kernel)
    cases = [*VDSO_CASES, Case("pkeys", None, "64"), Case("pkeys", "default", "64")]
    lines = ["#!/bin/sh", f"cd {REPO}"]
    for case in cases:
        (shared_dir / f"wd-{case.key}").mkdir()
        (shared_dir / f"img-{case.key}").mkdir()
        args = ["dump", case.binary, case.mode or "-", str(free_pid())]
        args += [str(shared_dir / f"wd-{case.key}"), str(shared_dir / f"img-{case.key}")]
        args.append(portable(HOST_FLAGS, flags))
        lines.append(guest_python(args))
    script = shared_dir / "guest.sh"
    script.write_text("\n".join(lines) + "\n")
    run_guest(kernel, script)
    for case in cases:
        images, result_path = shared_dir / f"img-{case.key}", shared_dir / f"r-{case.key}"
        what = f"{kernel} -> 6.18, {case.key}"
        xk_guest.restore(str(images), str(shared_dir / f"wd-{case.key}"), str(result_path))
        result = json.loads(result_path.read_text())
        if case.name == "pkeys" and case.mode is None and not cpuid.protection_keys():
            assert_refused(result, what, "protection keys 1, 3", "this CPU has no protection keys")
            continue
        assert_restored(result, case, what)
        vdso = [f[2] for f in result["findings"] if f[0] == "vDSO"]
        assert vdso and "differs from this kernel's" in vdso[0], result["findings"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))

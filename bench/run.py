"""torpor's benchmark suite: how long a process is frozen by a dump and how long until it runs
again after a restore, next to the limits of this machine and to CRIU measured in the same run.

Usage: ``python bench/run.py [--quick] [--runs N] [--criu PATH] [--results-dir DIR]
[--images-root DIR]``

It builds its workloads (bench/workloads, gcc -m64 and -m32), then measures in one run:

- memory: dump and restore wall time, MB/s and image size of processes holding 64 MiB,
  256 MiB and 1 GiB, both flavours, through the Python API in this (warm) process and through
  the torpor command (whole command); every restored process checks its memory word by word
  and must say PASS;
- the raw limits, on the same process and the same disk: process_vm_readv of its memory into
  a file in the images directory (dump limit), that file written with process_vm_writev into a
  fresh process holding untouched memory (restore limit), and memcpy; each torpor figure is
  also given as a fraction of its limit, since the machine is shared and only ratios taken
  from one run compare;
- fixed cost: the trivial process through the command line (whole command) and the API;
- growth: 1 to 10 000 mappings, 1 to 100 threads and 1 to 50 processes, each with the cost
  per unit from a linear fit (a refusal by torpor would be recorded as "not supported yet");
- torpor's own peak RSS while dumping and restoring the largest process (ru_maxrss of the
  command, from wait4);
- CRIU beside torpor in every table: its whole commands (``criu dump -t PID -D DIR
  --shell-job``, then ``criu restore -D DIR --shell-job -d``) on the same workloads, run
  interleaved with torpor's, images on the same disk, every process CRIU restored checked like
  torpor's; each table gives CRIU/torpor (above 1: torpor is faster). The binary is --criu,
  else $TORPOR_CRIU, else ../shared/criu/criu beside the repository when it is there; without
  one the CRIU columns say "no CRIU".

Timings are medians of --runs runs (6 by default). ``--quick`` (1 run, 8 MiB, 100 mappings)
only proves that everything works, CRIU's path included. Tables go to stdout, the JSON to
``<results-dir>/<timestamp>.json`` and ``<results-dir>/latest.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import mmap
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

import torpor
from torpor.kernel import memio
from torpor.kernel.pagescan import PageScanner
from torpor.kernel.procfs import read_maps

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORKLOADS_DIR = BENCH_DIR / "workloads"
BUILD_DIR = WORKLOADS_DIR / "build"
DEFAULT_RESULTS_DIR = BENCH_DIR / "results"
FLAVOURS = ("64", "32")
MIB = 1 << 20
MB = 1_000_000
RAW_CHUNK = 8 << 20  # bytes per process_vm_* call in the raw limits (as many iovecs as needed)
# At least 5 (issue 5); even, so that torpor, CRIU and the raw limits go first equally often.
DEFAULT_RUNS = 6
READY_TIMEOUT = 120.0
VERDICT_TIMEOUT = 120.0

# The targets (issues 5 and 15): CRIU's time over torpor's at least TARGET_RATIO everywhere and
# TARGET_RATIO_LARGE for the memory of TARGET_SIZES, torpor at TARGET_FRACTION of the raw limits.
TARGET_SIZES = (256, 1024)
TARGET_RATIO = 1.0
TARGET_RATIO_LARGE = 1.2
TARGET_FRACTION = 0.8
TARGET_RSS_MIB = 100
LINEAR_TOLERANCE = 2.0  # marginal cost of the last step over that of the step before


@dataclass
class Config:
    """What one invocation measures."""

    quick: bool
    runs: int
    sizes: tuple[int, ...]
    mappings: tuple[int, ...]
    threads: tuple[int, ...] = (1, 10, 100)
    processes: tuple[int, ...] = (1, 10, 50)

    @property
    def rss_size(self) -> int:
        return max(self.sizes)


class BenchError(RuntimeError):
    """The benchmark itself failed: a workload misbehaved or a restored process did not PASS."""


def log(message: str) -> None:
    """Progress of the run on stderr, so that stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def size_label(mib: int) -> str:
    return f"{mib // 1024} GiB" if mib >= 1024 and mib % 1024 == 0 else f"{mib} MiB"


def median(values: list[float]) -> float:
    return statistics.median(values)


# --- processes ---------------------------------------------------------------------------------


def become_subreaper() -> None:
    """Adopt orphaned descendants: a process restored by the command line outlives the command,
    and must still be waited for here to read its verdict."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_child_subreaper = 36
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


_live: set[int] = set()  # PIDs of processes this run started (or restored) and must end


def kill_and_reap(pid: int, group: bool = False) -> None:
    """SIGKILL one process this run started (its whole process group with `group`), reap it."""
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    _live.discard(pid)


def reap_orphans() -> None:
    """Reap adopted descendants that have exited (the children of a killed process tree)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def wait_exit(pid: int, timeout: float) -> int:
    """Wait for child `pid` to exit; its status as Popen.returncode would give it."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got == pid:
            _live.discard(pid)
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            kill_and_reap(pid)
            raise BenchError(f"process {pid} did not exit within {timeout:.0f} s")
        time.sleep(0.002)


class Workload:
    """A benchmark target, started the way torpor can checkpoint it: a child of this process in
    its own session, stdin /dev/null, stdout and stderr appended to a log file in `workdir`
    (which is also its working directory). It prints READY (possibly followed by values) once
    set up, and after SIGUSR1 checks its state and prints PASS or FAIL."""

    def __init__(self, name: str, flavour: str, args: list, workdir: Path):
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}-{flavour}-{time.monotonic_ns()}.log"
        exe = BUILD_DIR / f"{name}-{flavour}"
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [str(exe), *map(str, args)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=workdir,
                start_new_session=True,
            )
        self.pid = self.proc.pid
        _live.add(self.pid)
        self.ready = self._wait_ready()
        self.mark()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self) -> list[str]:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            for line in self.log_text().splitlines():
                if line.split()[:1] == ["READY"]:
                    return line.split()[1:]
            if self.proc.poll() is not None:
                _live.discard(self.pid)
                raise BenchError(f"{self.name} exited before READY: {self.log_text()!r}")
            if time.monotonic() > deadline:
                self.kill()
                raise BenchError(f"{self.name} not READY after {READY_TIMEOUT:.0f} s")
            time.sleep(0.002)

    def reap_dumped(self, tree: set[int]) -> None:
        """Reap the original process tree (PIDs `tree`), which a dump without --leave-running
        has killed: the root here, its descendants as orphans of this subreaper, so that
        every PID is free for the restore."""
        self.proc.wait(timeout=VERDICT_TIMEOUT)
        _live.discard(self.pid)
        deadline = time.monotonic() + VERDICT_TIMEOUT
        while any(os.path.exists(f"/proc/{pid}") for pid in tree):
            reap_orphans()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name}: the dumped tree is still there")
            time.sleep(0.001)

    def mark(self) -> None:
        """Remember the log's size while the process waits to be dumped (see `rewind`)."""
        self.log_size = self.log_path.stat().st_size

    def rewind(self) -> None:
        """Cut the log back to its size at `mark`, before one more restore of the same dump: the
        restored process writes its verdict where the dumped one stood (and CRIU refuses to
        restore a file whose size changed)."""
        os.truncate(self.log_path, self.log_size)

    def adopt(self, pid: int) -> None:
        """Follow the restored copy (same PID, now a new child of this process)."""
        if pid != self.pid:
            raise BenchError(f"restored {self.name} has PID {pid}, dumped {self.pid}")
        _live.add(pid)

    def verdict(self) -> str:
        """Wake the restored process and return its verdict line ("PASS name" or "FAIL ...")."""
        os.kill(self.pid, signal.SIGUSR1)
        status = wait_exit(self.pid, VERDICT_TIMEOUT)
        lines = self.log_text().splitlines()
        verdicts = [line for line in lines if line.startswith(("PASS", "FAIL"))]
        if status == 0 and verdicts == [f"PASS {self.name}"]:
            return verdicts[0]
        return "; ".join(verdicts) or f"FAIL {self.name}: exit status {status}, no verdict"

    def kill(self, group: bool = False) -> None:
        kill_and_reap(self.pid, group=group)
        self.proc.returncode = self.proc.returncode or -signal.SIGKILL


def tree_pids(root: int) -> set[int]:
    """`root` and all its descendants."""
    found, queue = set(), [root]
    while queue:
        pid = queue.pop()
        found.add(pid)
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                queue += [int(p) for p in f.read().split()]
    return found


# --- torpor, through the API and the command line ----------------------------------------------


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def torpor_command() -> str:
    """The torpor command installed next to this interpreter (the project's virtualenv)."""
    here = Path(sys.executable).parent / "torpor"
    if here.exists():
        return str(here)
    found = shutil.which("torpor")
    if not found:
        raise BenchError("the torpor command is not installed next to this Python")
    return found


@dataclass
class CliRun:
    """One torpor command: wall time of the whole command, its peak RSS and its stderr."""

    seconds: float
    status: int
    maxrss_kib: int
    stderr: str
    sampled_kib: dict | None = None


class RssSampler(threading.Thread):
    """Samples RssAnon and RssFile of a running process every few milliseconds.

    ru_maxrss is one figure; this split tells the process's own memory (anonymous) from the
    file pages it has mapped (page cache, e.g. an image file read through mmap). The process
    is followed through a descriptor of its /proc directory, never by PID alone, so a PID
    reused after it is reaped cannot be sampled by mistake.
    """

    KEYS = (b"RssAnon", b"RssFile", b"RssShmem")
    INTERVAL = 0.005

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.peak = {key.decode(): 0 for key in self.KEYS}
        self.halt = threading.Event()
        try:
            self.dirfd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self.dirfd = None

    def run(self) -> None:
        if self.dirfd is None:
            return
        try:
            while not self.halt.is_set():
                try:
                    fd = os.open("status", os.O_RDONLY, dir_fd=self.dirfd)
                    try:
                        data = os.read(fd, 16384)
                    finally:
                        os.close(fd)
                except OSError:
                    return
                for line in data.splitlines():
                    key, _, rest = line.partition(b":")
                    if key in self.KEYS:
                        name = key.decode()
                        self.peak[name] = max(self.peak[name], int(rest.split()[0]))
                self.halt.wait(self.INTERVAL)
        finally:
            os.close(self.dirfd)

    def finish(self) -> dict:
        self.halt.set()
        self.join()
        return {f"{name}_kib": value for name, value in self.peak.items()}


def run_cli(
    args: list[str],
    workdir: Path,
    sample: bool = False,
    command: list[str] | None = None,
    check: bool = True,
) -> CliRun:
    """Run torpor (or `command`) with `args` and wait for it with wait4, for its own ru_maxrss.

    The command is started by bench/workloads' spawn, not forked from this process: a process
    keeps the peak RSS it had before exec, so a fork of this (large) interpreter would report
    the benchmark's size. spawn exits at once; the command, orphaned, is adopted by this
    process (a child subreaper) and waited for here. The wall time runs from spawn's fork of
    the command to its exit, on CLOCK_MONOTONIC (time.monotonic_ns). With `sample`, an
    RssSampler also watches the command (not for timed runs: it takes CPU time). A command
    that fails raises BenchError, or with check=False is returned with its status.
    """
    stamp = time.monotonic_ns()
    info = workdir / f"cli-{stamp}.info"
    err_path = workdir / f"cli-{stamp}.err"
    with open(err_path, "wb") as err:
        subprocess.run(
            [str(BUILD_DIR / "spawn-64"), str(info), *(command or [torpor_command()]), *args],
            stdin=subprocess.DEVNULL,
            stdout=err,
            stderr=err,
            check=True,
        )
    pid, start_ns = (int(v) for v in info.read_text().split())
    sampler = RssSampler(pid) if sample else None
    if sampler:
        sampler.start()
    _, status, usage = os.wait4(pid, 0)
    seconds = (time.monotonic_ns() - start_ns) / 1e9
    sampled = sampler.finish() if sampler else None
    code = os.waitstatus_to_exitcode(status)
    text = err_path.read_text(errors="replace")
    info.unlink()
    err_path.unlink()
    if code != 0 and check:
        what = " ".join(command or ["torpor"] + args)
        raise BenchError(f"{what} failed ({code}): {text.strip()}")
    return CliRun(seconds, code, usage.ru_maxrss, text, sampled)


def images_size(images: Path) -> tuple[int, int]:
    """(bytes of all image files, bytes of the pages files) in an image directory."""
    total = pages = 0
    for entry in os.scandir(images):
        size = entry.stat().st_size
        total += size
        if entry.name.startswith("pages-"):
            pages += size
    return total, pages


@dataclass
class Cycle:
    """One dump and restore of a workload and the restored process's verdict."""

    dump_s: float
    restore_s: float
    verdict: str
    image_bytes: int = 0
    pages_bytes: int = 0
    dump_rss_kib: int | None = None
    restore_rss_kib: int | None = None
    cli_stderr: str = ""
    dump_sampled: dict | None = None
    restore_sampled: dict | None = None
    vmas: int | None = None


def api_cycle(w: Workload, images: Path) -> Cycle:
    """Dump `w` and restore it through the Python API; the restored copy gives its verdict."""
    tree = tree_pids(w.pid)
    dump_s, _ = timed(lambda: torpor.dump(w.pid, images))
    w.reap_dumped(tree)
    total, pages = images_size(images)
    restore_s, pid = timed(lambda: torpor.restore(images))
    w.adopt(pid)
    return Cycle(dump_s, restore_s, w.verdict(), total, pages)


def cli_cycle(w: Workload, images: Path, sample: bool = False) -> Cycle:
    """Dump `w` and restore it with the torpor command, each a whole command's wall time."""
    tree = tree_pids(w.pid)
    dumped = run_cli(["dump", "-t", str(w.pid), "-D", str(images)], w.workdir, sample)
    w.reap_dumped(tree)
    total, pages = images_size(images)
    pidfile = w.workdir / "restored.pid"
    restored = run_cli(
        ["restore", "-D", str(images), "-d", "--pidfile", str(pidfile)], w.workdir, sample
    )
    w.adopt(int(pidfile.read_text()))
    return Cycle(
        dumped.seconds,
        restored.seconds,
        w.verdict(),
        total,
        pages,
        dumped.maxrss_kib,
        restored.maxrss_kib,
        dumped.stderr + restored.stderr,
        dumped.sampled_kib,
        restored.sampled_kib,
    )


# --- CRIU, side by side -------------------------------------------------------------------------

NO_CRIU = "no CRIU"
# An error CRIU 4.2 prints on every restore here (root lacks CAP_SYS_RESOURCE), harmless.
CRIU_NOISE = ("RLIMIT_NOFILE",)


class CriuFailed(Exception):
    """CRIU could not dump or restore a workload: its row says so, with CRIU's own error."""


def find_criu(named: str | None) -> Path | None:
    """The CRIU binary measured beside torpor: `named` (--criu), else $TORPOR_CRIU, else
    ../shared/criu/criu beside the repository when it is there; None without one. A binary
    named explicitly must exist: a typo must not turn into "no CRIU"."""
    named = named or os.environ.get("TORPOR_CRIU")
    if named:
        if not os.access(named, os.X_OK):
            raise BenchError(f"CRIU binary {named} is not an executable file")
        return Path(named).resolve()
    default = REPO_DIR.parent / "shared" / "criu" / "criu"
    return default.resolve() if os.access(default, os.X_OK) else None


class Criu:
    """CRIU's whole commands, timed and waited for like torpor's (run_cli, through spawn)."""

    def __init__(self, path: Path):
        self.path = path
        res = subprocess.run([str(path), "--version"], capture_output=True, text=True, check=False)
        self.version = res.stdout.splitlines()[0].split()[-1] if res.returncode == 0 else "?"
        if res.returncode != 0:
            raise BenchError(f"{path} --version failed: {res.stderr.strip()}")

    def _run(self, what: str, args: list[str], workdir: Path, sample: bool) -> CliRun:
        done = run_cli(args, workdir, sample, command=[str(self.path)], check=False)
        if done.status != 0:
            errors = [
                line.strip()
                for line in done.stderr.splitlines()
                if "Error" in line and not any(n in line for n in CRIU_NOISE)
            ]
            raise CriuFailed(f"criu {what}: " + ("; ".join(errors[:2]) or f"exit {done.status}"))
        return done

    def dump(
        self, pid: int, images: Path, workdir: Path, leave_running=False, sample=False
    ) -> CliRun:
        args = ["dump", "-t", str(pid), "-D", str(images), "--shell-job"]
        return self._run("dump", args + ["--leave-running"] * leave_running, workdir, sample)

    def restore(self, images: Path, workdir: Path, sample=False) -> CliRun:
        args = ["restore", "-D", str(images), "--shell-job", "-d"]
        return self._run("restore", args, workdir, sample)


def criu_cycle(criu: Criu, w: Workload, images: Path, sample: bool = False) -> Cycle:
    """Dump `w` with CRIU (which kills it) and restore it with CRIU (same PID, adopted by this
    subreaper once criu exits); the restored copy gives its verdict."""
    tree = tree_pids(w.pid)
    dumped = criu.dump(w.pid, images, w.workdir, sample=sample)
    w.reap_dumped(tree)
    total, pages = images_size(images)
    restored = criu.restore(images, w.workdir, sample=sample)
    w.adopt(w.pid)
    return Cycle(
        dumped.seconds,
        restored.seconds,
        w.verdict(),
        total,
        pages,
        dumped.maxrss_kib,
        restored.maxrss_kib,
        "",
        dumped.sampled_kib,
        restored.sampled_kib,
    )


# --- raw limits ---------------------------------------------------------------------------------


def present_runs(pid: int) -> list[tuple[int, int]]:
    """The (address, length) runs of pages a dump reads: present pages of every readable
    private or anonymous mapping (copied-on-write pages only, for private file mappings)."""
    scanner = PageScanner(pid)
    runs: list[tuple[int, int]] = []
    try:
        for m in read_maps(pid, with_flags=False):
            if m.perms[0] != "r" or m.name.startswith(("[vvar", "[vsyscall")):
                continue
            if m.shared and m.is_file:
                continue
            runs += scanner.runs(m.start, m.end, anon_only=m.is_file and not m.shared)
    finally:
        scanner.close()
    return runs


def write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def raw_dump(pid: int, runs: list[tuple[int, int]], path: Path) -> tuple[float, int]:
    """The dump limit: read `runs` of live process `pid` with process_vm_readv (one call per
    RAW_CHUNK bytes, many iovecs) and write them to `path`. Returns (seconds, bytes)."""
    buf = bytearray(RAW_CHUNK)
    view = memoryview(buf)
    total = 0
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for batch, size in memio.batches(runs, RAW_CHUNK):
            memio.read_into(pid, view[:size], batch)
            write_all(fd, view[:size])
            total += size
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    view.release()
    return seconds, total


def raw_restore_read(path: Path, pid: int, addr: int) -> float:
    """Restore limit, read variant: read(2) the file into a buffer, process_vm_writev it into
    `pid` at `addr` (untouched memory). Returns seconds."""
    buf = bytearray(RAW_CHUNK)
    view = memoryview(buf)
    done = 0
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        while True:
            got = os.readv(fd, [view])
            if not got:
                break
            memio.write_from(pid, view[:got], [(addr + done, got)])
            done += got
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    view.release()
    return seconds


def raw_restore_mmap(path: Path, pid: int, addr: int) -> float:
    """Restore limit, mmap variant: process_vm_writev straight from the file's page cache
    (one copy, no buffer) into `pid` at `addr` (untouched memory). Returns seconds."""
    started = time.perf_counter()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as data:
            view = memoryview(data)
            try:
                for done in range(0, size, RAW_CHUNK):
                    n = min(RAW_CHUNK, size - done)
                    chunk = view[done : done + n]
                    memio.write_from(pid, chunk, [(addr + done, n)])
                    chunk.release()
            finally:
                view.release()
    return time.perf_counter() - started


def memcpy_seconds(size: int) -> float:
    """One memcpy of `size` bytes between two already-faulted buffers (bytearray slicing)."""
    src = bytearray(b"\xa5") * size
    dst = bytearray(size)
    dst[:] = src
    started = time.perf_counter()
    dst[:] = src
    return time.perf_counter() - started


# --- the benchmarks -----------------------------------------------------------------------------


class Scratch:
    """Directories for one measurement under the images root; removed when it ends."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def new(self, label: str) -> Path:
        self.count += 1
        path = self.root / f"{self.count:04d}-{label}"
        path.mkdir()
        (path / "images").mkdir()
        return path


def write_back(*paths: Path) -> None:
    """fsync files, or every file of a directory (untimed, between measurements).

    Neither torpor nor the raw limit syncs what it writes; without this, whichever writes
    second would find the other's gigabyte still dirty in the page cache and be throttled or
    compete with its writeback, and the restores would run during that writeback."""
    for path in paths:
        files = [e.path for e in os.scandir(path)] if path.is_dir() else [path]
        for name in files:
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def memory_run(size: int, flavour: str, scratch: Scratch, forward: bool, criu: Criu | None) -> dict:
    """One run at one size, all on one live process: the raw dump limit, CRIU's dump, torpor's
    dump by command and through the API; then the raw restore limits and the restores of CRIU,
    of the command and of the API, each restored process verified (and reaped) before the next
    restore of the same PID; then memcpy.

    On this machine, of two gigabytes written or faulted in one after the other the second is
    often much slower, whoever does it; so every other run goes in the reverse order
    (`forward` false: torpor's API first, the raw limit last), and the two restore-limit
    variants swap too. For that, every dump leaves the process running (torpor's leave_running,
    CRIU's --leave-running: the process is frozen just as long) and it is killed once all have
    read it. The raw file is written in the images directory and moved aside (torpor needs an
    empty directory, and its restore only its images); every written file is synced before the
    next measurement, so none starts with another's writeback pending.
    """
    work = scratch.new(f"memory-{size}-{flavour}")
    images = work / "images"
    cli_images = work / "cli-images"
    criu_images = work / "criu-images"
    cli_images.mkdir()
    criu_images.mkdir()
    raw = images / "raw-limit.bin"
    aside = work / raw.name
    torpor_first = not forward
    got: dict = {"torpor_first": torpor_first}
    try:
        w = Workload("memhog", flavour, [size], work)
        runs = present_runs(w.pid)

        def limit_dump() -> None:
            got["limit_dump_s"], got["raw_bytes"] = raw_dump(w.pid, runs, raw)
            write_back(raw)
            raw.rename(aside)

        def criu_dump() -> None:
            if criu is None:
                return
            try:
                done = criu.dump(w.pid, criu_images, work, leave_running=True)
            except CriuFailed as e:
                got["criu_error"] = str(e)
                return
            got["criu_dump_s"] = done.seconds
            write_back(criu_images)

        def cli_dump() -> None:
            args = ["dump", "-t", str(w.pid), "-D", str(cli_images), "--leave-running"]
            got["cli_dump_s"] = run_cli(args, work).seconds
            write_back(cli_images)

        def api_dump() -> None:
            got["dump_s"], _ = timed(lambda: torpor.dump(w.pid, images, leave_running=True))
            write_back(images)

        dumps = [limit_dump, criu_dump, cli_dump, api_dump]
        for step in dumps if forward else reversed(dumps):
            step()
        w.kill()
        got["image_bytes"], got["pages_bytes"] = images_size(images)
        if "criu_dump_s" in got:
            got["criu_image_bytes"], _ = images_size(criu_images)
        sink_mib = -(-got["raw_bytes"] // MIB)

        def limit_restore() -> None:
            variants = (("mmap", raw_restore_mmap), ("read", raw_restore_read))
            for name, how in variants if torpor_first else reversed(variants):
                sink = Workload("sink", flavour, [sink_mib], work)
                got[f"limit_restore_{name}_s"] = how(aside, sink.pid, int(sink.ready[0], 16))
                sink.kill()

        def criu_restore() -> None:
            if "criu_dump_s" not in got:
                return
            w.rewind()
            try:
                got["criu_restore_s"] = criu.restore(criu_images, work).seconds
            except CriuFailed as e:
                got["criu_error"] = str(e)
                return
            w.adopt(w.pid)
            got["criu_verdict"] = w.verdict()

        def cli_restore() -> None:
            w.rewind()
            pidfile = work / "restored.pid"
            args = ["restore", "-D", str(cli_images), "-d", "--pidfile", str(pidfile)]
            got["cli_restore_s"] = run_cli(args, work).seconds
            w.adopt(int(pidfile.read_text()))
            got["cli_verdict"] = w.verdict()

        def api_restore() -> None:
            w.rewind()
            got["restore_s"], pid = timed(lambda: torpor.restore(images))
            w.adopt(pid)
            got["verdict"] = w.verdict()

        restores = [limit_restore, criu_restore, cli_restore, api_restore]
        for step in restores if forward else reversed(restores):
            step()
        aside.unlink()
        got["memcpy_s"] = memcpy_seconds(size * MIB)
    finally:
        shutil.rmtree(work)
    return got


def rate(nbytes: float, seconds: float) -> float:
    return nbytes / MB / seconds if seconds > 0 else float("inf")


def paired(fractions: list[float]) -> list[float]:
    """Geometric means of consecutive runs (limit first, then torpor first); an odd last run
    stays as it is."""
    out = [math.sqrt(a * b) for a, b in zip(fractions[::2], fractions[1::2], strict=False)]
    if len(fractions) % 2:
        out.append(fractions[-1])
    return out


def criu_summary(runs: list[dict], present: bool) -> dict | None:
    """CRIU's figures over `runs` (dicts holding criu_dump_s, criu_restore_s and
    criu_verdict, or criu_error): None without a CRIU binary. When CRIU failed a run or a
    process it restored failed its check, `error` says so and there are no times."""
    if not present:
        return None
    errors = [r["criu_error"] for r in runs if "criu_error" in r]
    verdicts = [r["criu_verdict"] for r in runs if "criu_verdict" in r]
    failed = [v for v in verdicts if not v.startswith("PASS")]
    if failed and not errors:
        errors = [f"a process restored by CRIU failed its check: {failed[0]}"]
    out: dict = {
        "runs": len(runs),
        "verdicts": verdicts,
        "error": errors[0] if errors else None,
        "per_run": [{k: v for k, v in r.items() if k.startswith("criu_")} for r in runs],
        "dump_s": None,
        "restore_s": None,
    }
    if not errors:
        out["dump_s"] = median([r["criu_dump_s"] for r in runs])
        out["restore_s"] = median([r["criu_restore_s"] for r in runs])
        if "criu_image_bytes" in runs[0]:
            out["image_bytes"] = runs[0]["criu_image_bytes"]
    return out


def criu_ratio(
    torpor_runs: list[dict], criu: dict | None, keys: tuple[str, str] = ("dump_s", "restore_s")
) -> dict | None:
    """CRIU's time over torpor's (above 1: torpor is faster), dump and restore, None where CRIU
    has no figure. Each run's two figures were measured next to each other; as for the raw
    limits, the order alternates from run to run, and the figure is the median over pairs of
    runs of each pair's geometric mean. `keys` name torpor's dump and restore times in
    `torpor_runs`; CRIU's runs are criu["per_run"], in the same order."""
    if not criu or criu["error"]:
        return None
    out: dict = {}
    for op, key in zip(("dump", "restore"), keys, strict=True):
        per_run = [
            c[f"criu_{op}_s"] / t[key] for t, c in zip(torpor_runs, criu["per_run"], strict=True)
        ]
        out[op] = median(paired(per_run))
        out[f"{op}_per_run"] = per_run
    return out


def summarise_memory(size: int, flavour: str, runs: list[dict], criu_present: bool) -> dict:
    """Medians over the runs, MB/s, each torpor figure as a fraction of its limit, and CRIU's
    figures with CRIU/torpor for the API and for the command."""

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    pages_bytes = runs[0]["pages_bytes"]
    raw_bytes = runs[0]["raw_bytes"]
    dump_s, restore_s = med("dump_s"), med("restore_s")
    limit_dump_s = med("limit_dump_s")
    limit_read_s, limit_mmap_s = med("limit_restore_read_s"), med("limit_restore_mmap_s")
    limit_restore_s = min(limit_read_s, limit_mmap_s)
    out = {
        "size_mib": size,
        "flavour": flavour,
        "runs": len(runs),
        "dump_s": dump_s,
        "restore_s": restore_s,
        "dump_mb_s": rate(pages_bytes, dump_s),
        "restore_mb_s": rate(pages_bytes, restore_s),
        "image_bytes": runs[0]["image_bytes"],
        "pages_bytes": pages_bytes,
        "limit": {
            "bytes": raw_bytes,
            "dump_s": limit_dump_s,
            "dump_mb_s": rate(raw_bytes, limit_dump_s),
            "restore_read_s": limit_read_s,
            "restore_mmap_s": limit_mmap_s,
            "restore_s": limit_restore_s,
            "restore_variant": "read" if limit_read_s <= limit_mmap_s else "mmap",
            "restore_mb_s": rate(raw_bytes, limit_restore_s),
            "memcpy_s": med("memcpy_s"),
            "memcpy_mb_s": rate(size * MIB, med("memcpy_s")),
        },
        "command": {
            "dump_s": med("cli_dump_s"),
            "restore_s": med("cli_restore_s"),
            "dump_mb_s": rate(pages_bytes, med("cli_dump_s")),
            "restore_mb_s": rate(pages_bytes, med("cli_restore_s")),
        },
        "verdicts": [r["verdict"] for r in runs] + [r["cli_verdict"] for r in runs],
        "criu": criu_summary(runs, criu_present),
        "per_run": runs,
    }
    out["criu_ratio"] = {
        "API": criu_ratio(runs, out["criu"]),
        "command": criu_ratio(runs, out["criu"], ("cli_dump_s", "cli_restore_s")),
    }
    # Each run's torpor figure over the limit measured next to it, seconds apart. Runs go in
    # pairs, the limit first in one and torpor first in the other: if going second costs a
    # factor p, the two ratios are f/p and f*p, and their geometric mean is f. The figure is
    # the median over pairs (a lone run counts as it is); per-run ratios and the ratio of the
    # medians are kept too.
    dump_fracs, restore_fracs = [], []
    for r in runs:
        limit_restore = min(r["limit_restore_read_s"], r["limit_restore_mmap_s"])
        dump_fracs.append(
            rate(r["pages_bytes"], r["dump_s"]) / rate(r["raw_bytes"], r["limit_dump_s"])
        )
        restore_fracs.append(
            rate(r["pages_bytes"], r["restore_s"]) / rate(r["raw_bytes"], limit_restore)
        )
    out["dump_of_limit"] = median(paired(dump_fracs))
    out["restore_of_limit"] = median(paired(restore_fracs))
    out["dump_of_limit_per_run"] = dump_fracs
    out["restore_of_limit_per_run"] = restore_fracs
    out["dump_of_limit_of_medians"] = out["dump_mb_s"] / out["limit"]["dump_mb_s"]
    out["restore_of_limit_of_medians"] = out["restore_mb_s"] / out["limit"]["restore_mb_s"]
    return out


def bench_memory(cfg: Config, scratch: Scratch, criu: Criu | None) -> list[dict]:
    results = []
    for size in cfg.sizes:
        for flavour in FLAVOURS:
            runs = []
            for i in range(cfg.runs):
                log(f"memory {size_label(size)} {flavour}-bit: run {i + 1}/{cfg.runs}")
                runs.append(memory_run(size, flavour, scratch, i % 2 == 0, criu))
            results.append(summarise_memory(size, flavour, runs, criu is not None))
    return results


def fresh_cycle(
    scratch: Scratch, name: str, flavour: str, args: list, how: Callable[[Workload, Path], Cycle]
) -> Cycle:
    """One dump/restore cycle (`how`) of a fresh workload, with its VMA count before the dump.
    If `how` refuses (torpor.UnsupportedError, CriuFailed), the workload's tree is killed and
    the refusal passed on."""
    work = scratch.new(f"{name}-{flavour}")
    try:
        w = Workload(name, flavour, args, work)
        vmas = len(read_maps(w.pid, with_flags=False))
        try:
            done = how(w, work / "images")
        except (torpor.UnsupportedError, CriuFailed):
            w.kill(group=True)
            reap_orphans()
            raise
        done.vmas = vmas
        return done
    finally:
        shutil.rmtree(work)


def cycles(
    cfg: Config,
    scratch: Scratch,
    label: str,
    name: str,
    flavour: str,
    args: list,
    how: Callable[[Workload, Path], Cycle],
    runs: int | None = None,
) -> list[Cycle]:
    """`runs` dump/restore cycles of a fresh workload each time."""
    done = []
    for i in range(runs or cfg.runs):
        log(f"{label}: run {i + 1}/{runs or cfg.runs}")
        done.append(fresh_cycle(scratch, name, flavour, args, how))
    return done


def criu_run(
    scratch: Scratch, name: str, flavour: str, args: list, criu: Criu, sample: bool = False
) -> dict:
    """One CRIU cycle of a fresh workload as a run dict (see criu_summary)."""
    try:
        c = fresh_cycle(
            scratch, name, flavour, args, lambda w, images: criu_cycle(criu, w, images, sample)
        )
    except CriuFailed as e:
        return {"criu_error": str(e)}
    return {
        "criu_dump_s": c.dump_s,
        "criu_restore_s": c.restore_s,
        "criu_verdict": c.verdict,
        "criu_image_bytes": c.image_bytes,
        "criu_dump_maxrss_kib": c.dump_rss_kib,
        "criu_restore_maxrss_kib": c.restore_rss_kib,
        "criu_dump_sampled": c.dump_sampled,
        "criu_restore_sampled": c.restore_sampled,
    }


def cycle_summary(done: list[Cycle]) -> dict:
    return {
        "dump_s": median([c.dump_s for c in done]),
        "restore_s": median([c.restore_s for c in done]),
        "runs": len(done),
        "verdicts": [c.verdict for c in done],
        "per_run": [{"dump_s": c.dump_s, "restore_s": c.restore_s} for c in done],
    }


def bench_startup(cfg: Config, scratch: Scratch) -> dict:
    """Interpreter start-up (`python -c pass` of torpor's interpreter, started like the torpor
    command): what the command line may add to the API call, by the issue's target."""
    times = []
    for i in range(cfg.runs):
        log(f"interpreter start-up: run {i + 1}/{cfg.runs}")
        work = scratch.new("startup")
        try:
            times.append(run_cli([], work, command=[sys.executable, "-c", "pass"]).seconds)
        finally:
            shutil.rmtree(work)
    return {"command": "python -c pass", "seconds": median(times), "per_run": times}


def bench_fixed(cfg: Config, scratch: Scratch, startup_s: float, criu: Criu | None) -> list[dict]:
    """The trivial process (memhog 0): warm API, whole torpor commands and whole CRIU
    commands, both flavours, one fresh process each, taking turns (the order reverses from one
    run to the next); for torpor's command, also what it takes beyond the API call and
    interpreter start-up."""
    results = []
    for flavour in FLAVOURS:
        done: dict[str, list[Cycle]] = {"API": [], "CLI": []}
        criu_runs: list[dict] = []
        for i in range(cfg.runs):
            steps = ["API", "CLI"] + ["CRIU"] * (criu is not None)
            for via in steps if i % 2 == 0 else reversed(steps):
                log(f"trivial {flavour}-bit via {via}: run {i + 1}/{cfg.runs}")
                if via == "CRIU":
                    criu_runs.append(criu_run(scratch, "memhog", flavour, [0], criu))
                    continue
                how = api_cycle if via == "API" else cli_cycle
                done[via].append(fresh_cycle(scratch, "memhog", flavour, [0], how))
        criu_row = criu_summary(criu_runs, criu is not None)
        for via in ("API", "CLI"):
            row = {"via": via, "flavour": flavour, **cycle_summary(done[via])}
            row["image_bytes"] = done[via][0].image_bytes
            row["criu"] = criu_row
            row["criu_ratio"] = criu_ratio(row["per_run"], criu_row)
            if via == "CLI":
                row["dump_maxrss_kib"] = max(c.dump_rss_kib for c in done[via])
                row["restore_maxrss_kib"] = max(c.restore_rss_kib for c in done[via])
                api = results[-1]
                row["beyond_startup"] = {
                    f"{op}_s": row[f"{op}_s"] - api[f"{op}_s"] - startup_s
                    for op in ("dump", "restore")
                }
            results.append(row)
    return results


def linear_fit(xs: list[float], ys: list[float]) -> dict:
    """Least-squares line y = intercept + slope * x, with its R²."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return {
        "slope_s": slope,
        "intercept_s": intercept,
        "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
    }


def growth_fits(points: list[tuple[int, float, float]]) -> dict:
    """Per-unit cost of dump and restore from a linear fit over `points` (count, dump
    seconds, restore seconds), and the marginal cost of each step (which shows whether growth
    stays linear)."""
    fits: dict = {}
    for op, column in (("dump", 1), ("restore", 2)):
        if len(points) < 2:
            fits[op] = None
            continue
        xs = [p[0] for p in points]
        ys = [p[column] for p in points]
        fit = linear_fit(xs, ys)
        fit["marginal_s"] = [(ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1]) for i in range(1, len(xs))]
        fits[op] = fit
    return fits


def growth_row(
    cfg: Config,
    scratch: Scratch,
    kind: str,
    name: str,
    flavour: str,
    count: int,
    criu: Criu | None,
) -> dict:
    """Dump and restore a workload of `count` units through the API and with CRIU, taking
    turns on fresh processes; a refusal by torpor (or a failure of CRIU's) is recorded and
    ends that side's runs."""
    label = f"{kind} {count} {flavour}-bit"
    done: list[Cycle] = []
    criu_runs: list[dict] = []
    refused = None
    for i in range(cfg.runs):
        steps = ["torpor"] + ["CRIU"] * (criu is not None)
        for who in steps if i % 2 == 0 else reversed(steps):
            if who == "torpor" and refused is None:
                log(f"{label}: run {i + 1}/{cfg.runs}")
                try:
                    done.append(fresh_cycle(scratch, name, flavour, [count], api_cycle))
                except torpor.UnsupportedError as e:
                    refused = str(e)
            elif who == "CRIU" and not any("criu_error" in r for r in criu_runs):
                log(f"{label}: CRIU run {i + 1}/{cfg.runs}")
                criu_runs.append(criu_run(scratch, name, flavour, [count], criu))
    row: dict = {"count": count, "supported": refused is None}
    row["criu"] = criu_summary(criu_runs, criu is not None)
    if refused is not None:
        vmas = [c.vmas for c in done] or [None]
        row.update({"message": refused, "vmas": vmas[0], "criu_ratio": None})
        return row
    row.update({"vmas": done[0].vmas, **cycle_summary(done)})
    row["criu_ratio"] = criu_ratio(row["per_run"], row["criu"])
    return row


def bench_growth(cfg: Config, scratch: Scratch, criu: Criu | None) -> dict:
    results: dict = {}
    for kind, name, counts in (
        ("mappings", "maps", cfg.mappings),
        ("threads", "threads", cfg.threads),
        ("processes", "procs", cfg.processes),
    ):
        results[kind] = {}
        for flavour in FLAVOURS:
            rows = [growth_row(cfg, scratch, kind, name, flavour, n, criu) for n in counts]
            ours = [(r["count"], r["dump_s"], r["restore_s"]) for r in rows if r["supported"]]
            theirs = [
                (r["count"], r["criu"]["dump_s"], r["criu"]["restore_s"])
                for r in rows
                if r["criu"] and not r["criu"]["error"]
            ]
            results[kind][flavour] = {
                "rows": rows,
                "fit": growth_fits(ours),
                "criu_fit": growth_fits(theirs) if criu is not None else None,
            }
    return results


def bench_rss(cfg: Config, scratch: Scratch, criu: Criu | None) -> list[dict]:
    """Peak RSS of the torpor command dumping and restoring the largest process (one run
    each: the peak depends on what torpor allocates, not on the machine's load), with the
    sampled anonymous / file-backed split; CRIU's commands the same way."""
    results = []
    for flavour in FLAVOURS:
        size = cfg.rss_size
        label = f"peak RSS {size_label(size)} {flavour}-bit"
        done = cycles(
            cfg,
            scratch,
            label,
            "memhog",
            flavour,
            [size],
            lambda w, images: cli_cycle(w, images, sample=True),
            runs=1,
        )
        c = done[0]
        row = {
            "size_mib": size,
            "flavour": flavour,
            "dump_maxrss_kib": c.dump_rss_kib,
            "restore_maxrss_kib": c.restore_rss_kib,
            "dump_s": c.dump_s,
            "restore_s": c.restore_s,
            "dump_sampled": c.dump_sampled,
            "restore_sampled": c.restore_sampled,
            "cli_stderr": c.cli_stderr,
            "verdicts": [c.verdict],
            "criu": None,
        }
        if criu is not None:
            log(f"{label}: CRIU")
            row["criu"] = criu_summary(
                [criu_run(scratch, "memhog", flavour, [size], criu, sample=True)], True
            )
        results.append(row)
    return results


def warm_up(scratch: Scratch, criu: Criu | None) -> None:
    """One untimed API cycle per flavour, so that timed calls find torpor imported and warm,
    and one CRIU cycle (its binary and libraries in the page cache)."""
    for flavour in FLAVOURS:
        work = scratch.new(f"warm-{flavour}")
        try:
            w = Workload("memhog", flavour, [0], work)
            verdict = api_cycle(w, work / "images").verdict
        finally:
            shutil.rmtree(work)
        if not verdict.startswith("PASS"):
            raise BenchError(f"warm-up {flavour}-bit: {verdict}")
    if criu is not None:
        criu_run(scratch, "memhog", "64", [0], criu)


# --- targets ------------------------------------------------------------------------------------


def evaluate_targets(results: dict) -> list[dict]:
    """Check the measured figures against the targets: CRIU/torpor at least TARGET_RATIO for
    every workload (TARGET_RATIO_LARGE for the memory of TARGET_SIZES), for each torpor figure
    measured (API, whole command), dump and restore; TARGET_FRACTION of the raw limits; torpor's
    RSS under TARGET_RSS_MIB; growth with the number of mappings linear. A target CRIU gave no
    figure for is listed unmet-able, with why ("no CRIU", "CRIU failed")."""
    targets = []

    def add(name: str, value, limit: float, sign: str, unit: str, note: str = "") -> None:
        met = None
        if value is not None:
            met = {"≥": value >= limit, "≤": value <= limit, "<": value < limit}[sign]
        targets.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "sign": sign,
                "met": met,
                "unit": unit,
                "note": note,
            }
        )

    def against_criu(what: str, criu: dict | None, ratio: dict | None, limit: float) -> None:
        note = NO_CRIU if criu is None else "CRIU failed" if criu["error"] else ""
        for op in ("dump", "restore"):
            value = ratio[op] if ratio else None
            add(f"{what} {op}: CRIU / torpor", value, limit, "≥", "x", note)

    for row in results["memory"]:
        what = f"{size_label(row['size_mib'])} {row['flavour']}-bit"
        large = row["size_mib"] in TARGET_SIZES
        limit = TARGET_RATIO_LARGE if large else TARGET_RATIO
        for via in ("API", "command"):
            against_criu(f"{what} ({via})", row["criu"], row["criu_ratio"][via], limit)
        if large:
            for op in ("dump", "restore"):
                frac = row[f"{op}_of_limit"]
                add(f"{what} {op} (API) of raw limit", frac, TARGET_FRACTION, "≥", "")
    for row in results["fixed"]:
        via = "API" if row["via"] == "API" else "command"
        what = f"trivial {row['flavour']}-bit ({via})"
        against_criu(what, row["criu"], row["criu_ratio"], TARGET_RATIO)
    for kind, by_flavour in results["growth"].items():
        for flavour, group in by_flavour.items():
            for row in group["rows"]:
                what = f"{kind} {row['count']} {flavour}-bit (API)"
                if row["supported"]:
                    against_criu(what, row["criu"], row["criu_ratio"], TARGET_RATIO)
                else:
                    for op in ("dump", "restore"):
                        name = f"{what} {op}: CRIU / torpor"
                        add(name, None, TARGET_RATIO, "≥", "x", "torpor refuses")
    for row in results["rss"]:
        if row["size_mib"] < 1024:
            continue
        for op in ("dump", "restore"):
            mib = row[f"{op}_maxrss_kib"] / 1024
            what = f"torpor RSS, {op} of {size_label(row['size_mib'])} {row['flavour']}-bit"
            add(what, mib, TARGET_RSS_MIB, "<", "MiB")
    for flavour, group in results["growth"]["mappings"].items():
        for op in ("dump", "restore"):
            fit = group["fit"][op]
            if not fit or len(fit["marginal_s"]) < 2:
                continue
            before, last = fit["marginal_s"][-2], fit["marginal_s"][-1]
            ratio = last / before if before > 0 else float("inf")
            add(
                f"mappings {flavour}-bit {op} linear: per-mapping cost, last step / previous",
                ratio,
                LINEAR_TOLERANCE,
                "≤",
                "x",
            )
    return targets


def all_verdicts(results: dict) -> list[str]:
    """The verdicts of every process torpor restored."""
    found = []
    for row in results["memory"] + results["fixed"] + results["rss"]:
        found += row["verdicts"]
    for kinds in results["growth"].values():
        for group in kinds.values():
            for row in group["rows"]:
                found += row.get("verdicts", [])
    return found


def criu_verdicts(results: dict) -> list[str]:
    """The verdicts of every process CRIU restored (a trivial process's CRIU runs are shown on
    both its API and its command row, and counted once)."""
    rows = results["memory"] + [r for r in results["fixed"] if r["via"] == "API"] + results["rss"]
    for kinds in results["growth"].values():
        for group in kinds.values():
            rows += group["rows"]
    return [v for row in rows if row["criu"] for v in row["criu"]["verdicts"]]


# --- output -------------------------------------------------------------------------------------


def secs(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f} s"


def with_rate(seconds: float, mb_s: float) -> str:
    return f"{seconds:.3f} s  {mb_s:,.0f} MB/s"


def split_cell(sampled: dict | None) -> str:
    if not sampled:
        return "—"
    return f"{sampled['RssAnon_kib'] / 1024:.1f} / {sampled['RssFile_kib'] / 1024:.1f} MiB"


def refusal_cell(message: str) -> str:
    """torpor's refusal for the table, with long PID lists counted (the JSON has it whole)."""

    def count(m: re.Match) -> str:
        pids = m.group(1).split(", ")
        return f"({len(pids)} PIDs)" if len(pids) > 3 else m.group(0)

    return "not supported yet: " + re.sub(r"\(([0-9]+(?:, [0-9]+)+)\)", count, message)


def verdict_cell(verdicts: list[str]) -> str:
    passed = sum(v.startswith("PASS") for v in verdicts)
    return f"PASS {passed}/{len(verdicts)}" if passed == len(verdicts) else "FAIL"


def criu_secs(criu: dict | None, op: str) -> str:
    """A CRIU time for a table: its median, "no CRIU" without a binary, "CRIU failed"."""
    if criu is None:
        return NO_CRIU
    return "CRIU failed" if criu["error"] else secs(criu[f"{op}_s"])


def ratio_cell(criu: dict | None, *ratios: dict | None, op: str) -> str:
    """CRIU/torpor for `op`, one figure per torpor figure (API / command), or why there is none."""
    if criu is None:
        return NO_CRIU
    if criu["error"]:
        return "—"
    return " / ".join("—" if r is None else f"{r[op]:.2f}" for r in ratios)


def wall_ratio_cell(criu: dict | None, row: dict) -> str:
    """CRIU's wall time over the torpor command's, dump / restore, of one (sampled) run."""
    if criu is None:
        return NO_CRIU
    if criu["error"]:
        return "—"
    return f"{criu['dump_s'] / row['dump_s']:.2f} / {criu['restore_s'] / row['restore_s']:.2f}"


def criu_verdict_cell(criu: dict | None) -> str:
    if criu is None:
        return NO_CRIU
    return "CRIU failed" if criu["error"] else verdict_cell(criu["verdicts"])


def criu_notes(rows: list[tuple[str, dict | None]]) -> str | None:
    """Table caption lines naming what CRIU could not do, with its error."""
    lines = [f"{label}: {criu['error']}" for label, criu in rows if criu and criu["error"]]
    return "\n".join(["CRIU failed:", *lines]) if lines else None


def caption(*parts: str | None) -> str | None:
    lines = [p for p in parts if p]
    return "\n".join(lines) or None


RATIO_NOTE = (
    "CRIU / torpor: CRIU's time over torpor's, above 1 when torpor is faster (median over pairs "
    "of runs in alternating order of each pair's geometric mean); CRIU: whole commands"
)


def render(results: dict, console: Console) -> None:
    t = Table(
        title="Memory: torpor's dump (leave_running=True) and restore through the warm API, "
        "and the raw limits (median of runs)",
        caption="CRIU, on the same processes in the same runs: next table",
    )
    for col in (
        "process",
        "dump",
        "dump limit",
        "of limit",
        "restore",
        "restore limit",
        "of limit",
        "memcpy",
        "image",
        "verified",
    ):
        t.add_column(col, justify="left" if col == "process" else "right")
    for r in results["memory"]:
        lim = r["limit"]
        t.add_row(
            f"{size_label(r['size_mib'])} {r['flavour']}-bit",
            with_rate(r["dump_s"], r["dump_mb_s"]),
            with_rate(lim["dump_s"], lim["dump_mb_s"]),
            f"{r['dump_of_limit']:.2f}",
            with_rate(r["restore_s"], r["restore_mb_s"]),
            with_rate(lim["restore_s"], lim["restore_mb_s"]) + f" ({lim['restore_variant']})",
            f"{r['restore_of_limit']:.2f}",
            f"{lim['memcpy_mb_s']:,.0f} MB/s",
            f"{r['image_bytes'] / MIB:.1f} MiB",
            verdict_cell(r["verdicts"]),
        )
    console.print(t)

    labelled = [(f"{size_label(r['size_mib'])} {r['flavour']}-bit", r) for r in results["memory"]]
    t = Table(
        title="Memory: torpor (warm API / whole command) and CRIU (whole command), same process, "
        "same run (median of runs)",
        caption=caption(RATIO_NOTE, criu_notes([(lab, r["criu"]) for lab, r in labelled])),
    )
    for col in (
        "process",
        "dump API",
        "dump command",
        "CRIU dump",
        "CRIU / torpor dump: API / command",
        "restore API",
        "restore command",
        "CRIU restore",
        "CRIU / torpor restore: API / command",
        "image torpor / CRIU",
        "verified torpor",
        "verified CRIU",
    ):
        t.add_column(col, justify="left" if col == "process" else "right")
    for label, r in labelled:
        criu, ratios = r["criu"], r["criu_ratio"]
        image = f"{r['image_bytes'] / MIB:.1f}"
        image += f" / {criu['image_bytes'] / MIB:.1f} MiB" if criu and not criu["error"] else " MiB"
        t.add_row(
            label,
            secs(r["dump_s"]),
            secs(r["command"]["dump_s"]),
            criu_secs(criu, "dump"),
            ratio_cell(criu, ratios["API"], ratios["command"], op="dump"),
            secs(r["restore_s"]),
            secs(r["command"]["restore_s"]),
            criu_secs(criu, "restore"),
            ratio_cell(criu, ratios["API"], ratios["command"], op="restore"),
            image,
            verdict_cell(r["verdicts"]),
            criu_verdict_cell(criu),
        )
    console.print(t)

    startup = results["startup"]
    fixed = [(f"trivial {r['flavour']}-bit", r) for r in results["fixed"] if r["via"] == "API"]
    t = Table(
        title="Fixed cost: the trivial process (memhog 0), torpor and CRIU (median of runs)",
        caption=caption(
            f"interpreter start-up ({startup['command']}): {secs(startup['seconds'])}; "
            "beyond start-up = command − API call − interpreter start-up",
            RATIO_NOTE,
            criu_notes([(lab, r["criu"]) for lab, r in fixed]),
        ),
    )
    for col in (
        "process",
        "via",
        "dump",
        "restore",
        "beyond start-up",
        "image",
        "CRIU dump",
        "CRIU restore",
        "CRIU / torpor dump",
        "CRIU / torpor restore",
        "verified",
        "verified CRIU",
    ):
        t.add_column(col, justify="left" if col in ("process", "via") else "right")
    for r in results["fixed"]:
        beyond = r.get("beyond_startup")
        criu = r["criu"]
        t.add_row(
            f"trivial {r['flavour']}-bit",
            "API (warm)" if r["via"] == "API" else "CLI (whole command)",
            secs(r["dump_s"]),
            secs(r["restore_s"]),
            f"{beyond['dump_s']:.3f} s / {beyond['restore_s']:.3f} s" if beyond else "—",
            f"{r['image_bytes'] / 1024:.0f} KiB",
            criu_secs(criu, "dump"),
            criu_secs(criu, "restore"),
            ratio_cell(criu, r["criu_ratio"], op="dump"),
            ratio_cell(criu, r["criu_ratio"], op="restore"),
            verdict_cell(r["verdicts"]),
            criu_verdict_cell(criu),
        )
    console.print(t)

    growth_notes = [
        (f"{kind} {r['count']} {flavour}-bit", r["criu"])
        for kind, by_flavour in results["growth"].items()
        for flavour, group in by_flavour.items()
        for r in group["rows"]
    ]
    t = Table(
        title="Growth: dump and restore through the warm API, and CRIU (median of runs)",
        caption=caption(RATIO_NOTE, criu_notes(growth_notes)),
    )
    for col in (
        "workload",
        "count",
        "VMAs",
        "dump",
        "restore",
        "per unit since previous row",
        "CRIU dump",
        "CRIU restore",
        "CRIU / torpor dump / restore",
    ):
        t.add_column(col, justify="left" if col == "workload" else "right")
    t.add_column("verified / torpor says", justify="left")
    t.add_column("verified CRIU", justify="right")
    for kind, by_flavour in results["growth"].items():
        for flavour, group in by_flavour.items():
            previous = None
            for r in group["rows"]:
                name = f"{kind} {flavour}-bit"
                criu = r["criu"]
                if criu is None:
                    ratio = NO_CRIU
                elif criu["error"] or not r["supported"]:
                    ratio = "—"
                else:
                    ratio = f"{r['criu_ratio']['dump']:.2f} / {r['criu_ratio']['restore']:.2f}"
                criu_cells = (criu_secs(criu, "dump"), criu_secs(criu, "restore"), ratio)
                if not r["supported"]:
                    t.add_row(
                        name,
                        str(r["count"]),
                        str(r["vmas"]),
                        "—",
                        "—",
                        "—",
                        *criu_cells,
                        refusal_cell(r["message"]),
                        criu_verdict_cell(criu),
                    )
                    continue
                step = "—"
                if previous is not None:
                    n = r["count"] - previous["count"]
                    step = (
                        f"{(r['dump_s'] - previous['dump_s']) / n * 1e6:,.1f} µs / "
                        f"{(r['restore_s'] - previous['restore_s']) / n * 1e6:,.1f} µs"
                    )
                t.add_row(
                    name,
                    str(r["count"]),
                    str(r["vmas"]),
                    secs(r["dump_s"]),
                    secs(r["restore_s"]),
                    step,
                    *criu_cells,
                    verdict_cell(r["verdicts"]),
                    criu_verdict_cell(criu),
                )
                previous = r
            unit = kind.rstrip("s") if kind != "processes" else "process"
            cost, note = fit_cells(group["fit"], unit)
            if group["criu_fit"] is None:
                criu_cost = NO_CRIU
            else:
                criu_cost, _ = fit_cells(group["criu_fit"], unit)
            t.add_row(
                f"{kind} {flavour}-bit",
                "fit",
                "",
                "",
                "",
                cost,
                "CRIU per unit:",
                criu_cost,
                "",
                note,
                "",
                end_section=True,
            )
    console.print(t)

    t = Table(
        title="Peak RSS of the torpor command, and of CRIU's (ru_maxrss from wait4)",
        caption=criu_notes(
            [(f"{size_label(r['size_mib'])} {r['flavour']}-bit", r["criu"]) for r in results["rss"]]
        ),
    )
    for col in (
        "process",
        "dump",
        "restore",
        "dump anon / file",
        "restore anon / file",
        "dump wall",
        "restore wall",
        "verified",
        "CRIU dump",
        "CRIU restore",
        "CRIU dump wall",
        "CRIU restore wall",
        "CRIU / torpor wall",
    ):
        t.add_column(col, justify="left" if col == "process" else "right")
    for r in results["rss"]:
        criu = r["criu"]
        criu_rss = [NO_CRIU] * 2 if criu is None else ["CRIU failed"] * 2
        if criu and not criu["error"]:
            run = criu["per_run"][0]
            criu_rss = [
                f"{run[f'criu_{op}_maxrss_kib'] / 1024:.1f} MiB" for op in ("dump", "restore")
            ]
        t.add_row(
            f"{size_label(r['size_mib'])} {r['flavour']}-bit",
            f"{r['dump_maxrss_kib'] / 1024:.1f} MiB",
            f"{r['restore_maxrss_kib'] / 1024:.1f} MiB",
            split_cell(r["dump_sampled"]),
            split_cell(r["restore_sampled"]),
            secs(r["dump_s"]),
            secs(r["restore_s"]),
            verdict_cell(r["verdicts"]),
            *criu_rss,
            criu_secs(criu, "dump"),
            criu_secs(criu, "restore"),
            wall_ratio_cell(criu, r),
        )
    for r in results["fixed"]:
        if r["via"] == "CLI":
            t.add_row(
                f"trivial {r['flavour']}-bit",
                f"{r['dump_maxrss_kib'] / 1024:.1f} MiB",
                f"{r['restore_maxrss_kib'] / 1024:.1f} MiB",
                "—",
                "—",
                secs(r["dump_s"]),
                secs(r["restore_s"]),
                verdict_cell(r["verdicts"]),
                "",
                "",
                "",
                "",
                "",
            )
    console.print(t)

    if results["targets"]:
        t = Table(title="Targets (CRIU / torpor: above 1 when torpor is faster)")
        for col in ("target", "measured", "target value", "met"):
            t.add_column(col, justify="left" if col == "target" else "right")
        for r in results["targets"]:
            unit = f" {r['unit']}" if r["unit"] and r["unit"] != "x" else r["unit"]
            measured = "—" if r["value"] is None else f"{r['value']:.3f}{unit}"
            met = (r["note"] or "?") if r["met"] is None else "yes" if r["met"] else "NO"
            t.add_row(r["target"], measured, f"{r['sign']} {r['limit']:g}{unit}", met)
        console.print(t)


def fit_cells(fits: dict, unit: str) -> tuple[str, str]:
    """A growth group's linear fit: (cost per unit dump / restore, its R² note)."""
    if not (fits["dump"] and fits["restore"]):
        return "—", f"cost per {unit}: not supported yet"
    cost = f"{fits['dump']['slope_s'] * 1e6:,.1f} µs / {fits['restore']['slope_s'] * 1e6:,.1f} µs"
    note = f"linear fit, per {unit}: R² {fits['dump']['r2']:.3f} / {fits['restore']['r2']:.3f}"
    return cost, note


# --- main ---------------------------------------------------------------------------------------


def build_workloads() -> None:
    res = subprocess.run(
        ["make", "-s", "-C", str(WORKLOADS_DIR)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        raise BenchError(
            "building bench/workloads failed (gcc -m32 needs gcc-multilib):\n"
            + res.stdout
            + res.stderr
        )


def default_images_root(results_dir: Path) -> Path:
    """/var/tmp when it is on the repository's filesystem, else the results directory: the
    images must be on the same disk as the repository."""
    var_tmp = Path("/var/tmp")
    if var_tmp.is_dir() and os.stat(var_tmp).st_dev == os.stat(REPO_DIR).st_dev:
        return var_tmp
    return results_dir


def machine() -> dict:
    info = {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }
    try:
        with open("/proc/meminfo") as f:
            info["mem_total_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def torpor_revision() -> dict:
    """The commit the measured torpor comes from, and its files changed since (if any)."""

    def git(*args: str) -> str:
        res = subprocess.run(
            ["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True, check=False
        )
        return res.stdout.strip() if res.returncode == 0 else ""

    try:
        changed = git("status", "--porcelain", "--", "torpor")
        return {"commit": git("rev-parse", "HEAD"), "changed": changed.splitlines()}
    except OSError:
        return {}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 run, 8 MiB, 100 mappings: seconds")
    p.add_argument("--runs", type=int, help="runs per timing (default 6, --quick 1)")
    p.add_argument(
        "--criu",
        help="CRIU binary to measure beside torpor (default $TORPOR_CRIU, else "
        "../shared/criu/criu beside the repository when present)",
    )
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    p.add_argument("--images-root", type=Path, help="where image directories go (same disk)")
    args = p.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        cfg = Config(True, args.runs or 1, sizes=(8,), mappings=(1, 100))
    else:
        cfg = Config(
            False, args.runs or DEFAULT_RUNS, sizes=(64, 256, 1024), mappings=(1, 100, 1000, 10000)
        )
    if os.geteuid() != 0:
        log("bench: torpor needs root")
        return 2
    console = Console(width=None if sys.stdout.isatty() else 200)
    criu_path = find_criu(args.criu)
    criu = Criu(criu_path) if criu_path else None
    log(f"bench: CRIU {criu.version} at {criu.path}" if criu else f"bench: {NO_CRIU} found")
    build_workloads()
    become_subreaper()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    root = Path(
        tempfile.mkdtemp(
            prefix="torpor-bench-", dir=args.images_root or default_images_root(args.results_dir)
        )
    )
    started = time.time()
    results: dict = {
        "meta": {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "quick": cfg.quick,
            "runs": cfg.runs,
            "sizes_mib": list(cfg.sizes),
            "raw_chunk_bytes": RAW_CHUNK,
            "images_device": os.stat(root).st_dev,
            "repo_device": os.stat(REPO_DIR).st_dev,
            "machine": machine(),
            "torpor": torpor_revision(),
            "criu": {"path": str(criu.path), "version": criu.version} if criu else None,
        }
    }
    scratch = Scratch(root)
    try:
        warm_up(scratch, criu)
        results["memory"] = bench_memory(cfg, scratch, criu)
        results["startup"] = bench_startup(cfg, scratch)
        results["fixed"] = bench_fixed(cfg, scratch, results["startup"]["seconds"], criu)
        results["growth"] = bench_growth(cfg, scratch, criu)
        results["rss"] = bench_rss(cfg, scratch, criu)
    finally:
        for pid in list(_live):
            kill_and_reap(pid, group=True)
        reap_orphans()
        shutil.rmtree(root, ignore_errors=True)
    results["meta"]["seconds"] = time.time() - started
    results["targets"] = evaluate_targets(results)
    verdicts = all_verdicts(results)
    failed = [v for v in verdicts if not v.startswith("PASS")]
    results["verified"] = {"restored": len(verdicts), "passed": len(verdicts) - len(failed)}
    theirs = criu_verdicts(results)
    results["criu_verified"] = {
        "restored": len(theirs),
        "passed": sum(v.startswith("PASS") for v in theirs),
    }

    render(results, console)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    out = args.results_dir / f"{stamp}.json"
    text = json.dumps(results, indent=2) + "\n"
    out.write_text(text)
    (args.results_dir / "latest.json").write_text(text)
    console.print(
        f"restored processes verified: {len(verdicts) - len(failed)}/{len(verdicts)} PASS"
    )
    if criu:
        done = results["criu_verified"]
        console.print(
            f"processes restored by CRIU {criu.version} verified: "
            f"{done['passed']}/{done['restored']} PASS"
        )
    else:
        console.print(f"CRIU: {NO_CRIU} (--criu, $TORPOR_CRIU or ../shared/criu/criu)")
    console.print(f"JSON: {out}")
    if failed:
        log("bench: restored processes failed their check: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"bench: error: {e}")
        sys.exit(1)

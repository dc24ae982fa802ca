"""Start, watch and judge the C test workloads in tests/workloads.

Every workload follows one protocol (see tests/workloads/common.h): it sets up its state,
prints ``READY``, waits, and on SIGUSR1 checks its state and prints ``PASS <name>`` or
``FAIL <name>: ...`` lines before exiting 0 or 1. This module builds the workloads,
starts them the way checkpoint tests need (the test process is their parent, stdin is
/dev/null, stdout and stderr are appended to a log file, cwd is a scratch directory, each
in its own session), and turns a finished run into a :class:`Verdict`.

A workload restored by torpor is a new child of the test process with the original PID;
:meth:`Workload.adopt` switches a :class:`Workload` over to it so that the same
``signal``/``verdict`` calls work before and after a checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

WORKLOADS_DIR = Path(__file__).resolve().parent / "workloads"
BUILD_DIR = WORKLOADS_DIR / "build"
FLAVOURS = ("64", "32")

READY_TIMEOUT = 15.0
VERDICT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Spec:
    """How to run one workload: its name, optional mode (argv[1]), extra argv and env."""

    name: str
    mode: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        """A short test id such as ``syscalls-poll``."""
        return f"{self.name}-{self.mode}" if self.mode else self.name


# Workloads that torpor must checkpoint and restore intact.
WORKLOADS = (
    Spec("memory"),
    Spec("regs"),
    Spec("syscalls", "nanosleep"),
    Spec("syscalls", "pipe-read"),
    Spec("syscalls", "pause"),
    Spec("syscalls", "poll"),
    Spec("vdso"),
    Spec("signals"),
    # misc compares /proc/self/cmdline and environ, so give it something to compare.
    Spec(
        "misc",
        args=("alpha", "two words", "", "ünïcode"),
        env=(("TORPOR_MISC_A", "1"), ("TORPOR_MISC_B", "x=y=z")),
    ),
    Spec("files"),
    Spec("tls"),
    Spec("counter"),
    Spec("threads"),
    Spec("threads", "100"),  # argv[1] is the number of extra threads
    Spec("tree", "family"),
    Spec("tree", "wide", args=("50",)),
    Spec("tree", "mixed"),
    Spec("attrs"),
    Spec("fdattrs"),
    Spec("anonfds"),
    Spec("locks"),
    Spec("inotify"),
    Spec("ghosts"),
    Spec("fifo"),
    Spec("timers"),
    Spec("unixsk"),
    Spec("netlinksk"),
    Spec("packetsk"),
    Spec("inetsk"),
    Spec("rawsk"),  # without ping sockets, which the host may not allow (test_raw_sockets)
    Spec("mcastsk"),
    Spec("ptys"),
    Spec("pidfds"),
    Spec("fanotify"),
    Spec("cow"),
    Spec("sharing", "files"),  # a child sharing its parent's fd table (clone CLONE_FILES)
    Spec("sharing", "fs"),  # a child sharing its parent's cwd and umask (clone CLONE_FS)
)

# Workloads that use things torpor refuses to dump; a refused dump must leave them running.
REFUSAL_HELPERS = (Spec("socket"),)

ALL_SPECS = WORKLOADS + REFUSAL_HELPERS


class WorkloadError(AssertionError):
    """A workload did not behave as the protocol says; the message includes its log."""


def build_workloads() -> Path:
    """Build every workload for both flavours with make; return the build directory.

    Fails with a clear message when gcc cannot produce 32-bit programs, because a missing
    multilib toolchain would otherwise look like a bug in the 32-bit tests.
    """
    res = subprocess.run(
        ["make", "-C", str(WORKLOADS_DIR)], capture_output=True, text=True, check=False
    )
    if res.returncode != 0:
        hint = ""
        if not gcc_m32_works():
            hint = (
                "gcc -m32 cannot build a 32-bit program: install gcc-multilib "
                "(Debian/Ubuntu: apt-get install gcc-multilib).\n"
            )
        raise RuntimeError(f"{hint}building the workloads failed:\n{res.stdout}{res.stderr}")
    return BUILD_DIR


def gcc_m32_works() -> bool:
    """Can gcc compile and link a 32-bit C program here?"""
    res = subprocess.run(
        ["gcc", "-m32", "-x", "c", "-o", os.devnull, "-"],
        input='#include <stdio.h>\nint main(void) { puts(""); return 0; }\n',
        capture_output=True,
        text=True,
        check=False,
    )
    return res.returncode == 0


def binary(name: str, flavour: str) -> Path:
    """Path of the built workload ``name`` for flavour "64" or "32"."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}")
    return BUILD_DIR / f"{name}-{flavour}"


def counter_ticks(log: str) -> list[int]:
    """The N of every "tick N" line the counter workload printed, in order."""
    return [int(line.split()[1]) for line in log.splitlines() if line.startswith("tick ")]


def pid_alive(pid: int) -> bool:
    """Does /proc/PID exist (running, stopped or zombie)?"""
    return os.path.exists(f"/proc/{pid}")


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """Wait until /proc/PID disappears; return False if it is still there after timeout."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat[stat.rindex(")") + 2 :].split()


def proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a task from /proc/PID/stat, or None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (fields[0], int(fields[1]))


def child_pids(parent: int) -> set[int]:
    """PIDs of every task whose parent (from /proc/PID/stat) is ``parent``."""
    kids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = proc_state(int(entry))
            if st is not None and st[1] == parent:
                kids.add(int(entry))
    return kids


def tree_pids(top: int | None, session: int | None = None) -> set[int]:
    """``top`` (if it exists) and every process descending from it by parent links, plus
    every process in session ``session`` and their descendants.

    The session catches what a workload left behind after its top process died: its
    orphans are reparented away, but they stay in the session the harness started it in,
    whose id is the top's PID (a number the kernel does not reuse while the session lives).
    """
    parent, sid = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                parent[int(entry)] = int(fields[1])
                sid[int(entry)] = int(fields[3])
    children: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        children.setdefault(ppid, []).append(pid)
    todo = [pid for pid in parent if pid == top or (session is not None and sid[pid] == session)]
    found: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def kill_tree(top: int | None, session: int | None = None) -> set[int]:
    """SIGKILL everything :func:`tree_pids` finds; return the PIDs it signalled.

    Everything found is stopped first and the search repeated until it finds nothing new,
    so a process forking meanwhile cannot leave a child outside the tree; then all die.
    """
    stopped: set[int] = set()
    for _ in range(100):
        new = tree_pids(top, session) - stopped
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return stopped


def tracer_pid(pid: int) -> int:
    """TracerPid from /proc/PID/status: 0 when nobody ptraces the task."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no TracerPid line")


def maps_lines(pid: int) -> list[str]:
    """The lines of /proc/PID/maps."""
    with open(f"/proc/{pid}/maps") as f:
        return f.read().splitlines()


@dataclass
class Verdict:
    """The outcome of one workload run: exit status and log, with protocol checks."""

    name: str
    status: int  # like Popen.returncode: exit code, or -signal if killed
    log: str

    @property
    def lines(self) -> list[str]:
        return self.log.splitlines()

    @property
    def ready_count(self) -> int:
        return sum(1 for line in self.lines if line == "READY")

    @property
    def passed_line(self) -> bool:
        return f"PASS {self.name}" in self.lines

    @property
    def failures(self) -> list[str]:
        return [line for line in self.lines if line.startswith("FAIL")]

    def assert_passed(self) -> None:
        """Exit status 0, exactly one READY, a PASS line and no FAIL line."""
        problems = []
        if self.status != 0:
            how = f"killed by signal {-self.status}" if self.status < 0 else "exit"
            problems.append(f"{how} status {self.status}")
        if self.ready_count != 1:
            problems.append(f"{self.ready_count} READY lines (expected exactly 1)")
        if not self.passed_line:
            problems.append(f"no 'PASS {self.name}' line")
        if self.failures:
            problems.append(f"{len(self.failures)} FAIL lines")
        if problems:
            raise WorkloadError(
                f"workload {self.name}: " + "; ".join(problems) + "\n--- log ---\n" + self.log
            )


@dataclass
class Workload:
    """A running workload started by :func:`start` (and possibly restored by torpor)."""

    spec: Spec
    flavour: str
    proc: subprocess.Popen
    log_path: Path
    cwd: Path
    restored_pid: int | None = None
    status: int | None = field(default=None)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        """The workload's PID (the restored task keeps the original PID)."""
        return self.restored_pid if self.restored_pid is not None else self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for the READY line, then until the task sleeps in its wait.

        Waiting for the sleeping state as well means a checkpoint taken right after this
        catches the workload inside the syscall its mode names, not on its way there.
        """
        deadline = time.monotonic() + timeout
        while "READY\n" not in self.log():
            if self.proc.poll() is not None:
                raise WorkloadError(
                    f"{self.name}-{self.flavour} exited with {self.proc.returncode} before "
                    f"READY\n--- log ---\n{self.log()}"
                )
            if time.monotonic() > deadline:
                raise WorkloadError(f"{self.name}-{self.flavour}: no READY after {timeout}s")
            time.sleep(0.005)
        while True:
            st = proc_state(self.pid)
            if st is None or st[0] in "SZX":
                return
            if time.monotonic() > deadline:
                raise WorkloadError(
                    f"{self.name}-{self.flavour}: still in state {st[0]} {timeout}s after start"
                )
            time.sleep(0.002)

    def signal(self, sig: int = signal.SIGUSR1) -> None:
        """Send a signal to the workload (SIGUSR1 asks it to check itself)."""
        os.kill(self.pid, sig)

    def reap_original(self, timeout: float = 10.0) -> int:
        """Wait for the original process to end (after a dump killed it) and reap it."""
        return self.proc.wait(timeout=timeout)

    def adopt(self, pid: int) -> None:
        """Follow the task torpor restored: a child of this process with the original PID."""
        self.restored_pid = pid

    def wait(self, timeout: float = VERDICT_TIMEOUT) -> int:
        """Wait for the workload to exit; return its status like Popen.returncode."""
        if self.status is not None:
            return self.status
        if self.restored_pid is None:
            try:
                self.status = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise WorkloadError(
                    f"{self.name}-{self.flavour} did not exit within {timeout}s"
                    f"\n--- log ---\n{self.log()}"
                ) from None
            return self.status
        deadline = time.monotonic() + timeout
        while True:
            pid, wstatus = os.waitpid(self.restored_pid, os.WNOHANG)
            if pid == self.restored_pid:
                self.status = os.waitstatus_to_exitcode(wstatus)
                return self.status
            if time.monotonic() > deadline:
                raise WorkloadError(
                    f"restored {self.name}-{self.flavour} (pid {self.restored_pid}) did not "
                    f"exit within {timeout}s\n--- log ---\n{self.log()}"
                )
            time.sleep(0.01)

    def verdict(self, timeout: float = VERDICT_TIMEOUT) -> Verdict:
        """Wait for the exit and return the verdict (exit status + log)."""
        status = self.wait(timeout)
        return Verdict(self.name, status, self.log())

    def kill(self) -> None:
        """Kill whatever is left of the workload and reap its top process.

        That is the top process if it is (still) a child of this process, every process
        descending from it, and every process left in the workload's session (whose id is
        the original PID): orphans whose parents died are found there.
        """
        pid = self.proc.pid
        original_alive = self.proc.poll() is None
        top = None
        if original_alive:
            top = pid
        elif self.status is None:
            # The original is gone; a task with its PID that is our child is a (possibly
            # half-restored) copy.
            st = proc_state(pid)
            if st is not None and st[1] == os.getpid():
                top = pid
        # A live process with the PID that is not ours may have reused the number for a
        # session of its own; the session is only searched when that cannot be the case.
        session = pid if top is not None or proc_state(pid) is None else None
        kill_tree(top, session)
        if original_alive:
            self.proc.wait()
        elif top is not None:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            self.status = -signal.SIGKILL


def start(
    spec: Spec,
    flavour: str,
    workdir: Path,
    *,
    stdin: int = subprocess.DEVNULL,
    stdout: int | None = None,
) -> Workload:
    """Start a workload with cwd ``workdir/cwd`` and its log at ``workdir/NAME-FLAVOUR.log``.

    The process gets stdin=/dev/null, stdout and stderr appended to the log, no other fds,
    a small fixed environment and its own session (so a restore need not recreate the
    test runner's session or process group).

    ``stdin`` and ``stdout`` (an fd, for instance the slave side of a pty) replace
    /dev/null and the log for tests about terminals; ``stdout`` is used for stderr too,
    and the log then stays empty.
    """
    exe = binary(spec.name, flavour)
    if not exe.exists():
        raise FileNotFoundError(f"{exe} is not built (run make -C {WORKLOADS_DIR})")
    cwd = workdir / "cwd"
    cwd.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{spec.id}-{flavour}.log"
    argv = [str(exe)]
    if spec.mode:
        argv.append(spec.mode)
    argv.extend(spec.args)
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "TORPOR_WORKLOAD": spec.id}
    env.update(dict(spec.env))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=log if stdout is None else stdout,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
    return Workload(spec=spec, flavour=flavour, proc=proc, log_path=log_path, cwd=cwd)


def assert_restore_refused(images: Path, pid: int, names: str, error=None) -> str:
    """restore(images) raises `error` (ImageError unless given) with a one-line message
    containing ``names``, creates no process, and writes nothing into the directory;
    returns the message."""
    import pytest

    import torpor
    from torpor.errors import ImageError

    def snapshot() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(images.iterdir())}

    assert not pid_alive(pid), f"pid {pid} is taken before the restore attempt"
    before = snapshot()
    kids_before = child_pids(os.getpid())
    with pytest.raises(error or ImageError) as exc:
        torpor.restore(str(images))
    message = str(exc.value)
    assert not pid_alive(pid), f"a process with pid {pid} exists after the refusal"
    assert child_pids(os.getpid()) == kids_before, "the refused restore left a process"
    assert snapshot() == before, "the restore attempt changed the images"
    assert message.strip() and "\n" not in message, f"not a one-line message: {message!r}"
    assert names in message, f"the message does not name {names}: {message!r}"
    return message


def dump_program(proc: subprocess.Popen, tmp_path: Path) -> Path:
    """Dump program `proc` (a child of the test) into a new tmp_path/images, which kills it;
    reap it, whatever became of the dump, and wait until its PID is free for a restore;
    return the images directory."""
    import torpor

    images = tmp_path / "images"
    images.mkdir()
    try:
        torpor.dump(proc.pid, str(images))
    finally:
        proc.kill()
        proc.wait()
    assert wait_gone(proc.pid, 5), f"pid {proc.pid} still exists after the dump"
    return images


def dump_killed(w: Workload, tmp_path: Path) -> Path:
    """Dump `w` into a new tmp_path/images (the dump kills it), reap the original and wait
    until its PID is free for a restore; return the images directory."""
    import torpor

    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(w.pid, str(images))
    w.reap_original()
    assert wait_gone(w.pid, 5), f"pid {w.pid} still exists after the dump"
    return images


def start_python(code: str, out: Path, timeout: float = 30.0) -> subprocess.Popen:
    """Run Python `code` in its own session, stdout and stderr into `out`, and wait until it
    prints READY; the caller kills it."""
    import sys

    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + timeout
    while "READY" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise WorkloadError(f"the program did not get ready:\n{out.read_text()}")
        time.sleep(0.02)
    return proc

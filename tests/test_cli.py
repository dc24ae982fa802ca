"""The ``torpor`` command line, run as a separate program.

The commands are run the way a user runs them (``torpor dump``, ``restore``, ``show``,
``check``) with subprocess, on the workloads in both flavours. They check exit statuses,
the pidfile, that ``restore`` without ``-d`` exits with the restored process's status,
that ``--shell-job`` moves terminal fds onto the restoring command's terminal, and that
every error is one ``torpor: error:`` line on stderr without a traceback.

``restore -d`` leaves the restored process behind as a child of a command that exits, so
it is reparented. These tests make the test process a child subreaper while they run, so
that the restored process is reparented to it and its exit status can be collected with
waitpid like that of any other child.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import harness
import pytest
from command import CLI_TIMEOUT, TORPOR, assert_ok, child_subreaper, cli_env, torpor

from torpor.images import ImageDir


def assert_one_error_line(res: subprocess.CompletedProcess, *words: str) -> str:
    """A failure as the README promises: non-zero exit, exactly one stderr line that starts
    with "torpor: error:" and contains ``words``, no traceback anywhere."""
    out, err = res.stdout, res.stderr
    assert res.returncode != 0, f"{res.args} succeeded:\n{out}{err}"
    assert "Traceback" not in out + err, f"traceback in the output:\n{out}{err}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"stderr is not one line: {err!r}"
    assert lines[0].startswith("torpor: error:"), f"stderr: {err!r}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def read_pidfile(path: Path, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> int:
    """The PID in a pidfile, once it has been completely written."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = path.read_text()
        except FileNotFoundError:
            text = ""
        if text.endswith("\n"):
            return int(text)
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"torpor exited with {proc.returncode} before writing {path}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no pid in {path} after {timeout}s (content {text!r})")
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the command-line tests must run as root"


@pytest.fixture
def subreaper():
    """This process as a child subreaper for the test (see command.child_subreaper)."""
    with child_subreaper():
        yield


@pytest.fixture
def images(tmp_path) -> Path:
    """A fresh, empty images directory."""
    path = tmp_path / "images"
    path.mkdir()
    return path


def dump_and_reap(w: harness.Workload, images: Path, *extra: str) -> None:
    """``torpor dump`` the workload (which kills it) and reap the original."""
    assert_ok(torpor("dump", "-t", str(w.pid), "-D", str(images), *extra))
    assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
    status = w.reap_original()
    assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
    assert harness.wait_gone(w.pid, 5), f"pid {w.pid} still exists after the dump"


def free_pid() -> int:
    """A PID that no process has right now (that of a child which has just been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not harness.pid_alive(proc.pid)
    return proc.pid


# --- dump and restore ------------------------------------------------------------------------


def test_dump_then_restore_detached(subreaper, start_workload, images, tmp_path):
    """dump, then restore -d --pidfile: both exit 0, the pidfile holds the original PID, and
    the restored process (outliving the command) passes after SIGUSR1."""
    w = start_workload("memory")
    w.wait_ready()
    pid = w.pid
    dump_and_reap(w, images)
    pidfile = tmp_path / "restored.pid"
    res = torpor("restore", "-D", str(images), "-d", "--pidfile", str(pidfile))
    assert_ok(res)
    assert pidfile.read_text() == f"{pid}\n"
    state = harness.proc_state(pid)
    assert state is not None, f"the restored pid {pid} is gone after restore -d:\n{w.log()}"
    assert state[1] == os.getpid(), f"the restored process has parent {state[1]}"
    w.adopt(pid)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()
    assert harness.wait_gone(pid, 5)


@pytest.mark.parametrize("ending", ["pass", "sigterm"])
def test_restore_waits_and_exits_with_status(ending, start_workload, images, tmp_path):
    """restore without -d waits for the restored process and exits with its status: 0 when
    the workload passes, 128+15 when it is killed by SIGTERM."""
    w = start_workload("memory")
    w.wait_ready()
    pid = w.pid
    dump_and_reap(w, images)
    pidfile = tmp_path / "restored.pid"
    cli = subprocess.Popen(
        [TORPOR, "restore", "-D", str(images), "--pidfile", str(pidfile)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
    )
    try:
        assert read_pidfile(pidfile, proc=cli) == pid
        state = harness.proc_state(pid)
        assert state is not None and state[1] == cli.pid, f"restored task: {state}"
        assert cli.poll() is None, "torpor restore returned without waiting"
        os.kill(pid, signal.SIGUSR1 if ending == "pass" else signal.SIGTERM)
        out, err = cli.communicate(timeout=CLI_TIMEOUT)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    assert "Traceback" not in out + err and "torpor: error" not in err, out + err
    assert harness.wait_gone(pid, 5), f"pid {pid} outlived torpor restore"
    v = harness.Verdict(w.name, cli.returncode, w.log())
    if ending == "pass":
        v.assert_passed()
    else:
        assert cli.returncode == 128 + signal.SIGTERM, f"exit {cli.returncode}:\n{err}"
        assert not v.passed_line and v.ready_count == 1, v.log


def test_leave_running(start_workload, images):
    """dump --leave-running writes a complete image and the original carries on intact."""
    w = start_workload("regs")
    w.wait_ready()
    assert_ok(torpor("dump", "-t", str(w.pid), "-D", str(images), "--leave-running"))
    assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
    assert w.proc.poll() is None, f"the original died:\n{w.log()}"
    assert harness.tracer_pid(w.pid) == 0, "the original is still traced"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- errors ------------------------------------------------------------------------------------


def test_error_bad_pid(images):
    """Dumping a PID nobody has: one error line naming the PID, nothing written."""
    pid = free_pid()
    res = torpor("dump", "-t", str(pid), "-D", str(images))
    assert_one_error_line(res, str(pid))
    assert os.listdir(images) == []


@pytest.mark.parametrize("case", ["missing-dir", "non-empty-dir"])
def test_error_bad_images_dir(case, start_workload, tmp_path):
    """A missing or non-empty images directory: one error line naming it; the target
    carries on and passes."""
    w = start_workload("memory")
    w.wait_ready()
    images = tmp_path / "images"
    if case == "non-empty-dir":
        images.mkdir()
        (images / "stale.img").write_bytes(b"stale\n")
    res = torpor("dump", "-t", str(w.pid), "-D", str(images))
    assert_one_error_line(res, str(images))
    if case == "non-empty-dir":
        assert os.listdir(images) == ["stale.img"]
    else:
        assert not images.exists()
    assert w.proc.poll() is None, f"the original died:\n{w.log()}"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def test_error_restore_missing_dir(tmp_path):
    """restore from a directory that does not exist: one error line naming it."""
    missing = tmp_path / "no-such-dir"
    assert_one_error_line(torpor("restore", "-D", str(missing)), str(missing))
    assert_one_error_line(torpor("show", "-D", str(missing)), str(missing))


@pytest.mark.parametrize(
    "victim", ["core-*.img", "pages-*.img", "inventory.img"], ids=["core", "pages", "inventory"]
)
def test_error_damaged_images(victim, start_workload, images):
    """restore and show on an image with a truncated file: one error line naming the file,
    and no process is created."""
    w = start_workload("memory")
    w.wait_ready()
    pid = w.pid
    dump_and_reap(w, images)
    (target,) = images.glob(victim)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    kids = harness.child_pids(os.getpid())
    assert_one_error_line(torpor("restore", "-D", str(images)), target.name)
    assert_one_error_line(torpor("restore", "-D", str(images), "-d"), target.name)
    assert_one_error_line(torpor("show", "-D", str(images)), target.name)
    assert not harness.pid_alive(pid), f"pid {pid} exists after the refused restore"
    assert harness.child_pids(os.getpid()) == kids


# --- show and check ---------------------------------------------------------------------------


def test_show(start_workload, images, flavour):
    """show prints the PID, the executable and the task's ABI."""
    w = start_workload("memory")
    w.wait_ready()
    pid = w.pid
    dump_and_reap(w, images)
    res = torpor("show", "-D", str(images))
    assert_ok(res)
    head = [line for line in res.stdout.splitlines() if line.startswith(f"PID {pid} ")]
    assert len(head) == 1, f"no 'PID {pid}' line:\n{res.stdout}"
    abi, other = ("x86_64", "ia32") if flavour == "64" else ("ia32", "x86_64")
    assert f" {abi} " in head[0] and other not in head[0], head[0]
    assert str(harness.binary("memory", flavour)) in res.stdout, res.stdout


def test_show_tree(start_workload, images):
    """show lists every process of a tree with its ids and thread count, and zombies with
    their wait status (the family workload has one that exited 7, one killed by SIGTERM)."""
    w = start_workload("tree", "family")
    w.wait_ready()
    dump_and_reap(w, images)
    res = torpor("show", "-D", str(images))
    assert_ok(res)
    entries = ImageDir(images).read("pstree.img")
    assert len(entries) == 11, [e.pid for e in entries]
    heads = [line for line in res.stdout.splitlines() if line.startswith("PID ")]
    assert [int(line.split()[1]) for line in heads] == [e.pid for e in entries], res.stdout
    statuses = sorted(
        line.split("wait status ")[1].split(",")[0] for line in heads if "zombie" in line
    )
    assert statuses == ["0x700", "0xf"], res.stdout
    counts = [line.split(", ")[-1] for line in res.stdout.splitlines() if line.startswith("  exe ")]
    alive = [e for e in entries if f"PID {e.pid} zombie" not in res.stdout]
    assert counts == [f"{len(e.threads)} threads" for e in alive], res.stdout
    assert any(len(e.threads) > 1 for e in alive), "the family tree has threaded processes"


def test_show_describes_sockets(start_workload, images):
    """show names each Unix socket by its type, name and state (the unixsk workload)."""
    w = start_workload("unixsk")
    w.wait_ready()
    dump_and_reap(w, images)
    res = torpor("show", "-D", str(images))
    assert_ok(res)
    fds = [line for line in res.stdout.splitlines() if line.startswith("  fd ")]
    assert any("a Unix stream socket srv.sock, listening" in line for line in fds), fds
    assert any(line.endswith("a Unix seqpacket socket, connected") for line in fds), fds


def test_show_describes_internet_sockets(start_workload, images):
    """show gives a TCP socket's address and state (the inetsk workload listens)."""
    w = start_workload("inetsk")
    w.wait_ready()
    dump_and_reap(w, images)
    res = torpor("show", "-D", str(images))
    assert_ok(res)
    fds = [line for line in res.stdout.splitlines() if line.startswith("  fd ")]
    assert any(" a TCP socket 127.0.0.1:" in line and line.endswith(" LISTEN") for line in fds), fds


def test_check():
    """check exits 0 and reports clone3 set_tid and both vDSO layouts as available."""
    res = torpor("check")
    assert_ok(res)
    lines = res.stdout.splitlines()
    for feature in ("clone3 set_tid", "rseq", "vDSO x86_64", "vDSO ia32"):
        found = [line for line in lines if line.startswith(feature + " ")]
        assert len(found) == 1, f"no {feature!r} line:\n{res.stdout}"
        assert " yes " in found[0], found[0]
        if feature.startswith("vDSO"):
            assert "[vdso]" in found[0], found[0]


def test_check_on_a_terminal():
    """On a terminal check colours its marks (rich); its text is the plain output's."""
    plain = torpor("check")
    assert_ok(plain)
    env = {k: v for k, v in cli_env().items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [TORPOR, "check"], stdout=slave, stderr=subprocess.PIPE, env=env, text=True
        )
        os.close(slave)
        out = b""
        while chunk := _read_pty(master):
            out += chunk
        assert proc.wait(timeout=CLI_TIMEOUT) == 0, proc.stderr.read()
        proc.stderr.close()
    finally:
        os.close(master)
    text = out.decode().replace("\r\n", "\n")
    assert "\x1b[32myes\x1b[0m" in text, text
    unstyled = "".join(part.split("m", 1)[-1] for part in text.split("\x1b["))
    assert unstyled.splitlines() == plain.stdout.splitlines()


def _read_pty(fd: int) -> bytes:
    """What the terminal's other side wrote, b"" once it is closed (EIO on Linux)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


# --- --shell-job ---------------------------------------------------------------------------------


class Pty:
    """A pseudo-terminal whose master side this test reads."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.name = os.ttyname(self.slave)
        self.output = b""

    def read_until(self, text: str, timeout: float = 30.0) -> str:
        """Read the master until ``text`` has appeared; return all output so far (with the
        terminal's CR LF line ends turned into LF, in the output and in ``text``)."""
        deadline = time.monotonic() + timeout
        while text not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} on {self.name} after {timeout}s: {self.text}")
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    raise AssertionError(f"{self.name} closed before {text!r}: {self.text}")
                self.output += chunk
        return self.text

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace").replace("\r\n", "\n")

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def ptys():
    """Factory for Ptys, all closed at the end of the test."""
    made: list[Pty] = []

    def make() -> Pty:
        made.append(Pty())
        return made[-1]

    yield make
    for p in made:
        p.close()


CHECK_TOPICS = (
    "CPU features", "saved state", "protection keys", "register state", "credentials",
    "resource limits", "shared memory",
    "open files", "clocks", "cgroups", "PIDs",
    "clone3 set_tid", "vDSO",
)  # fmt: skip


def test_check_images(start_workload, images):
    """check -D says, creating nothing, whether this host can restore the images: one line
    per finding, exit 0 when it would go ahead; a PID still taken makes it 1 and points at
    --pidns, with which it would go ahead again."""
    w = start_workload("counter")
    w.wait_ready()
    assert_ok(torpor("dump", "-t", str(w.pid), "-D", str(images), "--leave-running"))
    kids = harness.child_pids(os.getpid())
    busy = torpor("check", "-D", str(images))
    assert busy.returncode == 1, busy.stdout + busy.stderr
    assert f"PIDs in use here: {w.pid}: free them or restore with --pidns" in busy.stdout
    assert harness.child_pids(os.getpid()) == kids, "check -D created a process"
    with_pidns = torpor("check", "-D", str(images), "--pidns")
    assert_ok(with_pidns)
    lines = with_pidns.stdout.splitlines()
    assert [line.split("  ")[0].strip() for line in lines] == list(CHECK_TOPICS), lines
    assert all(" ok " in line for line in lines), lines
    w.kill()
    assert harness.wait_gone(w.pid, 5)
    free = torpor("check", "-D", str(images))
    assert_ok(free)
    assert "every PID and TID of the images is free" in free.stdout
    assert "the same as this kernel's: mapped back in place" in free.stdout


def test_check_images_errors(images, tmp_path):
    assert_one_error_line(torpor("check", "-D", str(tmp_path / "nowhere")), "does not exist")
    assert_one_error_line(torpor("check", "-D", str(images)), "inventory")


def test_shell_job(subreaper, built_workloads, flavour, tmp_path, ptys, images):
    """A process whose fds 0-2 are on a terminal is dumped with --shell-job and restored
    with --shell-job -d under another terminal: its fds 0-2 then point at that terminal and
    its verdict appears there. Without --shell-job the restore is refused."""
    first, second = ptys(), ptys()
    workdir = tmp_path / "work"
    workdir.mkdir()
    w = harness.start(
        harness.Spec("memory"), flavour, workdir, stdin=first.slave, stdout=first.slave
    )
    try:
        first.read_until("READY\n")
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while (st := harness.proc_state(w.pid)) is not None and st[0] not in "SZX":
            assert time.monotonic() < deadline, f"workload still in state {st}"
            time.sleep(0.002)
        pid = w.pid
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == first.name

        res = torpor("dump", "-t", str(pid), "-D", str(images), "--shell-job")
        assert_ok(res)
        assert w.proc.wait(timeout=10) < 0
        assert harness.wait_gone(pid, 5)

        kids = harness.child_pids(os.getpid())
        checked = torpor("check", "-D", str(images))
        assert checked.returncode == 1 and "restore with --shell-job" in checked.stdout
        refused = torpor("restore", "-D", str(images), "-d")
        assert_one_error_line(refused, "terminal", "--shell-job")
        assert not harness.pid_alive(pid) and harness.child_pids(os.getpid()) == kids

        pidfile = tmp_path / "restored.pid"
        res = subprocess.run(
            [TORPOR, "restore", "-D", str(images), "--shell-job", "-d", "--pidfile", str(pidfile)],
            stdin=second.slave,
            stdout=second.slave,
            stderr=second.slave,
            env=cli_env(),
            timeout=CLI_TIMEOUT,
            check=False,
        )
        assert res.returncode == 0, f"restore exited {res.returncode}: {second.text}"
        assert read_pidfile(pidfile, timeout=1) == pid
        w.adopt(pid)
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{pid}/fd/{fd}") == second.name, f"fd {fd}"

        w.signal(signal.SIGUSR1)
        output = second.read_until("PASS memory\n")
        assert w.wait() == 0, f"exit status {w.status}: {output}"
        assert "FAIL" not in output and "READY" not in output, output
        assert "torpor: error" not in output, output
    finally:
        w.kill()


def test_internal_error_is_one_line(tmp_path):
    """A bug of torpor's (here a KeyError planted in the dump) still ends in one error line
    naming it, not a traceback; -vv shows where it happened."""
    code = (
        "import sys, torpor.dumper as d\n"
        "def broken(*a, **k):\n"
        "    raise KeyError('planted')\n"
        "d.dump = broken\n"
        "sys.argv = ['torpor', 'dump', '-t', '1', '-D', sys.argv[1]]\n"
        "import torpor.cli\n"
        "torpor.cli.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    line = assert_one_error_line(done, "internal error (KeyError: 'planted')", "please report")
    assert line.startswith("torpor: error:")

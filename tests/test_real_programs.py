"""Real programs from Debian, checkpointed and restored the way a user would, and used after
the restore: each must carry on with its own state (files, watches, timers) intact."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import command
import harness
import pytest

import torpor


def _wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _fd_targets(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return [os.readlink(fds / fd) for fd in os.listdir(fds)]


@pytest.fixture
def started(tmp_path):
    procs: list[subprocess.Popen] = []

    def start(argv, stdout) -> subprocess.Popen:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, start_new_session=True,
        )  # fmt: skip
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        harness.kill_tree(proc.pid, proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_tail_follows_its_file_after_restore(started, tmp_path):
    """`tail -f` watches its file with inotify: restored, it prints what is appended."""
    assert shutil.which("tail"), "coreutils tail is missing"
    followed = tmp_path / "followed.log"
    followed.write_text("before 1\nbefore 2\n")
    out = tmp_path / "tail.out"
    with open(out, "wb") as sink:
        tail = started(["tail", "-n", "+1", "-f", str(followed)], sink)
    _wait_for(lambda: "before 2" in out.read_text(), "tail to print the file")
    _wait_for(lambda: "anon_inode:inotify" in _fd_targets(tail.pid), "tail's inotify watch")
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(tail.pid, str(images))
    tail.wait()
    assert harness.wait_gone(tail.pid, 5)
    restored = torpor.restore(str(images))
    try:
        with open(followed, "a") as f:
            f.write("after restore\n")
        _wait_for(lambda: "after restore" in out.read_text(), "the restored tail to follow")
        assert out.read_text() == "before 1\nbefore 2\nafter restore\n"
    finally:
        os.kill(restored, 9)
        os.waitpid(restored, 0)


def test_reader_of_a_pipe_whose_writer_is_gone(started, tmp_path):
    """`sh -c 'sleep 1; cat; echo done'` reading a pipe whose writer wrote and exited: the
    restored cat reads what was left, then end of file (the writer stays gone)."""
    images = tmp_path / "images"
    images.mkdir()
    r, w = os.pipe()
    os.write(w, b"left in the pipe\n")
    os.close(w)
    out = tmp_path / "out"
    with open(out, "wb") as sink, open(r, "rb", closefd=True) as reader:
        shell = subprocess.Popen(
            ["sh", "-c", "sleep 1; cat; echo done"], stdin=reader, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _wait_for(lambda: len(harness.tree_pids(shell.pid)) == 2, "sh to start sleep")
    torpor.dump(shell.pid, str(images))
    shell.wait()
    assert harness.wait_gone(shell.pid, 5)
    restored = torpor.restore(str(images))
    _, status = os.waitpid(restored, 0)
    assert status == 0 and out.read_text() == "left in the pipe\ndone\n", out.read_text()


POOL = """
import multiprocessing, sys, time
def square(x):
    return x * x
if __name__ == "__main__":
    with multiprocessing.Pool(2) as pool:
        print("READY", flush=True)
        time.sleep(1.5)
        print(sum(pool.map(square, range(100))), flush=True)
"""


def test_python_multiprocessing_pool(started, tmp_path):
    """A `multiprocessing.Pool` (worker processes, pipes, threads, semaphores in deleted
    files of /dev/shm) restored mid-life finishes its work."""
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    out = tmp_path / "pool.out"
    with open(out, "wb") as sink:
        proc = started(["/usr/bin/python3", str(script)], sink)
    _wait_for(lambda: "READY" in out.read_text(), "the pool to start")
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images))
    assert any(p.name.startswith("ghost-file-") for p in images.iterdir()), "no semaphore saved"
    proc.wait()
    assert harness.wait_gone(proc.pid, 5)
    restored = torpor.restore(str(images))
    _, status = os.waitpid(restored, 0)
    assert status == 0 and out.read_text() == "READY\n328350\n", out.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/served.txt", timeout=10) as answer:
        assert answer.read() == b"served\n"
        return answer.status


def test_python_http_server_serves_after_restore(started, tmp_path):
    """`python3 -m http.server` (a TCP listener) restored answers a new request with 200."""
    (tmp_path / "served.txt").write_text("served\n")
    port = _free_port()
    out = tmp_path / "http.out"
    with open(out, "wb") as sink:
        proc = started(
            ["/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1", str(port)], sink
        )

    def serving() -> bool:
        try:
            return _get(port) == 200
        except OSError:
            return False

    _wait_for(serving, "the server to answer")
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images))
    proc.wait()
    assert harness.wait_gone(proc.pid, 5)
    with pytest.raises(OSError):
        _get(port)  # nothing listens while it is checkpointed
    restored = torpor.restore(str(images))
    try:
        assert _get(port) == 200
    finally:
        os.kill(restored, 9)
        os.waitpid(restored, 0)


def test_tmux_server_and_its_shell_after_restore(tmp_path):
    """A tmux server (a pty master per pane, a Unix socket for its clients, an event loop)
    with a shell in a pane, which has the pane's slave as its controlling terminal and
    /dev/tty open: restored, a new client drives the shell and reads its output back, on
    the same terminal."""
    assert shutil.which("tmux"), "tmux is missing (scripts/setup.sh installs it)"
    sock = str(tmp_path / "tmux.sock")

    def tmux(*args: str) -> str:
        return subprocess.run(
            ["tmux", "-S", sock, "-f", "/dev/null", *args], capture_output=True, text=True,
            check=True, timeout=10, stdin=subprocess.DEVNULL, cwd=tmp_path,
        ).stdout  # fmt: skip

    def screen_has(text: str) -> bool:
        return text in tmux("capture-pane", "-p", "-t", "s")

    tmux("new-session", "-d", "-s", "s", "-x", "80", "-y", "24", "sh")
    server = int(tmux("display", "-p", "#{pid}"))
    restored = None
    try:
        tmux("send-keys", "-t", "s", "tty > tty.before; echo ready-$((1+1))", "Enter")
        _wait_for(lambda: screen_has("ready-2"), "the shell in the pane")
        images = tmp_path / "images"
        images.mkdir()
        torpor.dump(server, str(images))
        assert harness.wait_gone(server, 5)
        restored = torpor.restore(str(images))
        tmux("send-keys", "-t", "s", "tty > tty.after; echo again-$((2+3))", "Enter")
        _wait_for(lambda: screen_has("again-5"), "the restored shell to answer")
        before, after = tmp_path / "tty.before", tmp_path / "tty.after"
        _wait_for(after.exists, "the restored shell's tty output")
        assert after.read_text() == before.read_text(), "the shell's terminal changed"
        assert after.read_text().startswith("/dev/pts/")
    finally:
        harness.kill_tree(restored or server, restored or server)


def _dumped_pipe_reader(tmp_path):
    """`cat` reading a pipe whose write end the test holds (outside the tree), dumped once
    it has copied a first line; its images, its output file and the pipe's key."""
    out = tmp_path / "cat.out"
    r, w = os.pipe()
    key = f"pipe:[{os.fstat(w).st_ino}]"
    with open(out, "wb") as sink:
        cat = subprocess.Popen(
            ["cat"], stdin=r, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path,
            start_new_session=True,
        )  # fmt: skip
    os.close(r)
    images = tmp_path / "images"
    images.mkdir()
    try:
        os.write(w, b"first\n")
        _wait_for(lambda: out.read_text() == "first\n", "cat to copy its first line")
        torpor.dump(cat.pid, str(images))
        cat.wait()
    finally:
        os.close(w)
    return images, out, key


def test_reader_of_a_pipe_from_outside_takes_a_handed_pipe(tmp_path):
    """`cat` reading a pipe the test writes: the dump saves it with its outside end, `torpor
    show` names the key, and `torpor restore --inherit-fd fd[N]:KEY` gives cat a pipe the
    test writes again, which cat copies until its end."""
    images, out, key = _dumped_pipe_reader(tmp_path)
    shown = command.torpor("show", "-D", str(images)).stdout
    assert f"--inherit-fd fd[N]:{key}" in shown, shown
    r2, w2 = os.pipe()
    restore = command.torpor(
        "restore", "-D", str(images), "-d", "--pidfile", str(tmp_path / "pid"),
        "--inherit-fd", f"fd[{r2}]:{key}", pass_fds=[r2],
    )  # fmt: skip
    os.close(r2)
    assert restore.returncode == 0, restore.stderr
    restored = int((tmp_path / "pid").read_text())
    try:
        os.write(w2, b"second\n")
        os.close(w2)
        assert harness.wait_gone(restored, 10), "cat did not see the end of the handed pipe"
        assert out.read_text() == "first\nsecond\n"
    finally:
        harness.kill_tree(restored, restored)


def test_reader_of_a_pipe_from_outside_without_a_handed_pipe_reads_its_end(tmp_path):
    """Without --inherit-fd the pipe is made again with its outside end closed: the restored
    cat reads end of file and exits 0, having lost nothing it had."""
    images, out, _ = _dumped_pipe_reader(tmp_path)
    restored = torpor.restore(str(images))
    _, status = os.waitpid(restored, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert out.read_text() == "first\n"


def test_inherit_fd_naming_no_outside_end_is_refused(tmp_path):
    """An --inherit-fd key the images do not hold: one line naming it and the keys there
    are, before anything is created."""
    images, _, _ = _dumped_pipe_reader(tmp_path)
    restore = command.torpor("restore", "-D", str(images), "-d", "--inherit-fd", "fd[0]:pipe:[1]")
    assert restore.returncode != 0
    assert restore.stderr.count("\n") == 1, restore.stderr
    assert "no pipe:[1]" in restore.stderr and "outside ends: pipe:[" in restore.stderr

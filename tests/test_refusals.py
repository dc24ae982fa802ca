"""A refused or failed dump leaves its target running exactly as before.

Each test starts a workload (in both flavours), makes ``torpor.dump`` refuse it or fail
part-way, and then checks four things: the exception has the documented type and a
one-line message naming the cause; the images directory is left as it was (empty); the
original process is neither traced nor stopped any more; and, sent SIGUSR1, the original
passes its own checks (registers for ``regs``, memory for ``memory``, signal state for
``signals``, the blocked call for ``syscalls``). A restore that finds the PID taken must
likewise fail cleanly, create nothing and leave the running original alone.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import time

import harness
import pytest

import torpor
from torpor.errors import ImageError, RestoreError, TargetError, TorporError, UnsupportedError
from torpor.images.imagedir import STAGING_PREFIX
from torpor.parts import memory as memory_part
from torpor.remote import RemoteTask


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the refusal tests must run as root"


@pytest.fixture
def images(tmp_path):
    """A fresh, empty images directory."""
    path = tmp_path / "images"
    path.mkdir()
    return path


@pytest.fixture
def pty_workload(built_workloads, flavour, tmp_path):
    """Factory: start a workload whose stdin is the slave side of a new pty.

    stdout and stderr still go to the log, so the usual READY/verdict protocol works.
    The pty and whatever is left of the workload are cleaned up at the end of the test.
    """
    started: list[harness.Workload] = []
    fds: list[int] = []

    def start(name: str) -> tuple[harness.Workload, str]:
        master, slave = os.openpty()
        fds.extend((master, slave))
        workdir = tmp_path / f"{name}-{flavour}-pty"
        workdir.mkdir()
        w = harness.start(harness.Spec(name), flavour, workdir, stdin=slave)
        started.append(w)
        return w, os.ttyname(slave)

    yield start
    for w in started:
        w.kill()
    for fd in fds:
        os.close(fd)


def assert_one_line(message: str) -> None:
    """An error message fit for a terminal: not empty, a single line."""
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"message is not one line: {message!r}"


def listing(path) -> list[str]:
    """Names of the entries of a directory, sorted."""
    return sorted(os.listdir(path))


def assert_untouched_and_passes(w: harness.Workload) -> None:
    """The original still runs free (not traced, not stopped) and passes after SIGUSR1."""
    assert w.proc.poll() is None, f"the original died:\n{w.log()}"
    assert harness.tracer_pid(w.pid) == 0, "the original is still being traced"
    state = harness.proc_state(w.pid)
    assert state is not None and state[0] not in "tT", f"the original is stopped: {state}"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def free_pid() -> int:
    """A PID that no process has right now (that of a child which has just been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not harness.pid_alive(proc.pid)
    return proc.pid


# --- refusals before anything is done to the target ----------------------------------------


def test_no_such_pid(images):
    """Dumping a PID that no process has is a TargetError naming the PID."""
    pid = free_pid()
    with pytest.raises(TargetError) as exc:
        torpor.dump(pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    assert str(pid) in message and "no process" in message, message
    assert listing(images) == []


def test_already_traced(start_workload, images):
    """A task someone else traces cannot be seized: TargetError, and the tracer keeps it.

    The test process seizes the workload first; the dump must fail without disturbing
    that trace, and once the test lets go the workload must still find its registers.
    """
    w = start_workload("regs")
    w.wait_ready()
    rt = RemoteTask.seize(w.pid)
    try:
        with pytest.raises(TargetError) as exc:
            torpor.dump(w.pid, str(images))
        assert harness.tracer_pid(w.pid) == os.getpid(), "the dump took over or dropped our trace"
    finally:
        rt.detach()
    message = str(exc.value)
    assert_one_line(message)
    assert "trace" in message and str(w.pid) in message, message
    assert listing(images) == []
    assert_untouched_and_passes(w)


def _socket_fds(pid: int) -> list[int]:
    fds = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
            fds.append(int(fd))
    return sorted(fds)


def test_unsupported_target(start_workload, images):
    """A socket connected outside the tree is refused with an UnsupportedError that names
    the fd, its kind and why."""
    w = start_workload("socket")
    w.wait_ready()
    socks = _socket_fds(w.pid)
    assert socks, "the socket workload holds no socket"
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    for word in (f"fd {socks[0]} ", "Unix stream socket", "outside the process tree"):
        assert word in message, f"{word!r} not in {message!r}"
    assert listing(images) == []
    assert_untouched_and_passes(w)


def test_terminal_without_shell_job(pty_workload, images):
    """An fd on a terminal needs --shell-job: the refusal names fd 0 and suggests the option."""
    w, tty = pty_workload("memory")
    w.wait_ready()
    assert os.readlink(f"/proc/{w.pid}/fd/0") == tty
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images), shell_job=False)
    message = str(exc.value)
    assert_one_line(message)
    assert "fd 0 " in message and "terminal" in message, message
    assert "--shell-job" in message, message
    assert listing(images) == []
    assert_untouched_and_passes(w)


def test_images_dir_missing(start_workload, tmp_path):
    """A missing images directory is an ImageError naming it; it is not created."""
    w = start_workload("memory")
    w.wait_ready()
    missing = tmp_path / "no-such-dir"
    with pytest.raises(ImageError) as exc:
        torpor.dump(w.pid, str(missing))
    message = str(exc.value)
    assert_one_line(message)
    assert str(missing) in message and "does not exist" in message, message
    assert not missing.exists()
    assert_untouched_and_passes(w)


def test_images_dir_not_empty(start_workload, images):
    """A non-empty images directory is refused; what was in it stays exactly as it was."""
    w = start_workload("memory")
    w.wait_ready()
    stale = images / "stale.img"
    stale.write_bytes(b"from an earlier dump\n")
    with pytest.raises(ImageError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    assert str(images) in message and "not empty" in message, message
    assert listing(images) == ["stale.img"]
    assert stale.read_bytes() == b"from an earlier dump\n"
    assert_untouched_and_passes(w)


# --- a dump that fails after the task was seized --------------------------------------------

MID_DUMP = (
    harness.Spec("regs"),
    harness.Spec("memory"),
    harness.Spec("signals"),
    harness.Spec("syscalls", "nanosleep"),
)


@pytest.mark.parametrize("when", ["instead-of-memory", "after-memory"])
@pytest.mark.parametrize("spec", MID_DUMP, ids=lambda s: s.id)
def test_failure_mid_dump(spec, when, start_workload, images, monkeypatch):
    """An OSError in the memory stage (the task seized, its scratch page mapped, some images
    written) ends the dump with a TorporError; the task gets its registers, memory, blocked
    syscall and signal state back, the scratch page goes and the directory is emptied (while
    it ran, it held only the dump's private directory).

    "instead-of-memory" fails before any page is saved; "after-memory" lets the real stage
    write pages-1.img and pagemap-N.img first.
    """
    w = start_workload(spec)
    w.wait_ready()
    maps_before = harness.maps_lines(w.pid)
    seen: dict = {}
    real_dump = memory_part.dump

    def failing_dump(ctx):
        if when == "after-memory":
            real_dump(ctx)
        seen["scratch"] = ctx.task.scratch
        seen["maps"] = harness.maps_lines(ctx.pid)
        seen["files"] = [  # a dump writes into its private directory until the end
            name for staging in images.glob(f"{STAGING_PREFIX}*") for name in listing(staging)
        ]
        seen["listed"] = listing(images)
        seen["tracer"] = harness.tracer_pid(ctx.pid)
        raise OSError(errno.EIO, "injected failure in the memory stage")

    monkeypatch.setattr(memory_part, "dump", failing_dump)
    with pytest.raises(TorporError) as exc:
        torpor.dump(w.pid, str(images))
    monkeypatch.undo()

    assert seen, "the memory stage never ran: the failure was not mid-dump"
    assert seen["tracer"] == os.getpid(), "the task was not seized when the stage ran"
    scratch = seen["scratch"]
    assert scratch, "no scratch page was mapped when the stage ran"
    assert any(line.startswith(f"{scratch:08x}-") for line in seen["maps"]), (
        f"the scratch page {scratch:#x} is not in the task's maps during the dump"
    )
    assert seen["files"], "no image had been written when the stage failed"
    assert all(name.startswith(STAGING_PREFIX) for name in seen["listed"]), seen["listed"]
    if when == "after-memory":
        assert "pages-1.img" in seen["files"], seen["files"]

    message = str(exc.value)
    assert_one_line(message)
    assert "injected failure in the memory stage" in message, message
    assert str(w.pid) in message, message
    assert listing(images) == [], "the failed dump left files behind"
    assert harness.maps_lines(w.pid) == maps_before, "the task's mappings changed"
    assert_untouched_and_passes(w)


# --- a restore that finds the PID taken ------------------------------------------------------


def test_restore_pid_in_use(start_workload, images):
    """Restoring while the original still runs fails with RestoreError "in use"; no process
    is created and the original carries on."""
    w = start_workload("memory")
    w.wait_ready()
    torpor.dump(w.pid, str(images), leave_running=True)
    files_before = {p.name: p.read_bytes() for p in images.iterdir()}
    assert "inventory.img" in files_before
    kids_before = harness.child_pids(os.getpid())
    assert w.pid in kids_before

    with pytest.raises(RestoreError) as exc:
        torpor.restore(str(images))

    assert harness.child_pids(os.getpid()) == kids_before, "the failed restore left a process"
    message = str(exc.value)
    assert_one_line(message)
    assert str(w.pid) in message and "in use" in message, message
    assert {p.name: p.read_bytes() for p in images.iterdir()} == files_before
    assert_untouched_and_passes(w)


def test_child_in_other_namespace(images, tmp_path):
    """A descendant in a namespace of its own is refused, naming it and the namespace; the
    whole tree runs on untraced."""
    parent = subprocess.Popen(
        ["sh", "-c", "unshare --uts sleep 1000 & wait"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        child = None
        for _ in range(500):
            kids = harness.tree_pids(parent.pid) - {parent.pid}
            for pid in kids:
                if os.readlink(f"/proc/{pid}/ns/uts") != os.readlink(f"/proc/{parent.pid}/ns/uts"):
                    child = pid
            if child:
                break
            time.sleep(0.01)
        assert child, "unshare --uts did not start a child in a new UTS namespace"
        with pytest.raises(UnsupportedError) as exc:
            torpor.dump(parent.pid, str(images))
        message = str(exc.value)
        assert_one_line(message)
        assert str(child) in message and "uts namespace" in message, message
        assert listing(images) == []
        for pid in harness.tree_pids(parent.pid):
            assert harness.tracer_pid(pid) == 0, f"{pid} is still traced"
        assert parent.poll() is None, "the dumped tree's root died"
    finally:
        for pid in harness.tree_pids(parent.pid) - {parent.pid}:
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_processes_sharing_memory(start_workload, images):
    """Processes that share their memory (clone CLONE_VM) are refused, naming both and what
    they share; they run on, still sharing it."""
    w = start_workload("sharing", "vm")
    w.wait_ready()
    (child,) = harness.child_pids(w.pid)
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    assert f"processes {w.pid} and {child} share their memory" in message, message
    assert listing(images) == []
    w.signal()
    w.verdict().assert_passed()


def test_siblings_sharing_their_fd_table(start_workload, images):
    """Two processes sharing their fd table (clone CLONE_FILES) of which neither is the
    other's parent are refused (a restore forks a sharer from its parent), naming both; they
    run on, still sharing it."""
    w = start_workload("sharing", "siblings")
    w.wait_ready()
    siblings = harness.child_pids(w.pid)
    assert len(siblings) == 2, siblings
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    first, second = sorted(siblings)
    named = [
        f"processes {a} and {b} share their fd table" for a, b in ((first, second), (second, first))
    ]
    assert any(n in message for n in named), message
    assert "neither got it from the other through its parent" in message, message
    assert listing(images) == []
    w.signal()
    w.verdict().assert_passed()

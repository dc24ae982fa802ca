"""Process trees end to end: dumps that race with the tree, refusals and damage found in a
child, a restore into a new PID namespace and through the command line.

Every test runs in both flavours and judges what it can observe from outside: the exception
type and its one-line message, what is left in the images directory, every task of the tree
(found by parent links from the top process, threads from /proc/PID/task) with its tracer,
state letter and blocked-signal mask, the PIDs a dump recorded in pstree.img, and finally the
workload's own verdict after SIGUSR1 (the ``tree`` workload's processes check their ids,
shared memory, pipes and threads; ``storm`` checks that every child it forked was reaped and
exited with 3).

- A leaf of the tree is SIGKILLed while the dump writes pages (from the progress callback):
  the dump fails with a TargetError naming it, and every other task runs on as before.
- ``leave_running`` on trees and on a many-threaded process frees every task.
- ``storm`` forks and reaps children all the time: repeated dumps either succeed or fail
  cleanly, and a real dump (with running children and zombies in it) restores and passes.
- A socket held by a *child* and connected outside the tree is refused by name, before the
  tree is touched.
- Deleted or truncated files of a three-process image are refused without creating any
  process or changing the other files; the pristine images restore.
- A tree restored into a new PID namespace has its dumped PIDs and TIDs inside it.
- The command line dumps a tree and restores it detached (``restore -d --pidfile``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import command
import harness
import pytest
from command import assert_ok, child_subreaper

import torpor
from torpor.errors import ImageError, TargetError, TorporError, UnsupportedError
from torpor.images import ImageDir


@pytest.fixture(autouse=True)
def _need_root():
    """torpor needs root here (ptrace of any task, clone3 with set_tid); say so plainly."""
    assert os.geteuid() == 0, "the process-tree tests must run as root"


# --- helpers ---------------------------------------------------------------------------------


def new_dir(path: Path) -> Path:
    """Create an empty directory and return it."""
    path.mkdir()
    return path


def listing(path: Path) -> list[str]:
    """Names of the entries of a directory, sorted."""
    return sorted(os.listdir(path))


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file of a directory with its content."""
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def assert_one_line(message: str) -> None:
    """An error message fit for a terminal: not empty, a single line."""
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"message is not one line: {message!r}"


def names_number(message: str, number: int) -> bool:
    """Does the message contain ``number`` as a whole number (not inside another one)?"""
    return re.search(rf"(?<!\d){number}(?!\d)", message) is not None


def tids_of(pid: int) -> set[int]:
    """The TIDs in /proc/PID/task (empty if the process is gone)."""
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except FileNotFoundError:
        return set()


def tree_tasks(top: int) -> dict[int, set[int]]:
    """Every process of the tree under ``top`` (by parent links) with its TIDs."""
    return {pid: tids_of(pid) for pid in harness.tree_pids(top)}


def status_line(pid: int, key: str, tid: int | None = None) -> str:
    """The value of ``key`` in /proc/PID/status (or /proc/PID/task/TID/status)."""
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    with open(path) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name == key:
                return value.strip()
    raise AssertionError(f"{path} has no {key} line")


def task_state(pid: int, tid: int) -> tuple[str, int, str]:
    """(state letter, TracerPid, SigBlk) of one task."""
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        stat = f.read()
    state = stat[stat.rindex(")") + 2]
    return state, int(status_line(pid, "TracerPid", tid)), status_line(pid, "SigBlk", tid)


def tree_states(tasks: dict[int, set[int]]) -> dict[int, tuple[str, int, str]]:
    """task_state of every task of ``tasks`` (process -> TIDs), keyed by TID."""
    return {tid: task_state(pid, tid) for pid, tids in tasks.items() for tid in tids}


def settled_states(
    tasks: dict[int, set[int]], before: dict[int, tuple[str, int, str]], timeout: float = 2.0
) -> dict[int, tuple[str, int, str]]:
    """tree_states(tasks), once every task is back in the state letter it had ``before``
    (a task just let go runs for a moment before it sleeps again), or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        now = tree_states(tasks)
        settled = all(now[t][0] == before[t][0] for t in now.keys() & before.keys())
        if settled or time.monotonic() > deadline:
            return now
        time.sleep(0.005)


def assert_tree_free(tasks: dict[int, set[int]]) -> None:
    """Every task of ``tasks`` exists, is traced by nobody and is not stopped."""
    for tid, (state, tracer, _) in tree_states(tasks).items():
        assert tracer == 0, f"task {tid} is still traced by {tracer}"
        assert state not in "tT", f"task {tid} is stopped (state {state})"


def dumped_tree(images: Path) -> dict[int, list[int]]:
    """What a dump recorded in pstree.img: every PID with its TIDs, main thread first."""
    return {e.pid: list(e.threads) for e in ImageDir(images).read("pstree.img")}


def wait_all_gone(pids, timeout: float = 10.0) -> None:
    """Wait until none of ``pids`` exists (the reaping of orphans by init takes a while)."""
    deadline = time.monotonic() + timeout
    for pid in sorted(pids):
        if not harness.wait_gone(pid, max(0.0, deadline - time.monotonic())):
            state = harness.proc_state(pid)
            raise AssertionError(f"pid {pid} of the dumped tree is still there: {state}")


def dump_tree_killed(w: harness.Workload, images: Path) -> dict[int, list[int]]:
    """Dump ``w`` (killing its tree), reap the original and wait until every PID and TID of
    the dumped tree is free; return the dumped tree (PID -> TIDs)."""
    torpor.dump(w.pid, str(images))
    status = w.reap_original()
    assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
    tree = dumped_tree(images)
    wait_all_gone({tid for tids in tree.values() for tid in tids})
    return tree


def assert_restored_as_child(w: harness.Workload, pid: int, images: Path) -> None:
    """torpor.restore(images) gives back ``pid`` as a child of this process; w follows it."""
    restored = torpor.restore(str(images))
    assert restored == pid, f"restored as pid {restored}, expected the original {pid}"
    w.adopt(restored)
    state = harness.proc_state(restored)
    assert state is not None, f"restored pid {restored} is gone right after restore:\n{w.log()}"
    assert state[1] == os.getpid(), f"restored pid {restored} has parent {state[1]}, not us"


def assert_quietly_ok(res: subprocess.CompletedProcess) -> None:
    """Exit status 0 and nothing on stderr."""
    assert_ok(res)
    assert res.stderr == "", f"{res.args} wrote to stderr:\n{res.stderr}"


def nspids(pid: int, tid: int | None = None) -> list[int]:
    """The NSpid values of a task, outermost namespace first."""
    return [int(x) for x in status_line(pid, "NSpid", tid).split()]


def processes_in(namespace: str) -> list[int]:
    """Every process whose PID namespace is ``namespace`` (an ns/pid link)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                found.append(int(entry))
    return found


# --- a task exits while the tree is being dumped ---------------------------------------------


EXITING = (
    harness.Spec("tree", "wide", args=("5",)),
    harness.Spec("tree", "mixed"),  # the leaf (the grandchild) has two extra threads
)


@pytest.mark.parametrize("spec", EXITING, ids=lambda s: s.id)
def test_task_exiting_mid_dump(spec, start_workload, tmp_path):
    """A leaf SIGKILLed while pages are written (the tree frozen) makes the dump fail with a
    TargetError naming it; the directory is emptied, every other task is let go in the
    state it was in, with its own blocked-signal mask, and the dead leaf is left to its
    parent, no longer traced."""
    w = start_workload(spec)
    w.wait_ready()
    tasks = tree_tasks(w.pid)
    expected = 5 if spec.mode == "wide" else 3
    assert len(tasks) == expected, f"tree {spec.mode} has processes {sorted(tasks)}"
    leaves = sorted(pid for pid in tasks if not harness.child_pids(pid))
    assert leaves and w.pid not in leaves, f"leaves {leaves} of {sorted(tasks)}"
    leaf = leaves[-1]
    others = {pid: tids for pid, tids in tasks.items() if pid != leaf}
    before = tree_states(others)
    assert all(tracer == 0 for _, tracer, _ in before.values()), before

    calls: list[tuple[int, int]] = []
    seen: dict = {}

    def progress(done: int, total: int) -> None:
        if not calls:
            seen["leaf tracer"] = harness.tracer_pid(leaf)
            seen["root tracer"] = harness.tracer_pid(w.pid)
            os.kill(leaf, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while (st := harness.proc_state(leaf)) is not None and st[0] not in "ZX":
                assert time.monotonic() < deadline, f"the killed leaf {leaf} is still {st}"
                time.sleep(0.001)
            seen["leaf after kill"] = st
        calls.append((done, total))

    images = new_dir(tmp_path / "images")
    with pytest.raises(TargetError) as exc:
        torpor.dump(w.pid, str(images), progress=progress)
    assert calls, "the progress callback was never called: the leaf was not killed mid-dump"
    assert seen["leaf tracer"] == os.getpid(), f"the leaf was not frozen at the first call: {seen}"
    assert seen["root tracer"] == os.getpid(), f"the root was not frozen at the first call: {seen}"
    message = str(exc.value)
    assert_one_line(message)
    assert names_number(message, leaf) and "exited" in message, (
        f"the message does not name the leaf {leaf} as exited: {message!r}"
    )
    assert listing(images) == [], "the failed dump left files behind"

    after = settled_states(others, before)
    assert sorted(after) == sorted(before), f"tasks changed: {sorted(before)} -> {sorted(after)}"
    for tid, (state, tracer, sigblk) in after.items():
        assert tracer == 0, f"task {tid} is still traced by {tracer}"
        assert state == before[tid][0], f"task {tid} was in state {before[tid][0]}, now {state}"
        assert sigblk == before[tid][2], f"task {tid}: SigBlk {before[tid][2]} -> {sigblk}"
    # The dead leaf is left to its parent as a plain zombie, no longer held by our trace.
    st = harness.proc_state(leaf)
    if st is not None:
        assert st[0] in "ZX", f"the killed leaf {leaf} is in state {st}"
        assert harness.tracer_pid(leaf) == 0, f"the dead leaf {leaf} is still traced by us"
    w.kill()
    assert w.proc.returncode is not None


# --- leave_running ---------------------------------------------------------------------------

LEAVE_RUNNING = (harness.Spec("tree", "family"), harness.Spec("threads"))


@pytest.mark.parametrize("spec", LEAVE_RUNNING, ids=lambda s: s.id)
def test_leave_running_tree(spec, start_workload, tmp_path):
    """A dump with leave_running frees every process and thread of the tree, which keeps the
    same PIDs and TIDs, all recorded in pstree.img, and passes afterwards."""
    w = start_workload(spec)
    w.wait_ready()
    before = tree_tasks(w.pid)
    assert_tree_free(before)
    images = new_dir(tmp_path / "images")
    torpor.dump(w.pid, str(images), leave_running=True)
    assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
    assert w.proc.poll() is None, f"the original died during the dump:\n{w.log()}"
    after = tree_tasks(w.pid)
    assert after == before, f"tasks before the dump {before}, after {after}"
    assert_tree_free(after)
    dumped = dumped_tree(images)
    assert {pid: set(tids) for pid, tids in dumped.items()} == before, (
        f"pstree.img holds {dumped}, the tree was {before}"
    )
    assert all(tids[0] == pid for pid, tids in dumped.items()), dumped
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- a tree that forks all the time ----------------------------------------------------------

STORM_ATTEMPTS = 5
STORM_REAL_ATTEMPTS = 10


def assert_storm_free(w: harness.Workload) -> None:
    """The storm's top process runs untraced, and no child of it is left traced."""
    assert w.proc.poll() is None, f"the storm died:\n{w.log()}"
    assert harness.tracer_pid(w.pid) == 0, "the storm's top process is still traced"
    state = harness.proc_state(w.pid)
    assert state is not None and state[0] not in "tT", f"the storm is stopped: {state}"
    for pid in harness.tree_pids(w.pid) - {w.pid}:
        with contextlib.suppress(OSError):  # children come and go
            tracer = harness.tracer_pid(pid)
            assert tracer == 0, f"child {pid} of the storm is left traced by {tracer}"


def test_forking_storm(start_workload, tmp_path):
    """Dumps of a process that forks and reaps children without pause: each leave_running
    attempt succeeds or fails with a one-line TargetError and lets everything go; then a real
    dump (children running and dead in it) restores and the storm goes on and passes."""
    w = start_workload(harness.Spec("storm"))
    w.wait_ready()
    pid = w.pid
    outcomes: list[str] = []
    for attempt in range(STORM_ATTEMPTS):
        images = new_dir(tmp_path / f"attempt-{attempt}")
        try:
            torpor.dump(pid, str(images), leave_running=True)
        except TargetError as e:
            assert_one_line(str(e))
            assert listing(images) == [], f"the failed dump left {listing(images)}"
            outcomes.append(f"TargetError: {e}")
        else:
            assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
            assert pid in dumped_tree(images)
            outcomes.append("ok")
        assert_storm_free(w)
        time.sleep(0.05)
    assert "ok" in outcomes, f"no leave_running dump of the storm succeeded: {outcomes}"

    for attempt in range(STORM_REAL_ATTEMPTS):
        images = new_dir(tmp_path / f"images-{attempt}")
        try:
            torpor.dump(pid, str(images))
            break
        except TargetError as e:
            assert_one_line(str(e))
            assert listing(images) == [], f"the failed dump left {listing(images)}"
            outcomes.append(f"TargetError: {e}")
            assert_storm_free(w)
    else:
        pytest.fail(f"no dump of the storm succeeded in {STORM_REAL_ATTEMPTS} tries: {outcomes}")
    status = w.reap_original()
    assert status < 0, f"the dumped storm exited by itself with {status}:\n{w.log()}"
    tree = dumped_tree(images)
    assert list(tree)[0] == pid and tree[pid] == [pid], tree
    wait_all_gone(tree)

    assert_restored_as_child(w, pid, images)
    time.sleep(0.2)  # let the restored storm fork and reap for a while
    assert harness.proc_state(pid) is not None, f"the restored storm died:\n{w.log()}"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- a refusal found in a child --------------------------------------------------------------


def test_socket_in_child_refused(start_workload, tmp_path):
    """A socket held by the child (not the top process), connected to a process outside the
    tree, is refused with an UnsupportedError naming the child and the socket; both
    processes run on as before and pass."""
    w = start_workload(harness.Spec("storm", "socket-child"))
    w.wait_ready()
    (child,) = harness.child_pids(w.pid)
    socks = sorted(
        int(fd)
        for fd in os.listdir(f"/proc/{child}/fd")
        if os.readlink(f"/proc/{child}/fd/{fd}").startswith("socket:")
    )
    assert len(socks) == 1, f"the child holds sockets {socks}"
    tasks = tree_tasks(w.pid)
    assert sorted(tasks) == sorted([w.pid, child]), tasks
    before = tree_states(tasks)
    images = new_dir(tmp_path / "images")
    with pytest.raises(UnsupportedError) as exc:
        torpor.dump(w.pid, str(images))
    message = str(exc.value)
    assert_one_line(message)
    assert names_number(message, child) and "socket" in message, message
    assert any(f"fd {fd} " in message for fd in socks), f"no socket fd {socks} in {message!r}"
    assert listing(images) == [], "the refused dump left files behind"
    assert tree_tasks(w.pid) == tasks
    assert settled_states(tasks, before) == before, "the refused dump changed the tree's tasks"
    assert_tree_free(tasks)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- damaged images of a tree ----------------------------------------------------------------


def test_damaged_tree_images(start_workload, tmp_path):
    """A tree image missing a thread's core or the middle process's mm, or with pstree.img
    truncated, is refused with an ImageError naming the file before any process is made;
    the images are only read. The pristine images then restore and pass."""
    w = start_workload(harness.Spec("tree", "mixed"))
    w.wait_ready()
    pid = w.pid
    pristine = new_dir(tmp_path / "images")
    tree = dump_tree_killed(w, pristine)
    assert len(tree) == 3 and all(len(tids) == 3 for tids in tree.values()), tree
    root, middle, _ = tree  # pstree.img lists parents first: P, its child, the grandchild
    assert root == pid, tree
    every_id = {tid for tids in tree.values() for tid in tids}
    original = snapshot(pristine)

    damages = {
        "core of a thread": (f"core-{tree[middle][1]}.img", "delete"),
        "mm of the middle process": (f"mm-{middle}.img", "delete"),
        "pstree": ("pstree.img", "truncate"),
    }
    for what, (name, how) in damages.items():
        images = tmp_path / f"damaged-{name}"
        shutil.copytree(pristine, images)
        target = images / name
        assert target.is_file(), f"{what}: the dump has no {name}: {listing(pristine)}"
        if how == "delete":
            target.unlink()
        else:
            data = target.read_bytes()
            target.write_bytes(data[: len(data) // 2])
        damaged = snapshot(images)
        kids = harness.child_pids(os.getpid())
        with pytest.raises(TorporError) as exc:
            torpor.restore(str(images))
        message = str(exc.value)
        assert isinstance(exc.value, ImageError), f"{what}: {type(exc.value).__name__}: {message}"
        assert_one_line(message)
        assert name in message, f"{what}: the message does not name {name}: {message!r}"
        left = sorted(i for i in every_id if harness.pid_alive(i))
        assert not left, f"{what}: the refused restore left tasks {left} of the tree"
        assert harness.child_pids(os.getpid()) == kids, f"{what}: the restore left a child"
        assert snapshot(images) == damaged, f"{what}: the restore attempt changed the images"
        unchanged = {n: data for n, data in original.items() if n != name}
        assert {n: d for n, d in damaged.items() if n != name} == unchanged, what

    assert snapshot(pristine) == original
    assert_restored_as_child(w, pid, pristine)
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- a tree in a new PID namespace -----------------------------------------------------------


def test_tree_in_new_pid_namespace(start_workload, tmp_path):
    """A tree whose PIDs are taken here (the original left running) is restored into a new
    PID namespace: inside it every process and thread has its dumped PID or TID, and the
    restored tree passes, as does the original afterwards."""
    w = start_workload(harness.Spec("tree", "mixed"))
    w.wait_ready()
    images = new_dir(tmp_path / "images")
    torpor.dump(w.pid, str(images), leave_running=True)
    tree = dumped_tree(images)
    assert len(tree) == 3 and list(tree)[0] == w.pid, tree
    restored = torpor.restore(str(images), pidns=True)
    namespace = None
    try:
        assert restored != w.pid, "restored with the PID the running original holds"
        state = harness.proc_state(restored)
        assert state is not None and state[1] == os.getpid(), f"restored root: {state}"
        ns = nspids(restored)
        assert len(ns) == 2 and ns == [restored, w.pid], f"NSpid of the restored root: {ns}"
        namespace = os.readlink(f"/proc/{restored}/ns/pid")
        assert namespace != os.readlink("/proc/self/ns/pid")

        procs = harness.tree_pids(restored)
        assert len(procs) == 3, f"the restored tree has processes {sorted(procs)}"
        inner = {}
        for p in procs:
            assert os.readlink(f"/proc/{p}/ns/pid") == namespace, f"process {p} elsewhere"
            inner[nspids(p)[-1]] = p
        assert sorted(inner) == sorted(tree), f"inner PIDs {sorted(inner)}, dumped {list(tree)}"
        for dumped_pid, tids in tree.items():
            outer = inner[dumped_pid]
            got = sorted(nspids(outer, tid)[-1] for tid in tids_of(outer))
            assert got == sorted(tids), f"process {dumped_pid}: inner TIDs {got}, dumped {tids}"

        restored_w = harness.Workload(
            spec=w.spec, flavour=w.flavour, proc=w.proc, log_path=w.log_path, cwd=w.cwd
        )
        restored_w.adopt(restored)
        restored_w.signal(signal.SIGUSR1)
        restored_w.verdict().assert_passed()
    finally:
        if harness.proc_state(restored) is not None:
            harness.kill_tree(restored)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(restored, 0)
    deadline = time.monotonic() + 5  # the namespace's init leaves once it is alone
    while namespace and processes_in(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not namespace or not processes_in(namespace), "the PID namespace outlived the tree"
    assert_tree_free(tree_tasks(w.pid))
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


# --- the command line ------------------------------------------------------------------------


def test_cli_tree(start_workload, tmp_path):
    """``torpor dump -t PID -D DIR`` on a tree and ``torpor restore -D DIR -d --pidfile F``:
    the whole tree comes back with its PIDs under the restored root, which (the command
    having exited) is reparented to this process, a child subreaper, and passes."""
    w = start_workload(harness.Spec("tree", "family"))
    w.wait_ready()
    pid = w.pid
    images = new_dir(tmp_path / "images")
    assert_quietly_ok(command.torpor("dump", "-t", str(pid), "-D", str(images)))
    assert (images / "inventory.img").exists(), "the dump wrote no inventory.img"
    status = w.reap_original()
    assert status < 0, f"the dumped original exited by itself with {status}:\n{w.log()}"
    tree = dumped_tree(images)
    assert len(tree) >= 10, f"the family tree has only {sorted(tree)}"
    wait_all_gone({tid for tids in tree.values() for tid in tids})

    pidfile = tmp_path / "restored.pid"
    with child_subreaper():
        res = command.torpor("restore", "-D", str(images), "-d", "--pidfile", str(pidfile))
        assert_quietly_ok(res)
        assert pidfile.read_text() == f"{pid}\n"
        state = harness.proc_state(pid)
        assert state is not None, f"the restored pid {pid} is gone after restore -d:\n{w.log()}"
        assert state[1] == os.getpid(), f"the restored root has parent {state[1]}, not us"
        w.adopt(pid)
        restored = tree_tasks(pid)
        assert {p: set(tids) for p, tids in tree.items()} == restored, (
            f"dumped {tree}, restored {restored}"
        )
        assert_tree_free(restored)
        w.signal(signal.SIGUSR1)
        w.verdict().assert_passed()
    assert harness.wait_gone(pid, 5)

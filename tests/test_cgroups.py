"""Cgroups: a restored process is back in the cgroup v2 it was dumped in, with that cgroup's
limits, whether the cgroup still exists (membership only) or the restore must create it
again; one that cannot be created refuses the restore in one line, leaving nothing behind.

Every cgroup here is made below the test's own cgroup v2 (the "0::" line of
/proc/self/cgroup, under the cgroup2 mount found in /proc/self/mountinfo) and removed by a
finalizer. The limits are used, not just read: the workload makes child cgroups until
cgroup.max.descendants refuses, and where this host lets the test delegate the pids
controller (its own cgroup enables it for its children, or it is the root), forks until
pids.max refuses.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import command
import harness
import imagecraft
import pytest

import torpor
from torpor.images import ImageDir

DESCENDANTS = 2  # child cgroups the workload's cgroup lets it make
PIDS_MAX = 4  # the workload and 3 children


def _cgroup2_mount() -> Path:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    raise AssertionError("cgroup v2 is not mounted on this host")


def _own_cgroup() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    raise AssertionError("/proc/self/cgroup has no cgroup v2 line")


def _cgroup_of(pid: int, tid: int | None = None) -> str:
    path = f"/proc/{pid}/task/{tid}/cgroup" if tid else f"/proc/{pid}/cgroup"
    with open(path) as f:
        return next(line[3:].rstrip("\n") for line in f if line.startswith("0::"))


def _write(directory: Path, name: str, value: str) -> None:
    fd = os.open(directory / name, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


class Cgroups:
    """Cgroups this test makes under its own, all removed (deepest first) at the end."""

    def __init__(self):
        self.mount = _cgroup2_mount()
        self.own = _own_cgroup()
        self.base = self.mount / self.own.lstrip("/")
        assert os.access(self.base, os.W_OK), f"the test may not create cgroups in {self.base}"
        self.top = self.base / f"torpor-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.top.mkdir()
        self.enabled_at_base = False
        self.pids = self._delegate_pids()

    def _delegate_pids(self) -> bool:
        """Whether the top cgroup's children get the pids controller: the test's cgroup must
        enable it for its children already, or be the root (which may, and gets it back
        as it was)."""
        available = (self.base / "cgroup.controllers").read_text().split()
        if "pids" not in available:
            return False
        if "pids" not in (self.base / "cgroup.subtree_control").read_text().split():
            if self.own != "/":
                return False
            _write(self.base, "cgroup.subtree_control", "+pids")
            self.enabled_at_base = True
        _write(self.top, "cgroup.subtree_control", "+pids")
        return True

    def path(self, directory: Path) -> str:
        """The cgroup path of a directory, as /proc/PID/cgroup shows it."""
        return "/" + str(directory.relative_to(self.mount))

    def make(self, name: str, *, descendants: int = DESCENDANTS) -> Path:
        directory = self.top / name
        directory.mkdir(parents=True)
        _write(directory, "cgroup.max.descendants", str(descendants))
        if self.pids:
            _write(directory, "pids.max", str(PIDS_MAX))
        return directory

    @contextlib.contextmanager
    def inside(self, directory: Path):
        """Within the block, this process (and so what it starts) is in `directory`."""
        _write(directory, "cgroup.procs", str(os.getpid()))
        try:
            yield
        finally:
            _write(self.base, "cgroup.procs", str(os.getpid()))

    def remove(self) -> None:
        """Every process still in them killed (a test that failed half-way), then every
        cgroup removed, deepest first."""
        _write(self.top, "cgroup.kill", "1")
        deadline = time.monotonic() + 10
        while "populated 1" in (self.top / "cgroup.events").read_text():
            assert time.monotonic() < deadline, f"processes left in {self.top}"
            time.sleep(0.01)
        for root, _dirs, _files in sorted(os.walk(self.top), key=lambda w: -len(w[0])):
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(root)
        if self.enabled_at_base:
            _write(self.base, "cgroup.subtree_control", "-pids")


@pytest.fixture
def cgroups():
    made = Cgroups()
    try:
        yield made
    finally:
        made.remove()


def _start(start_workload, cgroups, directory: Path) -> harness.Workload:
    forks = str(PIDS_MAX - 1) if cgroups.pids else "-1"
    spec = harness.Spec("cgroups", args=(str(cgroups.mount), str(DESCENDANTS), forks))
    with cgroups.inside(directory):
        w = start_workload(spec)
    w.wait_ready()
    assert _cgroup_of(w.pid) == cgroups.path(directory)
    return w


def _restore_and_use(w: harness.Workload, images: Path, cgroups, directory: Path) -> None:
    """Restore, check the membership, and let the workload use its limits."""
    pid = torpor.restore(str(images))
    w.adopt(pid)
    assert _cgroup_of(pid) == cgroups.path(directory)
    w.signal(signal.SIGUSR1)
    verdict = w.verdict()
    verdict.assert_passed()
    assert f"cgroup {cgroups.path(directory)}" in verdict.lines
    assert f"descendants {DESCENDANTS} (Resource temporarily unavailable)" in verdict.lines
    if cgroups.pids:
        assert f"forks {PIDS_MAX - 1} (Resource temporarily unavailable)" in verdict.lines


def test_missing_cgroup_is_created_with_its_limits(start_workload, cgroups, tmp_path, caplog):
    """The dumped cgroup is removed before the restore: the restore creates it again (and
    says so at -v) with its limits, the process is back in it, and the limits hold."""
    work = cgroups.make("work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    saved = ImageDir(images).read_one("cgroup.img")
    assert any(m.path == cgroups.path(work) for s in saved.sets for m in s.ctls)
    shown = command.torpor("show", "-D", str(images))
    command.assert_ok(shown)
    assert f"  cgroups {cgroups.path(work)}" in shown.stdout, shown.stdout
    work.rmdir()
    findings = {f.topic: f for f in torpor.check(str(images))}
    assert findings["cgroups"].level == "ok"
    assert f"creates {cgroups.path(work)} (" in findings["cgroups"].message
    assert not work.exists(), "torpor check created the cgroup"
    caplog.set_level(logging.INFO, logger="torpor")
    _restore_and_use(w, images, cgroups, work)
    assert f"cgroup {cgroups.path(work)} created" in caplog.text
    assert (work / "cgroup.max.descendants").read_text().strip() == str(DESCENDANTS)
    if cgroups.pids:
        assert (work / "pids.max").read_text().strip() == str(PIDS_MAX)


def test_existing_cgroup_is_joined(start_workload, cgroups, tmp_path, caplog):
    """The cgroup still exists: the restored process joins it and its limits are left as
    they are; one changed since the dump is named in a warning."""
    work = cgroups.make("work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    _write(work, "cgroup.max.depth", "5")
    findings = {f.topic: f for f in torpor.check(str(images))}
    assert findings["cgroups"].level == "warn"
    assert "cgroup.max.depth 5, saved max" in findings["cgroups"].message
    assert f"joins existing {cgroups.path(work)}" in findings["cgroups"].message
    res = command.torpor("check", "-D", str(images), "--manage-cgroups", "strict")
    assert res.returncode == 1, res.stdout + res.stderr
    line = next(line for line in res.stdout.splitlines() if line.startswith("cgroups"))
    assert line.split()[1] == "no" and "cgroup.max.depth 5, saved max" in line, line
    assert "--manage-cgroups=strict refuses" in line, line
    caplog.set_level(logging.INFO, logger="torpor")
    _restore_and_use(w, images, cgroups, work)
    assert "created" not in caplog.text
    assert (work / "cgroup.max.depth").read_text().strip() == "5"


def test_ignored_cgroups(start_workload, cgroups, tmp_path):
    """With manage_cgroups="ignore" (--manage-cgroups=ignore) the restored process stays in
    the restorer's cgroup and the saved one is not made again."""
    work = cgroups.make("work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    work.rmdir()
    findings = {f.topic: f for f in torpor.check(str(images), manage_cgroups="ignore")}
    assert findings["cgroups"].level == "ok" and "ignore" in findings["cgroups"].message
    pid = torpor.restore(str(images), manage_cgroups="ignore")
    w.adopt(pid)
    assert _cgroup_of(pid) == cgroups.own
    assert not work.exists()
    w.signal(signal.SIGUSR1)
    verdict = w.verdict()
    assert f"FAIL cgroups: in cgroup {cgroups.own}, started in {cgroups.path(work)}" in (
        verdict.lines
    )


def test_cgroup_that_cannot_be_created_refuses(start_workload, cgroups, tmp_path):
    """The dumped cgroup is gone and its parent now allows no new child (cgroup.max.depth
    0): the restore refuses in one line naming the cgroup and the cause, and leaves no
    process and no cgroup behind."""
    parent = cgroups.top / "parent"
    parent.mkdir()
    work = cgroups.make("parent/work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    work.rmdir()
    _write(parent, "cgroup.max.depth", "0")
    kids = harness.child_pids(os.getpid())
    with pytest.raises(torpor.RestoreError) as refused:
        torpor.restore(str(images))
    message = str(refused.value)
    assert "\n" not in message
    assert f"cannot create cgroup {cgroups.path(work)}" in message, message
    assert "Resource temporarily unavailable" in message, message
    assert not harness.pid_alive(w.pid)
    assert harness.child_pids(os.getpid()) == kids
    assert sorted(p.name for p in parent.iterdir() if p.is_dir()) == []


def test_cgroup_that_cannot_be_joined_refuses(start_workload, cgroups, tmp_path):
    """The dumped cgroup exists but takes no process any more (a sibling made threaded
    since turned it "domain invalid"): the restore refuses in one line naming the cgroup
    and the cause, and leaves no process behind."""
    work = cgroups.make("parent/work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    sibling = work.parent / "threaded"
    sibling.mkdir()
    _write(sibling, "cgroup.type", "threaded")
    assert (work / "cgroup.type").read_text().strip() == "domain invalid"
    kids = harness.child_pids(os.getpid())
    with pytest.raises(torpor.RestoreError) as refused:
        torpor.restore(str(images))
    message = str(refused.value)
    assert "\n" not in message
    assert f"process {w.pid}: cannot join cgroup {cgroups.path(work)}" in message, message
    assert "Operation not supported" in message, message
    assert not harness.pid_alive(w.pid)
    assert harness.child_pids(os.getpid()) == kids
    assert work.exists(), "the restore removed a cgroup it did not make"


def test_cgroup_with_a_controller_the_host_lacks_refuses(start_workload, cgroups, tmp_path):
    """Images whose cgroup holds a limit of a controller this host does not have: torpor
    check and the restore both refuse, naming the cgroup and the controller, and the
    restore creates nothing (neither the cgroup nor its parent)."""
    work = cgroups.make("outer/work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    for directory in (work, work.parent):
        directory.rmdir()

    have = (cgroups.base / "cgroup.controllers").read_text().split()
    lacking = next(c for c in ("misc", "rdma", "hugetlb", "pids", "io") if c not in have)
    limit = {"misc": "res 1", "rdma": "mlx4_0 hca_handle=2", "hugetlb": "max"}.get(lacking, "1")
    name = f"{lacking}.max" if lacking != "hugetlb" else "hugetlb.2MB.max"

    def add_limit(decoded):
        # as a host with that controller saves it: the parent enables it, the child is limited
        entry = decoded["cgroup.img"][0][0]
        _find(entry.controllers[0].dirs, cgroups.path(work.parent)).properties.add(
            name="cgroup.subtree_control", value=lacking
        )
        _find(entry.controllers[0].dirs, cgroups.path(work)).properties.add(name=name, value=limit)

    imagecraft.rewrite(images, add_limit)
    findings = {f.topic: f for f in torpor.check(str(images))}
    assert findings["cgroups"].level == "refuse"
    assert f"cannot create cgroup {cgroups.path(work.parent)}" in findings["cgroups"].message
    assert f"this host has no {lacking} controller" in findings["cgroups"].message
    with pytest.raises(torpor.RestoreError) as refused:
        torpor.restore(str(images))
    message = str(refused.value)
    assert "\n" not in message and cgroups.path(work.parent) in message and lacking in message
    assert not harness.pid_alive(w.pid)
    assert not work.parent.exists()


def test_tree_in_several_cgroups(start_workload, cgroups, tmp_path):
    """A tree whose processes are in different cgroups comes back that way."""
    first, second = cgroups.make("first"), cgroups.make("second")
    with cgroups.inside(first):
        w = start_workload(harness.Spec("tree", "family"))
    w.wait_ready()
    kids = sorted(harness.tree_pids(w.pid) - {w.pid})
    assert kids, "the tree workload has no children"
    for kid in kids[::2]:
        _write(second, "cgroup.procs", str(kid))
    placed = {pid: _cgroup_of(pid) for pid in [w.pid, *kids]}
    assert set(placed.values()) == {cgroups.path(first), cgroups.path(second)}
    images = harness.dump_killed(w, tmp_path)
    second.rmdir()
    pid = torpor.restore(str(images))
    w.adopt(pid)
    assert {p: _cgroup_of(p) for p in placed} == placed
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


def _find(dirs, path: str):
    """The CgroupDirEntry of `path` among `dirs` and their children."""
    for d in dirs:
        if d.dir_name == path:
            return d
        found = _find(d.children, path)
        if found:
            return found
    raise AssertionError(f"cgroup.img does not describe {path}")


def test_threads_in_a_threaded_subtree(start_workload, cgroups, tmp_path):
    """A process whose threads are spread over the cgroups of a threaded subtree: the
    threaded cgroups are created again (as threaded) and each thread is back in its own."""
    domain = cgroups.top / "domain"
    domain.mkdir()
    cgroups_of_threads = []
    for name in ("a", "b"):
        (domain / name).mkdir()
        _write(domain / name, "cgroup.type", "threaded")
        cgroups_of_threads.append(domain / name)
    a, b = cgroups_of_threads
    with cgroups.inside(a):
        w = start_workload(harness.Spec("threads"))
    w.wait_ready()
    tids = sorted(int(t) for t in os.listdir(f"/proc/{w.pid}/task"))
    assert len(tids) > 2, "the threads workload has no extra threads"
    moved = tids[1::2]
    for tid in moved:
        _write(b, "cgroup.threads", str(tid))
    placed = {tid: _cgroup_of(w.pid, tid) for tid in tids}
    assert placed[w.pid] == cgroups.path(a) and placed[moved[0]] == cgroups.path(b)
    images = harness.dump_killed(w, tmp_path)
    a.rmdir()
    b.rmdir()
    pid = torpor.restore(str(images))
    w.adopt(pid)
    assert {tid: _cgroup_of(pid, tid) for tid in tids} == placed
    for directory in (a, b):
        assert (directory / "cgroup.type").read_text().strip() == "threaded"
    w.signal(signal.SIGUSR1)
    w.verdict().assert_passed()


class NamedHierarchy:
    """The cgroup v1 hierarchy "name=torpor-test", with no controller, mounted in tmp_path;
    its cgroups, their processes and the mount go at the end. The kernel keeps a v1
    hierarchy as long as any process is in it, and every process is (in its root): so the
    name is fixed, and a second mount finds the same hierarchy again instead of adding one."""

    def __init__(self, tmp_path: Path):
        self.name = "name=torpor-test"
        self.point = tmp_path / "v1"
        self.point.mkdir()
        subprocess.run(
            ["mount", "-t", "cgroup", "-o", f"none,{self.name}", "cgroup", str(self.point)],
            check=True,
        )

    def member(self, pid: int) -> str:
        with open(f"/proc/{pid}/cgroup") as f:
            line = next(line for line in f if line.split(":")[1] == self.name)
        return line.rstrip("\n").split(":", 2)[2]

    @contextlib.contextmanager
    def inside(self, directory: Path):
        _write(directory, "cgroup.procs", str(os.getpid()))
        try:
            yield
        finally:
            _write(self.point, "cgroup.procs", str(os.getpid()))

    def remove(self) -> None:
        for root, _dirs, _files in sorted(os.walk(self.point), key=lambda w: -len(w[0])):
            if Path(root) == self.point:
                continue
            for pid in (Path(root) / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 10
            while (Path(root) / "cgroup.procs").read_text().strip():
                assert time.monotonic() < deadline, f"processes left in {root}"
                time.sleep(0.01)
            os.rmdir(root)
        subprocess.run(["umount", str(self.point)], check=True)


@pytest.fixture
def named_hierarchy(tmp_path):
    made = NamedHierarchy(tmp_path)
    try:
        yield made
    finally:
        made.remove()


def test_cgroup_v1_membership(start_workload, named_hierarchy, tmp_path):
    """A process in a cgroup of a cgroup v1 hierarchy (a named one, with no controller):
    restored into it while it exists; once it is gone the restore refuses, naming it (torpor
    creates only cgroup v2 cgroups), and leaves nothing behind."""
    work = named_hierarchy.point / "work"
    work.mkdir()
    with named_hierarchy.inside(work):
        w = start_workload(harness.Spec("counter"))
    w.wait_ready()
    assert named_hierarchy.member(w.pid) == "/work"
    images = harness.dump_killed(w, tmp_path)
    findings = {f.topic: f for f in torpor.check(str(images))}
    assert "joins existing " in findings["cgroups"].message
    assert f"{named_hierarchy.name}:/work" in findings["cgroups"].message
    pid = torpor.restore(str(images))
    w.adopt(pid)
    assert named_hierarchy.member(pid) == "/work"
    again = tmp_path / "again"
    again.mkdir()
    torpor.dump(pid, str(again))
    os.waitpid(pid, 0)
    assert harness.wait_gone(pid, 5)
    work.rmdir()
    kids = harness.child_pids(os.getpid())
    with pytest.raises(torpor.RestoreError) as refused:
        torpor.restore(str(again))
    message = str(refused.value)
    assert f"cgroup {named_hierarchy.name}:/work does not exist here" in message, message
    assert "\n" not in message
    assert harness.child_pids(os.getpid()) == kids
    assert not harness.pid_alive(pid)


def test_failed_restore_removes_the_cgroups_it_made(start_workload, cgroups, tmp_path, caplog):
    """A restore that fails after its processes joined the cgroups it created (the
    workload's working directory is gone) kills them and removes those cgroups."""
    work = cgroups.make("made/work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)
    work.rmdir()
    work.parent.rmdir()
    shutil.rmtree(w.cwd)
    kids = harness.child_pids(os.getpid())
    caplog.set_level(logging.INFO, logger="torpor")
    with pytest.raises(torpor.TorporError) as refused:
        torpor.restore(str(images))
    assert str(w.cwd) in str(refused.value)
    assert f"process {w.pid} joined cgroup {cgroups.path(work)}" in caplog.text
    assert harness.child_pids(os.getpid()) == kids
    assert not work.parent.exists(), "the failed restore left the cgroups it made"


def _v1_mount(controller: str) -> Path | None:
    """Where the cgroup v1 hierarchy of `controller` is mounted, if it is (a hybrid host)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and controller in fields[sep + 3].split(","):
                return Path(fields[4])
    return None


@contextlib.contextmanager
def _v1_cgroup(mount: Path):
    """A cgroup of this test's own in a cgroup v1 hierarchy; its processes killed and the
    cgroup removed at the end."""
    directory = mount / f"torpor-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    try:
        yield directory
    finally:
        for pid in (directory / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (directory / "cgroup.procs").read_text().strip():
            assert time.monotonic() < deadline, f"processes left in {directory}"
            time.sleep(0.01)
        directory.rmdir()


def test_pids_limit_holds_after_restore(start_workload, cgroups, tmp_path):
    """pids.max holds after the restore: the workload forks until the kernel says EAGAIN.
    Where the test may delegate the pids controller in cgroup v2, in a v2 cgroup the restore
    makes again; where that controller is in a cgroup v1 hierarchy (a hybrid host), in a v1
    cgroup the restore joins."""
    if cgroups.pids:
        work = cgroups.make("work")
        w = _start(start_workload, cgroups, work)
        images = harness.dump_killed(w, tmp_path)
        work.rmdir()
        _restore_and_use(w, images, cgroups, work)
        return
    mount = _v1_mount("pids")
    assert mount, "neither cgroup v2 nor a cgroup v1 hierarchy lets this test use pids"
    with _v1_cgroup(mount) as work:
        _write(work, "pids.max", str(PIDS_MAX))
        spec = harness.Spec("cgroups", args=(str(cgroups.mount), "-1", str(PIDS_MAX - 1)))
        _write(work, "cgroup.procs", str(os.getpid()))
        try:
            w = start_workload(spec)
        finally:
            _write(mount, "cgroup.procs", str(os.getpid()))
        w.wait_ready()
        images = harness.dump_killed(w, tmp_path)
        pid = torpor.restore(str(images))
        w.adopt(pid)
        with open(f"/proc/{pid}/cgroup") as f:
            assert f":pids:/{work.name}\n" in f.read()
        w.signal(signal.SIGUSR1)
        verdict = w.verdict()
        verdict.assert_passed()
        assert f"forks {PIDS_MAX - 1} (Resource temporarily unavailable)" in verdict.lines


def test_cgroup_v1_hierarchy_this_host_lacks(start_workload, cgroups, tmp_path, caplog):
    """Images from a host with a cgroup v1 hierarchy this one has not (a named one here):
    a task saved in one of its cgroups is restored with a warning naming it; one saved at
    its top needs nothing."""
    work = cgroups.make("work")
    w = _start(start_workload, cgroups, work)
    images = harness.dump_killed(w, tmp_path)

    def add_members(decoded):
        for entry in decoded["cgroup.img"][0][0].sets:
            entry.ctls.add(name="name=torpor-elsewhere", path="/svc")
            entry.ctls.add(name="name=torpor-elsewhere-top", path="/")

    imagecraft.rewrite(images, add_members)
    findings = {f.topic: f for f in torpor.check(str(images))}
    assert findings["cgroups"].level == "warn"
    assert "name=torpor-elsewhere:/svc: this host has no cgroup v1" in findings["cgroups"].message
    assert "torpor-elsewhere-top" not in findings["cgroups"].message
    caplog.set_level(logging.WARNING, logger="torpor")
    _restore_and_use(w, images, cgroups, work)
    assert "name=torpor-elsewhere:/svc: this host has no cgroup v1" in caplog.text

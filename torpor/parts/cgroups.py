"""Cgroup membership, in CRIU's cgroup.img (one CgroupEntry) and core.tc.cg_set /
core.thread_core.cg_set: a restored task goes back into the cgroups it was dumped in, with
their limits, never silently into the restorer's.

Dump: every thread's memberships (/proc/PID/task/TID/cgroup) make a set, saved once and
named by its id in the task's core. For cgroup v2, every cgroup of a set and each of its
ancestors below the dumper's cgroup namespace root is saved as a CgroupDirEntry with the
controllers it enables for its children (cgroup.subtree_control), its type where it is
threaded, its owner and mode, and the limits a user sets (pids.max, memory.max, cpu.max,
...; torpor.kernel.cgroups.V2_PROPERTIES). cgroup v1 hierarchies (a hybrid host) are saved
as memberships only.

Restore, before the tree is made: every saved v2 cgroup that exists is checked, not
changed (a limit that differs is a warning naming it); one that does not is created (CRIU's
"soft" mode) with its saved controllers and limits. A v1 cgroup must exist. Then, before any
thread is started and before any memory is restored (so that pages are charged to the right
cgroup), each process is moved into its cgroups (cgroup.procs); a thread whose set differs
from its process's, later, through cgroup.threads (v1: tasks). Whatever cannot be created
or joined refuses the restore in one line naming the cgroup and the cause, and the cgroups
this restore created are removed again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from dataclasses import dataclass, field

from torpor.context import log
from torpor.errors import ImageError, RestoreError, TargetError, UnsupportedError
from torpor.images import pb
from torpor.kernel import cgroups as kcg

IMAGE = "cgroup.img"
# What a restore does with the saved cgroups (CRIU's --manage-cgroups modes, those torpor
# has): "soft" joins those that exist (a limit that differs is a warning) and creates the
# others; "strict" refuses where a limit differs; "ignore" leaves every task in the
# restorer's cgroups, as restores did before cgroups were saved.
MODES = ("soft", "strict", "ignore")
RMDIR_WAIT_SECONDS = 2.0

# --- dump ------------------------------------------------------------------------------------


def _ancestors(path: str) -> list[str]:
    """The cgroups from the top down to `path` ("/a/b": "/a", "/a/b"); none for "/"."""
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _perms(path: str):
    st = os.stat(path)
    return pb.CgroupPerms(mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid)


class TreeCgroups:
    """The cgroup sets of a tree being dumped, and what cgroup.img says of their cgroups."""

    def __init__(self):
        self.sets: dict[tuple[kcg.Member, ...], int] = {}
        self.mounts = kcg.mounts()

    def _set_of(self, members: list[kcg.Member]) -> int:
        key = tuple(sorted(members, key=lambda m: m.controllers))
        return self.sets.setdefault(key, len(self.sets) + 1)

    def dump_thread(self, ctx, pid: int) -> None:
        """Thread ctx.pid of process `pid`: its set into its core (and into the task core
        too for the main thread)."""
        try:
            members = kcg.membership(pid, ctx.pid)
        except ValueError as e:
            raise TargetError(f"thread {ctx.pid} of process {pid}: {e}") from None
        for m in members:
            if m.path.startswith("/.."):
                raise UnsupportedError(
                    f"process {pid} is in cgroup {m.describe()}, outside torpor's cgroup "
                    "namespace: dump from a cgroup namespace that holds it"
                )
            if m.unified and m.path != "/" and kcg.mount_for(kcg.UNIFIED, self.mounts) is None:
                raise UnsupportedError(
                    f"process {pid} is in cgroup {m.path}, and cgroup v2 is not mounted here"
                )
        set_id = self._set_of(members)
        ctx.core.thread_core.cg_set = set_id
        if ctx.pid == pid:
            ctx.core.tc.cg_set = set_id

    def dump_zombie(self, core, pid: int):
        """A zombie's core with its set: it is made again, and dies again, in its cgroups."""
        with contextlib.suppress(OSError):  # reaped meanwhile: the dump notices
            core.tc.cg_set = self._set_of(kcg.membership(pid))
        return core

    def entry(self):
        """The CgroupEntry of every set seen, with the v2 cgroups' directories."""
        entry = pb.CgroupEntry()
        paths: set[str] = set()
        for members, set_id in self.sets.items():
            entry.sets.append(
                pb.CgSetEntry(
                    id=set_id,
                    ctls=[pb.CgMemberEntry(name=m.controllers, path=m.path) for m in members],
                )
            )
            for m in members:
                if m.unified:
                    paths.update(_ancestors(m.path))
        if paths:
            mount = kcg.mount_for(kcg.UNIFIED, self.mounts)
            unified = entry.controllers.add(cnames=[kcg.UNIFIED])
            nodes: dict[str, object] = {}
            for path in sorted(paths, key=lambda p: (p.count("/"), p)):
                directory = mount.directory(path)
                if directory is None:
                    continue  # above the mount's top: seen, not saved
                parent = nodes.get(path.rsplit("/", 1)[0])
                node = (parent.children if parent else unified.dirs).add()
                _describe_dir(node, path, directory)
                nodes[path] = node
        return entry

    def write(self, images) -> None:
        if self.sets:
            images.write(IMAGE, [self.entry()])


def _describe_dir(node, path: str, directory: str) -> None:
    node.dir_name = path
    node.dir_perms.CopyFrom(_perms(directory))
    props = []
    kind = kcg.read_value(directory, kcg.TYPE_FILE)
    if kind == kcg.THREADED:
        props.append((kcg.TYPE_FILE, kind))
    subtree = kcg.read_value(directory, kcg.SUBTREE_CONTROL)
    if subtree:
        props.append((kcg.SUBTREE_CONTROL, subtree))
    for name in kcg.property_names(directory):
        value = kcg.read_value(directory, name)
        if value:
            props.append((name, value))
    for name, value in props:
        node.properties.add(name=name, value=value)


# --- reading the images ----------------------------------------------------------------------


@dataclass
class SavedDir:
    path: str
    properties: list[tuple[str, str]]
    perms: object = None  # CgroupPerms or None

    def value(self, name: str) -> str | None:
        return next((v for n, v in self.properties if n == name), None)


@dataclass
class Saved:
    """cgroup.img, read and checked."""

    sets: dict[int, list[kcg.Member]] = field(default_factory=dict)
    dirs: dict[str, SavedDir] = field(default_factory=dict)  # v2 path -> its directory


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path.startswith("/") or any(p in (".", "..") for p in parts) or "\0" in path:
        raise ImageError(f"{IMAGE}: not a cgroup path: {path!r}")
    return path


def load(images) -> Saved | None:
    """The saved cgroups; None for images without cgroup.img (restored as before: into the
    restorer's cgroups)."""
    if not images.has(IMAGE):
        return None
    entries = images.read(IMAGE)
    if len(entries) != 1:
        raise ImageError(f"{IMAGE}: {len(entries)} entries, expected one")
    saved = Saved()
    for s in entries[0].sets:
        if s.id in saved.sets:
            raise ImageError(f"{IMAGE}: set {s.id} appears twice")
        members = [kcg.Member(m.name, _check_path(m.path)) for m in s.ctls]
        if len({m.controllers for m in members}) != len(members):
            raise ImageError(f"{IMAGE}: set {s.id} names a hierarchy twice")
        saved.sets[s.id] = members
    for controller in entries[0].controllers:
        if list(controller.cnames) != [kcg.UNIFIED]:
            continue  # cgroup v1 directories: torpor neither writes nor creates them

        def walk(dirs):
            for d in dirs:
                path = _check_path(d.dir_name)
                names = [p.name for p in d.properties]
                bad = [n for n in names if "/" in n or not n.startswith(_PROPERTY_PREFIXES)]
                if bad:
                    raise ImageError(f"{IMAGE}: cgroup {path}: not a property: {bad[0]!r}")
                saved.dirs[path] = SavedDir(
                    path,
                    [(p.name, p.value) for p in d.properties],
                    d.dir_perms if d.HasField("dir_perms") else None,
                )
                walk(d.children)

        walk(controller.dirs)
    return saved


_PROPERTY_PREFIXES = tuple(
    {kcg.controller_of(n) + "." for n in kcg.V2_PROPERTIES} | {kcg.HUGETLB_PREFIX}
)


def describe(saved: Saved | None, core) -> str | None:
    """A task's cgroups in a line (its v2 cgroup, then its v1 ones not at their top), for
    torpor show; None if the images save none for it."""
    members = set_of(core, saved, "core image") if saved else None
    if members is None:
        return None
    shown = [m.describe() for m in members if m.unified or m.path != "/"]
    return ", ".join(shown) or "/"


def set_of(core, saved: Saved, what: str) -> list[kcg.Member] | None:
    """The members of the set a core names (thread_core.cg_set, else tc.cg_set)."""
    if core.HasField("thread_core") and core.thread_core.HasField("cg_set"):
        set_id = core.thread_core.cg_set
    elif core.HasField("tc") and core.tc.HasField("cg_set"):
        set_id = core.tc.cg_set
    else:
        return None
    if set_id not in saved.sets:
        raise ImageError(f"{what}: cgroup set {set_id} is not in {IMAGE}")
    return saved.sets[set_id]


# --- the plan: what a restore does with them ---------------------------------------------------


@dataclass
class Plan:
    """What restoring the saved cgroups means here, found without changing anything."""

    saved: Saved
    ignored: bool = False
    problems: list[str] = field(default_factory=list)  # each refuses the restore
    warnings: list[str] = field(default_factory=list)
    create: list[str] = field(default_factory=list)  # v2 paths to make, parents first
    join: list[str] = field(default_factory=list)  # what exists and is joined
    directories: dict[str, str] = field(default_factory=dict)  # "ctl:path" -> its directory
    tasks: dict[int, list[kcg.Member]] = field(default_factory=dict)  # saved tid -> members
    leader_of: dict[int, int] = field(default_factory=dict)  # saved tid -> its process

    def describe(self) -> str:
        if self.ignored:
            return "ignored (--manage-cgroups=ignore): every task stays in the restorer's cgroups"
        parts = []
        if self.create:
            parts.append("creates " + ", ".join(self._with_limits(p) for p in self.create))
        if self.join:
            parts.append("joins existing " + ", ".join(self.join))
        return "; ".join(parts) or "every task stays in the restorer's cgroups, as saved"

    def _with_limits(self, path: str) -> str:
        props = [f"{n}={v}" for n, v in self.saved.dirs[path].properties]
        return f"{path} ({', '.join(props)})" if props else path


def _key(m: kcg.Member) -> str:
    return f"{m.controllers}:{m.path}"


def plan(images, procs, mode: str = "soft") -> Plan | None:
    """The plan for restoring `procs` (restorer.ProcessImage) here in `mode` (MODES); None
    without cgroup.img."""
    if mode not in MODES:
        raise RestoreError(f"unknown cgroup mode {mode!r} ({', '.join(MODES)})")
    saved = load(images)
    if saved is None:
        return None
    result = Plan(saved, ignored=mode == "ignore")
    if result.ignored:
        return result
    own = kcg.own_membership()
    found = kcg.mounts()
    needed: dict[str, kcg.Member] = {}
    for proc in procs:
        for tid, core in [(proc.pid, proc.core), *proc.thread_cores.items()]:
            members = set_of(core, saved, f"core-{tid}.img")
            if members is None:
                continue
            result.tasks[tid] = members
            result.leader_of[tid] = proc.pid
            for m in members:
                needed.setdefault(_key(m), m)
    for key, m in sorted(needed.items(), key=lambda kv: (kv[1].controllers, kv[1].path)):
        if m.path.startswith("/.."):
            result.problems.append(f"cgroup {m.describe()}: outside torpor's cgroup namespace")
            continue
        if not m.unified and own.get(m.controllers) == m.path:
            continue  # where the restorer is: the tasks are born there
        if not m.unified and m.controllers not in own:
            if m.path != "/":  # the top of a hierarchy this host has not: nothing to be in
                result.warnings.append(
                    f"cgroup {m.describe()}: this host has no cgroup v1 {m.controllers} "
                    "hierarchy; its tasks are restored without it"
                )
            continue
        mount = kcg.mount_for(m.controllers, found)
        hierarchy = "cgroup v2" if m.unified else f"the cgroup v1 {m.controllers} hierarchy"
        if mount is None:
            if m.unified and m.path == "/" and own.get(kcg.UNIFIED, "/") == "/":
                continue  # the top, where the restorer is too (or v2 is not in use here)
            result.problems.append(f"cgroup {m.describe()}: {hierarchy} is not mounted here")
            continue
        directory = mount.directory(m.path)
        if directory is None:
            result.problems.append(
                f"cgroup {m.describe()}: not below {mount.root}, the top of {hierarchy} "
                f"mounted at {mount.point}"
            )
            continue
        result.directories[key] = directory
        if not m.unified:
            if os.path.isdir(directory):
                result.join.append(m.describe())
            else:
                result.problems.append(
                    f"cgroup {m.describe()} does not exist here, and torpor creates only "
                    "cgroup v2 cgroups"
                )
            continue
        for path in _ancestors(m.path) or ["/"]:
            _plan_dir(result, mount, path, path == m.path)
    if mode == "strict" and result.warnings:
        result.problems += [
            w.replace("; left as it is", " (--manage-cgroups=strict refuses that)")
            for w in result.warnings
        ]
    return result


def _plan_dir(result: Plan, mount, path: str, leaf: bool) -> None:
    if path in result.create or path in result.join:
        return
    directory = mount.directory(path)
    if directory is None:
        return  # above the mount's top: it exists, as the mount shows
    saved = result.saved.dirs.get(path)
    if os.path.isdir(directory):
        if leaf:
            result.join.append(path)
        if saved:
            for name, value in saved.properties:
                if name == kcg.SUBTREE_CONTROL:
                    continue
                try:
                    now = kcg.read_value(directory, name)
                except OSError:
                    now = None
                if now is None:
                    result.warnings.append(
                        f"cgroup {path} exists here without {name} (saved: {value}); left as it is"
                    )
                elif now != value:
                    result.warnings.append(
                        f"cgroup {path} exists here with {name} {_one(now)}, saved "
                        f"{_one(value)}; left as it is"
                    )
        return
    if saved is None:
        result.problems.append(f"cannot create cgroup {path}: the images do not describe it")
        return
    parent = path.rsplit("/", 1)[0] or "/"
    parent_dir = mount.directory(parent) or mount.point
    need = {kcg.controller_of(n) for n, _ in saved.properties if kcg.controller_of(n) != "cgroup"}
    if parent not in result.create and os.path.isdir(parent_dir):
        # what it enables for its children must be available to it too
        need |= set((saved.value(kcg.SUBTREE_CONTROL) or "").replace("+", "").split())
        if not os.access(parent_dir, os.W_OK):
            result.problems.append(f"cannot create cgroup {path}: {parent} is not writable")
            return
        try:
            available = set(kcg.read_value(parent_dir, kcg.CONTROLLERS).split())
            enabled = set(kcg.read_value(parent_dir, kcg.SUBTREE_CONTROL).split())
        except OSError as e:
            result.problems.append(f"cannot create cgroup {path}: {parent}: {e.strerror}")
            return
        lacking = sorted(need - available)
        if lacking:
            result.problems.append(
                f"cannot create cgroup {path}: this host has no {', '.join(lacking)} "
                f"controller for it (its parent {parent} has: "
                f"{', '.join(sorted(available)) or 'none'})"
            )
            return
        off = sorted(need - enabled)
        if off:
            result.problems.append(
                f"cannot create cgroup {path}: its parent {parent} does not enable the "
                f"{', '.join(off)} controller for its children (cgroup.subtree_control)"
            )
            return
    elif parent in result.create:
        parent_saved = result.saved.dirs[parent].value(kcg.SUBTREE_CONTROL) or ""
        off = sorted(need - {c.lstrip("+") for c in parent_saved.split()})
        if off:
            result.problems.append(
                f"cannot create cgroup {path}: the saved {parent} does not enable the "
                f"{', '.join(off)} controller for it"
            )
            return
    result.create.append(path)


def _one(value: str) -> str:
    return value.replace("\n", "; ")


def check(images, procs, mode: str = "soft") -> tuple[str | None, str | None, str]:
    """(refusal, warning, what the restore would do) for preflight."""
    result = plan(images, procs, mode)
    if result is None:
        return None, None, "the images save no cgroups: tasks stay in the restorer's"
    problem = "; ".join(result.problems) or None
    warning = "; ".join(result.warnings) or None
    return problem, warning, result.describe()


# --- restore ---------------------------------------------------------------------------------


class Placement:
    """The cgroups of one restore: those it creates, and the tasks it moves into them."""

    def __init__(self, images, procs, mode: str = "soft"):
        self.plan = plan(images, procs, mode)
        if self.plan is not None and self.plan.ignored:
            self.plan = None
        self.created: list[str] = []  # directories made, parents first

    def create(self) -> None:
        """Every saved v2 cgroup that does not exist, with its saved controllers and limits."""
        if self.plan is None:
            return
        if self.plan.problems:
            raise RestoreError(self.plan.problems[0])
        mount = kcg.mount_for(kcg.UNIFIED, kcg.mounts())
        for path in self.plan.create:
            directory = mount.directory(path)
            saved = self.plan.saved.dirs[path]
            try:
                os.mkdir(directory)
            except OSError as e:
                raise RestoreError(f"cannot create cgroup {path}: {_cause(e)}") from None
            self.created.append(directory)
            log.info("cgroup %s created", path)
            if saved.perms is not None:
                self._own(path, directory, saved.perms)
            for name, value in sorted(saved.properties, key=_setting_order):
                self._set(path, directory, name, value)

    def _own(self, path, directory, perms) -> None:
        try:
            os.chown(directory, perms.uid, perms.gid)
            os.chmod(directory, perms.mode & 0o7777)
            for name in (kcg.PROCS, kcg.THREADS, kcg.SUBTREE_CONTROL):
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(directory, name), perms.uid, perms.gid)
        except OSError as e:
            raise RestoreError(
                f"cgroup {path}: cannot give it to uid {perms.uid}: {_cause(e)}"
            ) from None

    def _set(self, path, directory, name, value) -> None:
        lines = value.split("\n") if name != kcg.SUBTREE_CONTROL else [_enabling(value)]
        for line in lines:
            try:
                kcg.write_value(directory, name, line)
            except FileNotFoundError:
                raise RestoreError(
                    f"cgroup {path}: this host gives it no {name} (no "
                    f"{kcg.controller_of(name)} controller here)"
                ) from None
            except OSError as e:
                raise RestoreError(
                    f"cgroup {path}: cannot set {name} to {_one(value)}: {_cause(e)}"
                ) from None
        log.debug("cgroup %s: %s = %s", path, name, _one(value))

    def join(self, tasks) -> None:
        """Move every process of `tasks` (saved PID -> RemoteTask) into its saved cgroups."""
        if self.plan is None:
            return
        for tid, members in self.plan.tasks.items():
            if self.plan.leader_of[tid] == tid and tid in tasks:
                self._move(tid, tasks[tid].pid, members, kcg.PROCS, kcg.V1_TASKS)

    def join_thread(self, tid: int, task) -> None:
        """Thread `tid` (saved TID), just started by its process's main thread: into the
        cgroups its set names where they differ from its process's."""
        if self.plan is None or tid not in self.plan.tasks:
            return
        self._move(tid, task.pid, self.plan.tasks[tid], kcg.THREADS, kcg.V1_TASKS, thread=True)

    def _move(self, tid, pid, members, v2_file, v1_file, thread=False) -> None:
        """Task `pid` (saved as `tid`) into each of `members` the plan found a directory
        for (the others need nothing: the task is born there, or the hierarchy is not here),
        checked through /proc afterwards when anything was written (a thread is most often
        born where it belongs, and /proc is then read once)."""
        moving = [
            (m, self.plan.directories[_key(m)]) for m in members if _key(m) in self.plan.directories
        ]
        if not moving:
            return
        now = _where(pid, thread)
        what = "thread" if thread else "process"
        moved = False
        for m, directory in moving:
            if now.get(m.controllers) == m.path:
                continue
            try:
                kcg.write_value(directory, v2_file if m.unified else v1_file, str(pid))
            except OSError as e:
                raise RestoreError(
                    f"{what} {tid}: cannot join cgroup {m.describe()}: {_cause(e)}"
                ) from None
            log.info("%s %d joined cgroup %s", what, tid, m.describe())
            moved = True
        if not moved:  # every one where it belongs, as just read: nothing to check again
            return
        got = _where(pid, thread)
        for m, _ in moving:
            if got.get(m.controllers) != m.path:
                raise RestoreError(
                    f"{what} {tid} is in cgroup {got.get(m.controllers)} after joining "
                    f"{m.describe()}"
                )

    def remove(self) -> None:
        """Remove the cgroups this restore created (its tasks are gone), deepest first."""
        for directory in reversed(self.created):
            deadline = time.monotonic() + RMDIR_WAIT_SECONDS
            while True:
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # the killed tasks may take a moment to leave it
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s: %s", directory, e.strerror)
                        break
                    time.sleep(0.01)
        self.created.clear()


def _where(pid: int, thread: bool) -> dict[str, str]:
    """Task `pid`'s path in each hierarchy, by controller list."""
    members = kcg.membership(_tgid(pid), pid) if thread else kcg.membership(pid)
    return {m.controllers: m.path for m in members}


def _tgid(tid: int) -> int:
    with open(f"/proc/{tid}/status") as f:
        for line in f:
            if line.startswith("Tgid:"):
                return int(line.split()[1])
    return tid


def _enabling(value: str) -> str:
    """cgroup.subtree_control's "cpu pids" as the "+cpu +pids" it is written as."""
    return " ".join("+" + c.lstrip("+") for c in value.split())


def _setting_order(prop: tuple[str, str]) -> int:
    """cgroup.type first (a threaded cgroup), the controllers for the children next, then
    the limits in the order kernel.cgroups lists them."""
    name = prop[0]
    if name == kcg.TYPE_FILE:
        return -2
    if name == kcg.SUBTREE_CONTROL:
        return -1
    return kcg.V2_PROPERTIES.index(name) if name in kcg.V2_PROPERTIES else len(kcg.V2_PROPERTIES)


def _cause(e: OSError) -> str:
    if e.errno == errno.EAGAIN:
        return f"{e.strerror} (a cgroup.max.depth or cgroup.max.descendants limit?)"
    if e.errno == errno.EOPNOTSUPP:
        return (
            f"{e.strerror} (cgroup v2 puts no process in a cgroup that enables controllers "
            "for its children, nor in one of type domain invalid)"
        )
    return e.strerror or str(e)

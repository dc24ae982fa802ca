"""Control groups as the kernel shows them: a task's memberships (/proc/PID/task/TID/cgroup),
where each hierarchy is mounted (/proc/self/mountinfo), and the files of a cgroup directory
that hold limits a user sets. No policy: torpor.parts.cgroups decides what to do with them.

/proc/PID/cgroup has one line per hierarchy, "ID:CONTROLLERS:PATH": "0::/a/b" is cgroup v2
(the unified hierarchy, no controller list), "4:memory:/x" or "1:name=systemd:/" a cgroup v1
one. Paths are relative to the reader's cgroup namespace root; a task outside it shows a path
starting with "/..". A host may have both (a "hybrid" host: v1 controllers, and v2 mounted
with whatever controllers no v1 hierarchy holds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torpor.kernel.procfs import proc

UNIFIED = ""  # the controller list of cgroup v2 in /proc/PID/cgroup

# Files of a cgroup v2 directory that hold what a user sets, in the order they are set
# (cpuset before the rest: the CPUs and nodes a cgroup may use come first). Present only
# where the controller is enabled for the cgroup; the root cgroup has none of them.
V2_PROPERTIES = (
    "cpuset.cpus",
    "cpuset.mems",
    "cpuset.cpus.partition",
    "cpu.max",
    "cpu.weight",
    "cpu.idle",
    "cpu.uclamp.min",
    "cpu.uclamp.max",
    "memory.min",
    "memory.low",
    "memory.high",
    "memory.max",
    "memory.swap.high",
    "memory.swap.max",
    "memory.zswap.max",
    "memory.oom.group",
    "io.weight",
    "io.max",
    "io.latency",
    "pids.max",
    "rdma.max",
    "misc.max",
    "cgroup.max.descendants",
    "cgroup.max.depth",
)
# hugetlb.<size>.max and hugetlb.<size>.rsvd.max, one pair per huge page size.
HUGETLB_PREFIX, HUGETLB_SUFFIXES = "hugetlb.", (".rsvd.max", ".max")

TYPE_FILE = "cgroup.type"  # "domain", "threaded", "domain threaded", "domain invalid"
THREADED = "threaded"  # the one value a user writes there
SUBTREE_CONTROL = "cgroup.subtree_control"  # controllers enabled for the children
CONTROLLERS = "cgroup.controllers"  # controllers the parent makes available here
PROCS, THREADS = "cgroup.procs", "cgroup.threads"
V1_TASKS = "tasks"


@dataclass(frozen=True)
class Member:
    """A task's cgroup in one hierarchy: its controller list ("" for v2) and path."""

    controllers: str
    path: str

    @property
    def unified(self) -> bool:
        return self.controllers == UNIFIED

    def describe(self) -> str:
        return self.path if self.unified else f"{self.controllers}:{self.path}"


def parse_membership(text: str) -> list[Member]:
    """The memberships of a /proc/PID/cgroup text, one per hierarchy."""
    members = []
    for line in text.splitlines():
        hierarchy, sep, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not sep or not sep2 or not hierarchy.isdigit():
            raise ValueError(f"unexpected line in /proc/PID/cgroup: {line!r}")
        members.append(Member(controllers, path))
    return members


def membership(pid: int, tid: int | None = None) -> list[Member]:
    """The cgroups of thread `tid` of process `pid` (its main thread if None)."""
    path = proc(pid, "task", str(tid), "cgroup") if tid else proc(pid, "cgroup")
    with open(path) as f:
        return parse_membership(f.read())


def own_membership() -> dict[str, str]:
    """This process's path in each hierarchy, by controller list."""
    return {m.controllers: m.path for m in membership(os.getpid())}


@dataclass(frozen=True)
class Mount:
    """A cgroup filesystem mounted here: where, which cgroup it shows at its top (the
    "root" field of mountinfo, relative to our cgroup namespace), its controller list."""

    point: str
    root: str
    controllers: str  # "" for cgroup2, "memory", "cpu,cpuacct", "name=systemd" for v1

    def directory(self, path: str) -> str | None:
        """The directory of cgroup `path` under this mount; None if it is not below it."""
        root = self.root.rstrip("/")
        if path != self.root and not path.startswith(root + "/"):
            return None
        return self.point.rstrip("/") + path[len(root) :] if path != self.root else self.point


def _unescape(field: str) -> str:
    """A mountinfo path with its octal escapes (\\040 for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts() -> list[Mount]:
    """Every cgroup (v1) and cgroup2 filesystem mounted in torpor's mount namespace."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, options = fields[sep + 1], fields[sep + 3].split(",")
            root, point = _unescape(fields[3]), _unescape(fields[4])
            if fstype == "cgroup2":
                found.append(Mount(point, root, UNIFIED))
            elif fstype == "cgroup":
                names = [o for o in options if o not in _V1_MOUNT_OPTIONS and "=" not in o]
                names += [o for o in options if o.startswith("name=")]
                found.append(Mount(point, root, ",".join(names)))
    return found


# Mount options of a cgroup v1 filesystem that are not controller names.
_V1_MOUNT_OPTIONS = {"rw", "ro", "nosuid", "nodev", "noexec", "relatime", "noatime", "xattr",
                     "clone_children", "noprefix", "cpuset_v2_mode", "favordynmods"}  # fmt: skip


def mount_for(controllers: str, found: list[Mount]) -> Mount | None:
    """The mount of the hierarchy with this controller list, the one showing the most of
    it (the smallest root) if it is mounted more than once."""
    want = set(controllers.split(",")) if controllers else set()
    candidates = [m for m in found if (set(m.controllers.split(",")) - {""}) == want]
    return min(candidates, key=lambda m: len(m.root), default=None)


def read_value(directory: str, name: str) -> str:
    with open(os.path.join(directory, name)) as f:
        return f.read().rstrip("\n")


def write_value(directory: str, name: str, value: str) -> None:
    """Write `value` into file `name` of a cgroup directory in one write(2), as the kernel
    wants it (raises OSError with the kernel's errno)."""
    fd = os.open(os.path.join(directory, name), os.O_WRONLY)
    try:
        os.write(fd, value.encode() or b"\n")
    finally:
        os.close(fd)


def settable(directory: str, name: str) -> bool:
    """Whether file `name` exists in the directory and someone may write it."""
    try:
        return bool(os.stat(os.path.join(directory, name)).st_mode & 0o222)
    except FileNotFoundError:
        return False


def property_names(directory: str) -> list[str]:
    """The files of a cgroup v2 directory that hold limits a user sets, in setting order."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    hugetlb = sorted(
        e for e in entries if e.startswith(HUGETLB_PREFIX) and e.endswith(HUGETLB_SUFFIXES)
    )
    return [n for n in (*V2_PROPERTIES, *hugetlb) if n in entries and settable(directory, n)]


def controller_of(name: str) -> str:
    """The controller a property file belongs to ("pids" for pids.max; "cgroup" for the
    core files every cgroup has)."""
    return name.split(".", 1)[0]

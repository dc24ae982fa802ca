"""Namespace files (nsfs: what opening /proc/PID/ns/TYPE gives, "net:[4026531840]"), CRIU's NS
kind (NsFileEntry).

A namespace file is a handle on one namespace. One naming the process's own namespace of its
type (as every process of the tree shares its root's) is saved by type, and restored by
opening /proc/self/ns/TYPE in the restored process: its own namespace of that type then, which
a restore into a new PID or time namespace makes a new one on purpose. A namespace file naming
another namespace (a container's, a namespace made and left) refuses the dump, naming it: torpor
makes no namespaces but those.
"""

import os
import re

from torpor.context import no_owner
from torpor.errors import ImageError, UnsupportedError
from torpor.images import pb
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import FdKind, open_in_task, place

# The namespace types by name, with their CLONE_NEW* flags.
CLONE_FLAGS = {
    "cgroup": 0x02000000,
    "ipc": 0x08000000,
    "mnt": 0x00020000,
    "net": 0x40000000,
    "pid": 0x20000000,
    "time": 0x00000080,
    "user": 0x10000000,
    "uts": 0x04000000,
}
TYPES = {flag: name for name, flag in CLONE_FLAGS.items()}
_TARGET = re.compile(r"(cgroup|ipc|mnt|net|pid|time|user|uts):\[(\d+)\]")


class NamespaceFile(FdKind):
    name = "a namespace file"
    fd_type = pb.fdinfo_pb2.NS
    field = "nsf"

    def recognise(self, d) -> bool:
        return d.kind == "reg" and _TARGET.fullmatch(d.target) is not None

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            kind, inode = _parse(d.target)
            if inode not in (_own(pid, kind), _own(pid, f"{kind}_for_children")):
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a file of a {kind} namespace the tree is "
                    f"not in ({d.target}), not supported yet"
                )

    def dump(self, ctx, d, state, fown):
        kind, inode = _parse(d.target)
        entry = pb.ns_file_pb2.NsFileEntry(
            ns_id=inode, ns_cflag=CLONE_FLAGS[kind], flags=d.flags & ~os.O_CLOEXEC
        )
        if inode != _own(ctx.pid, kind):
            entry.torpor_for_children = True
        return entry

    def describe(self, entry) -> str:
        return f"its {TYPES.get(entry.ns_cflag, '?')} namespace"

    def owner_and_flags(self, ctx, entry):
        return no_owner(), entry.flags  # no signals come from a namespace file

    def restore_problem(self, entry, shell_job) -> str | None:
        if entry.ns_cflag not in TYPES:
            return f"a namespace file has an unknown type {entry.ns_cflag:#x}"
        return None

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        kind = TYPES.get(entry.ns_cflag)
        if kind is None:
            raise ImageError(f"files.img: namespace file {entry.id} has an unknown type")
        if entry.torpor_for_children:
            kind += "_for_children"
        place(ctx, open_in_task(ctx, f"/proc/self/ns/{kind}", entry.flags), fd, cloexec)


def _parse(target: str) -> tuple[str, int]:
    kind, inode = _TARGET.fullmatch(target).groups()
    return kind, int(inode)


def _own(pid: int, kind: str) -> int | None:
    """The inode of process `pid`'s namespace `kind` (pid_for_children and the like too)."""
    try:
        return os.stat(proc(pid, "ns", kind)).st_ino
    except OSError:
        return None


KIND = NamespaceFile()

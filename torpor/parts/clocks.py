"""Clocks: CLOCK_MONOTONIC and CLOCK_BOOTTIME as the task saw them (timens-N.img).

Both restart at every boot. A task restored on another boot (or kernel) is put in a new time
namespace whose offsets make both clocks carry on from their dumped values, so a program
measuring intervals never sees time go backwards.
"""

import contextlib
import os
import time
from pathlib import Path

from torpor.errors import RestoreError
from torpor.images import ImageDir, pb
from torpor.kernel import libc
from torpor.kernel.procfs import proc, read_status

CLONE_NEWTIME = 0x80
NSEC = 1_000_000_000
CLOCKS = (("monotonic", time.CLOCK_MONOTONIC), ("boottime", time.CLOCK_BOOTTIME))


def _offsets(path: Path) -> dict[str, int]:
    """A timens_offsets file as nanoseconds per clock name (all zero where there is none)."""
    result = {name: 0 for name, _ in CLOCKS}
    try:
        for line in path.read_text().splitlines():
            name, secs, nsecs = line.split()
            result[name] = int(secs) * NSEC + int(nsecs)
    except FileNotFoundError:
        pass
    return result


def _now(offsets: dict[str, int]) -> dict[str, int]:
    own = _offsets(Path("/proc/self/timens_offsets"))
    return {
        name: time.clock_gettime_ns(clock) - own[name] + offsets[name] for name, clock in CLOCKS
    }


def dump(pid: int, images: ImageDir) -> None:
    """Record the task's clocks, read now, in the task's own time namespace."""
    values = _now(_offsets(proc(pid, "timens_offsets")))
    entry = pb.timens_pb2.TimensEntry()
    for name, _ in CLOCKS:
        getattr(entry, name).CopyFrom(
            pb.timens_pb2.Timespec(tv_sec=values[name] // NSEC, tv_nsec=values[name] % NSEC)
        )
    images.write("timens-1.img", [entry])


def offsets_for(images: ImageDir) -> str | None:
    """The contents of timens_offsets for a namespace whose clocks resume at the dumped values."""
    if not images.has("timens-1.img"):
        return None
    entry = images.read_one("timens-1.img")
    host = _now({name: 0 for name, _ in CLOCKS})
    lines = []
    for name, _ in CLOCKS:
        saved = getattr(entry, name)
        delta = saved.tv_sec * NSEC + saved.tv_nsec - host[name]
        secs, nsecs = divmod(delta, NSEC)  # nsecs in [0, NSEC): the kernel wants that
        lines.append(f"{name} {secs} {nsecs}")
    return "\n".join(lines) + "\n"


def namespace_problem() -> str | None:
    """Why torpor cannot restore into a new time namespace from here; None if it can."""
    if not os.path.exists("/proc/self/ns/time"):
        return "this kernel has no time namespaces (Linux 5.6 or later): restore with --no-timens"
    if int(read_status(os.getpid())["Threads"]) > 1:  # setns to a time namespace needs that
        return (
            "a restore into a new time namespace must run in a single-threaded process: "
            "restore with --no-timens or from a process without threads"
        )
    own = os.open("/proc/self/ns/time_for_children", os.O_RDONLY)
    try:  # torpor goes back to its own time namespace after each restored root is born
        libc.syscall(libc.SYS_SETNS, own, CLONE_NEWTIME)
    except PermissionError:
        return (
            "carrying the dumped clocks on needs a time namespace torpor can leave again, and "
            "entering its own needs CAP_SYS_ADMIN in the initial user namespace: restore "
            "with --no-timens"
        )
    finally:
        os.close(own)
    return None


def check(images: ImageDir, timens: bool) -> tuple[str | None, str]:
    """(refusal or None, what a restore here would do with the clocks)."""
    if not images.has("timens-1.img"):
        return None, "the images hold no clocks: the host's are kept"
    if not timens:
        return None, "--no-timens: the host's monotonic and boot-time clocks are kept"
    problem = namespace_problem()
    return problem, "the monotonic and boot-time clocks carry on from their dumped values"


@contextlib.contextmanager
def children_in_new_namespace(offsets: str | None):
    """Within this block, children torpor creates are born in a new time namespace with
    `offsets` (a task enters a time namespace when forked; only since 6.x also on exec).
    Afterwards torpor's children are born in its own namespace again."""
    if offsets is None:
        yield
        return
    problem = namespace_problem()
    if problem:
        raise RestoreError(problem)
    own = os.open("/proc/self/ns/time_for_children", os.O_RDONLY)
    try:
        try:
            libc.syscall(libc.SYS_UNSHARE, CLONE_NEWTIME)
        except OSError as e:
            raise RestoreError(
                f"cannot create a time namespace ({e.strerror}): restore with --no-timens"
            ) from None
        try:
            fd = os.open("/proc/self/timens_offsets", os.O_WRONLY)
            try:
                os.write(fd, offsets.encode())
            except OSError as e:
                raise RestoreError(
                    f"cannot set the clocks of a time namespace ({e.strerror}): "
                    "restore with --no-timens"
                ) from None
            finally:
                os.close(fd)
            yield
        finally:
            libc.syscall(libc.SYS_SETNS, own, CLONE_NEWTIME)
    finally:
        os.close(own)

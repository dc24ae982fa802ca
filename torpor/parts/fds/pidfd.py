"""pidfd: a handle on one process (pidfd_open(2), clone's CLONE_PIDFD), with its flags
(PIDFD_NONBLOCK, PIDFD_THREAD). CRIU's PIDFD kind.

A pidfd names that very process, not its PID: one of a process outside the tree refuses
the dump, since a new pidfd would name whatever has the PID at restore. One of a process of
the tree (a zombie too) is made again by pidfd_open of its PID from inside the task, which
works because the restore gives every process its PID back. One of a non-leader thread
(PIDFD_THREAD) refuses: threads are made after the fds. Nothing of a pidfd is read through
the task, so one in flight (carried by a message queued on a socket) is saved from torpor's
copy of it like the others.

A pidfd whose process has exited and been reaped ("Pid: -1") is made from a child torpor
starts in the task's PID namespace, lets exit and reaps at once: its pidfd (opened with the
saved flags before the reaping) is handed into the task with pidfd_getfd, through a pidfd
of torpor the task opens by /proc, which works from another PID namespace too. It polls
readable with POLLHUP and signals through it fail with ESRCH, as before. Each such pidfd
gets a dead process of its own: two open files of one dead process come back as two (only
their inode numbers could tell).
"""

import contextlib
import os

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo, libc
from torpor.kernel.procfs import children, list_tasks, proc
from torpor.parts.fds.base import FdKind, open_in_task, place

PIDFD_NONBLOCK = os.O_NONBLOCK
PIDFD_THREAD = os.O_EXCL
DEAD = -1
CLONE_NEWPID = 0x20000000


class Pidfd(FdKind):
    name = "a pidfd"
    fd_type = pb.fdinfo_pb2.PIDFD
    field = "pidfd"
    travels = True  # nothing of it is read through the task

    def recognise(self, d) -> bool:
        return d.kind == "pidfd"

    def inspect(self, found, options, state) -> None:
        if not found:
            return
        leaders, threads = _tree(options.root)
        for pid, d in found:
            shown = fdinfo.pidfd(pid, d.fd).pid
            where = (
                f"fd {d.fd} of process {pid} is a pidfd"
                if pid != os.getpid()
                else "a message queued in the tree carries a pidfd"  # torpor's copy of it
            )
            if shown is None:
                raise UnsupportedError(f"{where}, and this kernel does not show its process")
            if shown == DEAD or shown in leaders:
                continue
            if shown in threads:
                raise UnsupportedError(
                    f"{where} of thread {shown} (PIDFD_THREAD), which is no process's main "
                    "thread, not supported yet"
                )
            if shown == 0:
                raise UnsupportedError(f"{where} of a process in another PID namespace")
            raise UnsupportedError(
                f"{where} of process {shown}, which is outside the tree: a new pidfd would "
                "name whatever has that PID then"
            )

    def dump(self, ctx, d, state, fown):
        return pb.pidfd_pb2.PidfdEntry(
            flags=d.flags & ~os.O_CLOEXEC, ino=d.inode, nspid=fdinfo.pidfd(ctx.pid, d.fd).pid,
            fown=fown,
        )  # fmt: skip

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        flags = entry.flags & (PIDFD_NONBLOCK | PIDFD_THREAD)
        if entry.nspid == DEAD:
            got = _dead_pidfd(ctx, flags, state)
        else:
            _check_in_tree(ctx, entry.nspid)
            got = ctx.task.syscall(X86_64, "pidfd_open", entry.nspid, flags)
            if got < 0:
                raise RestoreError(
                    f"cannot open a pidfd of process {entry.nspid} for fd {fd} of process "
                    f"{ctx.image_pid}: {os.strerror(-got)}"
                )
        place(ctx, got, fd, cloexec)

    def finish_tree(self, contexts, state) -> None:
        own = state.pop("torpor", None)
        if own is not None:
            os.close(own)


def _tree(root: int) -> tuple[set[int], set[int]]:
    """The PIDs of the (frozen) tree's processes, zombies included, and the TIDs of their
    other threads."""
    leaders, threads, queue = set(), set(), [root]
    while queue:
        pid = queue.pop()
        if pid in leaders:
            continue
        leaders.add(pid)
        try:
            threads.update(t for t in list_tasks(pid) if t != pid)
            queue += children(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return leaders, threads


def _check_in_tree(ctx, pid: int) -> None:
    """A pidfd the images say is of process `pid` must name one the restore makes."""
    tree = {e.pid for e in ctx.images.read("pstree.img")}
    if pid not in tree:
        raise RestoreError(
            f"a pidfd of process {ctx.image_pid} names process {pid}, which the images do not hold"
        )


def _dead_pidfd(ctx, flags: int, state: dict) -> int:
    """A new fd in the task: a pidfd, with `flags`, of a process that has exited and been
    reaped, born in the task's PID namespace (signals through a pidfd of a process the
    namespace does not hold fail with EINVAL, not ESRCH)."""
    with _children_in_pid_namespace_of(ctx.pid):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
    try:
        own = os.pidfd_open(pid, flags)
    finally:
        os.waitpid(pid, 0)
    try:
        if "torpor" not in state:
            state["torpor"] = os.pidfd_open(os.getpid())
        task = ctx.task
        of_torpor = open_in_task(ctx, f"/proc/{os.getpid()}/fd/{state['torpor']}", os.O_RDONLY)
        try:
            return task.call(X86_64, "pidfd_getfd", of_torpor, own, 0)
        finally:
            task.call(X86_64, "close", of_torpor)
    finally:
        os.close(own)


@contextlib.contextmanager
def _children_in_pid_namespace_of(pid: int):
    """Within this block, torpor's children are born in the PID namespace of process `pid`;
    afterwards in torpor's own again."""
    theirs, own = (os.open(p, os.O_RDONLY) for p in (proc(pid, "ns", "pid"), "/proc/self/ns/pid"))
    try:
        other = os.fstat(theirs).st_ino != os.fstat(own).st_ino
        if other:
            libc.syscall(libc.SYS_SETNS, theirs, CLONE_NEWPID)
        try:
            yield
        finally:
            if other:
                libc.syscall(libc.SYS_SETNS, own, CLONE_NEWPID)
    finally:
        os.close(theirs)
        os.close(own)


KIND = Pidfd()

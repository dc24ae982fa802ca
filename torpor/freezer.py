"""Freeze a process tree: every thread of a root process and of all its descendants, stopped
under ptrace before anything of them is read, and let go together afterwards.

Stopped tasks cannot fork or start threads, so seizing until a walk of the tree finds nothing
new gives a tree that stays as it is until it is released. Zombies are recorded, not seized.
"""

import os
from dataclasses import dataclass, field

from torpor.arch import abi_for_cs
from torpor.errors import TargetError
from torpor.kernel import procfs
from torpor.parts import regs as regs_part
from torpor.parts import timeouts
from torpor.remote import RemoteError, RemoteTask, under_seccomp, wait_settled

MAX_ROUNDS = 20  # walks of a tree that keeps growing before torpor gives up
WALL = 0x40000000  # waitpid __WALL: threads too


@dataclass
class FrozenProcess:
    """One process of the frozen tree: its ids and its stopped threads, the leader first."""

    pid: int
    ppid: int
    pgid: int
    sid: int
    threads: dict[int, RemoteTask] = field(default_factory=dict)
    zombie: bool = False
    exit_status: int = 0  # a zombie's wait status

    @property
    def leader(self) -> RemoteTask:
        return self.threads[self.pid]

    @property
    def tids(self) -> list[int]:
        return [self.pid] + sorted(t for t in self.threads if t != self.pid)


class FrozenTree:
    """A frozen process tree: processes in breadth-first order from the root."""

    def __init__(self, root: int):
        self.root = root
        self.processes: dict[int, FrozenProcess] = {}
        self._timers: timeouts.Baseline | None = None  # the sleepers before the first stop

    def tasks(self):
        for p in self.processes.values():
            yield from p.threads.values()

    def live(self) -> list[FrozenProcess]:
        return [p for p in self.processes.values() if not p.zombie]

    # --- freezing ---------------------------------------------------------------------------

    def freeze(self) -> None:
        """Seize every thread of the tree, walking it again until a walk adds nothing."""
        self._timers = timeouts.Baseline()
        for _ in range(MAX_ROUNDS):
            if not self._walk():
                return
        raise TargetError(f"the process tree of {self.root} keeps changing; cannot freeze it")

    def _walk(self) -> bool:
        grew = False
        queue = [self.root]
        seen: set[int] = set()
        while queue:
            pid = queue.pop(0)
            if pid in seen:
                continue
            seen.add(pid)
            if pid == os.getpid():
                if pid == self.root:
                    raise TargetError("torpor cannot dump itself")
                raise TargetError(f"the process tree of {self.root} holds torpor itself")
            try:
                st = procfs.read_stat(pid)
            except (FileNotFoundError, ProcessLookupError):
                if pid == self.root:
                    raise TargetError(f"no process with PID {pid}") from None
                grew = True  # gone between two reads: walk again
                continue
            proc = self.processes.get(pid)
            if proc is None:
                proc = FrozenProcess(pid, st.ppid, st.pgid, st.sid)
                self.processes[pid] = proc
                grew = True
            if st.state in ("Z", "X"):
                if pid == self.root:
                    raise TargetError(f"process {pid} is a zombie")
                if st.num_threads > 1 or proc.threads:
                    raise TargetError(
                        f"process {pid} is exiting or its main thread has exited; cannot dump it"
                    )
                proc.zombie, proc.exit_status = True, st.exit_code
                continue
            for tid in _tasks(pid):
                if tid not in proc.threads:
                    task = _seize(tid, self._timers)
                    if task is not None:
                        proc.threads[tid] = task
                    grew = True
            if pid not in proc.threads:
                continue  # exiting: the next walk finds it a zombie
            queue += procfs.children(pid)
        return grew

    # --- letting go -------------------------------------------------------------------------

    def release(self) -> None:
        """Undo what a dump did to every task and let the tree run as before."""
        for proc in self.live():
            leader = proc.threads.get(proc.pid)
            try:
                if leader is not None:
                    leader.unmap_scratch()
            except OSError:
                pass  # a task that died meanwhile
        dead = []
        for task in self.tasks():  # each process's main thread first (remote.wait_settled)
            abi = abi_for_cs(task.regs.cs)
            if abi is not None:
                task.regs = regs_part.restart_adjusted_for_resume(task.regs, abi)
            try:
                task.detach()
            except OSError:
                dead.append(task)  # killed meanwhile: it can only be waited for
        wait_settled([task.pid for task in self.tasks() if task not in dead])
        for proc in self.live():
            leader = proc.threads.get(proc.pid)
            if leader is not None:
                leader.remove_patches()  # no task runs the heal code any more
        self._collect_exits(dead)

    def kill(self) -> None:
        """End every process of the tree (after a dump that does not leave it running)."""
        for proc in self.live():
            try:
                os.kill(proc.pid, 9)
            except ProcessLookupError:
                pass
        self._collect_exits(list(self.tasks()))

    def _collect_exits(self, dead: list[RemoteTask]) -> None:
        """Wait, as their tracer, for the exit of killed tasks, so that their parents can
        reap them: the threads first, as a main thread reports its exit after them."""
        leaders = [t for t in dead if t.pid in self.processes]
        others = [t for t in dead if t.pid not in self.processes]
        for task in others + leaders:
            task.close()
            proc = self.processes.get(task.pid)
            if proc is not None and proc.ppid == os.getpid():
                continue  # torpor's own child: its exit is for the caller to collect
            try:
                os.waitpid(task.pid, WALL)
            except ChildProcessError:
                pass

    def vanished(self) -> list[int]:
        """Tasks that have died since they were frozen."""
        return [task.pid for task in self.tasks() if procfs.is_dead(task.pid)]

    def check_unchanged(self) -> None:
        """Refuse a tree that gained or lost tasks since it was frozen."""
        gone = self.vanished()
        if gone:
            raise TargetError(f"task {gone[0]} exited during the dump")
        for proc in self.live():
            for tid in _tasks(proc.pid):
                if tid not in proc.threads:
                    raise TargetError(f"task {tid} appeared in process {proc.pid} during the dump")
            for child in procfs.children(proc.pid):
                if child not in self.processes:
                    raise TargetError(f"process {child} appeared during the dump")


def _tasks(pid: int) -> list[int]:
    try:
        return procfs.list_tasks(pid)
    except (FileNotFoundError, ProcessLookupError):
        return []


def _seize(tid: int, timers: timeouts.Baseline) -> RemoteTask | None:
    """Seize one thread; None if it exited first."""
    watch = timeouts.Watch.before(tid, timers)  # its timer, if any, which the stop cancels
    try:
        task = RemoteTask.seize(tid)
        if watch is not None and not task.stopped_by:  # a stopped one's timer was long gone:
            task.timers_left = watch.left()  # one that vanished now was another task's
    except PermissionError:
        if procfs.is_dead(tid):
            return None  # the kernel refuses to attach to a task that is exiting
        if under_seccomp(tid):
            raise TargetError(
                f"cannot trace process {tid}: it runs under seccomp, whose filters torpor must "
                "suspend for its calls (PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN in the "
                "initial user namespace)"
            ) from None
        raise TargetError(f"cannot trace process {tid}: permission denied") from None
    except (ProcessLookupError, RemoteError):
        return None
    except OSError as e:
        raise TargetError(f"cannot trace process {tid}: {e.strerror}") from None
    # From now on a signal stays pending until the task is let go, and letting it go steps it
    # back into an interrupted call before its own mask returns: a signal sent meanwhile then
    # interrupts that call instead of being handled just before the task sleeps in it again.
    abi = abi_for_cs(task.regs.cs)
    try:
        if abi is None:
            task.block_signals()
        else:  # blocked from its first injected call on, healing itself if torpor vanishes
            task.enable_healing(regs_part.restart_adjusted(task.regs, abi))
    except ProcessLookupError:
        task.close()
        return None
    return task

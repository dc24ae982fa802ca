"""The restored tree's processes and threads: created with their saved PIDs and TIDs, each
process by its saved parent, in their saved sessions and process groups; zombies made to exit
as they did. Every task is traced from birth and stays stopped until the whole tree is done.

The root is a child of torpor made with clone3 (its PID requested through set_tid) that execs
a stub program of its ABI (see torpor.arch.stub). Every other process is forked by its parent
(clone3 injected into the parent's stub) and execs the stub of its own ABI, so a 64-bit
parent can have a 32-bit child; a child that shares memory copy-on-write with its parent
keeps the parent's stub instead, and that memory with it (torpor.parts.cow). A child that
shared its parent's fd table or fs (clone CLONE_FILES, CLONE_FS: the same files_id, fs_id in
the images) is forked with that flag again; sharing the fd table, it keeps its parent's stub
too, as an exec would unshare the table. Threads are started by their process's main thread
once its memory is in place.
"""

import contextlib
import ctypes
import errno
import os
import signal
import time
import types

from torpor.arch import X86_64
from torpor.arch.stub import idle_elf, namespace_init_elf
from torpor.context import log
from torpor.errors import ImageError, RestoreError
from torpor.images.constants import TASK_STOPPED
from torpor.kernel import libc, procfs, ptrace
from torpor.parts import clocks
from torpor.remote import RemoteTask, wait_settled

PID_WAIT_SECONDS = 5.0


class _CloneArgs(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "flags pidfd child_tid parent_tid exit_signal stack stack_size tls set_tid "
            "set_tid_size cgroup"
        ).split()
    ]


class _Stub:
    """The program a new task execs first (see torpor.arch.stub), and the gate that holds
    the child back until torpor traces it, so that the exec is never missed."""

    def __init__(self, abi, program: bytes | None = None):
        self.fd = os.memfd_create("torpor-stub", 0)
        os.write(self.fd, program or idle_elf(abi))
        self.gate_r, self.gate_w = os.pipe()

    def close(self):
        for fd in (self.fd, self.gate_r, self.gate_w):
            os.close(fd)


_EXIT_EXEC = 121  # exit status of a child that could not exec the stub


def _spawn_with_pid(pid: int, stub: _Stub) -> int:
    """A child of this process with PID `pid` that, once torpor lets it, enters its time
    namespace and execs the stub."""
    tid = (ctypes.c_int * 1)(pid)
    args = _CloneArgs(exit_signal=signal.SIGCHLD, set_tid=ctypes.addressof(tid), set_tid_size=1)
    got = libc.syscall_holding_gil(libc.SYS_CLONE3, ctypes.byref(args), ctypes.sizeof(args))
    if got == 0:  # the child: a copy of torpor with a moment to live
        try:
            os.read(stub.gate_r, 1)
            os.execve(f"/proc/self/fd/{stub.fd}", ["torpor-restore"], {})
        finally:
            os._exit(_EXIT_EXEC)
    return got


def _seize_new(child: int, stub: _Stub, options: int) -> RemoteTask:
    try:
        ptrace.seize(child, options)
    except PermissionError:
        if not options & ptrace.PTRACE_O_SUSPEND_SECCOMP:
            raise
        raise RestoreError(
            "the images hold seccomp filters, which torpor suspends for its calls: "
            "PTRACE_O_SUSPEND_SECCOMP needs CAP_SYS_ADMIN in the initial user namespace"
        ) from None
    os.write(stub.gate_w, b"x")
    stop = ptrace.wait(child)
    if stop.exited:
        raise RestoreError("the new task could not exec torpor's stub program")
    if not (stop.stopped and stop.event == ptrace.PTRACE_EVENT_EXEC):
        raise RestoreError(f"the new task did not exec torpor's stub ({stop.describe()})")
    task = RemoteTask(child, ptrace.get_regs(child))
    task.after_exec()
    return task


CLONE_NEWPID = 0x20000000
# Traced from birth; tasks they fork and threads they start are traced too. With seccomp
# filters in the images, PTRACE_O_SUSPEND_SECCOMP too (it needs CAP_SYS_ADMIN).
RESTORE_OPTIONS = (
    ptrace.PTRACE_O_EXITKILL
    | ptrace.PTRACE_O_TRACEEXEC
    | ptrace.PTRACE_O_TRACESYSGOOD
    | ptrace.PTRACE_O_TRACEFORK
    | ptrace.PTRACE_O_TRACECLONE
)


@contextlib.contextmanager
def _children_in_pid_namespace(ns_path: str | None):
    """Within this block, children torpor creates are born in the PID namespace at ns_path
    (a new one if ns_path is "new"); afterwards in torpor's own again."""
    if ns_path is None:
        yield
        return
    own = os.open("/proc/self/ns/pid_for_children", os.O_RDONLY)
    try:
        if ns_path == "new":
            libc.syscall(libc.SYS_UNSHARE, CLONE_NEWPID)
        else:
            target = os.open(ns_path, os.O_RDONLY)
            try:
                libc.syscall(libc.SYS_SETNS, target, CLONE_NEWPID)
            finally:
                os.close(target)
        try:
            yield
        finally:
            libc.syscall(libc.SYS_SETNS, own, CLONE_NEWPID)
    finally:
        os.close(own)


def start_pid_namespace() -> int:
    """A new PID namespace, held by an init (PID 1 there) that exits when it is alone in it;
    returns the init's PID here. The init is started through a short-lived intermediate so
    that, orphaned, it is reaped by the system and not left a zombie of the caller."""
    stub = _Stub(X86_64, namespace_init_elf())
    r, w = os.pipe()
    try:
        helper = os.fork()
        if helper == 0:
            try:
                os.close(r)
                with _children_in_pid_namespace("new"):
                    init = os.fork()
                    if init == 0:
                        os.execve(f"/proc/self/fd/{stub.fd}", ["torpor-init"], {})
                os.write(w, str(init).encode())
            finally:
                os._exit(0)
        os.close(w)
        w = -1
        answer = os.read(r, 32)
        os.waitpid(helper, 0)
        if not answer:
            raise RestoreError("cannot create a PID namespace")
        return int(answer)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
        stub.close()


def _create_task(
    pid: int, stub: _Stub, timens_offsets: str | None, pid_ns, options: int
) -> RemoteTask:
    """The root of the restored tree: a child of torpor with PID `pid` running `stub`,
    traced with ptrace `options`."""
    with _children_in_pid_namespace(pid_ns):
        return _with_pid_retries(pid, lambda: _create_task_from(pid, stub, timens_offsets, options))


def _with_pid_retries(pid: int, create):
    """create(), retried while PID `pid` is held by a process that is only waiting to be
    reaped (one a dump just killed)."""
    deadline = time.monotonic() + PID_WAIT_SECONDS
    while True:
        try:
            return create()
        except FileExistsError:
            if not os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                continue
            if time.monotonic() >= deadline or not procfs.is_dead(pid):
                raise RestoreError(f"PID {pid} is in use by another process") from None
            time.sleep(0.02)
        except PermissionError:
            raise RestoreError("restoring a PID needs root (CAP_CHECKPOINT_RESTORE)") from None
        except OSError as e:
            if e.errno == errno.ENOSYS:
                raise RestoreError(
                    "this kernel has no clone3 (Linux 5.5 or later needed)"
                ) from None
            raise RestoreError(f"cannot create a task with PID {pid}: {e.strerror}") from None


def _create_task_from(
    pid: int, stub: _Stub, timens_offsets: str | None, options: int
) -> RemoteTask:
    with clocks.children_in_new_namespace(timens_offsets):
        child = _spawn_with_pid(pid, stub)
    try:
        return _seize_new(child, stub, options)
    except BaseException:
        kill_child(child)
        raise


def kill_child(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


SIGCHLD = 17
RLIMIT_CORE = 4
WALL = 0x40000000  # wait4 __WALL
CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND = 0x100, 0x200, 0x400, 0x800
CLONE_THREAD, CLONE_SYSVSEM = 0x10000, 0x40000
CLONE_THREAD_FLAGS = (
    CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM
)


def _under_seccomp(procs) -> bool:
    """Whether a thread of the images runs in a seccomp mode."""
    return any(
        core.thread_core.seccomp_mode
        for p in procs
        if not p.zombie
        for core in (p.core, *p.thread_cores.values())
    )


def _stop_signal(pid: int, tc) -> int:
    """The signal that stops process `pid` again as job control had stopped it at the dump
    (TaskCoreEntry `tc`), sent as its main thread is let go: its threads still traced stop
    with it once let go. A terminal stop signal the kernel would discard (its group is
    orphaned here) is SIGSTOP instead."""
    sig = tc.stop_signo
    if not sig or (sig != signal.SIGSTOP and procfs.orphaned_group(pid)):
        sig = signal.SIGSTOP
    log.debug("process %d stopped again by signal %d", pid, sig)
    return sig


# What a child shares with its parent when the images give both the same id, and the clone
# flag that makes it so again. (TaskKobjIdsEntry field, flag, what it is.)
SHARED_WITH_PARENT = (
    ("files_id", CLONE_FILES, "fd table"),
    ("fs_id", CLONE_FS, "working directory, root and umask"),
)


def _sharing_flags(parent, child) -> int:
    """The clone flags that give `child` what it shares with `parent` (ProcessImages)."""
    if parent is None or parent.zombie or child.zombie:
        return 0
    return sum(
        flag
        for field_name, flag, _ in SHARED_WITH_PARENT
        if getattr(child.core.ids, field_name) == getattr(parent.core.ids, field_name)
    )


def check_sharing(procs) -> None:
    """Refuse images in which processes share an fd table or fs (the same id) other than
    children sharing their parent's, which is all a fork can make again; and a child that
    shares its parent's fd table in another mode (an exec would have unshared it)."""
    by_pid = {p.pid: p for p in procs}
    for field_name, flag, name in SHARED_WITH_PARENT:
        first: dict[int, int] = {}  # id -> the first process with it
        for proc in procs:  # parents before their children
            if proc.zombie:
                continue
            key = getattr(proc.core.ids, field_name)
            parent = by_pid.get(proc.entry.ppid)
            shares = parent is not None and _sharing_flags(parent, proc) & flag
            if key in first and not shares:
                raise ImageError(
                    f"core-{proc.pid}.img: process {proc.pid} shares its {name} with process "
                    f"{first[key]} but not with its parent, which no fork makes again"
                )
            if shares and flag == CLONE_FILES and proc.abi is not parent.abi:
                raise ImageError(
                    f"core-{proc.pid}.img: process {proc.pid} shares its parent's fd table "
                    "but runs in another mode, which an exec would have unshared"
                )
            first.setdefault(key, proc.pid)


class Family:
    """The tasks of one restore, keyed by their saved PIDs/TIDs."""

    def __init__(self, procs, *, timens_offsets, pid_ns, scratch_at, sharing=None):
        self.procs = procs
        self.by_pid = {p.pid: p for p in procs}
        self.tasks: dict[int, RemoteTask] = {}  # saved PID/TID -> its task, while traced
        self.created: list[int] = []  # every process made, as torpor numbers it
        self.threads: list[int] = []  # every other thread started, as torpor numbers it
        self._timens_offsets = timens_offsets
        self._pid_ns = pid_ns
        self._scratch_at = scratch_at
        self._sharing = sharing  # torpor.parts.cow.Sharing: children forked keeping memory
        self._place = None
        self._stubs: dict[str, _Stub] = {}
        self._options = RESTORE_OPTIONS | (
            ptrace.PTRACE_O_SUSPEND_SECCOMP if _under_seccomp(procs) else 0
        )

    def clone_flags(self, pid: int) -> int:
        """The clone flags (CLONE_FILES, CLONE_FS) process `pid` is forked with: what it
        shares with its parent."""
        proc = self.by_pid[pid]
        return _sharing_flags(self.by_pid.get(proc.entry.ppid), proc)

    def _scratch_mm(self, proc):
        """What the scratch page of process `proc` must avoid: its VMAs, and those of the
        children (and theirs) that share its fd table, which keep its scratch page as they
        do not exec (an object with `vmas`, as an MmEntry)."""
        vmas, queue = [], [proc]
        while queue:
            p = queue.pop()
            vmas += p.mm.vmas
            queue += [c for c in p.children if _sharing_flags(p, c) & CLONE_FILES]
        return types.SimpleNamespace(vmas=vmas)

    def _stub(self, abi) -> _Stub:
        if abi.name not in self._stubs:
            self._stubs[abi.name] = _Stub(abi)
        return self._stubs[abi.name]

    def close(self) -> None:
        for stub in self._stubs.values():
            stub.close()
        self._stubs.clear()

    # --- the tree ---------------------------------------------------------------------------

    def create(self, place=None) -> None:
        """Every process, in its place in the tree, its session and its group; zombies dead.
        place(tasks), if given, is called with every process made, before the zombies die
        and before any process has a thread or memory of its own (torpor.parts.cgroups);
        a process that has memory before its children are forked (torpor.parts.cow) is
        placed before that, alone."""
        check_sharing(self.procs)
        self._place = place
        root = self.procs[0]
        task = _create_task(
            root.pid, self._stub(root.abi), self._timens_offsets, self._pid_ns, self._options
        )
        self.created.append(task.pid)
        self.tasks[root.pid] = task
        task.block_signals()
        task.map_scratch(at=self._scratch_at(task.pid, self._scratch_mm(root)))
        self._populate(root)
        self._set_groups()
        self._check_ids()
        if place:
            place(self.tasks)
        self._bury_zombies()

    def _populate(self, proc) -> None:
        """Fork proc's children from it: those in the session proc was born in first, then,
        if proc leads a session of its own, the others after its setsid."""
        task = self.tasks[proc.pid]
        if self._sharing and self._sharing.prepares(proc.pid):
            if self._place:
                self._place({proc.pid: task})
            self._sharing.prepare(proc.pid)
        for child in proc.children:
            if child.entry.sid != proc.pid:
                self._fork(proc, child)
        if proc.entry.sid == proc.pid:
            task.call(X86_64, "setsid")
        for child in proc.children:
            if child.entry.sid == proc.pid:
                self._fork(proc, child)
        for child in proc.children:
            if not child.zombie:
                self._populate(child)

    def _fork(self, parent, child) -> None:
        parent_task = self.tasks[parent.pid]
        flags = _sharing_flags(parent, child)
        task = _with_pid_retries(child.pid, lambda: parent_task.spawn(flags, child.pid, SIGCHLD))
        self.created.append(task.pid)
        self.tasks[child.pid] = task
        log.debug("process %d forked by %d", child.pid, parent.pid)
        if child.zombie:
            if child.entry.sid == child.pid:
                task.call(X86_64, "setsid")
            return
        scratch = (parent_task.scratch, parent_task.scratch + parent_task.scratch_size)
        keeps_memory = self._sharing and self._sharing.inherits(parent.pid, child.pid, scratch)
        if keeps_memory or flags & CLONE_FILES:  # an exec would unshare memory and fd table
            task.sigmask = parent_task.sigmask  # and the parent's stub and scratch page
            log.debug("process %d keeps what it shares with %d", child.pid, parent.pid)
            return
        task.execute(f"/proc/{os.getpid()}/fd/{self._stub(child.abi).fd}")
        task.block_signals()
        task.map_scratch(at=self._scratch_at(task.pid, self._scratch_mm(child)))

    def _set_groups(self) -> None:
        """Group leaders first, then members; a group whose leader is gone gets a helper
        process with the leader's PID for as long as its members take time to join."""
        root = self.procs[0]
        outside = root.entry.pgid if root.entry.pgid not in self.by_pid else None
        orphaned: dict[int, list] = {}
        for proc in self.procs:
            e = proc.entry
            if e.pgid == proc.pid and e.sid != proc.pid:
                self.tasks[proc.pid].call(X86_64, "setpgid", 0, 0)
        for proc in self.procs:
            e = proc.entry
            if e.pgid == proc.pid or e.sid == proc.pid or e.pgid == outside:
                continue
            if e.pgid in self.by_pid:
                self.tasks[proc.pid].call(X86_64, "setpgid", 0, e.pgid)
            else:
                orphaned.setdefault(e.pgid, []).append(proc)
        for pgid, members in orphaned.items():
            self._join_orphaned_group(pgid, members)

    def _join_orphaned_group(self, pgid: int, members) -> None:
        parent = self.tasks[members[0].entry.ppid]
        helper = _with_pid_retries(pgid, lambda: parent.spawn(0, pgid, 0))
        self.created.append(helper.pid)
        helper.call(X86_64, "setpgid", 0, 0)
        for proc in members:
            self.tasks[proc.pid].call(X86_64, "setpgid", 0, pgid)
        helper.exit(0)
        parent.call(X86_64, "wait4", pgid, 0, WALL, 0)
        log.debug("group %d recreated for %s", pgid, [p.pid for p in members])

    def _check_ids(self) -> None:
        """Every process in its saved session and group, as its own namespace numbers them."""
        root = self.procs[0]
        for proc in self.procs:
            status = procfs.read_status(self.tasks[proc.pid].pid)
            for what, saved, key in (
                ("process group", proc.entry.pgid, "NSpgid"),
                ("session", proc.entry.sid, "NSsid"),
            ):
                got = int(status[key].split()[-1])
                outside = saved not in self.by_pid and (
                    saved == root.entry.pgid or saved == root.entry.sid
                )
                if not outside and got != saved:
                    raise RestoreError(
                        f"process {proc.pid} cannot be put back in its {what} {saved} "
                        f"(it is in {got})"
                    )

    def _bury_zombies(self) -> None:
        """Make each zombie exit the way it did; its parent can then wait for it."""
        for proc in self.procs:
            if not proc.zombie:
                continue
            task = self.tasks.pop(proc.pid)
            status = proc.core.tc.exit_code
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                task.call(X86_64, "prlimit64", 0, RLIMIT_CORE, task.put(bytes(16)), 0)
                if sig != signal.SIGKILL:  # whose action is always the default one
                    task.call(X86_64, "rt_sigaction", sig, task.put(bytes(32)), 0, 8)
                ptrace.set_sigmask(task.pid, 0)
                task.kill_with(sig)
            else:
                task.exit(os.WEXITSTATUS(status))

    # --- threads and the end ----------------------------------------------------------------

    def start_thread(self, pid: int, tid: int) -> RemoteTask:
        """A new thread with TID `tid` in process `pid` (whose memory must be in place)."""
        leader = self.tasks[pid]
        thread = _with_pid_retries(tid, lambda: leader.spawn(CLONE_THREAD_FLAGS, tid))
        self.tasks[tid] = thread
        self.threads.append(thread.pid)
        return thread

    def let_go(self) -> None:
        """Let every task run: each process's main thread first, its other threads after.
        A signal sent to a process goes to its main thread when that one can take it (the
        kernel's preference, which programs rely on: one waiting in pause() for it); were
        another thread let go first, a signal sent in between would go to that one. And a
        task let go counts as having a signal pending until it has looked for one (detaching
        marks it so): the kernel passes a signal sent meanwhile to another thread, or that
        task takes it first. So this returns once every task sleeps again, in its call, past
        that look (remote.wait_settled)."""
        leaders = {p.pid for p in self.procs}
        order = sorted(self.tasks.items(), key=lambda item: item[0] not in leaders)
        for saved, task in order:
            stopped = saved in leaders and self.by_pid[saved].core.tc.task_state == TASK_STOPPED
            task.detach(_stop_signal(task.pid, self.by_pid[saved].core.tc) if stopped else 0)
        wait_settled([task.pid for _, task in order])
        self.tasks.clear()

    def kill(self) -> None:
        """End every task this restore made (after a failure)."""
        for task in self.tasks.values():
            task.close()
        for pid in self.created:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # The threads first: each is traced, so its process is not reaped until torpor has
        # reaped it (a wait for the process alone would never end).
        for pid in self.threads + self.created:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, WALL)
        self.tasks.clear()

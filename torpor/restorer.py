"""Restore: recreate a process from an image directory, as an explicit list of stages.

The new task starts as a copy of torpor made with clone3 (the dumped PID requested through
set_tid), is seized at once, and is then rebuilt by injected syscalls: its inherited address
space, fds and registrations are dropped, the dumped ones put in place, and finally its
registers are loaded and it is let go. Any failure kills the new task; the images are only read.
"""

import contextlib
import ctypes
import errno
import os
import signal
import time
from pathlib import Path

from torpor.arch import X86_64, abi_for_cs
from torpor.arch.stub import idle_elf, namespace_init_elf
from torpor.context import RestoreContext, log
from torpor.errors import ImageError, RestoreError, TorporError
from torpor.images import ImageDir, pb
from torpor.kernel import libc, procfs, ptrace
from torpor.parts import clocks, cpu, files, memory, regs, signals, task
from torpor.parts import vdso as vdso_part
from torpor.remote import RemoteTask

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


def _seize_new(child: int, stub: _Stub) -> RemoteTask:
    options = ptrace.PTRACE_O_EXITKILL | ptrace.PTRACE_O_TRACEEXEC | ptrace.PTRACE_O_TRACESYSGOOD
    ptrace.seize(child, options | ptrace.PTRACE_O_SUSPEND_SECCOMP)
    os.write(stub.gate_w, b"x")
    stop = ptrace.wait(child)
    if stop.exited:
        raise RestoreError("the new task could not exec torpor's stub program")
    if not (stop.stopped and stop.event == ptrace.PTRACE_EVENT_EXEC):
        raise RestoreError(f"the new task did not exec torpor's stub ({stop.describe()})")
    ptrace.cont_syscall(child)  # out of execve, so that injected calls start clean
    stop = ptrace.wait(child)
    if not stop.is_syscall_stop:
        raise RestoreError(f"the new task did not leave execve ({stop.describe()})")
    return RemoteTask(child, ptrace.get_regs(child))


CLONE_NEWPID = 0x20000000


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


def _start_pid_namespace() -> int:
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


def _create_task(pid: int, abi, timens_offsets: str | None, pid_ns: str | None) -> RemoteTask:
    stub = _Stub(abi)
    try:
        with _children_in_pid_namespace(pid_ns):
            return _create_task_from(pid, stub, timens_offsets)
    finally:
        stub.close()


def _create_task_from(pid: int, stub: _Stub, timens_offsets: str | None) -> RemoteTask:
    deadline = time.monotonic() + PID_WAIT_SECONDS
    while True:
        try:
            with clocks.children_in_new_namespace(timens_offsets):
                child = _spawn_with_pid(pid, stub)
            break
        except FileExistsError:
            # A process killed by the dump is reaped by its parent a little later.
            if not os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                continue
            if time.monotonic() >= deadline or _is_live(pid):
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
    try:
        return _seize_new(child, stub)
    except BaseException:
        _kill(child)
        raise


def _is_live(pid: int) -> bool:
    try:
        return procfs.read_stat(pid).state not in ("Z", "X")
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _load(images: ImageDir) -> tuple:
    images.verify()
    (root, *others) = images.read("pstree.img")
    if others or len(root.threads) > 1:
        raise ImageError("pstree.img: several tasks; process trees are not supported yet")
    pid = root.pid
    core = images.read_one(f"core-{pid}.img")
    mm = images.read_one(f"mm-{pid}.img")
    file_entries = {f.id: f for f in images.read("files.img")}
    gp = core.thread_info.gpregs
    abi = abi_for_cs(gp.cs)
    if core.mtype != pb.core_pb2.CoreEntry.X86_64 or abi is None:
        raise ImageError(f"core-{pid}.img: not an x86_64 or ia32 task")
    if abi.criu_mode != pb.core_x86_pb2.UserX86RegsMode.Name(gp.mode):
        raise ImageError(f"core-{pid}.img: register mode does not match the code segment")
    return root, core, mm, file_entries, abi


def restore(
    images_dir,
    *,
    shell_job: bool = False,
    pidfile=None,
    force_vdso_trampolines: bool = False,
    strict_cpu_check: bool = False,
    timens: bool = True,
    pidns: bool = False,
    progress=None,
) -> int:
    """Recreate the process saved in `images_dir`; return its PID (as seen from here: with
    `pidns`, it has its dumped PID only inside its new PID namespace).

    The restored process is a child of the calling process and is running when this returns.
    """
    path = Path(images_dir)
    if not path.is_dir():
        raise ImageError(f"images directory {path} does not exist")
    images = ImageDir(path)
    root, core, mm, file_entries, abi = _load(images)
    started = time.monotonic()
    cpu_notes = cpu.check(images, strict_cpu_check)
    task.check_creds(core)
    init = _start_pid_namespace() if pidns else None
    try:
        rt = _create_task(
            root.pid,
            abi,
            clocks.offsets_for(images) if timens else None,
            f"/proc/{init}/ns/pid" if init else None,
        )
    except BaseException:
        if init:
            _kill(init)
        raise
    ctx = RestoreContext(
        image_pid=root.pid,
        pid=rt.pid,
        task=rt,
        abi=abi,
        images=images,
        core=core,
        mm=mm,
        files=file_entries,
        shell_job=shell_job,
        force_vdso_trampolines=force_vdso_trampolines,
        progress=progress,
    )
    try:
        _run_stages(ctx, root)
    except BaseException as e:
        _kill(rt.pid)
        if init:
            _kill(init)
        if isinstance(e, TorporError):
            raise
        if isinstance(e, OSError):
            raise RestoreError(f"restore of {root.pid} failed: {e}") from e
        raise
    for note in cpu_notes + ctx.notes:
        log.warning("%s", note)
    if pidfile:
        Path(pidfile).write_text(f"{rt.pid}\n")
    log.info("restore of %d done in %.3f s", root.pid, time.monotonic() - started)
    return rt.pid


def _run_stages(ctx: RestoreContext, root) -> None:
    rt = ctx.task
    rt.block_signals()
    rt.map_scratch(at=_scratch_address(ctx))
    state: dict = {}
    stages = [
        ("forget inherited registrations", task.forget_inherited),
        ("close inherited fds", files.close_inherited),
        ("clear address space", memory.clear_address_space),
        ("vdso", lambda c: state.setdefault("vdso", vdso_part.restore(c))),
        ("memory", lambda c: memory.restore(c, state["vdso"].kernel_vmas)),
        ("vdso trampolines", lambda c: vdso_part.patch_old_copy(c, state["vdso"])),
        ("memory protection", lambda c: memory.finish(c, state["vdso"].kernel_vmas)),
        ("files", files.restore),
        ("fs", files.restore_fs),
        ("session", lambda c: _restore_session(c, root)),
        ("signals", signals.restore),
        ("pending signals", signals.restore_pending),
        ("task", task.restore),
        ("credentials", task.restore_creds),
        ("drop scratch page", lambda c: c.task.unmap_scratch()),
        ("registers", regs.restore),
        ("blocked signals", signals.restore_blocked),
    ]
    for name, stage in stages:
        log.debug("restore stage: %s", name)
        stage(ctx)
    rt.detach()


def _restore_session(ctx: RestoreContext, root) -> None:
    if root.sid == root.pid:
        ctx.task.call(X86_64, "setsid")
    elif root.pgid == root.pid:
        ctx.task.call(X86_64, "setpgid", 0, 0)


def _scratch_address(ctx: RestoreContext) -> int:
    """A page below 4 GiB that no dumped VMA and no current mapping of the new task uses."""
    busy = [(v.start, v.end) for v in ctx.mm.vmas]
    busy += [(m.start, m.end) for m in procfs.read_maps(ctx.pid, with_flags=False)]
    page = procfs.PAGE_SIZE
    return memory.free_range(
        busy, page, 0x200000, (1 << 32) - 1, 16 * page, "the restore's scratch page"
    )

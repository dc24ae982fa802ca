"""Dump: freeze a process, collect its state part by part, write the image directory.

The target is never changed in a way that outlives the dump: it is seized and stopped, a
scratch page is mapped for injected calls, and on any failure the scratch page goes, the
registers are put back and the task runs on as before.
"""

import os
import shutil
import signal
import time
from pathlib import Path

from torpor.arch import X86_64, abi_for_cs
from torpor.context import DumpContext, FileTable, log
from torpor.errors import ImageError, TargetError, TorporError, UnsupportedError
from torpor.images import ImageDir, constants, pb
from torpor.kernel import procfs, ptrace
from torpor.parts import clocks, cpu, files, memory, regs, signals, task
from torpor.remote import RemoteError, RemoteTask

ELF_CLASS32 = 1


def _prepare_dir(path: Path) -> None:
    if not path.is_dir():
        raise ImageError(f"images directory {path} does not exist")
    if any(path.iterdir()):
        raise ImageError(f"images directory {path} is not empty")


def _check_target(pid: int) -> None:
    if pid == os.getpid():
        raise TargetError("torpor cannot dump itself")
    try:
        st = procfs.read_stat(pid)
    except FileNotFoundError:
        raise TargetError(f"no process with PID {pid}") from None
    except ProcessLookupError:
        raise TargetError(f"no process with PID {pid}") from None
    if st.state in ("Z", "X"):
        raise TargetError(f"process {pid} is a zombie")
    if st.num_threads > 1:
        raise UnsupportedError(
            f"process {pid} has {st.num_threads} threads; multi-threaded processes are not "
            "supported yet"
        )
    kids = procfs.children(pid)
    if kids:
        raise UnsupportedError(
            f"process {pid} has children ({', '.join(map(str, kids))}); process trees are not "
            "supported yet"
        )
    try:
        with open(procfs.proc(pid, "exe"), "rb") as f:
            header = f.read(20)
    except OSError as e:
        raise TargetError(f"cannot read the executable of process {pid}: {e.strerror}") from None
    if header[4] == ELF_CLASS32 and int.from_bytes(header[18:20], "little") == 62:
        raise UnsupportedError(f"process {pid} is an x32 program; x32 is not supported")
    _check_unsaved_state(pid)


def _check_unsaved_state(pid: int) -> None:
    """Refuse state that torpor does not save yet rather than lose it silently."""
    status = procfs.read_status(pid)
    if status.get("Seccomp", "0") != "0":
        raise UnsupportedError(f"process {pid} runs under seccomp; seccomp is not supported yet")
    try:
        timers = procfs.proc(pid, "timers").read_text().strip()
    except FileNotFoundError:
        timers = ""
    if timers:
        raise UnsupportedError(f"process {pid} has POSIX timers; timers are not supported yet")


def _seize(pid: int) -> RemoteTask:
    try:
        return RemoteTask.seize(pid)
    except PermissionError:
        raise TargetError(f"cannot trace process {pid}: permission denied") from None
    except ProcessLookupError:
        raise TargetError(f"no process with PID {pid}") from None
    except OSError as e:
        raise TargetError(f"cannot trace process {pid}: {e.strerror}") from None


def dump(
    pid: int, images_dir, *, leave_running: bool = False, shell_job: bool = False, progress=None
) -> None:
    """Checkpoint process `pid` into `images_dir` (existing, empty).

    The process is killed after a successful dump unless `leave_running`; after a failed one
    it runs on untouched and the directory is left empty.
    """
    path = Path(images_dir)
    _prepare_dir(path)
    _check_target(pid)
    fds = files.inspect(pid, shell_job)
    started = time.monotonic()
    rt = _seize(pid)
    try:
        _collect(pid, rt, path, fds, shell_job, progress)
    except BaseException as e:
        _let_go(rt)
        _empty_dir(path)
        if isinstance(e, RemoteError | OSError) and not isinstance(e, TorporError):
            raise TargetError(f"dump of {pid} failed: {e}") from e
        raise
    if leave_running:
        _let_go(rt)
    else:
        os.kill(pid, signal.SIGKILL)
        rt.close()
        try:
            ptrace.detach(pid)
        except OSError:
            pass  # SIGKILL may already have ended the tracing
    log.info("dump of %d done in %.3f s", pid, time.monotonic() - started)


def _check_interval_timers(pid: int, rt: RemoteTask) -> None:
    """Refuse a task with an armed interval timer (setitimer, alarm): not saved yet."""
    out = rt.reserve(32)
    for which, name in ((0, "ITIMER_REAL (or alarm)"), (1, "ITIMER_VIRTUAL"), (2, "ITIMER_PROF")):
        rt.call(X86_64, "getitimer", which, out)
        if any(rt.read(out, 32)):
            raise UnsupportedError(f"process {pid} has {name} armed; timers are not supported yet")


def _let_go(rt: RemoteTask) -> None:
    """Undo what the dump did to the task and let it run as before."""
    abi = abi_for_cs(rt.regs.cs)
    try:
        rt.unmap_scratch()
    finally:
        if abi is not None:
            rt.regs = regs.restart_adjusted_for_resume(rt.regs, abi)
        rt.detach()


def _empty_dir(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _collect(pid, rt: RemoteTask, path: Path, fds, shell_job: bool, progress) -> None:
    abi = abi_for_cs(rt.regs.cs)
    if abi is None:
        raise UnsupportedError(f"process {pid} runs with an unknown code segment {rt.regs.cs:#x}")
    rt.block_signals()
    rt.map_scratch()
    _check_interval_timers(pid, rt)
    images = ImageDir(path)
    core = pb.core_pb2.CoreEntry(mtype=pb.core_pb2.CoreEntry.X86_64)
    core.ids.CopyFrom(pb.core_pb2.TaskKobjIdsEntry(vm_id=1, files_id=1, fs_id=1, sighand_id=1))
    ctx = DumpContext(
        pid=pid,
        task=rt,
        abi=abi,
        images=images,
        core=core,
        mm=pb.mm_pb2.MmEntry(),
        files=FileTable(),
        shell_job=shell_job,
        progress=progress,
    )
    log.info("dumping %d (%s)", pid, abi.name)
    for name, stage in (
        ("registers", regs.dump),
        ("signals", signals.dump),
        ("task", task.dump),
        ("files", lambda c: files.dump(c, fds)),
        ("memory", memory.dump),
    ):
        log.debug("dump stage: %s", name)
        stage(ctx)
    st = procfs.read_stat(pid)
    images.write(
        "pstree.img",
        [pb.pstree_pb2.PstreeEntry(pid=pid, ppid=st.ppid, pgid=st.pgid, sid=st.sid, threads=[pid])],
    )
    images.write(f"core-{pid}.img", [core])
    images.write(f"mm-{pid}.img", [ctx.mm])
    images.write("files.img", ctx.files.entries)
    cpu.dump(images)
    clocks.dump(pid, images)
    inventory = pb.inventory_pb2.InventoryEntry(
        img_version=constants.IMG_VERSION,
        fdinfo_per_id=True,
        root_ids=core.ids,
    )
    images.commit(inventory)

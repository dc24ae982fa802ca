"""Restore: recreate a process tree from an image directory, as an explicit list of stages.

Every task is first created by torpor.family (right PIDs, parents, sessions, groups) as a
stub; each process is then rebuilt by injected syscalls: its inherited address space, fds and
registrations are dropped, the dumped ones put in place, its threads started, and finally
the registers of every thread are loaded and the whole tree is let go. Any failure kills
every task created; the images are only read.
"""

import functools
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from torpor import audit, preflight
from torpor.arch import abi_for_cs
from torpor.context import RestoreContext, log
from torpor.errors import ImageError, RestoreError, TorporError
from torpor.family import CLONE_FILES, Family, kill_child, start_pid_namespace
from torpor.images import ImageDir, constants, pb
from torpor.kernel import procfs
from torpor.parts import (
    cgroups,
    clocks,
    cow,
    files,
    flags,
    memfds,
    memory,
    pkeys,
    regs,
    rlimits,
    sched,
    seccomp,
    shmem,
    signals,
    task,
    timers,
)
from torpor.parts import ghosts as ghost_files
from torpor.parts import vdso as vdso_part
from torpor.parts.sockets import netlock
from torpor.remote import STOP_SIGNALS
from torpor.shield import shielded

PID_MAX_LIMIT = 1 << 22  # the kernel's largest pid_max

# --- images ----------------------------------------------------------------------------------


@dataclass
class ProcessImage:
    """One process of the saved tree, as read (and checked) from the images."""

    entry: object  # PstreeEntry
    index: int  # its pages-N.img, fdinfo-N.img
    core: object = None  # the main thread's CoreEntry
    thread_cores: dict = field(default_factory=dict)  # tid -> CoreEntry, other threads
    mm: object = None
    abi: object = None
    children: list = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.entry.pid

    @property
    def zombie(self) -> bool:
        return self.core.tc.task_state == constants.TASK_DEAD


def _load(images: ImageDir) -> list[ProcessImage]:
    """Every process of the images, the root first and each parent before its children."""
    images.verify()
    procs: dict[int, ProcessImage] = {}
    for index, entry in enumerate(images.read("pstree.img"), start=1):
        if entry.pid in procs or not entry.threads or entry.threads[0] != entry.pid:
            raise ImageError(f"pstree.img: malformed entry for process {entry.pid}")
        ids = [entry.pid, *entry.threads]  # a group or session 0 is one outside the PID namespace
        groups = [entry.ppid, entry.pgid, entry.sid]
        if not all(0 < i <= PID_MAX_LIMIT for i in ids) or max(groups) > PID_MAX_LIMIT:
            raise ImageError(f"pstree.img: process {entry.pid} has IDs no process can have")
        proc = ProcessImage(entry, index)
        if procs:
            parent = procs.get(entry.ppid)
            if parent is None:
                raise ImageError(f"pstree.img: parent {entry.ppid} of {entry.pid} comes later")
            parent.children.append(proc)
        procs[entry.pid] = proc
        proc.core = images.read_one(f"core-{entry.pid}.img")
        tc = proc.core.tc
        if tc.task_state not in (constants.TASK_ALIVE, constants.TASK_DEAD, constants.TASK_STOPPED):
            raise ImageError(f"core-{entry.pid}.img: task state {tc.task_state}")
        if tc.task_state == constants.TASK_STOPPED and tc.stop_signo not in (0, *STOP_SIGNALS):
            raise ImageError(f"core-{entry.pid}.img: stopped by signal {tc.stop_signo}")
        if proc.zombie:
            if index == 1 or len(entry.threads) != 1:
                raise ImageError(f"pstree.img: zombie {entry.pid} cannot be restored as saved")
            continue
        proc.abi = _abi_of(proc.core, entry.pid)
        proc.mm = images.read_one(f"mm-{entry.pid}.img")
        for tid in entry.threads[1:]:
            core = images.read_one(f"core-{tid}.img")
            if _abi_of(core, tid) is not proc.abi:
                raise ImageError(f"core-{tid}.img: thread in another mode than its process")
            proc.thread_cores[tid] = core
    if not procs:
        raise ImageError("pstree.img: no process")
    return list(procs.values())


def _abi_of(core, tid: int):
    gp = core.thread_info.gpregs
    abi = abi_for_cs(gp.cs)
    if core.mtype != pb.core_pb2.CoreEntry.X86_64 or abi is None:
        raise ImageError(f"core-{tid}.img: not an x86_64 or ia32 task")
    if abi.criu_mode != pb.core_x86_pb2.UserX86RegsMode.Name(gp.mode):
        raise ImageError(f"core-{tid}.img: register mode does not match the code segment")
    return abi


# --- restore ---------------------------------------------------------------------------------


def _open(images_dir, trust_images: bool) -> tuple[ImageDir, list[ProcessImage], dict]:
    """The images, their processes and their files.img entries by id; images another user
    could have written are refused unless `trust_images`."""
    path = Path(images_dir)
    if not path.is_dir():
        raise ImageError(f"images directory {path} does not exist")
    images = ImageDir(path)
    if not trust_images:
        images.check_trusted()
    procs = _load(images)
    return images, procs, {f.id: f for f in images.read("files.img")}


def check(
    images_dir,
    *,
    strict_cpu_check: bool = False,
    timens: bool = True,
    pidns: bool = False,
    shell_job: bool = False,
    trust_images: bool = False,
    tcp_close: bool = False,
    manage_cgroups: str = "soft",
) -> list[preflight.Finding]:
    """Whether this host can restore `images_dir`, found without creating anything: the
    checks a restore with the same options makes first, and those it makes as it goes."""
    images, procs, file_entries = _open(images_dir, trust_images)
    return preflight.run(
        images, procs, file_entries, strict_cpu_check=strict_cpu_check, timens=timens, pidns=pidns,
        shell_job=shell_job, tcp_close=tcp_close, whole_host=True, manage_cgroups=manage_cgroups,
    )  # fmt: skip


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
    trust_images: bool = False,
    tcp_close: bool = False,
    inherit_fds: dict[str, int] | None = None,
    manage_cgroups: str = "soft",
    verify: str | None = None,
) -> int:
    """Recreate the process tree saved in `images_dir`; return its root's PID (as seen from
    here: with `pidns`, the tree has its dumped PIDs only inside its new PID namespace).

    The restored root is a child of the calling process; the whole tree is running when this
    returns, and no task of it ran before every task was complete. `tcp_close` restores TCP
    connections closed (CRIU's --tcp-close). The network lock the dump left is removed once
    the tree runs; a restore that fails leaves it, so that another can still take the
    connections over. `inherit_fds` hands in, for a file whose other side was outside the
    tree (a pipe: "pipe:[INODE]", see `torpor show`), an fd of this process to use instead
    (CRIU's --inherit-fd); without one, such a pipe is made again with that side closed.
    `manage_cgroups` says what becomes of the saved cgroups (torpor.parts.cgroups.MODES).
    `verify` (torpor.audit.MODES; None: $TORPOR_VERIFY, else "off") compares the restored
    tree with what the dump recorded before letting it go, and says (warn) or refuses
    (strict) what differs.
    """
    verify = _verify_mode(verify)
    images, procs, file_entries = _open(images_dir, trust_images)
    inherit_fds = _inherited(inherit_fds or {}, file_entries)
    started = time.monotonic()
    warnings = preflight.enforce(
        preflight.run(
            images,
            procs,
            file_entries,
            strict_cpu_check=strict_cpu_check,
            timens=timens,
            shell_job=shell_job,
            tcp_close=tcp_close,
            manage_cgroups=manage_cgroups,
        )  # fmt: skip
    )
    init = start_pid_namespace() if pidns else None
    sharing = cow.Sharing(procs, lambda pid: context_of[pid])  # memory shared since fork
    family = Family(
        procs,
        timens_offsets=clocks.offsets_for(images) if timens else None,
        pid_ns=f"/proc/{init}/ns/pid" if init else None,
        scratch_at=_scratch_address,
        sharing=sharing,
    )
    mms = [p.mm for p in procs if not p.zombie]
    objects = shmem.memfd_objects(mms, files.memory_objects(file_entries))
    shared_memory = shmem.SharedMemory(mms, objects)
    ghosts = ghost_files.Ghosts(images, file_entries)
    placement = cgroups.Placement(images, procs, manage_cgroups)
    notes: list[str] = []
    context_of = _Contexts(
        family,
        procs,
        images=images,
        files=file_entries,
        shell_job=shell_job,
        force_vdso_trampolines=force_vdso_trampolines,
        progress=progress,
        shared_memory=shared_memory,
        shared_files=files.SharedFds(),
        notes=notes,
        tcp_close=tcp_close,
        inherited=inherit_fds,
        cow=sharing,
    )
    try:
        ghosts.create()
        placement.create()  # the saved cgroups that are missing, with their limits
        family.create(place=placement.join)  # before any memory is charged, any thread made
        contexts = [context_of[proc.pid] for proc in procs if not proc.zombie]
        for ctx in contexts:
            _rebuild(ctx)
        for shmid, (_, size, _) in objects.items():  # what no mapping saved of each memfd
            memfds.restore(images, shmid, size, functools.partial(shared_memory.write, shmid))
        shared_memory.seal()  # every page is in: memfd seals may forbid writing
        files.finish_tree(contexts)
        for ctx in contexts:
            _finish(ctx, family, placement)
        ghosts.remove()  # every fd and mapping holds its ghost file: now deleted, as dumped
        circumstances = {
            "pidns": pidns,
            "shell-job": shell_job,
            "ignore": manage_cgroups == "ignore",
            "inherit-fd": bool(inherit_fds),
            "trampolines": any(ctx.vdso_trampolines for ctx in contexts),
        }
        notes += audit.verify(
            _audited(contexts, family), verify, frozenset(k for k, v in circumstances.items() if v)
        )
        root = contexts[0].pid
        family.let_go()
    except BaseException as e:
        with shielded():
            family.kill()
            if init:
                kill_child(init)
            placement.remove()
        if isinstance(e, TorporError):
            raise
        if isinstance(e, OSError):
            raise RestoreError(f"restore of {procs[0].pid} failed: {e}") from e
        raise
    finally:
        ghosts.remove()  # the tree holds them now, or is gone
        shared_memory.close()
        family.close()
    unlocked = netlock.release(images.read_one("inventory.img"))  # every connection runs
    if unlocked:
        notes.append(unlocked)
    for note in warnings + notes:
        log.warning("%s", note)
    if pidfile:
        Path(pidfile).write_text(f"{root}\n")
    log.info(
        "restore of %d (%d processes) done in %.3f s",
        procs[0].pid,
        len(procs),
        time.monotonic() - started,
    )
    return root


class _Contexts(dict):
    """The RestoreContext of each process (saved PID -> context), made once its task exists:
    `common` holds what every process's context shares."""

    def __init__(self, family, procs, **common):
        super().__init__()
        self._family = family
        self._procs = {p.pid: p for p in procs}
        self._common = common

    def __missing__(self, pid: int) -> RestoreContext:
        proc, task = self._procs[pid], self._family.tasks[pid]
        ctx = self[pid] = RestoreContext(
            image_pid=pid,
            pid=task.pid,
            task=task,
            abi=proc.abi,
            core=proc.core,
            mm=proc.mm,
            pages_id=proc.index,
            thread_cores=proc.thread_cores,
            shares_files=bool(self._family.clone_flags(pid) & CLONE_FILES),
            **self._common,
        )
        return ctx


def _inherited(handed: dict[str, int], file_entries: dict) -> dict[str, int]:
    """`handed` (key -> fd of this process), checked: every key names a file the images
    hold whose other side was outside the tree, and every fd is open."""
    known = files.external_keys(file_entries)
    for key, fd in handed.items():
        if key not in known:
            outside = ", ".join(sorted(known)) or "none"
            raise RestoreError(f"--inherit-fd: the images hold no {key} (outside ends: {outside})")
        try:
            os.fstat(fd)
        except OSError as e:
            raise RestoreError(f"--inherit-fd: fd {fd} for {key}: {e.strerror}") from None
    return handed


def _verify_mode(mode: str | None) -> str:
    mode = mode or os.environ.get("TORPOR_VERIFY") or "off"
    if mode not in audit.MODES:
        raise RestoreError(f"unknown verify mode {mode!r} ({', '.join(audit.MODES)})")
    return mode


def _audited(contexts, family) -> list:
    """(saved TID, saved PID, core, PID, task) of every restored task, for torpor.audit."""
    return [
        (tid, ctx.image_pid, core, ctx.pid, family.tasks[tid])
        for ctx in contexts
        for tid, core in ((ctx.image_pid, ctx.core), *ctx.thread_cores.items())
    ]


# The stages of _rebuild that act on the process's fd table: a process sharing its parent's
# (ctx.owns_files false) skips them, its parent did them on that table.
FD_TABLE_STAGES = frozenset(("close inherited fds", "files"))


def _rebuild(ctx: RestoreContext) -> None:
    """A process's address space, fds and fs, in place of the stub's."""
    state: dict = {}
    stages = [
        ("forget inherited registrations", task.forget_inherited),
        ("close inherited fds", files.close_inherited),
        ("clear address space", memory.clear_address_space),
        ("vdso", lambda c: state.setdefault("vdso", vdso_part.restore(c))),
        ("memory", lambda c: memory.restore(c, state["vdso"].kernel_vmas)),
        ("vdso trampolines", lambda c: vdso_part.patch_old_copy(c, state["vdso"])),
        ("memory protection", lambda c: memory.finish(c, state["vdso"].kernel_vmas)),
        ("protection keys", pkeys.restore),
        ("files", files.restore),
        ("fs", files.restore_fs),
    ]
    for name, stage in stages:
        if name in FD_TABLE_STAGES and not ctx.owns_files:
            log.debug("restore stage of %d: %s, done by its parent", ctx.image_pid, name)
            continue
        log.debug("restore stage of %d: %s", ctx.image_pid, name)
        stage(ctx)
    ctx.vdso_trampolines = bool(state["vdso"].trampolines)


def _finish(ctx: RestoreContext, family, placement) -> None:
    """Signals, registrations, threads, timers, credentials and registers: the process
    complete."""
    signals.restore(ctx)
    signals.forget_child_exits(ctx)
    signals.restore_pending(ctx)
    task.restore(ctx)
    flags.restore(ctx)
    threads = [ctx]
    for tid, core in ctx.thread_cores.items():
        new = family.start_thread(ctx.image_pid, tid)
        placement.join_thread(tid, new)
        threads.append(replace(ctx, pid=new.pid, image_pid=tid, task=new, core=core))
    for tctx in threads:
        signals.restore_thread(tctx)
        task.restore_thread(tctx)
        signals.restore_thread_pending(tctx, ctx.image_pid)
        sched.restore_thread(tctx)
    timers.restore(ctx)  # once its threads exist: a timer may signal one of them
    rlimits.restore(ctx)  # once its threads exist: a low RLIMIT_NPROC cannot stop them
    seccomp.restore(threads)  # last but the credentials, which it may need to install filters
    for tctx in reversed(threads):  # the main thread last: it may lose torpor's privileges
        task.restore_creds(tctx)
    task.restore_dumpable(ctx)  # which a change of credentials resets
    for tctx in threads:
        flags.restore_thread(tctx)
    ctx.task.unmap_scratch()
    for tctx in threads:
        regs.restore(tctx)


def _scratch_address(pid: int, mm) -> int:
    """A page below 4 GiB that no dumped VMA and no current mapping of task `pid` uses."""
    busy = [(v.start, v.end) for v in mm.vmas]
    busy += [(m.start, m.end) for m in procfs.read_maps(pid, with_flags=False)]
    page = procfs.PAGE_SIZE
    return memory.free_range(
        busy, page, 0x200000, (1 << 32) - 1, 16 * page, "the restore's scratch page"
    )

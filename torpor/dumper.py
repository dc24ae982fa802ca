"""Dump: freeze a process tree, collect each process's state part by part (and each
thread's), write the image directory.

The tree is never changed in a way that outlives the dump: every task is seized and stopped,
each process gets a scratch page for injected calls, and on any failure the scratch pages go,
the registers are put back and every task runs on as before.
"""

import os
import time
from dataclasses import replace
from pathlib import Path

from torpor import audit
from torpor.arch import abi_for_cs
from torpor.context import DumpContext, DumpOptions, FileTable, log
from torpor.errors import ImageError, TargetError, TorporError, UnsupportedError
from torpor.freezer import FrozenTree
from torpor.images import ImageDir, constants, pb
from torpor.images.imagedir import STAGING_PREFIX
from torpor.kernel import procfs
from torpor.kernel.files import KCMP_FILES, KCMP_FS, KCMP_VM, shared_with
from torpor.parts import (
    cgroups,
    clocks,
    cpu,
    files,
    flags,
    memory,
    pkeys,
    regs,
    rlimits,
    sched,
    seccomp,
    signals,
    timers,
)
from torpor.parts import ghosts as ghost_files
from torpor.parts import task as task_part
from torpor.remote import RemoteError
from torpor.shield import shielded

ELF_CLASS32 = 1


def _prepare_dir(path: Path) -> None:
    """Refuse a missing or non-empty images directory; what a dump that was killed left
    (its private directory) is removed."""
    if not path.is_dir():
        raise ImageError(f"images directory {path} does not exist")
    for child in path.iterdir():
        if child.name.startswith(STAGING_PREFIX) and _left_by_dead_dump(child.name):
            import shutil  # only here: shutil costs every command milliseconds at start-up

            shutil.rmtree(child, ignore_errors=True)
            continue
        raise ImageError(f"images directory {path} is not empty")


def _left_by_dead_dump(name: str) -> bool:
    pid = name.removeprefix(STAGING_PREFIX).split("-")[0]
    return pid.isdigit() and not os.path.exists(f"/proc/{pid}")


NAMESPACES = ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup")


def _namespaces(pid: int) -> dict[str, int]:
    return {ns: os.stat(procfs.proc(pid, "ns", ns)).st_ino for ns in NAMESPACES}


# What processes (not threads) may not share through clone flags, and the kcmp type that shows it.
REFUSED_SHARING = ((KCMP_VM, "memory (clone CLONE_VM, or a vfork child that has not exec'd yet)"),)
# What a child may share with its parent (and its own children with it): the restore forks it
# with the same clone flag again. (TaskKobjIdsEntry field, kcmp type, what it is.)
CHILD_SHARING = (
    ("files_id", KCMP_FILES, "fd table (clone CLONE_FILES)"),
    ("fs_id", KCMP_FS, "working directory, root and umask (clone CLONE_FS)"),
)


def _check_sharing(pids: list[int]) -> None:
    """Refuse processes that share their memory with another: each would come back with
    its own copy."""
    for i, pid in enumerate(pids):
        for other in pids[i + 1 :]:
            for what, name in REFUSED_SHARING:
                if shared_with(pid, other, what):
                    raise UnsupportedError(
                        f"processes {pid} and {other} share their {name}, not supported yet"
                    )


def _sharers(procs) -> dict[str, dict[int, int]]:
    """For each object of CHILD_SHARING (by its ids field): each process -> the topmost
    process of those sharing that object with it (itself if it shares it with none). A group
    of sharers is restored by each member being forked from its parent with the clone flag
    again, so every member but the topmost must have its parent in the group: other
    groups are refused."""
    ppid = {proc.pid: proc.ppid for proc in procs}
    found: dict[str, dict[int, int]] = {}
    for field_name, what, name in CHILD_SHARING:
        groups: list[list[int]] = []
        for proc in procs:  # parents come before their children
            group = next((g for g in groups if shared_with(g[0], proc.pid, what)), None)
            if group is None:
                groups.append([proc.pid])
            else:
                group.append(proc.pid)
        top = found[field_name] = {}
        for group in groups:
            members = set(group)
            tops = [pid for pid in group if ppid[pid] not in members]
            if len(tops) > 1:
                raise UnsupportedError(
                    f"processes {tops[0]} and {tops[1]} share their {name} and neither "
                    "got it from the other through its parent: not supported (only a child "
                    "sharing its parent's can be restored)"
                )
            top.update((pid, tops[0]) for pid in group)
    return found


def _check_process(pid: int, root_namespaces: dict[str, int]) -> None:
    """Refuse a process of the tree that holds something torpor cannot save."""
    for ns, inode in _namespaces(pid).items():
        if inode != root_namespaces[ns]:
            raise UnsupportedError(
                f"process {pid} is in another {ns} namespace than the root of the tree; "
                "nested namespaces are not supported yet"
            )
    try:
        with open(procfs.proc(pid, "exe"), "rb") as f:
            header = f.read(20)
    except OSError as e:
        raise TargetError(f"cannot read the executable of process {pid}: {e.strerror}") from None
    if header[4] == ELF_CLASS32 and int.from_bytes(header[18:20], "little") == 62:
        raise UnsupportedError(f"process {pid} is an x32 program; x32 is not supported")


def dump(
    pid: int,
    images_dir,
    *,
    leave_running: bool = False,
    shell_job: bool = False,
    tcp_established: bool = False,
    ext_unix_sk: bool = False,
    network_lock: str = "nftables",
    tcp_close: bool = False,
    ghost_limit: int = ghost_files.DEFAULT_LIMIT,
    progress=None,
) -> None:
    """Checkpoint process `pid` and all its descendants into `images_dir` (existing, empty).

    The whole tree is frozen before anything is read. It is killed after a successful dump
    unless `leave_running`; after a failed one it runs on untouched and the directory is left
    empty. `shell_job` saves fds on the caller's terminal, `tcp_established` TCP connections
    (closing the dumped ones then sends nothing, unless `leave_running`), `ext_unix_sk`
    datagram sockets connected to a named socket outside the tree (connected to that name
    again at restore). `network_lock` ("nftables", or "skip": risky) says how the packets of
    saved TCP connections whose peer is outside the tree are held off while the tree is
    down (torpor.parts.sockets.netlock); `tcp_close` saves TCP connections in any state
    without reading them, to be restored closed (restore's tcp_close).
    """
    if network_lock not in ("nftables", "skip"):
        raise TorporError(f"unknown network lock method {network_lock!r} (nftables or skip)")
    path = Path(images_dir)
    _prepare_dir(path)
    images = ImageDir(path, staged=True)
    options = DumpOptions(
        shell_job=shell_job, leave_running=leave_running, tcp_established=tcp_established,
        ext_unix_sk=ext_unix_sk, network_lock=network_lock, tcp_close=tcp_close, root=pid,
    )  # fmt: skip
    tree_files = files.TreeFiles(options)
    started = time.monotonic()
    tree = FrozenTree(pid)
    try:
        tree.freeze()
        _collect(tree, images, tree_files, ghost_limit, progress)
        tree.check_unchanged()
    except BaseException as e:
        with shielded():
            gone = tree.vanished()
            tree_files.dump_done(killed=False)
            tree.release()
            images.abandon()
        if gone and not isinstance(e, KeyboardInterrupt):
            raise TargetError(f"task {gone[0]} exited during the dump") from e
        if isinstance(e, RemoteError | OSError) and not isinstance(e, TorporError):
            raise TargetError(f"dump of {pid} failed: {e}") from e
        raise
    with shielded():  # the images are complete: nothing to put back any more
        tree_files.dump_done(killed=not leave_running)
        if leave_running:
            tree.release()
        else:
            tree.kill()
    log.info(
        "dump of %d (%d processes, %d threads) done in %.3f s",
        pid,
        len(tree.processes),
        sum(len(p.threads) for p in tree.processes.values()),
        time.monotonic() - started,
    )


class _TreeProgress:
    """Progress over the whole tree from each process's (done, total) page counts."""

    def __init__(self, report):
        self.report = report
        self.before = 0

    def process(self):
        def step(done, total):
            self.report(self.before + done, self.before + total)

        return step if self.report else None

    def finished(self, total: int) -> None:
        self.before += total


def _collect(
    tree: FrozenTree, images: ImageDir, tree_files: files.TreeFiles, ghost_limit: int, progress
) -> None:
    live = tree.live()
    fds = {}
    root_namespaces = _namespaces(tree.root)
    for proc in live:
        _check_process(proc.pid, root_namespaces)
        fds[proc.pid] = files.describe_all(proc.pid)
    _check_sharing([proc.pid for proc in live])
    sharers = _sharers(live)
    tables = sharers["files_id"]  # the fd table of each process is its topmost sharer's
    files.inspect({pid: got if tables[pid] == pid else [] for pid, got in fds.items()}, tree_files)
    shell_job = tree_files.options.shell_job
    table, shmem_saved = FileTable(), set()
    seccomp_filters = seccomp.TreeFilters()
    tree_cgroups = cgroups.TreeCgroups()
    ghosts = ghost_files.TreeGhosts(ghost_limit)
    pages = _TreeProgress(progress)
    entries = []
    index_of = {proc.pid: index for index, proc in enumerate(tree.processes.values(), start=1)}
    for index, proc in enumerate(tree.processes.values(), start=1):
        entries.append(
            pb.pstree_pb2.PstreeEntry(
                pid=proc.pid, ppid=proc.ppid, pgid=proc.pgid, sid=proc.sid, threads=proc.tids
            )
        )
        if proc.zombie:
            images.write(
                f"core-{proc.pid}.img", [tree_cgroups.dump_zombie(_zombie_core(proc), proc.pid)]
            )
            continue
        ctx = _process_context(proc, index, images, table, shell_job, pages.process())
        for field_name, top in sharers.items():  # a sharer has its topmost sharer's id
            setattr(ctx.core.ids, field_name, index_of[top[proc.pid]])
        ctx.shmem_saved, ctx.ghosts = shmem_saved, ghosts
        ctx.carried, ctx.memfds = tree_files.carried, tree_files.memfds
        _collect_process(proc, ctx, fds[proc.pid], tree_files, seccomp_filters, tree_cgroups)
        pages.finished(ctx.pages_bytes)
    own = DumpContext(
        pid=os.getpid(), task=None, abi=None, images=images, core=None, mm=None, files=table,
        shell_job=shell_job, ghosts=ghosts, carried=tree_files.carried,
        memfds=tree_files.memfds, in_flight=True,
    )  # fmt: skip
    files.dump_carried(own, tree_files)
    tree_files.memfds.write(images, shmem_saved)
    images.write("pstree.img", entries)
    images.write("files.img", table.entries)
    tree_files.write(images)
    ghosts.write(images)
    seccomp_filters.write(images)
    tree_cgroups.write(images)
    cpu.dump(images)
    clocks.dump(tree.root, images)
    root_ids = _ids(1)
    inventory = pb.inventory_pb2.InventoryEntry(
        img_version=constants.IMG_VERSION, fdinfo_per_id=True, root_ids=root_ids
    )
    tree_files.inventory(inventory)
    images.commit(inventory)


def _ids(index: int):
    return pb.core_pb2.TaskKobjIdsEntry(vm_id=index, files_id=index, fs_id=index, sighand_id=index)


def _zombie_core(proc) -> "pb.core_pb2.CoreEntry":
    core = _new_core()
    core.tc.CopyFrom(
        pb.core_pb2.TaskCoreEntry(
            task_state=constants.TASK_DEAD,
            exit_code=proc.exit_status,
            personality=0,
            flags=0,
            blk_sigset=0,
            comm="",
        )
    )
    return core


def _new_core():
    return pb.core_pb2.CoreEntry(mtype=pb.core_pb2.CoreEntry.X86_64)


def _process_context(proc, index, images, table, shell_job, progress) -> DumpContext:
    leader = proc.leader
    abi = abi_for_cs(leader.regs.cs)
    if abi is None:
        raise UnsupportedError(
            f"process {proc.pid} runs with an unknown code segment {leader.regs.cs:#x}"
        )
    core = _new_core()
    core.ids.CopyFrom(_ids(index))
    return DumpContext(
        pid=proc.pid,
        task=leader,
        abi=abi,
        images=images,
        core=core,
        mm=pb.mm_pb2.MmEntry(),
        files=table,
        shell_job=shell_job,
        progress=progress,
        pages_id=index,
    )


def _collect_process(
    proc, ctx: DumpContext, fds, tree_files, seccomp_filters, tree_cgroups
) -> None:
    leader = ctx.task
    cores: dict[int, object] = {}
    for tid in proc.tids:  # before torpor maps its scratch page or changes anything
        core = ctx.core if tid == proc.pid else cores.setdefault(tid, _new_core())
        audit.record(core, proc.pid, tid, ctx.abi)
    leader.map_scratch()
    log.info("dumping %d (%s, %d threads)", proc.pid, ctx.abi.name, len(proc.threads))
    threads = [ctx]
    for tid in proc.tids[1:]:
        task = proc.threads[tid]
        task.share_healing(leader)
        if abi_for_cs(task.regs.cs) is not ctx.abi:
            raise UnsupportedError(f"thread {tid} of process {proc.pid} runs in another mode")
        threads.append(replace(ctx, pid=tid, task=task, core=cores[tid]))
    for name, stage in (
        ("timers", timers.dump),  # first: the time left is read as close to the freeze as can be
        ("signals", signals.dump),
        ("task", task_part.dump),
        ("resource limits", rlimits.dump),
        ("process flags", flags.dump),
        ("files", lambda c: files.dump(c, fds, tree_files)),
        ("memory", memory.dump),
        ("protection keys", pkeys.dump),
    ):
        log.debug("dump stage: %s", name)
        stage(ctx)
    for tctx in threads:
        regs.dump(tctx)
        signals.dump_thread(tctx)
        task_part.dump_thread(tctx)
        seccomp_filters.dump_thread(tctx, proc.pid)
        tree_cgroups.dump_thread(tctx, proc.pid)
        sched.dump_thread(tctx)
        flags.dump_thread(tctx)
        ctx.images.write(f"core-{tctx.pid}.img", [tctx.core])
    ctx.images.write(f"mm-{proc.pid}.img", [ctx.mm])

"""Per-task kernel state: robust futex list, rseq, clear_child_tid, personality, comm, the
PR_SET_MM_MAP fields (code/data/brk/stack/arg/env ranges, auxv, exe link) and credentials."""

import os
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext, log
from torpor.errors import RestoreError
from torpor.images import constants as C
from torpor.images import pb
from torpor.kernel import caps, libc, ptrace
from torpor.kernel.procfs import proc, read_auxv, read_personality, read_stat, read_status
from torpor.parts import signals

PR_GET_DUMPABLE, PR_SET_DUMPABLE = 3, 4
PR_SET_NAME = 15
PR_GET_SECUREBITS = 27
PR_SET_MM = 35
PR_SET_MM_MAP = 14
PR_GET_TID_ADDRESS = 40
PR_CAPBSET_DROP = 24
LINUX_CAPABILITY_VERSION_3 = 0x20080522
RSEQ_FLAG_UNREGISTER = 1
AT_FDCWD = -100


def dump(ctx: DumpContext) -> None:
    """The process-wide part: state, personality, name and the PR_SET_MM_MAP fields."""
    st = read_stat(ctx.pid)
    tc = ctx.core.tc
    tc.task_state = C.TASK_ALIVE
    stopped = ctx.task.stopped_by or ctx.task.stop_arrived
    if stopped:  # by job control: stopped again once restored
        tc.task_state = C.TASK_STOPPED
        tc.stop_signo = stopped
    tc.exit_code = 0
    tc.personality = read_personality(ctx.pid)
    tc.flags = 0
    tc.comm = st.comm
    _dump_mm_fields(ctx, st)


def dump_thread(ctx: DumpContext) -> None:
    """One thread's part: name, robust list, rseq, clear_child_tid and credentials."""
    task, abi, tid = ctx.task, ctx.abi, ctx.pid
    thread = ctx.core.thread_core
    thread.comm = read_stat(tid).comm

    if abi is X86_64:  # torpor's own call reads the native registration: no injected call
        thread.futex_rla, thread.futex_rla_len = libc.robust_list(tid)
    else:  # a compat task's list is the compat registration, which only its own call reads
        out = task.reserve(16)
        task.call(abi, "get_robust_list", 0, out, out + 8)
        thread.futex_rla = task.read_word(abi, out)
        thread.futex_rla_len = task.read_word(abi, out + 8)

    conf = ptrace.get_rseq_configuration(tid)
    if conf.rseq_abi_pointer and conf.rseq_abi_size:  # before 6.3 the size is never 0
        thread.rseq_entry.CopyFrom(
            pb.rseq_pb2.RseqEntry(
                rseq_abi_pointer=conf.rseq_abi_pointer,
                rseq_abi_size=conf.rseq_abi_size,
                signature=conf.signature,
            )
        )

    out = task.reserve(8)
    task.call(X86_64, "prctl", PR_GET_TID_ADDRESS, out)
    ctx.core.thread_info.clear_tid_addr = struct.unpack("<Q", task.read(out, 8))[0]
    thread.creds.CopyFrom(_creds(ctx))


def _caps(hexstr: str) -> list[int]:
    value = int(hexstr, 16)
    return [value & 0xFFFFFFFF, value >> 32]


def _creds(ctx: DumpContext) -> pb.creds_pb2.CredsEntry:
    status = read_status(ctx.pid)
    uid, euid, suid, fsuid = (int(x) for x in status["Uid"].split())
    gid, egid, sgid, fsgid = (int(x) for x in status["Gid"].split())
    secbits = ctx.task.call(X86_64, "prctl", PR_GET_SECUREBITS)
    return pb.creds_pb2.CredsEntry(
        uid=uid,
        euid=euid,
        suid=suid,
        fsuid=fsuid,
        gid=gid,
        egid=egid,
        sgid=sgid,
        fsgid=fsgid,
        cap_inh=_caps(status["CapInh"]),
        cap_prm=_caps(status["CapPrm"]),
        cap_eff=_caps(status["CapEff"]),
        cap_bnd=_caps(status["CapBnd"]),
        secbits=secbits,
        groups=[int(g) for g in status.get("Groups", "").split()],
    )


def _dump_mm_fields(ctx: DumpContext, st) -> None:
    mm, abi = ctx.mm, ctx.abi
    mm.mm_start_code, mm.mm_end_code = st.start_code, st.end_code
    mm.mm_start_data, mm.mm_end_data = st.start_data, st.end_data
    mm.mm_start_stack = st.start_stack
    mm.mm_start_brk = st.start_brk
    mm.mm_brk = ctx.task.call(abi, "brk", 0)
    mm.mm_arg_start, mm.mm_arg_end = st.arg_start, st.arg_end
    mm.mm_env_start, mm.mm_env_end = st.env_start, st.env_end
    raw = read_auxv(ctx.pid)
    fmt = "<Q" if abi.bits == 64 else "<I"
    mm.mm_saved_auxv.extend(v for (v,) in struct.iter_unpack(fmt, raw))
    exe = os.readlink(f"/proc/{ctx.pid}/exe")
    mm.exe_file_id = ctx.files.add_path(exe)
    mm.dumpable = ctx.task.call(X86_64, "prctl", PR_GET_DUMPABLE)
    mm.torpor_coredump_filter = int(proc(ctx.pid, "coredump_filter").read_text(), 16)


# --- restore ---------------------------------------------------------------------------------


def forget_inherited(ctx: RestoreContext) -> None:
    """Drop what the new task inherited from torpor: rseq and robust-list registrations."""
    task = ctx.task
    conf = ptrace.get_rseq_configuration(ctx.pid)
    if conf.rseq_abi_pointer and conf.rseq_abi_size:
        task.call(
            X86_64,
            "rseq",
            conf.rseq_abi_pointer,
            conf.rseq_abi_size,
            RSEQ_FLAG_UNREGISTER,
            conf.signature,
        )
    task.call(X86_64, "set_robust_list", 0, X86_64.robust_list_head_size)


def restore(ctx: RestoreContext) -> None:
    """The process-wide part; credentials go last as they may take away torpor's privileges."""
    ctx.task.call(X86_64, "personality", ctx.core.tc.personality)
    _restore_mm_fields(ctx)


def restore_thread(ctx: RestoreContext) -> None:
    """One thread's name, clear_child_tid, robust list and rseq registration."""
    task, abi = ctx.task, ctx.abi
    tc, thread = ctx.core.tc, ctx.core.thread_core
    comm = (thread.comm or tc.comm).encode()[:15]
    task.call(X86_64, "prctl", PR_SET_NAME, task.put(comm + b"\0"))
    task.call(X86_64, "set_tid_address", ctx.core.thread_info.clear_tid_addr)
    if thread.futex_rla or thread.futex_rla_len:
        task.call(abi, "set_robust_list", thread.futex_rla, thread.futex_rla_len)
    if thread.HasField("rseq_entry") and thread.rseq_entry.rseq_abi_size:
        r = thread.rseq_entry
        task.call(abi, "rseq", r.rseq_abi_pointer, r.rseq_abi_size, 0, r.signature)


def _restore_mm_fields(ctx: RestoreContext) -> None:
    task, mm, abi = ctx.task, ctx.mm, ctx.abi
    exe = ctx.files.get(mm.exe_file_id)
    if exe is None:
        raise RestoreError(f"mm-{ctx.image_pid}.img: unknown executable file id {mm.exe_file_id}")
    try:  # without blocking, should the path now be a FIFO (PR_SET_MM_MAP then refuses it)
        exe_fd = task.call(
            X86_64, "openat", AT_FDCWD, task.put(exe.reg.name.encode() + b"\0"),
            os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, 0,
        )  # fmt: skip
    except OSError as e:
        raise RestoreError(f"cannot open executable {exe.reg.name}: {e.strerror}") from None
    fmt = "<Q" if abi.bits == 64 else "<I"
    auxv = b"".join(struct.pack(fmt, w) for w in mm.mm_saved_auxv)
    auxv_addr = task.put(auxv)
    mm_map = struct.pack(
        "<11QQII",
        mm.mm_start_code,
        mm.mm_end_code,
        mm.mm_start_data,
        mm.mm_end_data,
        mm.mm_start_brk,
        mm.mm_brk,
        mm.mm_start_stack,
        mm.mm_arg_start,
        mm.mm_arg_end,
        mm.mm_env_start,
        mm.mm_env_end,
        auxv_addr,
        len(auxv),
        exe_fd,
    )
    try:
        task.call(X86_64, "prctl", PR_SET_MM, PR_SET_MM_MAP, task.put(mm_map), len(mm_map))
    except OSError as e:
        raise RestoreError(f"PR_SET_MM_MAP refused the saved mm layout: {e.strerror}") from None
    finally:
        task.syscall(X86_64, "close", exe_fd)


def image_problem(mm, abi) -> str | None:
    """What makes the saved PR_SET_MM_MAP fields impossible for the ABI (an auxv word wider
    than its word); None if nothing."""
    if any(word >> abi.bits for word in mm.mm_saved_auxv):
        return f"an auxv word does not fit {abi.name}"
    return None


def zombie_problem(core) -> str | None:
    """What makes a zombie's saved wait status one no process can have left: not an exit
    status 0-255 nor the end by a signal whose default action ends a process (a zombie made
    to die by a signal that is ignored or stops would never die); None if nothing."""
    status = core.tc.exit_code
    sig = status & 0x7F
    if sig == 0:
        fine = status <= 0xFF00 and not status & 0xFF
    else:
        fine = status <= 0xFF and signals.ends_by_default(sig)
    return None if fine else f"zombie wait status {status:#x} is not one a process leaves"


def check_creds(core) -> None:
    """Refuse, before anything is created, credentials this side cannot grant."""
    if not core.thread_core.HasField("creds"):
        return
    c = core.thread_core.creds
    wanted = caps.join(c.cap_prm) | caps.join(c.cap_eff) | caps.join(c.cap_inh)
    wanted |= caps.join(c.cap_bnd)
    grantable = caps.own_sets()["CapBnd"]
    missing = wanted & ~grantable
    if missing:
        raise RestoreError(
            "the process had capabilities this side cannot grant: " + ", ".join(caps.names(missing))
        )


def restore_dumpable(ctx: RestoreContext) -> None:
    """Whether the process may be core dumped and ptraced by its own user, and what its core
    dumps hold; after the credentials, whose change resets the first (to fs.suid_dumpable)."""
    mm = ctx.mm
    if mm.HasField("torpor_coredump_filter"):
        try:
            proc(ctx.pid, "coredump_filter").write_text(f"{mm.torpor_coredump_filter:#x}")
        except OSError as e:
            raise RestoreError(
                f"process {ctx.image_pid}: cannot set coredump_filter "
                f"{mm.torpor_coredump_filter:#x}: {e.strerror}"
            ) from None
    if mm.HasField("dumpable") and mm.dumpable != ctx.task.call(X86_64, "prctl", PR_GET_DUMPABLE):
        if mm.dumpable not in (0, 1):  # SUID_DUMP_ROOT: only fs.suid_dumpable gives it
            raise RestoreError(
                f"process {ctx.image_pid} was dumpable {mm.dumpable} (fs.suid_dumpable), "
                "which prctl(PR_SET_DUMPABLE) cannot set"
            )
        ctx.task.call(X86_64, "prctl", PR_SET_DUMPABLE, mm.dumpable)


def restore_creds(ctx: RestoreContext) -> None:
    creds = ctx.core.thread_core.creds
    if not ctx.core.thread_core.HasField("creds"):
        return
    task = ctx.task
    current = read_status(ctx.pid)
    bounding = caps.sets_in(current)["CapBnd"]
    for cap in range(64):
        if bounding >> cap & 1 and not caps.join(creds.cap_bnd) >> cap & 1:
            task.call(X86_64, "prctl", PR_CAPBSET_DROP, cap)
    wanted_groups = list(creds.groups)
    if [int(g) for g in current.get("Groups", "").split()] != wanted_groups:
        groups = struct.pack(f"<{len(wanted_groups)}I", *wanted_groups)
        task.call(X86_64, "setgroups", len(wanted_groups), task.put(groups) if groups else 0)
    if [int(x) for x in current["Gid"].split()][:3] != [creds.gid, creds.egid, creds.sgid]:
        task.call(X86_64, "setresgid", creds.gid, creds.egid, creds.sgid)
    if [int(x) for x in current["Uid"].split()][:3] != [creds.uid, creds.euid, creds.suid]:
        task.call(X86_64, "setresuid", creds.uid, creds.euid, creds.suid)
    sets = [caps.join(w) for w in (creds.cap_eff, creds.cap_prm, creds.cap_inh)]
    now = caps.own_sets(ctx.pid)
    if sets != [now["CapEff"], now["CapPrm"], now["CapInh"]]:
        header = struct.pack("<Ii", LINUX_CAPABILITY_VERSION_3, 0)
        data = struct.pack(
            "<6I", *(m & 0xFFFFFFFF for m in sets), *(m >> 32 for m in sets)
        )  # two struct __user_cap_data_struct: low words, then high words
        task.call(X86_64, "capset", task.put(header), task.put(data))
    log.debug("creds: uid %d gid %d", creds.uid, creds.gid)

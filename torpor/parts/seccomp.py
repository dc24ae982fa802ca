"""Seccomp: each thread's mode, its chain of filters, and its no_new_privs bit.

Dump. A thread's mode comes from its /proc status (0 none, 1 strict, 2 filter); a thread in
filter mode has its filters read with PTRACE_SECCOMP_GET_FILTER until ENOENT. Index 0 is the
oldest filter, whatever ptrace(2) says: the kernel walks back from the newest by the number
of filters less the index. Threads and processes often share filters (inherited at clone or
fork, or installed with SECCOMP_FILTER_FLAG_TSYNC): every distinct filter goes into
seccomp.img once, as CRIU has it (each filter with the index of the one installed before
it), and a thread records in thread_core.seccomp_mode / seccomp_filter its mode and its
newest filter. The kernel offers no
way to compare filter objects, so two filters are taken for one when their programs, flags
and predecessors are the same. no_new_privs goes where CRIU keeps it, creds.no_new_privs.

Flags. PTRACE_SECCOMP_GET_METADATA shows only SECCOMP_FILTER_FLAG_LOG. SPEC_ALLOW leaves no
trace but its effect: a filter installed without it force-disables speculative store bypass
and indirect branch speculation where the kernel's mitigation mode says so; a thread with
neither forced off has its filters saved with SPEC_ALLOW, so that a restore does not force
them off either. NEW_LISTENER leaves no trace at all, and its listener fd may live in any
process (typically a supervisor outside the tree): a filter that can answer
SECCOMP_RET_USER_NOTIF is refused, as its listener cannot be recreated.

Restore, after everything else of the thread except its credentials and registers. The
restored tasks are traced with PTRACE_O_SUSPEND_SECCOMP (torpor.family), so every call torpor
injects afterwards (credentials, munmap of the scratch page, and 64-bit calls into an ia32
task whose filter kills foreign architectures) passes untouched; the filters take effect for
the task's own calls once it is let go. It runs before the credentials are restored because
a thread without no_new_privs can install a filter only with CAP_SYS_ADMIN, which the
restored credentials may not grant. no_new_privs is set first where it was set, and only
there. The filters shared by every thread of the process are installed from one thread with
SECCOMP_FILTER_FLAG_TSYNC, so they are one kernel object for all of them again (a later TSYNC
by the program itself needs that); the rest of each thread's chain is installed by the
thread itself. A filter that some threads but not all share is installed into each of them
as a copy of its own: TSYNC reaches every thread or none, and only thread creation could
share it more narrowly. Strict mode is set with SECCOMP_SET_MODE_STRICT, injected too.
"""

import errno
import struct

from torpor.arch import X86_64
from torpor.context import DumpContext, RestoreContext
from torpor.errors import ImageError, RestoreError, TargetError, UnsupportedError
from torpor.images import pb
from torpor.kernel import ptrace
from torpor.kernel.procfs import read_status

IMAGE = "seccomp.img"

MODE_DISABLED, MODE_STRICT, MODE_FILTER = 0, 1, 2
SECCOMP_SET_MODE_STRICT, SECCOMP_SET_MODE_FILTER = 0, 1
FLAG_TSYNC, FLAG_LOG, FLAG_SPEC_ALLOW = 1 << 0, 1 << 1, 1 << 2
RESTORABLE_FLAGS = FLAG_LOG | FLAG_SPEC_ALLOW

PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS = 38, 39
PR_GET_SPECULATION_CTRL = 52
PR_SPEC_STORE_BYPASS, PR_SPEC_INDIRECT_BRANCH = 0, 1
PR_SPEC_FORCE_DISABLE = 1 << 3

BPF_RET_K = 0x06  # BPF_RET | BPF_K: return a constant
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
BPF_MAXINSNS = 4096
SOCK_FILTER = struct.Struct("<HBBI")  # code, jt, jf, k
SOCK_FPROG = struct.Struct("<H6xQ")  # the native struct sock_fprog: len, filter pointer


def _no_new_privs(ctx, status: dict[str, str]) -> int:
    """The thread's no_new_privs, from its status (since Linux 4.10) or asked by prctl."""
    if "NoNewPrivs" in status:
        return int(status["NoNewPrivs"])
    return ctx.task.call(X86_64, "prctl", PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)


class TreeFilters:
    """seccomp.img being built: every distinct filter of the dumped tree, each saved once."""

    def __init__(self):
        self.entries: list = []  # SeccompFilter, in the order their indices give
        self._known: dict[tuple, int] = {}  # (predecessor, program, flags) -> index

    def dump_thread(self, ctx: DumpContext, pid: int) -> None:
        """One thread's mode, filters and no_new_privs; after the task part, which fills in
        the thread's credentials. `pid` is the thread's process."""
        tid, thread = ctx.pid, ctx.core.thread_core
        status = read_status(tid)
        thread.creds.no_new_privs = _no_new_privs(ctx, status)
        mode = int(status.get("Seccomp", "0"))
        if mode not in (MODE_DISABLED, MODE_STRICT, MODE_FILTER):
            raise TargetError(f"thread {tid} of process {pid} is in seccomp mode {mode}")
        thread.seccomp_mode = mode
        if mode != MODE_FILTER:
            return
        flags = FLAG_SPEC_ALLOW if not _speculation_forced_off(ctx) else 0
        index = None
        for program, shown in _read_chain(tid, pid):
            _refuse_listener(program, tid, pid)
            index = self._add(index, program, flags | shown & FLAG_LOG)
        thread.seccomp_filter = index

    def _add(self, prev: int | None, program: bytes, flags: int) -> int:
        key = (prev, program, flags)
        if key not in self._known:
            entry = pb.seccomp_pb2.SeccompFilter(filter=program, flags=flags)
            if prev is not None:
                entry.prev = prev
            self._known[key] = len(self.entries)
            self.entries.append(entry)
        return self._known[key]

    def write(self, images) -> None:
        if self.entries:
            images.write(IMAGE, [pb.seccomp_pb2.SeccompEntry(seccomp_filters=self.entries)])


def _read_chain(tid: int, pid: int) -> list[tuple[bytes, int]]:
    """The thread's filters, oldest first (as the kernel numbers them), each with the flags
    the kernel shows for it."""
    chain = []
    while True:
        try:
            program = ptrace.seccomp_filter(tid, len(chain))
            shown = ptrace.seccomp_filter_flags(tid, len(chain))
        except OSError as e:
            if e.errno == errno.ENOENT and chain:
                return chain
            raise TargetError(
                f"cannot read the seccomp filters of thread {tid} of process {pid}: {e.strerror}"
            ) from None
        chain.append((program, shown))


def _speculation_forced_off(ctx) -> bool:
    """Whether the thread has speculative store bypass or indirect branch speculation
    force-disabled, as installing a filter without SECCOMP_FILTER_FLAG_SPEC_ALLOW does
    where the kernel mitigates for seccomp."""
    for which in (PR_SPEC_STORE_BYPASS, PR_SPEC_INDIRECT_BRANCH):
        state = ctx.task.syscall(X86_64, "prctl", PR_GET_SPECULATION_CTRL, which, 0, 0, 0)
        if state >= 0 and state & PR_SPEC_FORCE_DISABLE:
            return True
    return False


def _refuse_listener(program: bytes, tid: int, pid: int) -> None:
    for code, _jt, _jf, k in SOCK_FILTER.iter_unpack(program):
        if code == BPF_RET_K and k & SECCOMP_RET_ACTION_FULL == SECCOMP_RET_USER_NOTIF:
            raise UnsupportedError(
                f"thread {tid} of process {pid} has a seccomp filter that hands system calls "
                "to a user-space listener (SECCOMP_FILTER_FLAG_NEW_LISTENER); "
                "seccomp notification listeners cannot be restored"
            )


# --- restore ---------------------------------------------------------------------------------


def restore(threads: list[RestoreContext]) -> None:
    """Every thread of one process (its main thread first) back in its saved seccomp mode,
    with its saved filter chain and no_new_privs."""
    saved = [t.core.thread_core for t in threads]
    filters = _load(threads[0].images) if any(s.seccomp_mode == MODE_FILTER for s in saved) else []
    chains = [
        _chain(filters, s.seccomp_filter, t.image_pid) if s.seccomp_mode == MODE_FILTER else []
        for t, s in zip(threads, saved, strict=True)
    ]
    nnp = [bool(s.creds.no_new_privs) for s in saved]
    for tctx, wanted in zip(threads, nnp, strict=True):
        if wanted:
            tctx.task.call(X86_64, "prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    shared = _common_prefix(chains) if len(threads) > 1 else []
    if shared:  # from a thread without no_new_privs if any: TSYNC would pass it on
        installer = threads[nnp.index(False)] if False in nnp else threads[0]
        for index in shared:
            _install(installer, filters[index], FLAG_TSYNC)
    for tctx, s, chain in zip(threads, saved, chains, strict=True):
        for index in chain[len(shared) :]:
            _install(tctx, filters[index], 0)
        if s.seccomp_mode == MODE_STRICT:
            tctx.task.call(X86_64, "seccomp", SECCOMP_SET_MODE_STRICT, 0, 0)
    for tctx, s, chain, wanted in zip(threads, saved, chains, nnp, strict=True):
        _check(tctx, s.seccomp_mode, len(chain), wanted)


def _load(images) -> list:
    if not images.has(IMAGE):
        raise ImageError(f"{IMAGE} is missing, but a thread runs under seccomp filters")
    entries = images.read(IMAGE)
    if len(entries) != 1:
        raise ImageError(f"{IMAGE}: expected one entry, found {len(entries)}")
    filters = list(entries[0].seccomp_filters)
    for n, f in enumerate(filters):
        size = len(f.filter)
        if not size or size % SOCK_FILTER.size or size > BPF_MAXINSNS * SOCK_FILTER.size:
            raise ImageError(f"{IMAGE}: filter {n} is not a classic BPF program")
        if f.flags & ~(RESTORABLE_FLAGS | FLAG_TSYNC):
            raise ImageError(f"{IMAGE}: filter {n} has flags {f.flags:#x} torpor cannot restore")
    return filters


def _chain(filters: list, newest: int, tid: int) -> list[int]:
    """The indices of a thread's filters, oldest first."""
    chain: list[int] = []
    index: int | None = newest
    while index is not None:
        if index >= len(filters) or index in chain:
            raise ImageError(f"{IMAGE}: broken filter chain of thread {tid}")
        chain.append(index)
        index = filters[index].prev if filters[index].HasField("prev") else None
    return chain[::-1]


def _common_prefix(chains: list[list[int]]) -> list[int]:
    prefix: list[int] = []
    for column in zip(*chains, strict=False):
        if len(set(column)) != 1:
            break
        prefix.append(column[0])
    return prefix if all(chains) else []


def _install(ctx: RestoreContext, entry, flags: int) -> None:
    task = ctx.task
    program = task.put(entry.filter)
    fprog = task.put(SOCK_FPROG.pack(len(entry.filter) // SOCK_FILTER.size, program))
    flags |= entry.flags & RESTORABLE_FLAGS
    result = task.syscall(X86_64, "seccomp", SECCOMP_SET_MODE_FILTER, flags, fprog)
    if result != 0:  # a TSYNC that fails names the thread in the way (a positive TID)
        why = f"thread {result} is in the way" if result > 0 else errno.errorcode.get(-result)
        raise RestoreError(f"cannot install a seccomp filter into thread {ctx.image_pid}: {why}")


def _check(ctx: RestoreContext, mode: int, count: int, no_new_privs: bool) -> None:
    """The thread as the kernel shows it: saved mode, number of filters, no_new_privs."""
    status = read_status(ctx.pid)
    got_mode = int(status.get("Seccomp", "0"))
    got_count = int(status.get("Seccomp_filters", count))
    if (got_mode, got_count) != (mode, count):
        raise RestoreError(
            f"thread {ctx.image_pid} came back in seccomp mode {got_mode} with {got_count} "
            f"filters instead of mode {mode} with {count}"
        )
    if not no_new_privs and _no_new_privs(ctx, status):
        ctx.notes.append(
            f"thread {ctx.image_pid} has no_new_privs, which it did not have: torpor runs with it"
        )

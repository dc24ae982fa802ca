"""The audit: what procfs shows of every task, recorded at dump and compared after restore.

At dump, each thread's core image gets a record (CoreEntry.torpor_audit) of what procfs
showed of it while it was frozen, before torpor changed anything: its status, stat and
cgroup lines and, for a process's main thread, the process's limits, smaps (with VmFlags),
every fd with its fdinfo (locks, flags, kind-specific lines), POSIX timers, oom_score_adj,
timer slack, personality, working directory and root. `torpor restore --verify` reads the
same of the restored tree before letting it go and prints every difference that
EXPLAINED (the one list of differences the restore itself causes, each with its reason)
does not account for; `--verify=strict` refuses the restore instead. So a piece of state
torpor forgets shows up the first time it is restored.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
from dataclasses import dataclass

from torpor.arch import X86_64, abi_for_cs
from torpor.context import log
from torpor.errors import RestoreError
from torpor.images import pb
from torpor.kernel import procfs

MODES = ("off", "warn", "strict")

# /proc/PID/stat fields (1-based, as proc(5) numbers them) that a restore must bring back.
STAT_FIELDS = {
    4: "ppid", 5: "pgrp", 6: "session", 7: "tty_nr", 8: "tpgid", 18: "priority", 19: "nice",
    20: "num_threads", 26: "startcode", 27: "endcode", 28: "startstack", 38: "exit_signal",
    40: "rt_priority", 41: "policy", 45: "start_data", 46: "end_data", 47: "start_brk",
    48: "arg_start", 49: "arg_end", 50: "env_start", 51: "env_end",
}  # fmt: skip

# (Not sessionid: the kernel gives a task a new audit session whenever its loginuid is
# written, as a restore does; no call chooses one.)
PROCESS_FILES = ("oom_score_adj", "timerslack_ns", "personality", "loginuid", "coredump_filter")
# Files whose bytes are compared by digest: the memory holding arguments and environment.
PROCESS_DIGESTS = ("cmdline", "environ")
PROCESS_LINKS = ("cwd", "root", "exe")
TEMPORARY_MASK = "torpor.temporary_mask"  # a mark recorded at dump, not a procfs value
KERNEL_VMAS = ("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]")
# Keys whose absence on one side is itself a difference (a mapping, fd or timer lost or added).
COUNTED = ("smaps.*.range", "fd.*", "timers.*.ClockID")
SMAPS_VALUES = ("Size", "Rss", "Pss", "Anonymous", "Swap", "Locked", "THPeligible", "VmFlags")


@dataclass(frozen=True)
class Explained:
    """A difference the restore itself causes: keys matching `pattern` (fnmatch) may differ
    (only as `allows` (before, after) says, when it is given), when the restore ran under
    `when` (one of the circumstances restorer passes, or "root": the tree's root)."""

    pattern: str
    reason: str
    allows: object = None
    when: str | None = None


def _equal_after(normalize):
    return lambda before, after: normalize(before) == normalize(after)


def _kb(value: str) -> int:
    return int(value.split()[0])


# The dump makes the frame a task heals itself from (should torpor vanish) below its stack
# pointer: the frame's pages, with an AMX-sized extended state at most four, are the task's
# from then on, and come back with it.
HEAL_FRAME_KB = 16


def _grew_by_heal_frame(before: str, after: str) -> bool:
    return 0 <= _kb(after) - _kb(before) <= HEAL_FRAME_KB


def _no_more_than_heal_frame(before: str, after: str) -> bool:
    return _kb(after) - _kb(before) <= HEAL_FRAME_KB


def _kept_all(before: str, after: str) -> bool:
    """No signal that was pending is missing (masks in hex)."""
    return int(before, 16) & ~int(after, 16) == 0


def _no_inode(value: str) -> str:
    """A link without the inode numbers it shows: pipe:[N], and an O_TMPFILE file's /DIR/#N."""
    return re.sub(r"/#\d+ \(deleted\)$", "/# (deleted)", re.sub(r"\[\d+\]", "[]", value))


def _lock_without_ids(value: str) -> str:
    """Lock lines without the kernel's running lock number and the inode (a new file's)."""
    return "\n".join(
        re.sub(r"^\d+:\s*", "", re.sub(r" [0-9a-f]+:[0-9a-f]+:\d+ ", " ", line))
        for line in value.split("\n")
    )


def _without_fields(*names: str):
    pattern = re.compile(r"\b(" + "|".join(names) + r"):\s*\S+")
    return lambda value: sorted(pattern.sub(lambda m: m.group(1) + ":", value).split("\n"))


VDSO_COPY = "the dumped vDSO is kept as a copy beside this kernel's, which it jumps to"
AT_SYSINFO_EHDR = 33  # the auxv entry holding the vDSO's address
PIDNS = "the tree has its PIDs only inside its new PID namespace"
EXPLAINED: tuple[Explained, ...] = (
    Explained("status.TracerPid", "torpor traces the task at dump and at restore"),
    Explained("status.State", "the task is stopped by torpor at both ends, in another way"),
    Explained(
        "status.SigQ", "signals queued for the user, system-wide: the task's are SigPnd, ShdPnd"
    ),
    Explained("status.*ctxt_switches", "counts of what the task did, not state"),
    Explained(
        "host.kernel", "the kernel the tree runs on: another one is no difference of the tree"
    ),
    Explained(TEMPORARY_MASK, "a mark the dump records"),
    Explained(
        "status.SigBlk",
        "the task slept in a call with a mask of its own (sigsuspend, ppoll, pselect, "
        "epoll_pwait): status showed that mask at dump, the call sets it again as it resumes",
        when="temporary-mask",
    ),
    Explained(
        "status.S*Pnd", "a signal sent to the tree as it was restored waits for it", _kept_all
    ),
    Explained(
        "smaps.*.VmFlags",
        "sd is the kernel's soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY), not the program's",
        _equal_after(lambda flags: sorted(set(flags.split()) - {"sd"})),
    ),
    Explained("status.Speculation*", "the kernel's mitigations, which differ", when="other-kernel"),
    Explained("fdinfo.*.mnt_id", "each boot numbers its mounts", when="other-kernel"),
    Explained("status.VmPeak", "a high-water mark: the restore maps and unmaps as it works"),
    Explained("status.VmHWM", "a high-water mark: the restore maps and unmaps as it works"),
    Explained("status.VmRSS", "pages of files come back as they are read, not all at once"),
    Explained("status.Rss*", "pages of files come back as they are read, not all at once"),
    Explained("status.VmPTE", "page tables are built as pages come back"),
    Explained("status.FDSize", "the fd table grows in steps as the restore opens fds"),
    Explained("smaps.*.Rss", "pages of files come back as they are read", _no_more_than_heal_frame),
    Explained(
        "smaps.*.Pss",
        "pages of files come back as they are read; pages children shared that their parent "
        "changed after forking them come back as each child's own copy (parts.cow)",
    ),
    Explained(
        "smaps.*.Anonymous", "the dump's heal frame below a stack pointer", _grew_by_heal_frame
    ),
    Explained(
        "fd.*",
        "a pipe's, socket's or O_TMPFILE file's inode number is the new object's",
        _equal_after(_no_inode),
    ),
    Explained("fdinfo.*.ino", "the inode number of a pipe, socket or anonymous file is new"),
    Explained(
        "fdinfo.*.lock",
        "the kernel numbers locks as they are taken",
        _equal_after(_lock_without_ids),
    ),
    Explained("fdinfo.*.eventfd-id", "a new eventfd has a new id"),
    Explained(
        "fdinfo.*.tfd",
        "an epoll's targets are new files, in another order",
        _equal_after(_without_fields("ino", "sdev", "pos")),
    ),
    Explained("fdinfo.*.it_value", "a timerfd's time left counts down while torpor works"),
    Explained("fdinfo.*.ticks", "a timerfd's expirations go on while torpor works"),
    Explained("status.PPid", "the restored root is a child of the restoring command", when="root"),
    Explained("stat.ppid", "the restored root is a child of the restoring command", when="root"),
    Explained("status.*Pid", PIDNS, when="pidns"),
    Explained("status.Tgid", PIDNS, when="pidns"),
    Explained("fdinfo.*.Pid", PIDNS, when="pidns"),
    Explained("fdinfo.*.NSpid", PIDNS, when="pidns"),
    Explained("status.NS*", PIDNS, when="pidns"),
    Explained("stat.*", PIDNS, when="pidns"),
    Explained("fdinfo.*.lock", "lock owners are named by their PIDs here", when="pidns"),
    Explained("timers.*.notify", "signal targets are named by their PIDs here", when="pidns"),
    Explained(
        "cgroup", "the saved cgroups were not joined (--manage-cgroups ignore)", when="ignore"
    ),
    Explained("fd.*", "an outside end is the fd handed in (--inherit-fd)", when="inherit-fd"),
    Explained("fdinfo.*", "an outside end is the fd handed in (--inherit-fd)", when="inherit-fd"),
    Explained(
        f"auxv.{AT_SYSINFO_EHDR}",
        "AT_SYSINFO_EHDR names this kernel's vDSO, beside the dumped copy kept",
        when="trampolines",
    ),
    Explained("status.VmSize", VDSO_COPY, when="trampolines"),
    Explained("status.VmLib", VDSO_COPY, when="trampolines"),
    Explained("stat.tty_nr", "the tree is restored onto this command's terminal", when="shell-job"),
    Explained("stat.tpgid", "the tree is restored onto this command's terminal", when="shell-job"),
    Explained("fd.*", "the tree is restored onto this command's terminal", when="shell-job"),
)


# --- reading procfs ---------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def _colon_lines(text: str | None, prefix: str, into: dict[str, str]) -> None:
    """ "Key:<tab>value" lines, as status and fdinfo show them; repeated keys are joined."""
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if not sep or not key:
            continue
        name = f"{prefix}.{key.strip()}"
        value = " ".join(value.split())
        into[name] = f"{into[name]}\n{value}" if name in into else value


def _stat(text: str | None, into: dict[str, str]) -> None:
    if not text:
        return
    fields = ["", ""] + text[text.rindex(")") + 2 :].split()  # fields 3.. after comm
    for number, name in STAT_FIELDS.items():
        if number <= len(fields):
            into[f"stat.{name}"] = fields[number - 1]


def _limits(text: str | None, into: dict[str, str]) -> None:
    for line in (text or "").splitlines()[1:]:
        name, values = line[:26].strip(), line[26:].split()
        if name and len(values) >= 2:
            into[f"limits.{name}"] = f"{values[0]} {values[1]}"


def _smaps(text: str | None, into: dict[str, str]) -> None:
    vma = None
    for line in (text or "").splitlines():
        head = line.split(None, 5)
        if head and "-" in head[0] and not head[0].endswith(":"):
            vma = f"smaps.{head[0].split('-')[0]}"
            into[f"{vma}.range"] = head[0]
            into[f"{vma}.perms"] = head[1]
            into[f"{vma}.offset"] = head[2]
            into[f"{vma}.path"] = head[5] if len(head) > 5 else ""
            continue
        key, sep, value = line.partition(":")
        if vma and sep and key in SMAPS_VALUES:
            into[f"{vma}.{key}"] = " ".join(value.split())


def _fds(pid: int, into: dict[str, str]) -> None:
    base = procfs.proc(pid)
    try:
        fds = sorted(os.listdir(f"{base}/fd"), key=int)
    except OSError:
        return
    for fd in fds:
        try:
            into[f"fd.{fd}"] = os.readlink(f"{base}/fd/{fd}")
        except OSError:
            continue
        _colon_lines(_read(f"{base}/fdinfo/{fd}"), f"fdinfo.{fd}", into)


def _timers(text: str | None, into: dict[str, str]) -> None:
    timer = None
    for line in (text or "").splitlines():
        key, _, value = line.partition(":")
        if key == "ID":
            timer = f"timers.{value.strip()}"
        elif timer:
            into[f"{timer}.{key}"] = value.strip()


def _auxv(raw: bytes | None, word: int, into: dict[str, str]) -> None:
    """The aux vector (saved by the kernel at exec, set again by a restore), entry by type."""
    for kind, value in procfs.auxv_entries(raw or b"", word):
        into[f"auxv.{kind}"] = f"{value:#x}"


def snapshot(pid: int, tid: int, *, process: bool, word: int = 8) -> dict[str, str]:
    """What procfs shows of thread `tid` of process `pid` (and of the process itself when
    `process`, whose ABI has `word`-byte words), as key -> value."""
    values: dict[str, str] = {}
    task = procfs.proc(pid, "task", str(tid))
    _colon_lines(_read(f"{task}/status"), "status", values)
    _stat(_read(f"{task}/stat"), values)
    cgroup = _read(f"{task}/cgroup")
    if cgroup:  # not where the kernel hides it (some guests show nothing)
        values["cgroup"] = cgroup
    if not process:
        return values
    base = procfs.proc(pid)
    values["host.kernel"] = os.uname().release
    _limits(_read(f"{base}/limits"), values)
    _smaps(_read(f"{base}/smaps"), values)
    _fds(pid, values)
    _timers(_read(f"{base}/timers"), values)
    for name in PROCESS_FILES:
        text = _read(f"{base}/{name}")
        if text is not None:
            values[name] = text.strip()
    for name in PROCESS_LINKS:
        try:
            values[name] = os.readlink(f"{base}/{name}")
        except OSError:
            pass
    with contextlib.suppress(OSError):
        _auxv(procfs.read_auxv(pid), word, values)
    with contextlib.suppress(OSError):  # root's when not dumpable, else the task's (proc(5))
        owner = os.stat(base)
        values["owner"] = f"{owner.st_uid}:{owner.st_gid}"
    for name in PROCESS_DIGESTS:
        try:
            values[name] = hashlib.sha256(procfs.proc(pid, name).read_bytes()).hexdigest()[:32]
        except OSError:
            pass
    return values


# --- at dump and at restore ---------------------------------------------------------------------


def record(core, pid: int, tid: int, abi) -> None:
    """Put the audit of thread `tid` (of process `pid`, running in `abi`) into its core
    image entry, with a mark when the thread sleeps in a call that blocks signals of its
    own for its duration: status then shows that call's mask, not the thread's."""
    values = snapshot(pid, tid, process=tid == pid, word=abi.word)
    if _in_call_with_own_mask(pid, tid, abi):
        values[TEMPORARY_MASK] = "yes"
    core.torpor_audit.CopyFrom(
        pb.core_pb2.TorporAudit(
            values=[pb.core_pb2.TorporAuditValue(key=k, value=v) for k, v in values.items()]
        )
    )


def _in_call_with_own_mask(pid: int, tid: int, abi) -> bool:
    text = _read(procfs.proc(pid, "task", str(tid), "syscall")) or ""
    number = text.split()[0] if text.split() else ""
    return number.isdigit() and int(number) in abi.calls_with_own_mask


def saved(core) -> dict[str, str] | None:
    """The audit a core image entry holds (None: the images were made without one)."""
    if not core.HasField("torpor_audit"):
        return None
    return {v.key: v.value for v in core.torpor_audit.values}


def _explained(key: str, before: str, after: str, circumstances: frozenset[str]) -> bool:
    for rule in EXPLAINED:
        if rule.when is not None and rule.when not in circumstances:
            continue
        if not fnmatch.fnmatchcase(key, rule.pattern):
            continue
        if rule.allows is None or rule.allows(before, after):
            return True
    return False


def differences(
    before: dict[str, str], after: dict[str, str], circumstances: frozenset[str] = frozenset()
) -> list[str]:
    """Each difference between two snapshots that EXPLAINED does not account for, as a line.
    A key only one side has is no difference unless it is COUNTED: one kernel shows values
    the other does not."""
    found = []
    before, after = _coalesced(before), _coalesced(after)
    kernel_vmas = _kernel_vmas(before) | _kernel_vmas(after)
    for key in sorted(before.keys() | after.keys()):
        if key.rsplit(".", 1)[0] in kernel_vmas:
            continue
        old, new = before.get(key), after.get(key)
        if old is None or new is None:
            if any(fnmatch.fnmatchcase(key, c) for c in COUNTED):
                found.append(f"{key}: {_short(old or '(none)')} -> {_short(new or '(none)')}")
        elif old != new and not _explained(key, old, new, circumstances):
            found.append(f"{key}{_where(key, before)}: {_short(old)} -> {_short(new)}")
    return found


SUMMED = ("Size", "Rss", "Pss", "Anonymous", "Swap", "Locked")


def _coalesced(values: dict[str, str]) -> dict[str, str]:
    """`values` with each run of adjacent mappings that only the kernel's bookkeeping keeps
    apart (the same protection, file, offsets that follow on and VmFlags: the kernel does
    not merge VMAs whose anonymous pages came from different forks or mremaps) shown as one
    mapping, as the restore, mapping them anew, makes them."""
    vmas = []
    for key, value in values.items():
        if key.startswith("smaps.") and key.endswith(".range"):
            start, end = (int(x, 16) for x in value.split("-"))
            vmas.append((start, end, key.removesuffix(".range")))
    vmas.sort()
    out = dict(values)
    run = None  # (prefix, its end, its next file offset)
    for start, end, prefix in vmas:
        offset = int(values.get(f"{prefix}.offset", "0"), 16)
        if (
            run
            and run[1] == start
            and _same_kind(values, run[0], prefix)
            and (not values.get(f"{prefix}.path", "").startswith("/") or run[2] == offset)
        ):
            head = run[0]
            out[f"{head}.range"] = f"{head.removeprefix('smaps.')}-{end:x}"
            for name in SUMMED:
                if f"{prefix}.{name}" in values and f"{head}.{name}" in out:
                    total = _kb(out[f"{head}.{name}"]) + _kb(values[f"{prefix}.{name}"])
                    out[f"{head}.{name}"] = f"{total} kB"
            for key in [k for k in out if k.startswith(prefix + ".")]:
                del out[key]
            run = (head, end, offset + end - start)
        else:
            run = (prefix, end, offset + end - start)
    return out


def _same_kind(values: dict[str, str], a: str, b: str) -> bool:
    """Whether mappings `a` and `b` differ only in what the kernel keeps apart; "[heap]" is
    an anonymous mapping's name while it lies within the brk area, which a merge extends."""
    paths = {values.get(f"{a}.path") or "", values.get(f"{b}.path") or ""}
    same = all(values.get(f"{a}.{k}") == values.get(f"{b}.{k}") for k in ("perms", "VmFlags"))
    return same and (len(paths) == 1 or paths == {"", "[heap]"})


def _kernel_vmas(values: dict[str, str]) -> set[str]:
    """The smaps prefixes of the mappings the kernel makes itself (vDSO, vvar, vsyscall):
    placed, and checked, by torpor.parts.vdso, which may keep the dumped vDSO as a copy
    beside the kernel's (trampolines); the page torpor's calls wrote into a vDSO tail at an
    earlier dump that left the tree running is the process's, and a child's, since then."""
    return {
        key.removesuffix(".path")
        for key, value in values.items()
        if key.startswith("smaps.") and key.endswith(".path") and value in KERNEL_VMAS
    }


def _where(key: str, values: dict[str, str]) -> str:
    """What a smaps key's mapping is, for the reader: " (rw-p /usr/lib/libc.so.6)"."""
    if not key.startswith("smaps."):
        return ""
    vma = key.rsplit(".", 1)[0]
    return f" ({values.get(vma + '.perms', '?')} {values.get(vma + '.path') or 'anonymous'})"


def verify(tasks, mode: str, circumstances: frozenset[str] = frozenset()) -> list[str]:
    """Compare each restored task with its audit; `tasks` holds (saved TID, saved PID of its
    process, its core entry, the PID of the restored process as seen here, the
    restored thread's RemoteTask) for every task, the tree's root first. Returns
    the notes to print (mode "warn"); in mode "strict" a difference refuses the restore.
    Signals are blocked while torpor works: the mask compared is the one the task gets back
    as it is let go."""
    if mode == "off":
        return []
    notes, unaudited = [], 0
    root = tasks[0][1] if tasks else None
    for tid, pid, core, real_pid, task in tasks:
        before = saved(core)
        if before is None:
            unaudited += 1
            continue
        abi = abi_for_cs(core.thread_info.gpregs.cs) or X86_64
        after = snapshot(real_pid, task.pid, process=tid == pid, word=abi.word)
        if task.sigmask is not None:
            after["status.SigBlk"] = f"{task.sigmask:016x}"
        seen = set(circumstances)
        if pid == root:
            seen.add("root")
        if before.get(TEMPORARY_MASK):
            seen.add("temporary-mask")
        if before.get("host.kernel") != after.get("host.kernel"):
            seen.add("other-kernel")
        lines = differences(before, after, frozenset(seen))
        notes += [f"--verify: task {tid}: {line}" for line in lines]
    if notes and mode == "strict":
        for note in notes:  # the refusal is one line; `torpor -v` shows them all
            log.info("%s", note)
        raise RestoreError(
            f"--verify=strict: the restored tree differs from the dump in {len(notes)} "
            f"values, first in {notes[0].removeprefix('--verify: ')}"
        )
    if unaudited:
        notes.append(f"--verify: {unaudited} tasks have no audit in the images: not verified")
    return notes


def _short(value: str) -> str:
    value = value.replace("\n", " | ")
    return value if len(value) <= 120 else value[:117] + "..."

"""What a restore needs of this machine, checked before anything is created.

One list of checks serves both `torpor restore`, which refuses on the first finding that
would make the restore fail (and logs the warnings), and `torpor check -D DIR`, which prints
every finding and creates nothing. Each check asks the part that owns the state (parts.cpu,
parts.regs, parts.pkeys, parts.task, parts.clocks, parts.vdso): the decisions are theirs,
made by the same functions the restore itself runs.
"""

import os
from dataclasses import dataclass

from torpor.arch import xstate
from torpor.context import RestoreContext
from torpor.errors import RestoreError, TorporError
from torpor.kernel import cpuid, procfs
from torpor.parts import (
    cgroups,
    clocks,
    cpu,
    files,
    locks,
    memfds,
    memory,
    pkeys,
    regs,
    rlimits,
    shmem,
    signals,
    task,
    timers,
)
from torpor.parts import vdso as vdso_part
from torpor.parts.sockets import inet
from torpor.vdso_probe import kernel_vdso

OK, WARN, REFUSE = "ok", "warn", "refuse"


@dataclass(frozen=True)
class Finding:
    """One thing checked: its topic, OK / WARN / REFUSE, and what was found."""

    topic: str
    level: str
    message: str

    @property
    def refused(self) -> bool:
        return self.level == REFUSE


def run(
    images,
    procs,
    files_by_id: dict,
    *,
    strict_cpu_check: bool = False,
    timens: bool = True,
    pidns: bool = False,
    shell_job: bool = False,
    tcp_close: bool = False,
    whole_host: bool = False,
    manage_cgroups: str = "soft",
) -> list[Finding]:
    """The findings for restoring `procs` (restorer.ProcessImage, from `images`, whose
    files.img entries are `files_by_id`) here.

    `whole_host` adds what a restore finds out only while creating tasks (free PIDs, clone3,
    the vDSO), for `torpor check -D`; a restore meets those checks in their own stages.
    """
    locks.check_image(images)  # ImageError: an image no lock can be made of
    findings = [_cpu(images, strict_cpu_check)]
    live = [p for p in procs if not p.zombie]
    available = cpuid.xfeatures()
    for proc in procs:
        if proc.zombie:
            problem = task.zombie_problem(proc.core)
            findings.append(_process_finding("saved state", proc, problem, "a zombie"))
    for proc in live:
        findings.append(_image_bounds(proc))
        findings.append(_protection_keys(proc))  # first: it names the keys a PKRU guards
        findings.append(_register_state(proc, available))
        findings.append(_credentials(proc))
        findings.append(_resource_limits(proc))
    mms = [p.mm for p in live]
    objects = shmem.memfd_objects(mms, files.memory_objects(files_by_id))
    problem = shmem.image_problem(mms, objects) or memfds.image_problem(images, objects)
    findings.append(
        Finding("shared memory", REFUSE if problem else OK, problem or "objects in range")
    )
    files_problems = files.restore_problems(files_by_id, shell_job)
    files_problems += files.in_flight_problems(images, files_by_id)
    findings.append(
        Finding("open files", REFUSE, "; ".join(files_problems))
        if files_problems
        else Finding("open files", OK, "every kind of open file can be reopened")
    )
    inventory = images.read_one("inventory.img")
    problem, tcp_plan = inet.check_connections(inventory, files_by_id, tcp_close)
    if problem or tcp_plan:
        findings.append(Finding("TCP connections", REFUSE if problem else OK, problem or tcp_plan))
    problem, clocks_plan = clocks.check(images, timens)
    findings.append(Finding("clocks", REFUSE if problem else OK, problem or clocks_plan))
    findings.append(_cgroups(images, procs, manage_cgroups))
    if whole_host:
        findings.append(_pids(procs, pidns))
        findings.append(_clone3())
        findings.extend(_vdso(images, live))
    return findings


def enforce(findings: list[Finding]) -> list[str]:
    """Raise RestoreError for the first refusal; return the warnings to show."""
    for f in findings:
        if f.refused:
            raise RestoreError(f.message)
    return [f.message for f in findings if f.level == WARN]


def _process_finding(topic: str, proc, problem: str | None, fine: str) -> Finding:
    if problem:
        return Finding(topic, REFUSE, f"process {proc.pid}: {problem}")
    return Finding(topic, OK, f"process {proc.pid}: {fine}")


def _cpu(images, strict: bool) -> Finding:
    try:
        warnings = cpu.check(images, strict)
    except RestoreError as e:
        return Finding("CPU features", REFUSE, str(e))
    if warnings:
        return Finding("CPU features", WARN, "; ".join(warnings))
    return Finding("CPU features", OK, "this CPU has every feature the dumping CPU had")


def _image_bounds(proc) -> Finding:
    """Whether the saved registers, dispositions and mappings are ones a task can have:
    images are input, checked before anything is made of them."""
    problem = next(
        (
            p
            for p in (
                *(
                    regs.image_problem(tid, core, proc.abi)
                    or _of_thread(tid, signals.thread_image_problem(core, proc.abi))
                    for tid, core in [(proc.pid, proc.core), *proc.thread_cores.items()]
                ),
                signals.image_problem(proc.core, proc.abi),
                timers.image_problem(proc.core),
                task.image_problem(proc.mm, proc.abi),
                memory.image_problem(proc.mm, proc.abi),
            )
            if p
        ),
        None,
    )
    return _process_finding(
        "saved state", proc, problem, "registers, signals and mappings in range"
    )


def _of_thread(tid: int, problem: str | None) -> str | None:
    return problem and f"thread {tid}: {problem}"


def _register_state(proc, available: int) -> Finding:
    used = 0
    for tid, core in [(proc.pid, proc.core), *proc.thread_cores.items()]:
        try:
            used |= regs.loadable_components(core.thread_info.fpregs, available)
        except RestoreError as e:
            return _process_finding("register state", proc, f"thread {tid}: {e}", "")
    names = [xstate.describe(i) for i in range(2, 64) if used >> i & 1]
    fine = "fits this CPU" + (f" ({', '.join(names)} in use)" if names else "")
    return _process_finding("register state", proc, None, fine)


def _protection_keys(proc) -> Finding:
    problem = pkeys.check(proc.mm)
    what = pkeys.in_use(proc.mm)
    return _process_finding(
        "protection keys", proc, problem, f"{what}, restored" if what else "none in use"
    )


def _credentials(proc) -> Finding:
    try:
        for core in [proc.core, *proc.thread_cores.values()]:
            task.check_creds(core)
    except RestoreError as e:
        return _process_finding("credentials", proc, str(e), "")
    return _process_finding("credentials", proc, None, "this side can grant them")


def _resource_limits(proc) -> Finding:
    problem = rlimits.check(proc.core)
    return _process_finding("resource limits", proc, problem, "this side can set them")


def _cgroups(images, procs, mode: str) -> Finding:
    problem, warning, what = cgroups.check(images, procs, mode)
    if problem:
        return Finding("cgroups", REFUSE, problem)
    return Finding("cgroups", WARN if warning else OK, f"{warning}; {what}" if warning else what)


def _pids(procs, pidns: bool) -> Finding:
    if pidns:
        return Finding("PIDs", OK, "restored in a new PID namespace, where every PID is free")
    busy = [t for p in procs for t in p.entry.threads if os.path.exists(f"/proc/{t}")]
    if not busy:
        return Finding("PIDs", OK, "every PID and TID of the images is free")
    exiting = [t for t in busy if procfs.is_dead(t)]
    message = "PIDs in use here: " + ", ".join(map(str, busy[:10]))
    message += " and more" if len(busy) > 10 else ""
    if len(exiting) == len(busy):
        return Finding("PIDs", WARN, message + " (by exiting tasks: a restore waits for them)")
    return Finding("PIDs", REFUSE, message + ": free them or restore with --pidns")


def _clone3() -> Finding:
    from torpor.checks import clone3

    ok, why = clone3()
    return Finding("clone3 set_tid", OK if ok else REFUSE, why)


def _vdso(images, live) -> list[Finding]:
    findings = []
    kernel = {}
    for proc in live:
        try:
            if proc.abi.name not in kernel:
                kernel[proc.abi.name] = kernel_vdso(proc.abi)
            ctx = RestoreContext(
                pid=proc.pid, task=None, abi=proc.abi, images=images, core=proc.core,
                mm=proc.mm, files={}, pages_id=proc.index,
            )  # fmt: skip
            line, trapping = vdso_part.preview(ctx, kernel[proc.abi.name])
        except TorporError as e:
            findings.append(Finding("vDSO", REFUSE, f"process {proc.pid}: {e}"))
            continue
        level = WARN if trapping else OK
        findings.append(Finding("vDSO", level, f"process {proc.pid}: {line}"))
    return findings

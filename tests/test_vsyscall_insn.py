"""A 32-bit task caught at the fast syscall instruction of the vDSO's __kernel_vsyscall.

In 32-bit code __kernel_vsyscall enters the kernel with `syscall` (AMD) or `sysenter` (Intel),
and an `int $0x80` follows as the fallback. The kernel moves a call made that way onto that
`int $0x80` (its saved ip is the landing pad after it, so that ip -= 2 re-issues the call
there), and fetches the sixth argument from the stack where __kernel_vsyscall pushed it. So a
task whose next instruction is the `syscall` or `sysenter` is in no call and must run that
instruction itself; the rewound-call logic (run into the call, from the heal code when the
task heals itself) belongs to a task at `int $0x80` only: resumed after the fast instruction,
the task would make its call and then again, through the fallback, with the result as the
call number.

The live tests single-step a 32-bit program to the instruction of this host's vDSO, leave it
there stopped by SIGSTOP, dump it (leaving it running, refused, or killed and restored), and
let it go on with SIGCONT: its call, an mmap2 of its own executable at page offset 1, must
map that file's second page. The unit tests judge the choice over recorded vDSO bytes, with
the Intel `sysenter` sequence this AMD-recorded image would have there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import harness
import pytest

import torpor
from torpor import remote
from torpor.arch import IA32, X86_64
from torpor.arch.abi import ERESTARTNOHAND
from torpor.errors import UnsupportedError
from torpor.images import ImageDir
from torpor.kernel import ptrace
from torpor.kernel.procfs import read_maps
from torpor.parts import memory as memory_part
from torpor.parts import regs as regs_part
from torpor.remote import signed
from torpor.vdso import VdsoImage

DATA = Path(__file__).parent / "data"
PTRACE_SINGLESTEP = 9
SYSCALL, SYSENTER, INT80 = b"\x0f\x05", b"\x0f\x34", b"\xcd\x80"
# __kernel_vsyscall's sequence before the fallback, as the kernel's boot-time alternatives
# leave it: AMD copies arg2 into %ebp, Intel the stack pointer (SYSENTER loses it)
FAST_SEQUENCES = {"syscall": b"\x89\xcd" + SYSCALL, "sysenter": b"\x89\xe5" + SYSENTER}


def fast_call_offset(image: bytes, vsyscall: int) -> tuple[int, str]:
    """Where in `image` __kernel_vsyscall (at `vsyscall`) has its fast instruction, and which."""
    for name, seq in FAST_SEQUENCES.items():
        at = image.find(seq + INT80, vsyscall, vsyscall + 32)
        if at >= 0:
            return at + 2, name
    raise AssertionError(f"no fast syscall sequence in __kernel_vsyscall: {image[vsyscall:][:32]}")


# --- the live program ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    """tests/data/vsyscall/mmap_once.c built as the workloads are (gcc -m32 -O1 -g -Wall)."""
    exe = tmp_path_factory.mktemp("vsyscall") / "mmap_once-32"
    source = DATA / "vsyscall" / "mmap_once.c"
    done = subprocess.run(
        ["gcc", "-m32", "-O1", "-g", "-Wall", "-o", str(exe), str(source)], capture_output=True
    )
    assert done.returncode == 0, f"cannot build 32-bit programs: {done.stderr.decode()}"
    return exe


def start(exe: Path, out: Path) -> tuple[subprocess.Popen, int]:
    """Start the program in its own session; return it and the address of its `go`."""
    with open(out, "wb") as sink:
        proc = subprocess.Popen(
            [str(exe)], stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while "READY" not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.01)
    return proc, int(out.read_text().split()[1], 16)


def vdso_of(pid: int) -> tuple[int, bytes]:
    vdso = next(m for m in read_maps(pid, with_flags=False) if m.name == "[vdso]")
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(vdso.start)
        return vdso.start, mem.read(vdso.size)


def stop_at_fast_call(pid: int, go: int) -> int:
    """Trace `pid`, let it leave its wait, single-step it to the fast syscall instruction of
    its vDSO and leave it there in a job-control stop (SIGSTOP); return that address."""
    base, image = vdso_of(pid)
    offset, _ = fast_call_offset(image, VdsoImage.from_bytes(image, 32).symbols[
        "__kernel_vsyscall"].offset)  # fmt: skip
    target = base + offset
    ptrace.seize(pid, 0)
    ptrace.interrupt(pid)
    stop = ptrace.wait(pid)
    assert stop.stopped, stop.describe()
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(go)
        mem.write((1).to_bytes(4, "little"))
    for _ in range(1_000_000):
        ptrace.ptrace(PTRACE_SINGLESTEP, pid, 0, 0)
        stop = ptrace.wait(pid)
        assert stop.stopped, stop.describe()
        if ptrace.get_regs(pid).rip == target:
            break
    else:
        raise AssertionError("the program never reached the fast syscall instruction")
    ptrace.detach(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while harness.proc_state(pid)[0] != "T":
        assert time.monotonic() < deadline, f"{pid} did not stop: {harness.proc_state(pid)}"
        time.sleep(0.01)
    with open(f"/proc/{pid}/syscall") as f:  # in no call, at the instruction
        assert f.read().split()[::2] == ["-1", hex(target)]
    return target


def assert_passes(pid: int, out: Path, reap) -> None:
    """SIGCONT lets the stopped program make its call; it must exit 0 and say PASS."""
    os.kill(pid, signal.SIGCONT)
    status = reap()
    assert (status, out.read_text().splitlines()[1:]) == (0, ["PASS"]), out.read_text()


@pytest.fixture
def caught(program, tmp_path):
    """The program, stopped at its fast syscall instruction: (process, output file, the
    instruction's address)."""
    out = tmp_path / "out.txt"
    proc, go = start(program, out)
    try:
        yield proc, out, stop_at_fast_call(proc.pid, go)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_leave_running_dump(caught, tmp_path):
    proc, out, _ = caught
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(proc.pid, str(images), leave_running=True)
    assert harness.proc_state(proc.pid)[0] == "T"
    assert_passes(proc.pid, out, lambda: proc.wait(timeout=30))


def test_failed_dump(caught, tmp_path, monkeypatch):
    """A dump that fails once it has made calls in the task (at its memory) lets it go the
    same way."""
    proc, out, _ = caught
    images = tmp_path / "images"
    images.mkdir()

    def refuse(ctx):
        raise UnsupportedError("refused for this test")

    monkeypatch.setattr(memory_part, "dump", refuse)
    with pytest.raises(UnsupportedError):
        torpor.dump(proc.pid, str(images), leave_running=True)
    assert_passes(proc.pid, out, lambda: proc.wait(timeout=30))


@pytest.mark.parametrize("trampolines", [False, True], ids=["same-vdso", "trampolines"])
def test_restore(trampolines, caught, tmp_path):
    """Saved at the `int $0x80` after the instruction, with the sixth argument in %ebp (the
    same call on a CPU of either vendor), and restored there (in the vDSO, or in the dumped
    copy of it with trampolines to this one), the task makes its call when it runs. (It is
    restored stopped, by a SIGSTOP sent once it is let go, which may come after it has run
    on: SIGCONT then does nothing.)"""
    proc, out, target = caught
    pid = proc.pid
    images = tmp_path / "images"
    images.mkdir()
    torpor.dump(pid, str(images))
    gpregs = ImageDir(str(images)).read_one(f"core-{pid}.img").thread_info.gpregs
    assert (gpregs.ip, gpregs.bp) == (target + 2, 1)  # the fallback, with mmap2's page offset
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert harness.wait_gone(pid, 5), f"pid {pid} still exists after the dump"
    restored = torpor.restore(str(images), force_vdso_trampolines=trampolines)
    assert restored == pid
    try:
        assert_passes(pid, out, lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    finally:
        harness.kill_tree(pid)


def test_restore_of_raw_registers(caught, tmp_path, monkeypatch):
    """Images holding the task raw at the fast instruction (CRIU's, or torpor's before it
    moved such a task to the fallback) are restored at the fallback with the sixth argument
    in %ebp, what a CPU of the other vendor needs too; the task makes its call."""
    proc, out, target = caught
    pid = proc.pid
    images = tmp_path / "images"
    images.mkdir()
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(target)
        amd = mem.read(2) == SYSCALL
    monkeypatch.setattr(regs_part, "fast_entry_adjusted", lambda regs, abi, read: regs)
    torpor.dump(pid, str(images))
    monkeypatch.undo()
    gpregs = ImageDir(str(images)).read_one(f"core-{pid}.img").thread_info.gpregs
    # %ebp as the vendor's mov left it: AMD's the second argument, Intel's the stack pointer
    assert (gpregs.ip, gpregs.bp) == (target, 4096 if amd else gpregs.sp)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert harness.wait_gone(pid, 5), f"pid {pid} still exists after the dump"
    restored_regs = []
    real_restore = regs_part.restore

    def restore_and_look(ctx):
        real_restore(ctx)
        restored_regs.append(ctx.task.regs)

    monkeypatch.setattr(regs_part, "restore", restore_and_look)
    assert torpor.restore(str(images)) == pid
    try:
        (regs,) = restored_regs
        assert (regs.rip, regs.rbp & 0xFFFFFFFF) == (target + 2, 1)
        assert_passes(pid, out, lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    finally:
        harness.kill_tree(pid)


# --- the choice, over recorded bytes --------------------------------------------------------


RECORDED = (DATA / "vdso" / "vdso-6.18-ia32.so").read_bytes()
BASE = 0xF7F8F000  # where the recording's process had its vDSO


def recorded(cpu: str) -> tuple[bytes, int]:
    """The recorded ia32 vDSO as `cpu` ("syscall": AMD, "sysenter": Intel) has it, and the
    offset of its fast instruction."""
    vsyscall = VdsoImage.from_bytes(RECORDED, 32).symbols["__kernel_vsyscall"].offset
    offset, found = fast_call_offset(RECORDED, vsyscall)
    image = bytearray(RECORDED)
    image[offset - 2 : offset + 2] = FAST_SEQUENCES[cpu]
    return bytes(image), offset


class Recorded(remote.RemoteTask):
    """A RemoteTask over recorded memory: reads the image, records what it asks of ptrace."""

    def __init__(self, image: bytes, regs: ptrace.UserRegs):
        self.pid, self.regs, self.image = 1, regs, image
        self.sigmask, self.heal, self._framed, self._ran = 0, 0x1000, True, True
        self.resume_regs, self.restart_call, self._mem = regs, False, -1
        self.stop_arrived = 0

    def read(self, addr: int, size: int) -> bytes:
        return self.image[addr - BASE : addr - BASE + size]


def regs_at(abi, rip: int, orig_rax: int = -1) -> ptrace.UserRegs:
    regs = ptrace.UserRegs()
    regs.cs, regs.ss, regs.rip = abi.user_cs, abi.user_ss, rip
    regs.rax, regs.orig_rax, regs.rsp = 192, orig_rax & ((1 << 64) - 1), 0xFFFFD000
    regs.rbx, regs.rcx, regs.rbp = 0, 4096, 4096
    return regs


@pytest.fixture
def ptrace_log(monkeypatch) -> list[tuple]:
    """What detach asks of ptrace, instead of asking it."""
    log: list[tuple] = []
    for name in ("set_regs", "set_sigmask", "cont_syscall", "detach"):
        monkeypatch.setattr(
            remote.ptrace, name, lambda *a, _n=name: log.append((_n, *a[1:])), raising=True
        )
    monkeypatch.setattr(remote.RemoteTask, "_expect", lambda self, ok, what: None)
    monkeypatch.setattr(remote.ptrace, "get_regs", lambda pid: regs_at(X86_64, 0))
    return log


@pytest.mark.parametrize("cpu", FAST_SEQUENCES)
def test_a_task_at_the_fast_instruction_goes_untouched(cpu, ptrace_log):
    """At `syscall` or `sysenter` in 32-bit code the task is in no call: let go with its own
    registers (its mask first), nothing run into."""
    image, offset = recorded(cpu)
    regs = regs_at(IA32, BASE + offset)
    task = Recorded(image, regs)
    assert not task._at_syscall_insn()
    task.detach()
    assert [entry[0] for entry in ptrace_log] == ["set_sigmask", "set_regs", "detach"]
    assert ptrace_log[1][1] is regs


@pytest.mark.parametrize("cpu", FAST_SEQUENCES)
def test_a_task_at_the_fallback_reenters_its_call(cpu, ptrace_log):
    """At the `int $0x80` after it (where the kernel rewinds a fast call), the rewound call is
    re-entered from the heal code and returns after that instruction, at the landing pad."""
    image, offset = recorded(cpu)
    task = Recorded(image, regs_at(IA32, BASE + offset + 2))
    assert task._at_syscall_insn()
    task.detach()
    names = [entry[0] for entry in ptrace_log]
    assert names == ["set_regs", "cont_syscall", "set_sigmask", "set_regs", "detach"]
    entry = ptrace_log[3][1]
    assert (entry.orig_rax, entry.rip, entry.cs) == (192, BASE + offset + 4, IA32.user_cs)


@pytest.mark.parametrize("abi", [IA32, X86_64], ids=lambda abi: abi.name)
def test_a_restarting_task_restarts_from_its_call_instruction(abi, ptrace_log):
    """Let go restarting its call (restart_call, no heal code): a getpid from the call's own
    instruction, then at its exit the call's number, -ERESTARTNOHAND and the ip after it."""
    image = bytearray(RECORDED)
    image[0x100:0x102] = abi.syscall_insn
    task = Recorded(bytes(image), regs_at(abi, BASE + 0x100))
    task.heal, task.restart_call = 0, True
    task.detach()
    steps = ["set_regs", "cont_syscall", "cont_syscall", "set_sigmask", "set_regs", "detach"]
    assert [entry[0] for entry in ptrace_log] == steps
    harmless, out = ptrace_log[0][1], ptrace_log[4][1]
    assert (harmless.rax, harmless.rip) == (abi.nr("getpid"), BASE + 0x100)
    assert (out.orig_rax, signed(out.rax), out.rip) == (192, -ERESTARTNOHAND, BASE + 0x102)


@pytest.mark.parametrize(
    "abi, cpu",
    [(IA32, "syscall"), (IA32, "sysenter"), (X86_64, "int80")],
    ids=["ia32-syscall", "ia32-sysenter", "x86_64-int80"],
)
def test_a_restarting_task_elsewhere_goes_untouched(abi, cpu, ptrace_log):
    """Not at its ABI's call instruction, a task to be let go restarting runs on from its own
    registers: a getpid made from there may enter another table (64-bit code's `int $0x80`
    enters ia32's, where x86_64's getpid number is mkdir)."""
    if cpu == "int80":
        image, offset = bytearray(RECORDED), 0x100
        image[offset : offset + 2] = INT80
    else:
        image, offset = recorded(cpu)
    regs = regs_at(abi, BASE + offset)
    task = Recorded(bytes(image), regs)
    task.heal, task.restart_call = 0, True
    task.detach()
    assert [entry[0] for entry in ptrace_log] == ["set_sigmask", "set_regs", "detach"]
    assert ptrace_log[1][1] is regs


@pytest.mark.parametrize(
    "abi, insn, reenters",
    [
        (IA32, INT80, True),
        (IA32, SYSCALL, False),
        (IA32, SYSENTER, False),
        (X86_64, SYSCALL, True),
        (X86_64, INT80, False),  # 64-bit code's compat call: not x86_64's table
        (X86_64, SYSENTER, False),
    ],
)
def test_which_instruction_a_rewound_call_stands_at(abi, insn, reenters):
    assert abi.rewound_call_at(insn) is reenters


STACK = 0xFFFFD000


def stack_and_image(image: bytes):
    """A task's memory: `image` at BASE, and at STACK what __kernel_vsyscall pushed (%ebp,
    the sixth argument, 1; %edx; %ecx)."""
    stack = (1).to_bytes(4, "little") + (2).to_bytes(4, "little") + (3).to_bytes(4, "little")

    def read(addr: int, size: int) -> bytes:
        for start, data in ((BASE, image), (STACK, stack)):
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start : addr - start + size]
        raise OSError(5, "unmapped")

    return read


@pytest.mark.parametrize("trampolined", [False, True], ids=["vdso", "trampolined-copy"])
@pytest.mark.parametrize("cpu", FAST_SEQUENCES)
def test_a_task_at_the_fast_instruction_is_saved_at_the_fallback(cpu, trampolined):
    """In the vDSO, or in a dumped copy whose __kernel_vsyscall begins with a five-byte jump
    (which covers the `mov` before the fast instruction)."""
    image, offset = recorded(cpu)
    if trampolined:
        image = image[: offset - 5] + b"\xe9\x00\x10\x00\x00" + image[offset:]
    regs = regs_at(IA32, BASE + offset)
    regs.rsp = STACK
    out = regs_part.fast_entry_adjusted(regs, IA32, stack_and_image(image))
    assert (out.rip, out.rbp) == (BASE + offset + 2, 1)
    assert {k: v for k, v in out.as_dict().items() if k not in ("rip", "rbp")} == {
        k: v for k, v in regs.as_dict().items() if k not in ("rip", "rbp")
    }


@pytest.mark.parametrize(
    "case", ["before", "fallback", "in-call", "x86_64", "no-stack", "elsewhere"]
)
@pytest.mark.parametrize("cpu", FAST_SEQUENCES)
def test_other_tasks_are_saved_as_they_are(cpu, case):
    """Not at the fast instruction of __kernel_vsyscall in no call (before it, at the
    fallback, in a call, in 64-bit code, the stack unreadable, at a `syscall; int $0x80`
    not followed by the landing pad), the registers are saved as they are."""
    image, offset = recorded(cpu)
    at = {"before": offset - 2, "fallback": offset + 2}.get(case, offset)
    regs = regs_at(
        X86_64 if case == "x86_64" else IA32, BASE + at, 192 if case == "in-call" else -1
    )
    regs.rsp = 0x1000 if case == "no-stack" else STACK
    if case == "elsewhere":  # no landing pad after the fallback: not __kernel_vsyscall
        image = image[: offset + 4] + b"\x90" + image[offset + 5 :]
    abi = X86_64 if case == "x86_64" else IA32
    assert regs_part.fast_entry_adjusted(regs, abi, stack_and_image(image)) is regs

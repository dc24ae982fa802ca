"""RemoteTask: a stopped task that torpor drives by injecting system calls through ptrace.

No code of torpor's runs inside the target. To make the target call the kernel, torpor points
its instruction pointer at a syscall instruction, loads the argument registers and lets it run
until the call is done. The first calls use any `syscall` instruction found in the target's
executable memory and stop at syscall exit; they map a scratch page holding
`syscall; int3; int $0x80; int3` and room for arguments, after which each call costs one stop.
Calls of either ABI are issued from 64-bit mode: `int $0x80` there enters the compat table.

A task being dumped is made to heal itself should torpor vanish (arch.sigframe): its calls
run from heal code in its vDSO's unused tail, each stopped at entry and exit, and a frame
below its stack pointer holds what the heal code puts back. Its signals are blocked only
from its first call on, while its registers lead into the heal code, and its own mask
comes back before its own registers do.
"""

import contextlib
import os
import signal
import struct
import time

from torpor.arch import X86_64, Abi, abi_for_cs, sigframe
from torpor.arch.abi import ERESTARTNOHAND
from torpor.errors import TorporError
from torpor.kernel import ptrace
from torpor.kernel.procfs import PAGE_SIZE, proc, read_maps, read_stat, read_status

# Scratch page layout: code first, argument area after it.
_CODE = X86_64.syscall_insn + b"\xcc" + b"\xcd\x80" + b"\xcc"
_NATIVE_AT = 0
_COMPAT_AT = 3
_DATA_AT = 64

PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
# Signals whose default action stops the task (job control).
STOP_SIGNALS = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_32BIT, MAP_GROWSDOWN, MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x40, 0x100, 0x4000, 0x100000

ALL_SIGNALS = (1 << 64) - 1


class RemoteError(TorporError):
    """The traced task died or stopped in a way torpor did not ask for."""


def errno_name(err: int) -> str:
    return os.strerror(err)


def signed(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


SETTLE_SECONDS = 0.5  # how long torpor waits for the tasks it let go to sleep again


def wait_settled(tids: list[int]) -> None:
    """Wait until each task of `tids`, just let go, sleeps again (or has gone); a task that
    keeps running is waited for SETTLE_SECONDS at most in all. Until a task let go has
    looked for signals on its way out, it counts as having one pending (detaching marks it
    so): a signal sent to its process meanwhile goes to another of its threads, or to it
    before the thread that would have taken it."""
    deadline = time.monotonic() + SETTLE_SECONDS
    waiting = list(tids)
    while waiting and time.monotonic() < deadline:
        waiting = [tid for tid in waiting if _running(tid)]
        if waiting:
            time.sleep(0.0002)


def _running(tid: int) -> bool:
    try:
        return read_stat(tid).state not in "SDZXtT"
    except OSError:
        return False


def under_seccomp(pid: int) -> bool:
    """Whether task `pid` runs in a seccomp mode (strict or filters)."""
    try:
        return read_status(pid).get("Seccomp", "0") != "0"
    except OSError:
        return False


class RemoteTask:
    """A seized, stopped task: its saved registers, its memory, and syscall injection."""

    def __init__(self, pid: int, regs: ptrace.UserRegs):
        self.pid = pid
        self.regs = regs  # the registers to put back when torpor lets the task go
        self.scratch = 0
        self.scratch_size = 0
        self.sigmask: int | None = None  # the task's own blocked mask while torpor blocks all
        self._mem = os.open(proc(pid, "mem"), os.O_RDWR)
        self._bootstrap_insn = 0
        self._data_used = 0
        self._last_event = 0
        self.heal = 0  # address of the heal code (shared by the threads of a process)
        self.resume_regs: ptrace.UserRegs | None = None  # what healing puts back; None: no healing
        self.patches: list[tuple[int, bytes]] = []  # (address, original bytes) torpor wrote over
        self._framed = False  # the heal frame is below the stack pointer
        self._ran = False  # resumed by torpor since the seize
        self.timers_left: tuple = ([], [])  # ns left of the sleepers its seize cancelled (timeouts)
        self.restart_call = False  # let go with its call re-issued by the kernel (detach)
        self.stopped_by = 0  # the signal of the job-control stop it was in when seized
        self.stop_arrived = 0  # SIGSTOP, if one came while torpor drove it (_expect)

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def seize(cls, pid: int, options: int = 0) -> "RemoteTask":
        """Attach to `pid` and stop it; raises OSError if ptrace refuses. A task under
        seccomp filters is seized with PTRACE_O_SUSPEND_SECCOMP, so that they do not judge
        torpor's calls; that option needs CAP_SYS_ADMIN in the initial user namespace, which
        a task without filters does not ask of the caller."""
        opts = ptrace.PTRACE_O_TRACESYSGOOD | options
        if under_seccomp(pid):
            opts |= ptrace.PTRACE_O_SUSPEND_SECCOMP
        ptrace.seize(pid, opts)
        try:
            ptrace.interrupt(pid)
            stop = ptrace.wait(pid)
            while stop.stopped and stop.event != ptrace.PTRACE_EVENT_STOP:
                # A signal arrived before the interrupt: leave it queued for the task.
                ptrace.cont(pid, stop.sig)
                stop = ptrace.wait(pid)
            if stop.exited:
                raise RemoteError(f"task {pid} {stop.describe()} while being seized")
            task = cls(pid, ptrace.get_regs(pid))
            if stop.sig in STOP_SIGNALS:  # a group stop reported as such, not the interrupt
                task.stopped_by = stop.sig
            return task
        except BaseException:
            try:
                ptrace.detach(pid)
            except OSError:
                pass
            raise

    def close(self) -> None:
        if self._mem >= 0:
            os.close(self._mem)
            self._mem = -1

    def block_signals(self) -> None:
        """Block every signal while torpor works, so none is delivered to or lost by the task."""
        self.sigmask = ptrace.get_sigmask(self.pid)
        ptrace.set_sigmask(self.pid, ALL_SIGNALS)

    def enable_healing(self, resume_regs: ptrace.UserRegs) -> None:
        """Make this (seized) task heal itself, back to `resume_regs`, if torpor vanishes while
        it injects calls: its process's heal code is put in place with the scratch page, its
        frame and the blocking of its signals come with its first call. (rt_sigreturn forgets
        the kernel's restart state: a call interrupted with it is re-issued whole.)"""
        self.resume_regs = resume_regs

    def detach(self, stop: int = 0) -> None:
        """Put back the saved registers and blocked mask, and let the task run; with a stop
        signal `stop`, sent as it is let go, it stops before it runs any code of its own.

        A task whose next instruction is its ABI's call instruction (a call it was
        interrupted in, rewound to be re-issued: _at_syscall_insn) is first run into that
        call, with every signal still blocked, and only then given its own mask: a signal
        arriving meanwhile then interrupts the call, as it would have interrupted the
        original, instead of being handled just before the task re-enters, say, pause() and
        sleeps on. A task that heals itself enters it from its heal code as a harmless call,
        changed into its own at the entry stop once its mask is back, so that no instant
        leaves it with signals blocked that it did not block. One to be let go restarting
        its call (restart_call) is so only there too: anywhere else it runs on from its own
        registers.
        """
        if not self._ran and self.resume_regs is not None:
            ptrace.detach(self.pid)  # still as seized: the kernel resumes it as it was
            self.close()
            return
        if self.sigmask is not None and self._at_syscall_insn():
            if self.restart_call and not self.heal:
                self._leave_restarting()
            elif self.heal and self._framed:
                self._enter_own_call_healing()
            else:
                ptrace.set_regs(self.pid, self.regs)
                ptrace.cont_syscall(self.pid)
                self._expect(lambda s: s.is_syscall_stop, "syscall entry")
                ptrace.set_sigmask(self.pid, self.sigmask)
        else:
            if self.sigmask is not None:  # first: its registers still lead into the heal code
                ptrace.set_sigmask(self.pid, self.sigmask)
            ptrace.set_regs(self.pid, self.regs)
        stop = stop or self.stop_arrived  # from a syscall or signal stop: sent, or delivered
        ptrace.detach(self.pid, stop)
        self.close()

    def _leave_restarting(self) -> None:
        """Let go a task whose registers are rewound to its call as if the call had just
        been interrupted: from the exit stop of a getpid made by the call's own instruction,
        with -ERESTARTNOHAND and the call's number, so that the kernel itself re-issues the
        call on the way out (or, should a signal with a handler be pending, returns EINTR
        after it). Detaching a stopped task marks it as having a signal pending, and some
        calls (epoll_wait, semtimedop) fail with EINTR when one enters them so marked; the
        way out clears the mark before the call is made again."""
        own = self.regs
        abi = abi_for_cs(own.cs) or X86_64
        harmless = own.copy()
        harmless.rax, harmless.orig_rax = abi.nr("getpid"), (1 << 64) - 1
        ptrace.set_regs(self.pid, harmless)
        ptrace.cont_syscall(self.pid)
        self._expect(lambda s: s.is_syscall_stop, "syscall entry")
        ptrace.cont_syscall(self.pid)
        self._expect(lambda s: s.is_syscall_stop, "syscall exit")
        ptrace.set_sigmask(self.pid, self.sigmask)
        out = own.copy()
        out.orig_rax, out.rax = own.rax, -ERESTARTNOHAND & ((1 << 64) - 1)
        out.rip = own.rip + len(abi.syscall_insn)
        ptrace.set_regs(self.pid, out)

    def _enter_own_call_healing(self) -> None:
        """Bring the task into the call its registers are rewound to: a getpid from the heal
        code (should torpor vanish first, the task heals and re-issues its call itself), its
        own mask back at the entry stop, and only then the call made its own, returning to
        the task's code."""
        own = self.regs
        abi = abi_for_cs(own.cs) or X86_64
        ptrace.set_regs(self.pid, self._call_regs(abi, abi.nr("getpid"), ()))
        ptrace.cont_syscall(self.pid)
        self._expect(lambda s: s.is_syscall_stop, "syscall entry")
        ptrace.set_sigmask(self.pid, self.sigmask)
        entry = ptrace.get_regs(self.pid)
        entry.orig_rax = own.rax  # the rewound call's number
        for reg in abi.arg_regs:
            setattr(entry, reg, getattr(own, reg))
        entry.rip = own.rip + len(abi.syscall_insn)
        entry.cs, entry.ss, entry.eflags, entry.rsp = own.cs, own.ss, own.eflags, own.rsp
        ptrace.set_regs(self.pid, entry)

    def _at_syscall_insn(self) -> bool:
        """Whether the task, in no call, stands at a call rewound to be re-issued: its ABI's
        call instruction (Abi.rewound_call_at). Anywhere else, a 32-bit task at the vDSO's
        `syscall` or `sysenter` too, it is let go with its own registers untouched: brought
        into its call from the heal code, that one would return after the fast instruction,
        onto the `int $0x80` fallback, and call again with its result as the number."""
        abi = abi_for_cs(self.regs.cs)
        if abi is None or signed(self.regs.orig_rax) >= 0:
            return False
        try:
            insn = self.read(self.regs.rip, 2)
        except (OSError, RemoteError):
            return False
        return abi.rewound_call_at(insn)

    # --- memory ----------------------------------------------------------------------------

    def read(self, addr: int, size: int) -> bytes:
        data = os.pread(self._mem, size, addr)
        if len(data) != size:
            raise RemoteError(f"short read of {size} bytes at {addr:#x} in task {self.pid}")
        return data

    def write(self, addr: int, data: bytes) -> None:
        """Write into the task's memory; reaches read-only pages too."""
        view = memoryview(data)
        while view:
            n = os.pwrite(self._mem, view, addr)
            view, addr = view[n:], addr + n

    def put(self, data: bytes) -> int:
        """Copy `data` into the scratch argument area; return its address in the task."""
        addr = self.scratch + _DATA_AT + self._data_used
        size = (len(data) + 15) & ~15
        if _DATA_AT + self._data_used + size > self.scratch_size:
            raise RemoteError("scratch area too small for syscall arguments")
        self.write(addr, data)
        self._data_used += size
        return addr

    def reserve(self, size: int) -> int:
        """A zeroed buffer of `size` bytes in the scratch area, for a syscall to fill."""
        return self.put(bytes(size))

    # --- syscalls --------------------------------------------------------------------------

    def syscall(self, abi: Abi, name: str, *args: int) -> int:
        """Run syscall `name` of `abi` in the task; return its (signed) result.

        Arguments placed with :meth:`put` live until the call returns; buffers the call
        filled stay readable until the next :meth:`put`.
        """
        try:
            return self._run(abi, abi.nr(name), args, stop_at_exit=False)
        finally:
            self._data_used = 0

    def call(self, abi: Abi, name: str, *args: int) -> int:
        """Like :meth:`syscall`, but a negative result raises OSError."""
        result = self.syscall(abi, name, *args)
        if -4096 < result < 0:
            raise OSError(-result, f"{name} in task {self.pid}: {errno_name(-result)}")
        return result

    def _run(self, abi: Abi, nr: int, args, stop_at_exit: bool, entry: int = -1) -> int:
        if self.heal and not self._framed:
            self._write_frame()
        ptrace.set_regs(self.pid, self._call_regs(abi, nr, args, entry))
        if self.resume_regs is not None and self.sigmask is None:
            self.block_signals()  # only now: its registers lead into the heal code
        self._ran = True
        if self.heal:  # two stops: what follows the instruction is for healing only
            stop_at_exit = True
        if self.scratch and not stop_at_exit:  # one stop: the int3 after the instruction
            ptrace.cont(self.pid)
            self._expect(lambda s: s.sig == signal.SIGTRAP and s.event == 0, "int3")
        else:  # two stops, at syscall entry and exit, whatever follows the instruction
            ptrace.cont_syscall(self.pid)
            self._expect(lambda s: s.is_syscall_stop, "syscall entry")
            ptrace.cont_syscall(self.pid)
            self._expect(lambda s: s.is_syscall_stop, "syscall exit")
        out = ptrace.get_regs(self.pid)
        return signed(out.rax)

    def _call_regs(self, abi: Abi, nr: int, args, entry: int = -1) -> ptrace.UserRegs:
        """The registers that make the task issue syscall `nr` of `abi` with `args`."""
        regs = self.regs.copy()
        regs.cs = X86_64.user_cs
        regs.orig_rax = (1 << 64) - 1
        regs.rax = nr
        regs.eflags &= ~0x100  # no single-step flag
        if len(args) > len(abi.arg_regs):
            raise ValueError(f"too many syscall arguments for {abi.name}")
        padded = tuple(args) + (0,) * (len(abi.arg_regs) - len(args))  # no stale registers
        for reg, value in zip(abi.arg_regs, padded, strict=True):
            setattr(regs, reg, value & 0xFFFFFFFFFFFFFFFF)
        if self.heal:
            at = sigframe.NATIVE_AT if abi is X86_64 else sigframe.COMPAT_AT
            regs.rip = self.heal + (at if entry < 0 else entry)
        elif self.scratch:
            regs.rip = self.scratch + (_NATIVE_AT if abi is X86_64 else _COMPAT_AT)
        elif abi is X86_64:
            regs.rip = self._bootstrap_insn or self._find_syscall_insn()
        else:
            raise RemoteError("compat syscalls need the scratch page")
        return regs

    def _expect(self, ok, what: str) -> None:
        while True:
            stop = ptrace.wait(self.pid)
            if stop.exited:
                raise RemoteError(f"task {self.pid} {stop.describe()} during an injected syscall")
            if ok(stop):
                self._last_event = stop.event
                return
            if stop.sig == signal.SIGSTOP and stop.event == 0:
                # A SIGSTOP (the one signal torpor cannot block) sent meanwhile is held back
                # and sent again as the task is let go (detach): its call goes on.
                self.stop_arrived = signal.SIGSTOP
            elif stop.event != ptrace.PTRACE_EVENT_STOP:
                raise RemoteError(
                    f"task {self.pid} {stop.describe()} instead of the expected {what} stop"
                )
            ptrace.cont(self.pid) if what == "int3" else ptrace.cont_syscall(self.pid)

    def _find_syscall_insn(self) -> int:
        """Any `syscall` byte pair in executable memory will do: the CPU decodes from rip."""
        needle = X86_64.syscall_insn
        maps = read_maps(self.pid, with_flags=False)
        maps.sort(key=lambda m: (m.name != "[vdso]", m.start))
        for m in maps:
            if "x" not in m.perms or m.name == "[vsyscall]":
                continue
            try:
                data = self.read(m.start, m.size)
            except (OSError, RemoteError):
                continue
            at = data.find(needle)
            if at >= 0:
                self._bootstrap_insn = m.start + at
                return self._bootstrap_insn
        raise RemoteError(f"no syscall instruction in the executable memory of task {self.pid}")

    # --- new tasks ---------------------------------------------------------------------------

    def spawn(self, flags: int, tid: int, exit_signal: int = 0) -> "RemoteTask":
        """A new task made by clone3 inside this one, with PID or TID `tid` (as this task's
        PID namespace numbers it): a thread with CLONE_THREAD in `flags`, else a child
        process. Traced from birth (the task must be traced with PTRACE_O_TRACEFORK and
        PTRACE_O_TRACECLONE) and stopped; it shares, or has a copy of, the scratch page.
        Raises OSError with the clone's error."""
        try:
            set_tid = self.put(struct.pack("<i", tid))
            args = struct.pack("<11Q", flags, 0, 0, 0, exit_signal, 0, 0, 0, set_tid, 1, 0)
            regs = self._call_regs(X86_64, X86_64.nr("clone3"), (self.put(args), len(args)))
            ptrace.set_regs(self.pid, regs)
            ptrace.cont(self.pid)
            forked = (ptrace.PTRACE_EVENT_FORK, ptrace.PTRACE_EVENT_CLONE)
            self._expect(lambda s: s.sig == signal.SIGTRAP and s.event in forked + (0,), "clone")
            born = ptrace.event_message(self.pid) if self._last_event in forked else 0
            if born:
                ptrace.cont(self.pid)
                self._expect(lambda s: s.sig == signal.SIGTRAP and s.event == 0, "int3")
            result = signed(ptrace.get_regs(self.pid).rax)
        finally:
            self._data_used = 0
        if result < 0:
            raise OSError(-result, f"clone3 in task {self.pid}: {errno_name(-result)}")
        stop = ptrace.wait(born)
        if not (stop.stopped and stop.event == ptrace.PTRACE_EVENT_STOP):
            raise RemoteError(f"new task {born} {stop.describe()} instead of starting stopped")
        child = RemoteTask(born, ptrace.get_regs(born))
        child.scratch, child.scratch_size = self.scratch, self.scratch_size
        return child

    def execute(self, path: str) -> None:
        """Make the task exec the program at `path` (no arguments, empty environment) and stop
        it just after; the task must be traced with PTRACE_O_TRACEEXEC."""
        name = self.put(path.encode() + b"\0")
        argv = self.put(struct.pack("<QQ", name, 0))
        ptrace.set_regs(self.pid, self._call_regs(X86_64, X86_64.nr("execve"), (name, argv, 0)))
        self._data_used = 0
        ptrace.cont(self.pid)
        exec_or_int3 = (ptrace.PTRACE_EVENT_EXEC, 0)
        self._expect(lambda s: s.sig == signal.SIGTRAP and s.event in exec_or_int3, "exec")
        if self._last_event != ptrace.PTRACE_EVENT_EXEC:
            err = -signed(ptrace.get_regs(self.pid).rax)
            raise OSError(err, f"execve of {path} in task {self.pid}: {errno_name(err)}")
        self.after_exec()

    def after_exec(self) -> None:
        """From the exec event stop, run the task out of execve, so that injected calls start
        clean, and forget the old address space."""
        ptrace.cont_syscall(self.pid)
        self._expect(lambda s: s.is_syscall_stop, "syscall exit after exec")
        self.regs = ptrace.get_regs(self.pid)
        self.scratch = self.scratch_size = 0
        self._bootstrap_insn = 0
        self.close()
        self._mem = os.open(proc(self.pid, "mem"), os.O_RDWR)

    def exit(self, status: int) -> None:
        """End the task with exit_group(status); returns once torpor has seen it exit."""
        regs = self._call_regs(X86_64, X86_64.nr("exit_group"), (status,))
        ptrace.set_regs(self.pid, regs)
        ptrace.cont(self.pid)
        self._wait_exit()

    def kill_with(self, sig: int) -> None:
        """End the task by signal `sig` (its action must be the default one and the signal
        unblocked); returns once torpor has seen it die."""
        os.kill(self.pid, sig)
        with contextlib.suppress(ProcessLookupError):  # SIGKILL: already on its way out
            ptrace.cont(self.pid)
        self._wait_exit(sig)

    def _wait_exit(self, deliver: int = 0) -> None:
        self.close()
        while True:
            stop = ptrace.wait(self.pid)
            if stop.exited:
                return
            ptrace.cont(self.pid, stop.sig if stop.sig == deliver else 0)

    # --- scratch page ----------------------------------------------------------------------

    def map_scratch(self, size: int = PAGE_SIZE, at: int | None = None) -> int:
        """Map the scratch page below 4 GiB (reachable by compat calls) and fill in its code;
        for a task that heals itself, put its heal code in place first."""
        prot = PROT_READ | PROT_WRITE | PROT_EXEC
        flags = MAP_PRIVATE | MAP_ANONYMOUS
        flags |= MAP_FIXED_NOREPLACE if at is not None else MAP_32BIT
        if self.resume_regs is not None:
            self._place_heal_code(size)
        addr = self._run(
            X86_64, X86_64.nr("mmap"), (at or 0, size, prot, flags, -1, 0), True,
            entry=sigframe.BOOT_AT,
        )  # fmt: skip
        if addr < 0 or (at is not None and addr != at):
            raise RemoteError(
                f"cannot map a scratch page in task {self.pid}: "
                f"{errno_name(-addr) if addr < 0 else 'wrong address'}"
            )
        self.write(addr, _CODE)
        self.scratch, self.scratch_size = addr, size
        if self.heal:
            self.write(self.heal, self._heal_code())
        return addr

    # --- healing ---------------------------------------------------------------------------

    def _heal_code(self) -> bytes:
        return sigframe.heal_code(self.scratch, self.scratch_size, self._frame_below)

    def _place_heal_code(self, scratch_size: int) -> None:
        """Write the heal code into the zero tail of the vDSO's last page (beyond its image),
        where a torpor killed earlier may have left its own; without a vDSO or room there,
        the task does without."""
        vdso = next((m for m in read_maps(self.pid, with_flags=False) if m.name == "[vdso]"), None)
        if vdso is None:
            return
        try:
            xstate = ptrace.get_regset(self.pid, ptrace.NT_X86_XSTATE)
            image = self.read(vdso.start, vdso.size)
        except (OSError, RemoteError):
            return
        at = vdso.end - sigframe.HEAL_SIZE - 16
        tail = bytearray(image[at - vdso.start - 64 :])
        if sigframe.is_heal_code(tail[64 : 64 + sigframe.HEAL_SIZE]):
            tail[64 : 64 + sigframe.HEAL_SIZE] = bytes(sigframe.HEAL_SIZE)
        if any(tail) or _image_end(image) > at - vdso.start:
            return
        self._frame_below = sigframe.frame_below(xstate)
        self.scratch_size = scratch_size
        self.patches.append((at, bytes(sigframe.HEAL_SIZE)))
        self.heal = at
        self.write(at, self._heal_code())

    def _write_frame(self) -> None:
        """The frame the heal code returns to, below the stack pointer; where there is no
        room for it, this task does without healing."""
        self._framed = True
        regs = self.resume_regs if self.resume_regs is not None else self.regs
        sigmask = self.sigmask if self.sigmask is not None else ptrace.get_sigmask(self.pid)
        try:
            xstate = ptrace.get_regset(self.pid, ptrace.NT_X86_XSTATE)
            if sigframe.frame_below(xstate) != self._frame_below:
                raise ValueError("an xstate of another size")
            at, data = sigframe.frame(regs, sigmask, xstate)
            self.write(at, data)
        except (OSError, ValueError, RemoteError):
            self.heal = 0

    def share_healing(self, leader: "RemoteTask") -> None:
        """A thread of `leader`'s process: its scratch page and heal code are the leader's."""
        self.scratch, self.scratch_size = leader.scratch, leader.scratch_size
        if self.resume_regs is not None:
            self.heal, self._frame_below = leader.heal, getattr(leader, "_frame_below", 0)

    def unpatched(self, view: memoryview, runs: list[tuple[int, int]]) -> None:
        """Put the task's own bytes back into `view`, read from `runs`, where torpor wrote
        its heal code."""
        at = 0
        for start, length in runs:
            for addr, original in self.patches:
                lo, hi = max(start, addr), min(start + length, addr + len(original))
                if lo < hi:
                    view[at + lo - start : at + hi - start] = original[lo - addr : hi - addr]
            at += length

    def remove_patches(self) -> None:
        """Write the task's own bytes back over the heal code (once no task runs it)."""
        try:
            fd = os.open(proc(self.pid, "mem"), os.O_RDWR)
        except OSError:
            return
        try:
            for addr, original in self.patches:
                os.pwrite(fd, original, addr)
        except OSError:
            pass
        finally:
            os.close(fd)
        self.patches = []

    def unmap_scratch(self) -> None:
        """Remove the scratch page, stopping at syscall exit: its code is gone afterwards."""
        if not self.scratch:
            return
        addr, size = self.scratch, self.scratch_size
        result = self._run(X86_64, X86_64.nr("munmap"), (addr, size), stop_at_exit=True)
        self.scratch = self.scratch_size = 0
        if result < 0:
            raise RemoteError(f"munmap of the scratch page failed: {errno_name(-result)}")

    # --- small typed helpers ---------------------------------------------------------------

    def read_word(self, abi: Abi, addr: int) -> int:
        return struct.unpack(abi.word_format, self.read(addr, abi.word))[0]


def _image_end(image: bytes) -> int:
    """Where the vDSO's ELF image ends: after its section headers or its last section."""
    if image[:4] != b"\x7fELF":
        return len(image)
    wide = image[4] == 2
    if wide:
        (shoff,) = struct.unpack_from("<Q", image, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", image, 0x3A)
    else:
        (shoff,) = struct.unpack_from("<I", image, 0x20)
        shentsize, shnum = struct.unpack_from("<HH", image, 0x2E)
    end = shoff + shentsize * shnum
    for i in range(shnum):
        at = shoff + i * shentsize
        if at + shentsize > len(image):
            return len(image)
        if wide:
            (kind,) = struct.unpack_from("<I", image, at + 4)
            offset, size = struct.unpack_from("<QQ", image, at + 0x18)
        else:
            (kind,) = struct.unpack_from("<I", image, at + 4)
            offset, size = struct.unpack_from("<II", image, at + 0x10)
        if kind != 8:  # SHT_NOBITS takes no room
            end = max(end, offset + size)
    return end


@contextlib.contextmanager
def scratch_child():
    """A seized child of torpor that only waits: a task to try things on (which vDSO this
    kernel maps, what ptrace shows). Killed when the block ends."""
    pid = os.fork()
    if pid == 0:
        while True:
            signal.pause()
    try:
        yield pid, RemoteTask.seize(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

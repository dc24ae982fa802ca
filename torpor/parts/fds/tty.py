"""The caller's terminal, with --shell-job only: a dumped fd on it is restored onto the
terminal of the restoring command. CRIU's TTY kind; tty-info.img holds the terminal.

Pseudo-terminal pairs the tree opened itself are saved whatever the options (pty.py holds
their logic); what follows is about the caller's terminal.

A program on a terminal relies on more than its fds: the terminal's settings (a full-screen
program runs it raw, without echo) and its foreground process group (only that group may
read from it). The dump records both (termios, window size, and the foreground group from
the process's stat); the restore puts the settings on the restoring terminal and, when the
foreground group is one of the tree's, gives it the terminal (tcsetpgrp, as a shell does
for a job). A restore with --shell-job should then be waited for (no -d): the shell takes
its terminal back once the restoring command exits.
"""

import os
import signal
import stat
import termios

from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import tty
from torpor.kernel.procfs import proc, read_stat
from torpor.parts.fds import pty
from torpor.parts.fds.base import FdKind, open_in_task, place

TTY_INFO_ID = 1  # the caller's terminal; pty pairs' sides come after


class Terminal(FdKind):
    name = "a terminal"
    fd_type = pb.fdinfo_pb2.TTY
    field = "tty"

    def recognise(self, d) -> bool:
        return d.kind == "tty"

    def inspect(self, found, options, state) -> None:
        state["pairs"] = pairs = pty.pairs_of(found)
        outside = [(pid, d) for pid, d in found if not _in_pair(pid, d, pairs)]
        if outside and not options.shell_job:
            pid, d = outside[0]
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is a terminal ({d.target}): dump with --shell-job"
            )

    def dump(self, ctx, d, state, fown):
        flags = d.flags & ~os.O_CLOEXEC
        if _in_pair(ctx.pid, d, state["pairs"]):
            index = pty.index_of(ctx.pid, d)
            sides = state.setdefault("pair_infos", {})
            side = (index, tty.is_pty_master(d.rdev))
            if side not in sides:
                sides[side] = pty.side_info(ctx.pid, d, index, TTY_INFO_ID + 1 + len(sides))
                if side[1]:
                    state.setdefault("queues", {})[index] = pty.queued_in(ctx.pid, d, index)
            return pb.tty_pb2.TtyFileEntry(
                tty_info_id=sides[side].id, flags=flags, fown=fown, torpor_in_tree=True,
                torpor_dev_tty=tty.is_dev_tty(d.rdev),
            )  # fmt: skip
        if "info" not in state:
            state["info"] = _terminal_info(ctx.pid, d)
        return pb.tty_pb2.TtyFileEntry(tty_info_id=TTY_INFO_ID, flags=flags, fown=fown)

    def write(self, images, state) -> None:
        infos = [state["info"]] if "info" in state else []
        infos += state.get("pair_infos", {}).values()
        if infos:
            images.write("tty-info.img", infos)
        data = pty.data_entries(state.get("pair_infos", {}), state.get("queues", {}))
        if data:
            images.write("tty-data.img", data)

    def restore_problem(self, entry, shell_job) -> str | None:
        if shell_job or entry.torpor_in_tree:
            return None
        return "the tree had fds on a terminal: restore with --shell-job"

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        infos = _infos(ctx.images, state)
        info = infos.get(entry.tty_info_id)
        if info is not None and state["pairs"].is_pair_side(info):
            got = state["pairs"].open(ctx, info, entry.flags, entry.torpor_dev_tty)
            place(ctx, got, fd, cloexec, always_set_flag=True)  # a taken master has it set
            return
        if not ctx.shell_job:
            raise RestoreError(f"fd {fd} was a terminal: restore with --shell-job")
        if "terminal" not in state:
            state["terminal"] = _own_terminal()
            state["outside"] = info
        place(ctx, open_in_task(ctx, state["terminal"], entry.flags), fd, cloexec)

    def prepare(self, ctx, state) -> None:
        _infos(ctx.images, state)
        state["pairs"].control(ctx)

    def finish_tree(self, contexts, state) -> None:
        """Put the saved settings on the terminal, and give it to the saved foreground
        group when a process of the tree leads it."""
        if "pairs" in state:
            state["pairs"].finish(contexts)
        if "terminal" not in state:
            return
        info = state["outside"]
        if info is None:
            return
        fd = os.open(state["terminal"], os.O_RDWR | os.O_NOCTTY)
        try:
            if info.HasField("termios"):
                termios.tcsetattr(fd, termios.TCSANOW, pty.attributes(info.termios))
            for ctx in contexts:
                if info.pgrp == ctx.image_pid and os.getsid(ctx.pid) == os.getsid(0):
                    _give_terminal(fd, os.getpgid(ctx.pid))
        except (OSError, termios.error) as e:
            raise RestoreError(f"cannot set up the terminal {state['terminal']}: {e}") from None
        finally:
            os.close(fd)


def _in_pair(pid: int, d, pairs: set[int]) -> bool:
    """Whether fd `d` of `pid` is a side of a pty pair whose master the tree holds (also
    through /dev/tty)."""
    return tty.is_pty_master(d.rdev) or pty.index_of(pid, d) in pairs


def _infos(images, state) -> dict:
    """The images' TtyInfoEntry by id, read once (with the tree's pairs)."""
    if "infos" not in state:
        found = images.read("tty-info.img") if images.has("tty-info.img") else []
        data = images.read("tty-data.img") if images.has("tty-data.img") else []
        state["infos"] = {info.id: info for info in found}
        state["pairs"] = pty.Pairs(found, data)
    return state["infos"]


def _terminal_info(pid: int, d) -> "pb.tty_pb2.TtyInfoEntry":
    st = read_stat(pid)
    fd = os.open(proc(pid, "fd", str(d.fd)), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs, winsize = pty.termios_entry(termios.tcgetattr(fd)), pty.winsize_entry(fd)
    finally:
        os.close(fd)
    kind = pb.tty_pb2.PTY if tty.is_pty_slave(d.rdev) else pb.tty_pb2.CONSOLE
    info = pb.tty_pb2.TtyInfoEntry(
        id=TTY_INFO_ID, type=kind, locked=False, exclusive=False, packet_mode=False,
        sid=max(st.sid, 0), pgrp=max(st.tpgid, 0), rdev=d.rdev, termios=attrs, winsize=winsize,
    )  # fmt: skip
    if stat.S_ISCHR(d.mode) and kind == pb.tty_pb2.PTY:
        info.pty.index = tty.slave_index(d.rdev)
    return info


def _give_terminal(fd: int, pgrp: int) -> None:
    """tcsetpgrp from wherever torpor runs: a background caller would get SIGTTOU."""
    old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.tcsetpgrp(fd, pgrp)
    finally:
        signal.signal(signal.SIGTTOU, old)


def _own_terminal() -> str:
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd)
        except OSError:
            continue
    raise RestoreError("--shell-job needs a terminal on stdin, stdout or stderr")


KIND = Terminal()

"""The caller's terminal, with --shell-job only: a dumped fd on it is restored onto the
terminal of the restoring command. CRIU's TTY kind; tty-info.img holds the terminal.

A program on a terminal relies on more than its fds: the terminal's settings (a full-screen
program runs it raw, without echo) and its foreground process group (only that group may
read from it). The dump records both (termios, window size, and the foreground group from
the process's stat); the restore puts the settings on the restoring terminal and, when the
foreground group is one of the tree's, gives it the terminal (tcsetpgrp, as a shell does
for a job). A restore with --shell-job should then be waited for (no -d): the shell takes
its terminal back once the restoring command exits.
"""

import fcntl
import os
import signal
import stat
import struct
import termios

from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel.procfs import proc, read_stat
from torpor.parts.fds.base import FdKind, open_in_task, place

TTY_INFO_ID = 1
KERNEL_NCCS = 19  # control characters in the kernel's struct termios
PTS_MAJORS = range(136, 144)


class Terminal(FdKind):
    name = "a terminal"
    fd_type = pb.fdinfo_pb2.TTY
    field = "tty"

    def recognise(self, d) -> bool:
        return d.kind == "tty"

    def inspect(self, found, options, state) -> None:
        if found and not options.shell_job:
            pid, d = found[0]
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is a terminal ({d.target}): dump with --shell-job"
            )

    def dump(self, ctx, d, state, fown):
        if "info" not in state:
            state["info"] = _terminal_info(ctx.pid, d)
        return pb.tty_pb2.TtyFileEntry(
            tty_info_id=TTY_INFO_ID, flags=d.flags & ~os.O_CLOEXEC, fown=fown
        )

    def write(self, images, state) -> None:
        if "info" in state:
            images.write("tty-info.img", [state["info"]])

    def restore_problem(self, entry, shell_job) -> str | None:
        return None if shell_job else "the tree had fds on a terminal: restore with --shell-job"

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        if not ctx.shell_job:
            raise RestoreError(f"fd {fd} was a terminal: restore with --shell-job")
        if "terminal" not in state:
            state["terminal"] = _own_terminal()
        place(ctx, open_in_task(ctx, state["terminal"], entry.flags), fd, cloexec)

    def finish_tree(self, contexts, state) -> None:
        """Put the saved settings on the terminal, and give it to the saved foreground
        group when a process of the tree leads it."""
        if "terminal" not in state or not contexts[0].images.has("tty-info.img"):
            return
        info = contexts[0].images.read_one("tty-info.img")
        fd = os.open(state["terminal"], os.O_RDWR | os.O_NOCTTY)
        try:
            if info.HasField("termios"):
                termios.tcsetattr(fd, termios.TCSANOW, _attributes(info.termios))
            for ctx in contexts:
                if info.pgrp == ctx.image_pid and os.getsid(ctx.pid) == os.getsid(0):
                    _give_terminal(fd, os.getpgid(ctx.pid))
        except (OSError, termios.error) as e:
            raise RestoreError(f"cannot set up the terminal {state['terminal']}: {e}") from None
        finally:
            os.close(fd)


def _terminal_info(pid: int, d) -> "pb.tty_pb2.TtyInfoEntry":
    st = read_stat(pid)
    fd = os.open(proc(pid, "fd", str(d.fd)), os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
        rows, cols, xpixel, ypixel = _winsize(fd)
    finally:
        os.close(fd)
    chars = [c if isinstance(c, int) else ord(c) for c in cc[:KERNEL_NCCS]]
    kind = pb.tty_pb2.PTY if os.major(d.rdev) in PTS_MAJORS else pb.tty_pb2.CONSOLE
    info = pb.tty_pb2.TtyInfoEntry(
        id=TTY_INFO_ID, type=kind, locked=False, exclusive=False, packet_mode=False,
        sid=max(st.sid, 0), pgrp=max(st.tpgid, 0), rdev=d.rdev,
        termios=pb.tty_pb2.TermiosEntry(
            c_iflag=iflag, c_oflag=oflag, c_cflag=cflag, c_lflag=lflag, c_line=0,
            c_ispeed=ispeed, c_ospeed=ospeed, c_cc=chars,
        ),
        winsize=pb.tty_pb2.WinsizeEntry(
            ws_row=rows, ws_col=cols, ws_xpixel=xpixel, ws_ypixel=ypixel
        ),
    )  # fmt: skip
    if stat.S_ISCHR(d.mode) and kind == pb.tty_pb2.PTY:
        info.pty.index = os.minor(d.rdev) + (os.major(d.rdev) - PTS_MAJORS.start) * 256
    return info


def _winsize(fd: int) -> tuple[int, int, int, int]:
    raw = fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(8))
    return struct.unpack("<4H", raw)


def _attributes(t) -> list:
    cc = list(t.c_cc[:KERNEL_NCCS]) + [0] * (termios.NCCS - min(len(t.c_cc), KERNEL_NCCS))
    return [t.c_iflag, t.c_oflag, t.c_cflag, t.c_lflag, t.c_ispeed, t.c_ospeed, cc]


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

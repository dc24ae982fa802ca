"""The caller's terminal, with --shell-job only: a dumped fd on it is restored onto the
terminal of the restoring command. CRIU's TTY kind (tty-info.img holds the terminal)."""

import os

from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.parts.fds.base import FdKind, open_in_task, place

TTY_INFO_ID = 1


class Terminal(FdKind):
    name = "a terminal"
    fd_type = pb.fdinfo_pb2.TTY
    field = "tty"

    def recognise(self, d) -> bool:
        return d.kind == "tty"

    def inspect(self, found, shell_job) -> None:
        if found and not shell_job:
            pid, d = found[0]
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is a terminal ({d.target}): dump with --shell-job"
            )

    def dump(self, ctx, d, state, fown):
        return pb.tty_pb2.TtyFileEntry(
            tty_info_id=TTY_INFO_ID, flags=d.flags & ~os.O_CLOEXEC, fown=fown
        )

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        if not ctx.shell_job:
            raise RestoreError(f"fd {fd} was a terminal: restore with --shell-job")
        if "terminal" not in state:
            state["terminal"] = _own_terminal()
        place(ctx, open_in_task(ctx, state["terminal"], entry.flags), fd, cloexec)


def _own_terminal() -> str:
    for fd in (0, 1, 2):
        try:
            return os.ttyname(fd)
        except OSError:
            continue
    raise RestoreError("--shell-job needs a terminal on stdin, stdout or stderr")


KIND = Terminal()

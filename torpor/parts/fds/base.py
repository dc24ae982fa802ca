"""The interface every kind of file descriptor implements, and the few calls kinds share to
put a descriptor in place in a restored task.

A kind (one module beside this one) recognises its fds from what procfs shows of them,
refuses what it cannot save before anything in the tree changes, writes CRIU's entry for
one open file description (the FileEntry member `field`, fdinfo type `fd_type`), and in a
restored task makes a new description and puts it at its fd number; what needs the other
fds of the process in place (an eventpoll's watched files) waits for `finish`.
"""

from __future__ import annotations

import os

from torpor.arch import IA32, X86_64
from torpor.context import DumpContext, DumpOptions, RestoreContext
from torpor.errors import RestoreError
from torpor.kernel.files import FdDescription

AT_FDCWD = -100
F_SETFD, FD_CLOEXEC = 2, 1
F_DUPFD_CLOEXEC = 1030
O_ACCMODE = 3
O_LARGEFILE = 0o100000  # the kernel's value (os.O_LARGEFILE is 0 on 64-bit hosts)
# Flags open(2) must not be given again: they act at open time only, or (O_ASYNC) take
# effect only when set with F_SETFL, which parts.files does once the owner is in place.
OPEN_ONLY_FLAGS = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY | os.O_CLOEXEC | os.O_ASYNC


class FdKind:
    """One kind of file descriptor. Subclasses set the attributes and override what they
    need; the defaults refuse nothing and keep no tree-wide state."""

    name = "a file"  # how a message names one fd of the kind
    fd_type = 0  # FdTypes of fdinfo.proto
    field = ""  # the FileEntry member holding the kind's entry
    # Whether an open file of the kind can be saved from torpor's own copy of it, which is
    # what torpor has of a file in flight (carried by a message queued on a socket): the
    # kind's dump then reads nothing through the task (DumpContext.in_flight).
    travels = False

    def recognise(self, d: FdDescription) -> bool:
        raise NotImplementedError

    def inspect(
        self, found: list[tuple[int, FdDescription]], options: DumpOptions, state: dict
    ) -> None:
        """Refuse, for the whole tree (`found`: (pid, fd) of every fd of the kind), what
        cannot be saved; called before any process of the tree is touched. What it learns
        may be kept in `state`, the kind's own for the whole dump."""

    def in_flight(self, found: list[tuple[int, FdDescription]]) -> list[int]:
        """torpor's own copies of the fds carried by the messages queued on the kind's
        fds in `found` (the caller closes them)."""
        return []

    def dump(self, ctx: DumpContext, d: FdDescription, state: dict, fown):
        """The kind's image entry (its id is set by the caller) for the open file behind
        `d`; `state` is the kind's own, for the whole tree; `fown` its owner entry."""
        raise NotImplementedError

    def carried_files(self, images, entries: list) -> set[int]:
        """The file ids carried by the saved messages of the kind's open files `entries`."""
        return set()

    def claims(self, entry) -> bool:
        """Whether the kind restores the FileEntry `entry`, whose member `field` is set
        (kinds sharing a member, such as the internet sockets', say which are theirs: the
        first in KINDS that claims an entry has it)."""
        return True

    def external_key(self, entry) -> str | None:
        """The key (CRIU's, as --inherit-fd takes it: "pipe:[INODE]") of an open file whose
        other side was outside the tree, which the restore may be handed; None for others."""
        return None

    def describe(self, entry) -> str:
        """The open file `entry` in a few words, for `torpor show`."""
        return self.name

    def restore_problem(self, entry, shell_job: bool) -> str | None:
        """Why a restore with these options cannot reopen `entry`, found before anything is
        created; None if it can."""
        return None

    def owner_and_flags(self, ctx: RestoreContext, entry):
        """The FownEntry and open flags of the open file `entry` describes."""
        return entry.fown, entry.flags

    def memory_object(self, entry) -> tuple[int, str, int, int] | None:
        """(id, name, size, seals) of the memory object the open file is (a memfd), which
        the restore creates before anything maps or opens it; None for other files."""
        return None

    def write(self, images, state: dict) -> None:
        """Write the kind's tree-wide images, once every process was dumped."""

    def inventory(self, entry, state: dict) -> None:
        """Fill the fields of inventory.img (`entry`) that the kind owns, once every
        process was dumped."""

    def dump_done(self, state: dict, killed: bool) -> None:
        """The dump is over: the tree is killed next (`killed`), or let go as it was
        (leave_running, or a dump that failed)."""

    def prepare(self, ctx: RestoreContext, state: dict) -> None:
        """Before any fd of one process is put in place."""

    def restore(self, ctx: RestoreContext, entry, fd: int, cloexec: bool, state: dict) -> None:
        """Make a new open file from `entry` in the task and put it at `fd`."""
        raise NotImplementedError

    def finish(self, ctx: RestoreContext, state: dict) -> None:
        """After every fd of one process is in place."""

    def finish_tree(self, contexts: list[RestoreContext], state: dict) -> None:
        """Once every process of the tree (`contexts`, the root's first) has all its fds."""


def park_at(ctx: RestoreContext) -> int:
    """The lowest fd number above every fd the process will have, where kinds keep what
    other processes of the tree take; parts.files closes all of it once every kind's
    finish_tree is done."""
    parked_from = ctx.shared_files.parked_from
    if ctx.image_pid not in parked_from:
        entries = ctx.images.read(f"fdinfo-{ctx.core.ids.files_id}.img")
        parked_from[ctx.image_pid] = max((e.fd for e in entries), default=0) + 1
    return parked_from[ctx.image_pid]


def park(ctx: RestoreContext, fd: int) -> int:
    """Move the task's fd `fd` above all its fds (park_at); the new number."""
    parked = ctx.task.call(X86_64, "fcntl", fd, F_DUPFD_CLOEXEC, park_at(ctx))
    ctx.task.call(X86_64, "close", fd)
    return parked


def exact_open_abi(ctx: RestoreContext, flags: int):
    """The ABI whose openat gives a new file description exactly `flags`: a 64-bit openat
    adds O_LARGEFILE, the compat one does not."""
    return ctx.abi if flags & O_LARGEFILE else IA32


def open_in_task(ctx: RestoreContext, path: str, flags: int) -> int:
    """Open `path` in the task with exactly `flags`; the new fd's number. A 64-bit openat
    adds O_LARGEFILE, which F_SETFL cannot take away, so a file description that lacked it
    (a pipe made by pipe(), a file a 32-bit program opened) is opened by the compat call."""
    try:
        return ctx.task.call(
            exact_open_abi(ctx, flags),
            "openat",
            AT_FDCWD,
            ctx.task.put(path.encode() + b"\0"),
            flags & ~OPEN_ONLY_FLAGS,
            0,
        )
    except OSError as e:
        raise RestoreError(f"cannot reopen {path}: {os.strerror(e.errno)}") from None


def place(
    ctx: RestoreContext, got: int, fd: int, cloexec: bool, always_set_flag: bool = False
) -> None:
    """Move the descriptor `got` to number `fd` with the saved close-on-exec flag (set or
    cleared when `always_set_flag`, else only set: a fresh open has it clear)."""
    task = ctx.task
    if got != fd:
        task.call(X86_64, "dup3", got, fd, os.O_CLOEXEC if cloexec else 0)
        task.call(X86_64, "close", got)
    elif cloexec or always_set_flag:
        task.call(X86_64, "fcntl", fd, F_SETFD, FD_CLOEXEC if cloexec else 0)


def take(ctx: RestoreContext, owner: int, fd: int) -> int:
    """A new fd in this task for the open file description behind fd `fd` of process
    `owner` of the tree (its saved PID; maybe this process itself)."""
    task = ctx.task
    if owner == ctx.image_pid:
        return task.call(X86_64, "fcntl", fd, F_DUPFD_CLOEXEC, 0)
    pidfd = task.call(X86_64, "pidfd_open", owner, 0)
    try:
        return task.call(X86_64, "pidfd_getfd", pidfd, fd, 0)
    finally:
        task.call(X86_64, "close", pidfd)


def copy(ctx: RestoreContext, owner: int, fd: int, target: int, cloexec: bool) -> None:
    """Make fd `target` of this task a copy of fd `fd` of process `owner` (maybe this one):
    the same open file description, with the saved close-on-exec flag."""
    if owner == ctx.image_pid:
        ctx.task.call(X86_64, "dup3", fd, target, os.O_CLOEXEC if cloexec else 0)
        return
    place(ctx, take(ctx, owner, fd), target, cloexec, always_set_flag=True)

"""Pipes whose ends are anywhere in the tree (or one side of which is closed everywhere),
with their unread data and buffer size.
CRIU's PIPE kind (pipes-data.img holds the data and size of each pipe).

At dump, the unread bytes are copied out with tee(2), leaving them in place, and the size
read with F_GETPIPE_SZ, both through torpor's own opens of the pipe. At restore, the first
process that needs a pipe creates it, keeping both ends parked above all its fds (base.park) until
the whole tree has taken its ends; each saved open file description of the pipe is a new open
of the pipe through /proc/self/fd (a description of its own, with its own flags: one end's
O_NONBLOCK is not another's).
"""

import fcntl
import os

from torpor.arch import X86_64
from torpor.images import pb
from torpor.kernel.files import peek_pipe, pipe_has_other_end
from torpor.kernel.procfs import proc
from torpor.parts.fds.base import (
    O_ACCMODE,
    FdKind,
    open_in_task,
    park,
    place,
    take,
)


class Pipe(FdKind):
    name = "a pipe"
    fd_type = pb.fdinfo_pb2.PIPE
    field = "pipe"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "pipe"

    def inspect(self, found, options, state) -> None:
        state["outside"] = {d.inode for _, d in one_sided(found)}

    def dump(self, ctx, d, state, fown):
        save_contents(ctx, d, state)
        entry = pb.pipe_pb2.PipeEntry(pipe_id=d.inode, flags=d.flags & ~os.O_CLOEXEC, fown=fown)
        if d.inode in state["outside"]:
            entry.torpor_outside = True
        return entry

    def external_key(self, entry) -> str | None:
        return f"pipe:[{entry.pipe_id}]" if entry.torpor_outside else None

    def describe(self, entry) -> str:
        side = "write" if entry.flags & O_ACCMODE == os.O_WRONLY else "read"
        return f"the {side} end of pipe:[{entry.pipe_id}]"

    def write(self, images, state) -> None:
        write_contents(images, "pipes-data.img", state)

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        pipes = state.setdefault("pipes", {})  # pipe id -> (saved PID, parked read, write end)
        if entry.pipe_id not in pipes:
            handed = ctx.inherited.get(self.external_key(entry) or "")
            if handed is None:
                _make_pipe(ctx, entry.pipe_id, state)
            else:
                _adopt_pipe(ctx, entry.pipe_id, handed, state)
        owner, read_end, write_end = pipes[entry.pipe_id]
        end = take(ctx, owner, write_end if entry.flags & O_ACCMODE == os.O_WRONLY else read_end)
        try:
            got = open_in_task(ctx, f"/proc/self/fd/{end}", entry.flags)
        finally:
            ctx.task.call(X86_64, "close", end)
        place(ctx, got, fd, cloexec)

    def finish(self, ctx, state) -> None:
        """Fill the pipes this process made with their data, at their size."""
        write_ends = {pipe_id: ends[2] for pipe_id, ends in state.get("pipes", {}).items()}
        refill_made(ctx, "pipes-data.img", state, write_ends)


def one_sided(found, read_write: bool = False) -> list:
    """The fds (pid, FdDescription) of pipes or FIFOs of which the tree holds one side
    while the other side is open outside it; one whose other side is closed everywhere is
    restored so (the parked other end is closed once the tree holds its ends). With
    `read_write` (FIFOs), an end open for both holds both sides."""
    ends: dict[int, set[int]] = {}
    for _, d in found:
        ends.setdefault(d.inode, set()).add(d.flags & O_ACCMODE)
    outside = []
    for pid, d in found:
        sides = ends[d.inode]
        if (read_write and os.O_RDWR in sides) or sides == {os.O_RDONLY, os.O_WRONLY}:
            continue
        if pipe_has_other_end(pid, d.fd, reading=os.O_RDONLY in sides):
            outside.append((pid, d))
    return outside


def _adopt_pipe(ctx, pipe_id: int, handed: int, state) -> None:
    """Take the pipe behind torpor's fd `handed` (--inherit-fd) for pipe `pipe_id`: both
    ends parked like a pipe made here (reopened through torpor's /proc, which also gives
    the saved data a way in), closed with the others once the tree holds its ends."""
    path = f"/proc/{os.getpid()}/fd/{handed}"
    parked = [park(ctx, open_in_task(ctx, path, flags)) for flags in (os.O_RDONLY, os.O_WRONLY)]
    state["pipes"][pipe_id] = (ctx.image_pid, *parked)
    state.setdefault("made", {}).setdefault(ctx.image_pid, []).append(pipe_id)


def save_contents(ctx, d, state, read_write: bool = False, any_end: bool = False) -> None:
    """Keep, once per pipe, its unread data (left in place) and size, read through a read
    end (with `read_write`, FIFOs, also one open for both; with `any_end`, a FIFO whose
    reader is outside the tree, through a write end too) (`state["saved"]`: inode ->
    (PipeDataEntry, bytes))."""
    saved = state.setdefault("saved", {})
    readers = (os.O_RDONLY, os.O_RDWR) if read_write else (os.O_RDONLY,)
    if d.inode not in saved and (any_end or d.flags & O_ACCMODE in readers):
        data = peek_pipe(ctx.pid, d.fd)
        entry = pb.pipe_data_pb2.PipeDataEntry(
            pipe_id=d.inode, bytes=len(data), size=pipe_size(ctx.pid, d.fd)
        )
        saved[d.inode] = (entry, data)


def write_contents(images, name: str, state) -> None:
    if state.get("saved"):
        images.write(name, list(state["saved"].values()))


def refill_made(ctx, name: str, state, write_fds: dict[int, int]) -> None:
    """Fill the pipes this process made (`state["made"]`, forgotten then: a second call
    fills only those made since) with the data and size saved in image `name`, through the
    task's fds `write_fds` (pipe id -> fd)."""
    made = state.get("made", {}).pop(ctx.image_pid, None)
    if not made or not ctx.images.has(name):
        return
    saved = {e.pipe_id: (e, d) for e, d in ctx.images.read_with_payloads(name)}
    for pipe_id in made:
        if pipe_id in saved:
            refill(ctx, write_fds[pipe_id], *saved[pipe_id])


def pipe_size(pid: int, fd: int) -> int:
    """The buffer size of the pipe (or FIFO) behind fd `fd` of `pid`."""
    own = os.open(proc(pid, "fd", str(fd)), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fcntl.fcntl(own, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(own)


def _make_pipe(ctx, pipe_id: int, state) -> None:
    task = ctx.task
    out = task.reserve(8)
    task.call(X86_64, "pipe2", out, 0)
    raw = task.read(out, 8)
    parked = [park(ctx, int.from_bytes(raw[i : i + 4], "little")) for i in (0, 4)]
    state["pipes"][pipe_id] = (ctx.image_pid, *parked)
    state.setdefault("made", {}).setdefault(ctx.image_pid, []).append(pipe_id)


def refill(ctx, write_fd: int, entry, data: bytes) -> None:
    """Give the pipe (or FIFO) behind the task's fd `write_fd` its saved size and data."""
    fd = os.open(proc(ctx.pid, "fd", str(write_fd)), os.O_WRONLY | os.O_NONBLOCK)
    try:
        if entry.HasField("size") and entry.size != fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ):
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, entry.size)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


KIND = Pipe()

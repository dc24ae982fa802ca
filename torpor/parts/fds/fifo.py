"""FIFOs (named pipes), with their unread data and buffer size. CRIU's FIFO kind: a FifoEntry
per open file description, naming the pipe by inode and a REG entry for the path; the data
in fifo-data.img.

A FIFO is reopened by its path. So that no open blocks waiting for the other side, the first
process that reopens one first opens it read-write and keeps that fd, parked above all its
fds, until every process of the tree has its ends; the saved data goes in through it.

A FIFO of which the tree holds one side while the other is open outside the tree is saved
so (FifoEntry.torpor_outside, with its path). Reopened by its path, it is the FIFO whoever
opens that path outside has: a FIFO kept open outside since the dump still holds its data
(or what its outside reader left of it), which the saved data is then not added to; one
that nobody kept open comes back with the saved data and, once the restore lets go of it,
without its outside side. `--inherit-fd fd[N]:PATH` (CRIU's key for a file opened by path:
the path without its leading "/") hands in a pipe or FIFO that the tree's ends are reopened
from instead, the saved data put in it.
"""

import os

from torpor.errors import ImageError, UnsupportedError
from torpor.images import pb
from torpor.kernel.files import pipe_unread
from torpor.parts.fds.base import FdKind, open_in_task, park, place
from torpor.parts.fds.pipe import (
    one_sided,
    refill_made,
    save_contents,
    write_contents,
)


class Fifo(FdKind):
    name = "a FIFO"
    fd_type = pb.fdinfo_pb2.FIFO
    field = "fifo"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "fifo"

    def inspect(self, found, options, state) -> None:
        for pid, d in found:
            if not d.target.startswith("/") or d.target.endswith(" (deleted)"):
                raise UnsupportedError(
                    f"fd {d.fd} of process {pid} is a FIFO ({d.target}) no longer reachable "
                    "by its path, not supported yet"
                )
        state["outside"] = {d.inode for _, d in one_sided(found, read_write=True)}

    def dump(self, ctx, d, state, fown):
        outside = d.inode in state["outside"]
        save_contents(ctx, d, state, read_write=True, any_end=outside)
        flags = d.flags & ~os.O_CLOEXEC

        def make(file_id):
            reg = pb.regfile_pb2.RegFileEntry(
                id=file_id, flags=flags, pos=0, name=d.target, fown=fown, mode=d.mode
            )
            return pb.fdinfo_pb2.FileEntry(type=pb.fdinfo_pb2.REG, id=file_id, reg=reg)

        regf_id = ctx.files.add(("fifo path", d.target, flags, ctx.pid, d.fd), make)
        entry = pb.FifoEntry(pipe_id=d.inode, regf_id=regf_id)
        if outside:
            entry.torpor_outside = True
            entry.torpor_path = d.target
        return entry

    def external_key(self, entry) -> str | None:
        if not entry.torpor_outside or not entry.torpor_path.startswith("/"):
            return None
        return entry.torpor_path[1:] or None

    def describe(self, entry) -> str:
        if entry.torpor_outside and entry.torpor_path:
            return f"the FIFO {entry.torpor_path}"
        return self.name

    def write(self, images, state) -> None:
        write_contents(images, "fifo-data.img", state)

    def owner_and_flags(self, ctx, entry):
        reg = _path_entry(ctx, entry)
        return reg.fown, reg.flags

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        path = _path_entry(ctx, entry)
        if entry.torpor_outside and entry.torpor_path != path.name:
            raise ImageError(
                f"files.img: FIFO {entry.id} names {entry.torpor_path!r} as its path, its "
                f"path entry {path.name!r}"
            )
        handed = ctx.inherited.get(self.external_key(entry) or "")
        source = path.name if handed is None else f"/proc/{os.getpid()}/fd/{handed}"
        keepers = state.setdefault("keepers", {})  # pipe id -> its keeper's fd in its maker
        if entry.pipe_id not in keepers:
            keeper = park(ctx, open_in_task(ctx, source, os.O_RDWR | os.O_NONBLOCK))
            keepers[entry.pipe_id] = keeper
            # Data already there: the FIFO was kept open outside the tree since the dump.
            if handed is not None or not pipe_unread(ctx.pid, keeper):
                state.setdefault("made", {}).setdefault(ctx.image_pid, []).append(entry.pipe_id)
        place(ctx, open_in_task(ctx, source, path.flags), fd, cloexec)

    def finish(self, ctx, state) -> None:
        refill_made(ctx, "fifo-data.img", state, state.get("keepers", {}))


def _path_entry(ctx, entry):
    """The RegFileEntry naming the FIFO's path."""
    path = ctx.files.get(entry.regf_id)
    if path is None or not path.HasField("reg"):
        raise ImageError(f"files.img: FIFO {entry.id} has no path entry {entry.regf_id}")
    return path.reg


KIND = Fifo()

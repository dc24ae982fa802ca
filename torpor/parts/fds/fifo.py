"""FIFOs (named pipes), with their unread data and buffer size. CRIU's FIFO kind: a FifoEntry
per open file description, naming the pipe by inode and a REG entry for the path; the data
in fifo-data.img.

A FIFO is reopened by its path. So that no open blocks waiting for the other side, the first
process that reopens one first opens it read-write and keeps that fd, parked above all its
fds, until every process of the tree has its ends; the saved data goes in through it. As
for pipes, a FIFO of which the tree holds one side is refused while the other side is open
outside the tree.
"""

import os

from torpor.errors import ImageError, UnsupportedError
from torpor.images import pb
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
        for pid, d in one_sided(found, read_write=True):
            raise UnsupportedError(
                f"fd {d.fd} of process {pid} is a FIFO ({d.target}) whose other end is "
                "outside the process tree, not supported yet"
            )

    def dump(self, ctx, d, state, fown):
        save_contents(ctx, d, state, read_write=True)
        flags = d.flags & ~os.O_CLOEXEC

        def make(file_id):
            reg = pb.regfile_pb2.RegFileEntry(
                id=file_id, flags=flags, pos=0, name=d.target, fown=fown, mode=d.mode
            )
            return pb.fdinfo_pb2.FileEntry(type=pb.fdinfo_pb2.REG, id=file_id, reg=reg)

        regf_id = ctx.files.add(("fifo path", d.target, flags, ctx.pid, d.fd), make)
        return pb.FifoEntry(pipe_id=d.inode, regf_id=regf_id)

    def write(self, images, state) -> None:
        write_contents(images, "fifo-data.img", state)

    def owner_and_flags(self, ctx, entry):
        reg = _path_entry(ctx, entry)
        return reg.fown, reg.flags

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        path = _path_entry(ctx, entry)
        keepers = state.setdefault("keepers", {})  # pipe id -> its keeper's fd in its maker
        if entry.pipe_id not in keepers:
            keeper = open_in_task(ctx, path.name, os.O_RDWR | os.O_NONBLOCK)
            keepers[entry.pipe_id] = park(ctx, keeper)
            state.setdefault("made", {}).setdefault(ctx.image_pid, []).append(entry.pipe_id)
        place(ctx, open_in_task(ctx, path.name, path.flags), fd, cloexec)

    def finish(self, ctx, state) -> None:
        refill_made(ctx, "fifo-data.img", state, state.get("keepers", {}))


def _path_entry(ctx, entry):
    """The RegFileEntry naming the FIFO's path."""
    path = ctx.files.get(entry.regf_id)
    if path is None or not path.HasField("reg"):
        raise ImageError(f"files.img: FIFO {entry.id} has no path entry {entry.regf_id}")
    return path.reg


KIND = Fifo()

"""inotify: every watch, with its mask and its watch descriptor. CRIU's INOTIFY kind.

The kernel shows each watch with a file handle of the watched file; the dump finds its
path through the handle (open_by_handle_at, on a mount of its filesystem), and refuses a
watch on a file that is gone. Events queued and not read yet are not shown anywhere
without reading them away: an instance holding some refuses the dump. The restore adds the
watches in order of their descriptors; the kernel hands out descriptors one after the
other, so a gap is skipped by adding and removing a watch until the next one is the
saved number; the IN_IGNORED events that leaves are read away before the program runs.
"""

import os
import struct

from torpor.arch import X86_64
from torpor.errors import RestoreError, UnsupportedError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.kernel.files import path_of_handle
from torpor.parts.fds.base import FdKind, place

FIONREAD = 0x541B
HANDLE_WORDS = 16  # CRIU writes at least this many


class Inotify(FdKind):
    name = "an inotify instance"
    fd_type = pb.fdinfo_pb2.INOTIFY
    field = "ify"

    def recognise(self, d) -> bool:
        return d.kind == "inotify"

    def dump(self, ctx, d, state, fown):
        task = ctx.task
        out = task.reserve(8)
        task.call(X86_64, "ioctl", d.fd, FIONREAD, out)
        (queued,) = struct.unpack("<i", task.read(out, 4))
        if queued:
            raise UnsupportedError(
                f"fd {d.fd} of process {ctx.pid} is an inotify instance with {queued} bytes of "
                "events not read yet, not supported yet"
            )
        entry = pb.fsnotify_pb2.InotifyFileEntry(flags=d.flags & ~os.O_CLOEXEC, fown=fown)
        for w in fdinfo.inotify_watches(ctx.pid, d.fd):
            path = path_of_handle(w.sdev, w.handle_type, w.handle)
            if path is None:
                raise UnsupportedError(
                    f"fd {d.fd} of process {ctx.pid} is an inotify instance watching inode "
                    f"{w.inode}, which is deleted or on no mount torpor sees, not supported yet"
                )
            padded = w.handle.ljust(max(HANDLE_WORDS * 8, -(-len(w.handle) // 8) * 8), b"\0")
            handle = pb.fh_pb2.FhEntry(
                bytes=len(w.handle), type=w.handle_type, path=path,
                handle=struct.unpack(f"<{len(padded) // 8}Q", padded),
            )  # fmt: skip
            entry.wd.add(
                id=0, i_ino=w.inode, mask=w.mask, ignored_mask=w.ignored_mask, s_dev=w.sdev,
                wd=w.wd, f_handle=handle,
            )  # fmt: skip
        return entry

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        got = task.call(X86_64, "inotify_init1", entry.flags & os.O_NONBLOCK)
        for watch in sorted(entry.wd, key=lambda w: w.wd):
            _add_watch(ctx, got, watch)
        _drain(ctx, got)
        place(ctx, got, fd, cloexec)


def _add_watch(ctx, instance: int, watch) -> None:
    task = ctx.task
    path = watch.f_handle.path
    while True:
        wd = task.syscall(
            X86_64, "inotify_add_watch", instance, task.put(path.encode() + b"\0"), watch.mask
        )
        if wd < 0:
            raise RestoreError(f"cannot watch {path} with inotify again: {os.strerror(-wd)}")
        if wd == watch.wd:
            return
        if wd > watch.wd:
            raise RestoreError(
                f"cannot give the inotify watch of {path} its descriptor {watch.wd} (got {wd})"
            )
        task.call(X86_64, "inotify_rm_watch", instance, wd)


def _drain(ctx, instance: int) -> None:
    """Read away the events skipping descriptors left (IN_IGNORED, 16 bytes each)."""
    task = ctx.task
    out = task.reserve(8)
    task.call(X86_64, "ioctl", instance, FIONREAD, out)
    (queued,) = struct.unpack("<i", task.read(out, 4))
    while queued > 0:
        chunk = min(queued, 2048)
        read = task.call(X86_64, "read", instance, task.reserve(chunk), chunk)
        queued -= read


KIND = Inotify()

"""Ghost files: regular files deleted while the tree still held them open or mapped
(a semaphore in /dev/shm, a temporary file, a library replaced by an upgrade).

The dump saves such a file's contents once, however many fds and mappings hold it, in CRIU's
format: ghost-file-N.img (mode, owner, times, then the bytes) and a remap-fpath.img entry
sending the file's FileEntry to it. A file larger than the ghost limit (--ghost-limit, 1 MiB
by default, as in CRIU) refuses the dump, naming the option. The restore creates each ghost
again at its old path (beside it, under a name of torpor's, if that path is taken), lets the
tree open and map it, and removes it once the tree holds it: the processes find a file
"(deleted)" again, with its contents. A file made by open(2) with O_TMPFILE, never linked,
is made again that way by the process that held it (parts.fds.regular), filled from its
ghost: its open flags and its right to be linked (linkat) then are what they were.
"""

from __future__ import annotations

import os
import stat

from torpor.context import DumpContext, log, no_owner
from torpor.errors import ImageError, RestoreError, UnsupportedError
from torpor.images import pb

DELETED = " (deleted)"
O_TMPFILE_ONLY = 0o20000000  # __O_TMPFILE: O_TMPFILE without the O_DIRECTORY it includes
DEFAULT_LIMIT = 1 << 20
NSEC = 1_000_000_000


def is_ghost(path: str) -> bool:
    return path.endswith(DELETED)


class TreeGhosts:
    """The ghost files of a tree being dumped: one ghost per inode, and the FileEntries
    (one per set of open flags) that reopen it."""

    def __init__(self, limit: int = DEFAULT_LIMIT):
        self.limit = limit
        self.number: dict[tuple[int, int], int] = {}  # (dev, ino) -> ghost-file number
        self.saved: list[tuple[pb.GhostFileEntry, bytes]] = []  # by number - 1
        self.remembered: list = []  # (RegFileEntry, ghost-file number): its id is set later

    def check_size(self, size: int, what: str) -> None:
        if size > self.limit:
            raise UnsupportedError(
                f"{what} is a deleted file of {size} bytes, more than the ghost limit of "
                f"{self.limit}: dump with --ghost-limit {size} or more to save it"
            )

    def saved_for(self, reg, source: str, what: str, st=None) -> None:
        """Save the deleted file that `reg` (a RegFileEntry, still named with " (deleted)")
        opens, reading it through `source` (a /proc link to it; `st` its stat if known) if
        its inode is new; the entry is then named by its old path and sent to the ghost by
        remap-fpath.img."""
        st = st or os.stat(source)
        key = (st.st_dev, st.st_ino)
        if key not in self.number:
            self.number[key] = self._save(st, source, what)
        reg.name = reg.name[: -len(DELETED)]
        reg.size = st.st_size
        self.remembered.append((reg, self.number[key]))

    def file_id(self, ctx: DumpContext, path: str, source: str, flags: int, what: str) -> int:
        """The FileEntry id for mapping deleted file `path` with open `flags`."""
        st = os.stat(source)

        def make(file_id):
            reg = pb.regfile_pb2.RegFileEntry(
                id=file_id, flags=flags, pos=0, name=path, mode=st.st_mode, fown=no_owner()
            )
            self.saved_for(reg, source, what, st)
            return pb.fdinfo_pb2.FileEntry(type=pb.fdinfo_pb2.REG, id=file_id, reg=reg)

        return ctx.files.add(("ghost", st.st_dev, st.st_ino, flags), make)

    def _save(self, st, source: str, what: str) -> int:
        """Save the contents of the inode behind `source`; its ghost-file number."""
        if not stat.S_ISREG(st.st_mode):
            raise UnsupportedError(f"{what} is a deleted {_kind(st.st_mode)}, not supported yet")
        self.check_size(st.st_size, what)
        with open(source, "rb") as f:
            data = f.read(self.limit + 1)
        self.check_size(len(data), what)
        ghost = pb.GhostFileEntry(
            uid=st.st_uid, gid=st.st_gid, mode=st.st_mode, dev=st.st_dev, ino=st.st_ino,
            atim=_timeval(st.st_atime_ns), mtim=_timeval(st.st_mtime_ns), size=len(data),
        )  # fmt: skip
        self.saved.append((ghost, data))
        return len(self.saved)

    def write(self, images) -> None:
        self._check_tmpfiles()
        for number, (entry, data) in enumerate(self.saved, start=1):
            images.write(f"ghost-file-{number}.img", [(entry, data)])
        if self.remembered:
            images.write(
                "remap-fpath.img",
                [
                    pb.RemapFilePathEntry(orig_id=reg.id, remap_id=n, remap_type=pb.GHOST)
                    for reg, n in self.remembered
                ],
            )

    def _check_tmpfiles(self) -> None:
        """An O_TMPFILE file (one never linked) comes back made again by O_TMPFILE, as one
        open file description: refuse one open or mapped in more than one way."""
        users: dict[int, list] = {}
        for reg, number in self.remembered:
            users.setdefault(number, []).append(reg)
        for regs in users.values():
            if len(regs) > 1 and any(reg.flags & O_TMPFILE_ONLY for reg in regs):
                raise UnsupportedError(
                    f"the O_TMPFILE file {regs[0].name} is open or mapped in {len(regs)} "
                    "ways (open file descriptions or mappings), not supported yet"
                )


def _timeval(ns: int) -> pb.Timeval:
    return pb.Timeval(tv_sec=ns // NSEC, tv_usec=ns % NSEC // 1000)


def _kind(mode: int) -> str:
    return "directory" if stat.S_ISDIR(mode) else "special file"


class Ghosts:
    """The ghost files of a restore: made before the tree opens them, removed after."""

    def __init__(self, images, files: dict):
        self.images = images
        self.files = files
        self.made: list[str] = []

    def create(self) -> None:
        """Make every ghost file and point its FileEntry at it."""
        if not self.images.has("remap-fpath.img"):
            return
        made: dict[int, str] = {}  # ghost-file number -> where it is
        for remap in self.images.read("remap-fpath.img"):
            if remap.remap_type != pb.GHOST:
                raise ImageError(f"remap-fpath.img: remap type {remap.remap_type}")
            entry = self.files.get(remap.orig_id)
            if entry is None or not entry.HasField("reg"):
                raise ImageError(f"remap-fpath.img: no regular file with id {remap.orig_id}")
            if remap.remap_id not in made:
                name = f"ghost-file-{remap.remap_id}.img"
                found = self.images.read_with_payloads(name)
                if len(found) != 1 or not stat.S_ISREG(found[0][0].mode):
                    raise ImageError(f"{name}: not one regular file")
                made[remap.remap_id] = self._make(entry.reg.name, *found[0])
            entry.reg.name = made[remap.remap_id]

    def _make(self, path: str, ghost, data: bytes) -> str:
        if not os.path.isabs(path) or "\0" in path:
            raise ImageError(f"ghost file path {path!r} is not an absolute path")
        for attempt in range(100):
            where = path if attempt == 0 else f"{path}.torpor-ghost-{attempt}"
            try:
                fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except FileExistsError:
                continue
            except OSError as e:
                raise RestoreError(
                    f"cannot recreate the deleted file {path}: {e.strerror}"
                ) from None
            self.made.append(where)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, ghost.uid, ghost.gid)
                os.fchmod(fd, stat.S_IMODE(ghost.mode))
                times = [_ns(t) for t in (ghost.atim, ghost.mtim)]
                os.utime(fd, ns=tuple(times))
            finally:
                os.close(fd)
            log.debug("ghost file %s recreated at %s", path, where)
            return where
        raise RestoreError(
            f"cannot recreate the deleted file {path}: every name beside it is taken"
        )

    def remove(self) -> None:
        for path in self.made:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.made.clear()


def _ns(t) -> int:
    return t.tv_sec * NSEC + t.tv_usec * 1000

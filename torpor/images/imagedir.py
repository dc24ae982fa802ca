"""Reading and writing a directory of images in CRIU's on-disk format, with integrity checks.

File layout (what crit and CRIU expect)::

    image    := magics entry*
    magics   := IMG_COMMON_MAGIC kind_magic      (inventory.img: INVENTORY_MAGIC alone)
    entry    := length:u32le message[length] payload?
    payload  := raw bytes whose count is a field of the message (pipes-data only)

pagemap-N.img holds one PagemapHead then PagemapEntry messages; pages-N.img is raw page data
with no magic and no entries.

Every file is written as ``NAME.tmp`` and renamed into place, so a file that exists is
complete; a dump writes into a private directory inside the image directory instead, and
moves each file out of it only once all are complete, inventory.img last, so that a dump
killed at any point leaves nothing that looks like an image. Files are created and opened
relative to a descriptor of the directory held from the start, never through a symbolic
link, and only regular files are read (never a FIFO or device that would block or never
end). The size and digest (:mod:`torpor.images.digest`) of every file written through an
:class:`ImageDir` are recorded, and :meth:`ImageDir.commit` writes them into inventory.img
(InventoryEntry.torpor_digests, a field CRIU and crit skip), last. On restore,
:meth:`ImageDir.verify` checks the whole directory against that list before anything is
trusted; afterwards :meth:`ImageDir.read` also checks each file it reads against it.

Every problem found in an image is raised as :class:`torpor.errors.ImageError` with a one-line
message that starts with the file name. Programming errors (an unknown kind of file, a message
of the wrong class) raise ValueError/TypeError.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
from pathlib import Path

from google.protobuf.message import Message

from torpor.errors import ImageError
from torpor.images import pb
from torpor.images.constants import IMG_VERSION
from torpor.images.digest import Hasher, byte_view, digest_bytes, digest_file
from torpor.images.kinds import PAGES_PREFIX, ImageKind, check_file_name, kind_of

INVENTORY = "inventory.img"
_log = logging.getLogger("torpor")

_U32 = struct.Struct("<I")
_FILE_MODE = 0o600  # images hold process memory and credentials
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
STAGING_PREFIX = ".torpor-dump-"  # a dump's private directory: .torpor-dump-PID-RANDOM
_LARGEST_IMAGE = 1 << 30  # an image file (pages aside) larger than this is refused unread


def _inventory_digest(inv) -> bytes:
    """The digest of an inventory entry as serialized without its own digest field."""
    bare = pb.InventoryEntry()
    bare.CopyFrom(inv)
    bare.ClearField("torpor_inventory_digest")
    return digest_bytes(bare.SerializeToString(deterministic=True))


def _strerror(exc: OSError) -> str:
    return exc.strerror or str(exc)


def encode_image(name: str, kind: ImageKind, entries) -> bytes:
    """Serialize ``entries`` as the image file ``name`` of ``kind``.

    For a kind with a payload, each entry is a ``(message, data)`` pair (a bare message means
    no data); the message's payload field must equal ``len(data)``.
    """
    out = bytearray()
    for magic in kind.magics:
        out += _U32.pack(magic)
    for index, item in enumerate(entries):
        payload = b""
        if kind.payload_field is not None and isinstance(item, tuple):
            item, payload = item
        expected = kind.message_class(index)
        if type(item) is not expected:
            raise TypeError(
                f"{name}: entry {index} must be {expected.__name__}, not {type(item).__name__}"
            )
        if not item.IsInitialized():
            missing = ", ".join(item.FindInitializationErrors())
            raise ImageError(f"{name}: entry {index} ({expected.__name__}) lacks {missing}")
        if kind.payload_field is not None:
            declared = kind.payload_size(item)
            if declared != len(payload):
                raise ValueError(
                    f"{name}: entry {index}: {kind.payload_field}={declared} but "
                    f"{len(payload)} bytes of data given"
                )
        data = item.SerializeToString()
        out += _U32.pack(len(data))
        out += data
        out += payload
    return bytes(out)


def decode_image(name: str, kind: ImageKind, data) -> list[tuple[Message, bytes | None]]:
    """Parse the content of image file ``name``: [(message, payload or None), ...].

    Checks the magics, every length and every message (including required fields); raises
    ImageError naming the file and what is wrong.
    """
    view = memoryview(data)
    size = len(view)
    pos = 0
    for i, magic in enumerate(kind.magics):
        if size < pos + 4:
            what = "empty file" if size == 0 else "truncated before the end of the magic"
            raise ImageError(f"{name}: {what} (not a {kind.magic_name} image)")
        (found,) = _U32.unpack_from(view, pos)
        if found != magic:
            which = "image magic" if i == len(kind.magics) - 1 else "header magic"
            raise ImageError(
                f"{name}: bad {which} {found:#010x}, expected {magic:#010x} "
                f"(not a {kind.magic_name} image, or damaged)"
            )
        pos += 4

    entries: list[tuple[Message, bytes | None]] = []
    while pos < size:
        index = len(entries)
        cls = kind.message_class(index)
        if size - pos < 4:
            raise ImageError(f"{name}: truncated in the length of entry {index}")
        (length,) = _U32.unpack_from(view, pos)
        pos += 4
        if length > size - pos:
            raise ImageError(
                f"{name}: entry {index} ({cls.__name__}) truncated or damaged: length {length}, "
                f"only {size - pos} bytes left"
            )
        msg = cls()
        try:
            msg.ParseFromString(view[pos : pos + length])
        except Exception as exc:  # the parser's exception types vary with the backend
            raise ImageError(
                f"{name}: entry {index} ({cls.__name__}) does not parse (damaged image): {exc}"
            ) from None
        pos += length
        if not msg.IsInitialized():
            missing = ", ".join(msg.FindInitializationErrors())
            raise ImageError(
                f"{name}: entry {index} ({cls.__name__}) lacks {missing} (damaged image)"
            )
        bad = _bad_string(msg)
        if bad:
            raise ImageError(
                f"{name}: entry {index} ({cls.__name__}) field {bad} is not a UTF-8 string "
                "without NUL (damaged image)"
            )
        payload = None
        if kind.payload_field is not None:
            count = kind.payload_size(msg)
            if count > size - pos:
                raise ImageError(
                    f"{name}: data of entry {index} truncated: {count} bytes declared, "
                    f"only {size - pos} left"
                )
            payload = bytes(view[pos : pos + count])
            pos += count
        entries.append((msg, payload))

    if kind.head is not None and not entries:
        raise ImageError(f"{name}: no {kind.head.__name__} (damaged image)")
    return entries


def _bad_string(msg: Message, prefix: str = "") -> str | None:
    """The path of a string field of `msg` that is not valid UTF-8 or holds a NUL, or None.

    Strings of the format are C strings (paths, names) torpor hands to the kernel: a NUL
    would cut a path short, and proto2 parsing keeps bytes that do not decode as bytes.
    Only the fields that may hold a string at some depth are looked at (see _string_plan):
    a core entry's registers and xstate are not walked for each thread."""
    for name, is_string, repeated in _string_plan(msg.DESCRIPTOR):
        if repeated:
            values = getattr(msg, name)
        elif is_string or msg.HasField(name):
            values = (getattr(msg, name),)
        else:
            continue
        if is_string:
            if any(not isinstance(v, str) or "\0" in v for v in values):
                return prefix + name
            continue
        if repeated and values:
            inner = _string_plan(values[0].DESCRIPTOR)
            if all(is_str and not rep for _, is_str, rep in inner):  # key/value pairs
                for v in values:
                    for leaf, _, _ in inner:
                        text = getattr(v, leaf)
                        if not isinstance(text, str) or "\0" in text:
                            return f"{prefix}{name}.{leaf}"
                continue
        for v in values:
            bad = _bad_string(v, f"{prefix}{name}.")
            if bad:
                return bad
    return None


_PLANS: dict[str, tuple[tuple[str, bool, bool], ...]] = {}


def _string_plan(descriptor) -> tuple[tuple[str, bool, bool], ...]:
    """The fields of message type `descriptor` that may hold a string, at any depth, in field
    order, each (name, whether a string itself, whether repeated): known from the schema, so
    found once per type."""
    plan = _PLANS.get(descriptor.full_name)
    if plan is None:
        plan = tuple(
            (field.name, field.type == field.TYPE_STRING, field.label == field.LABEL_REPEATED)
            for field in sorted(descriptor.fields, key=lambda f: f.number)
            if field.type == field.TYPE_STRING
            or field.type == field.TYPE_MESSAGE
            and _holds_strings(field.message_type, set())
        )
        _PLANS[descriptor.full_name] = plan
    return plan


def _holds_strings(descriptor, seen: set[str]) -> bool:
    """Whether messages of type `descriptor` may hold a string field at some depth."""
    if descriptor.full_name in seen:
        return False  # a type within itself: what it holds is decided where it started
    seen.add(descriptor.full_name)
    return any(
        field.type == field.TYPE_STRING
        or field.type == field.TYPE_MESSAGE
        and _holds_strings(field.message_type, seen)
        for field in descriptor.fields
    )


class PagesWriter:
    """A pages-N.img being written: a binary file object that digests what goes through it.

    Use as a context manager (see :meth:`ImageDir.pages_writer`). Data written with
    :meth:`write` or :meth:`writev` is hashed on the hashing pool while the same buffers are
    being written, so hashing costs little extra time. :meth:`fileno` is there for code that
    must write with the descriptor itself (os.writev on many iovecs, splice); such writes must
    only append, and if any were made the file is hashed again from disk when it is closed.
    The file becomes ``pages-N.img`` only when the ``with`` block ends without an exception.
    """

    def __init__(self, imagedir: ImageDir, pages_id: int) -> None:
        self._dir = imagedir
        self.name = f"{PAGES_PREFIX}-{pages_id}.img"
        self._tmp = self.name + ".tmp"
        self._hasher = Hasher()
        self._fd = imagedir._create(self._tmp, self.name)
        self.closed = False

    # -- file object protocol ---------------------------------------------------------------
    def fileno(self) -> int:
        """The descriptor of the temporary file (positioned at its end)."""
        return self._fd

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        """Nothing to do: writes go straight to the descriptor."""

    def tell(self) -> int:
        """Bytes written through this object so far."""
        return self._hasher.size

    def write(self, data) -> int:
        """Append all of ``data`` (bytes-like) to the file and digest it; returns its length.

        When this returns, no reference to ``data`` is kept.
        """
        with byte_view(data) as view:
            self._hasher.feed(view)
            try:
                self._write_all(view)
            finally:
                self._hasher.wait()
            return len(view)

    def writev(self, buffers) -> int:
        """Append several buffers in order (one writev(2) when possible); returns bytes written."""
        views = [byte_view(b) for b in buffers]
        try:
            total = sum(len(v) for v in views)
            for v in views:
                self._hasher.feed(v)
            try:
                done = self._writev(views)
                if done < total:  # a short writev: finish buffer by buffer
                    for v in views:
                        if done >= len(v):
                            done -= len(v)
                            continue
                        self._write_all(v[done:])
                        done = 0
            finally:
                self._hasher.wait()
            return total
        finally:
            for v in views:
                v.release()

    def _writev(self, views) -> int:
        try:
            return os.writev(self._fd, views)
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot write: {_strerror(exc)}") from None

    def _write_all(self, view: memoryview) -> None:
        off = 0
        try:
            while off < len(view):
                off += os.write(self._fd, view[off:])
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot write: {_strerror(exc)}") from None

    # -- completion -------------------------------------------------------------------------
    def _finish(self) -> None:
        try:
            size = os.fstat(self._fd).st_size
            os.close(self._fd)
            self.closed = True
            if size == self._hasher.size:
                digest = self._hasher.digest()
            else:  # something wrote through fileno(): digest what is actually on disk
                fd = self._dir._open_read(self._tmp, written=True)
                try:
                    size, digest = digest_file(fd)
                finally:
                    os.close(fd)
            self._dir._put_in_place(self._tmp, self.name)
        except OSError as exc:
            raise ImageError(f"{self.name}: cannot complete: {_strerror(exc)}") from None
        self._dir._record(self.name, size, digest)

    def _abort(self) -> None:
        if not self.closed:
            os.close(self._fd)
            self.closed = True
        self._dir._remove(self._tmp)

    def __enter__(self) -> PagesWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._finish()
        else:
            self._abort()


class ImageDir:
    """A directory of image files: write them during a dump, verify and read them on restore.

    Dump::

        d = ImageDir(path)
        d.write("core-42.img", [core])
        with d.pages_writer(1) as w:
            w.write(page_data)
        d.commit(pb.InventoryEntry(img_version=IMG_VERSION, ...))   # last

    Restore::

        d = ImageDir(path)
        inventory = d.verify()          # every file present, right size, right digest
        core = d.read_one("core-42.img")
    """

    def __init__(self, path, *, staged: bool = False) -> None:
        """The image directory at `path`; with `staged` (a dump), what is written goes into
        a private directory inside it until commit()."""
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            raise ImageError(f"{self.path}: no such image directory") from None
        self._written: dict[str, tuple[int, bytes]] = {}  # by this object, in this run
        self._expected: dict[str, tuple[int, bytes]] = {}  # listed by a verified inventory
        self._stage = None  # (name, fd) of the private directory a dump writes into
        self._moved: list[str] = []  # files commit() moved out of it
        if staged:
            name = f"{STAGING_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
            try:
                os.mkdir(name, 0o700, dir_fd=self._fd)
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self._fd)
            except OSError as exc:
                raise ImageError(f"{self.path}: cannot write into it: {_strerror(exc)}") from None
            self._stage = (name, fd)

    def __repr__(self) -> str:
        return f"ImageDir({str(self.path)!r})"

    def close(self) -> None:
        if self._stage is not None:
            os.close(self._stage[1])
            self._stage = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except (OSError, AttributeError):
            pass

    # -- file access, relative to the directory ----------------------------------------------
    def _dir_of(self, name: str, written: bool) -> int:
        """The descriptor of the directory that holds `name`: the private one for what this
        dump has written and not yet moved out."""
        if self._stage is not None and written:
            return self._stage[1]
        return self._fd

    def _create(self, tmp: str, name: str) -> int:
        """A new, empty file to write `name` into (`tmp` beside it, where there is no
        private directory); never through a link another user put there."""
        where = self._dir_of(name, True)
        target = name if self._stage is not None else tmp
        if self._stage is None:
            self._remove(tmp)
        try:
            return os.open(target, _OPEN_WRITE, _FILE_MODE, dir_fd=where)
        except OSError as exc:
            raise ImageError(f"{name}: cannot create: {_strerror(exc)}") from None

    def _put_in_place(self, tmp: str, name: str) -> None:
        if self._stage is None:
            os.replace(tmp, name, src_dir_fd=self._fd, dst_dir_fd=self._fd)

    def _remove(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self._dir_of(name, True))
        except OSError:
            pass

    def _open_read(self, name: str, written: bool | None = None) -> int:
        """A descriptor of the regular file `name`, opened without following a link and
        without blocking; ImageError otherwise."""
        if written is None:
            written = name in self._written and name not in self._moved
        try:
            fd = os.open(name, _OPEN_READ, dir_fd=self._dir_of(name, written))
        except FileNotFoundError:
            if name == INVENTORY:
                raise ImageError(
                    f"{INVENTORY}: missing (dump incomplete or not an image directory)"
                ) from None
            raise ImageError(f"{name}: missing") from None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a symbolic link
                raise ImageError(f"{name}: is a symbolic link, not an image file") from None
            raise ImageError(f"{name}: cannot read: {_strerror(exc)}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{name}: not a regular file")
        return fd

    def open_binary(self, name: str):
        """The image file `name` (a regular file, reached without links) as a binary file."""
        return os.fdopen(self._open_read(name), "rb")

    def abandon(self) -> None:
        """Remove everything this dump wrote (its private directory, and what commit()
        moved out of it): the directory is as before the dump."""
        for name in self._moved:
            try:
                os.unlink(name, dir_fd=self._fd)
            except OSError:
                pass
        self._moved = []
        if self._stage is not None:
            name, fd = self._stage
            for child in os.listdir(fd):
                try:
                    os.unlink(child, dir_fd=fd)
                except OSError:
                    pass
            os.close(fd)
            self._stage = None
            try:
                os.rmdir(name, dir_fd=self._fd)
            except OSError:
                pass

    def check_trusted(self) -> None:
        """Refuse images another user could have written: the directory and every file in
        it must belong to root or the caller, and only a sticky directory may be writable
        by others. (--trust-images skips this.)"""
        me = os.geteuid()

        def refuse(what: str, st) -> None:
            why = f"belongs to user {st.st_uid}" if st.st_uid not in (0, me) else (
                "is writable by other users"
            )  # fmt: skip
            raise ImageError(
                f"{what} {why} (another user could have written the images): pass "
                "--trust-images to restore them anyway"
            )

        st = os.fstat(self._fd)
        if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            refuse(f"images directory {self.path}", st)
        for name in os.listdir(self._fd):
            st = os.stat(name, dir_fd=self._fd, follow_symlinks=False)
            if st.st_uid not in (0, me) or (st.st_mode & 0o022 and not stat.S_ISLNK(st.st_mode)):
                refuse(name, st)

    # -- writing ----------------------------------------------------------------------------
    def write(self, name: str, entries) -> None:
        """Write the image file ``name`` holding ``entries`` (messages of the name's kind).

        pagemap files take a PagemapHead first; pipes-data files take (PipeDataEntry, data)
        pairs. The file appears atomically; its size and digest are recorded for commit().
        """
        kind = kind_of(name)
        data = encode_image(name, kind, entries)
        self._write_file(name, data)

    def _write_file(self, name: str, data: bytes) -> None:
        tmp = name + ".tmp"
        if name in self._written:
            self._remove(name)  # written again (sk-queues.img by each family of socket)
        fd = self._create(tmp, name)
        try:
            try:
                view = memoryview(data)
                off = 0
                while off < len(view):
                    off += os.write(fd, view[off:])
            finally:
                os.close(fd)
            self._put_in_place(tmp, name)
        except OSError as exc:
            self._remove(tmp if self._stage is None else name)
            raise ImageError(f"{name}: cannot write: {_strerror(exc)}") from None
        self._record(name, len(data), digest_bytes(data))

    def _record(self, name: str, size: int, digest: bytes) -> None:
        self._written[name] = (size, digest)

    def pages_writer(self, pages_id: int) -> PagesWriter:
        """A writer for pages-<pages_id>.img; use it in a ``with`` block."""
        return PagesWriter(self, int(pages_id))

    def pages_path(self, pages_id: int) -> Path:
        """Where pages-<pages_id>.img is (for reading it on restore)."""
        return self.path / f"{PAGES_PREFIX}-{int(pages_id)}.img"

    def commit(self, inventory_entry) -> None:
        """Write inventory.img, listing every file written through this object with its
        size and digest. Call it last: an image directory without inventory.img is incomplete.

        img_version is filled in if the entry lacks it. Nothing is synced to disk: the digests
        make a directory whose data a crash lost refuse to restore instead.
        """
        inv = pb.InventoryEntry()
        inv.CopyFrom(inventory_entry)
        if not inv.HasField("img_version"):
            inv.img_version = IMG_VERSION
        del inv.torpor_digests[:]
        for name in sorted(self._written):
            if name == INVENTORY:
                continue
            size, digest = self._written[name]
            inv.torpor_digests.add(name=name, digest=digest, size=size)
        inv.torpor_inventory_digest = _inventory_digest(inv)
        self._write_file(INVENTORY, encode_image(INVENTORY, kind_of(INVENTORY), [inv]))
        if self._stage is None:
            return
        name, fd = self._stage
        try:  # out of the private directory, inventory.img last: complete when it appears
            for moved in [*sorted(n for n in self._written if n != INVENTORY), INVENTORY]:
                os.rename(moved, moved, src_dir_fd=fd, dst_dir_fd=self._fd)
                self._moved.append(moved)
            os.close(fd)
            self._stage = None
            os.rmdir(name, dir_fd=self._fd)
        except OSError as exc:
            raise ImageError(
                f"{self.path}: cannot put the images in place: {_strerror(exc)}"
            ) from None
        self._moved = []

    # -- reading ----------------------------------------------------------------------------
    def has(self, name: str) -> bool:
        """Whether the file ``name`` exists in the directory."""
        check_file_name(name)
        written = name in self._written and name not in self._moved
        try:
            st = os.stat(name, dir_fd=self._dir_of(name, written), follow_symlinks=False)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def verify(self) -> pb.InventoryEntry:
        """Check that the directory is a complete, undamaged image; return its inventory.

        Every file listed in the inventory must exist with the listed size and digest. Missing
        files and wrong sizes are reported before any digest is computed.
        """
        inv = self.read_one(INVENTORY)
        if inv.HasField("torpor_inventory_digest"):
            if _inventory_digest(inv) != inv.torpor_inventory_digest:
                raise ImageError(f"{INVENTORY}: digest mismatch (damaged image)")
        if inv.img_version != IMG_VERSION:
            raise ImageError(
                f"{INVENTORY}: image version {inv.img_version} is not supported "
                f"(expected {IMG_VERSION})"
            )
        if not inv.torpor_digests and not inv.HasField("torpor_inventory_digest"):
            _log.warning(
                "%s lists no digests (images not written by torpor): nothing checks their "
                "integrity",
                INVENTORY,
            )
        listed: dict[str, tuple[int, bytes]] = {}
        for item in inv.torpor_digests:
            name = item.name
            if not name or "/" in name or name in (".", "..", INVENTORY) or name in listed:
                raise ImageError(f"{INVENTORY}: bad file list entry {name!r} (damaged image)")
            listed[name] = (item.size, item.digest)
        for name, (size, _) in listed.items():
            fd = self._open_read(name)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
            if st.st_size != size:
                raise ImageError(
                    f"{name}: size {st.st_size} bytes, expected {size} (truncated or damaged image)"
                )
        for name, (size, digest) in listed.items():
            fd = self._open_read(name)
            try:
                found_size, found = digest_file(fd)
            except OSError as exc:
                raise ImageError(f"{name}: cannot read: {_strerror(exc)}") from None
            finally:
                os.close(fd)
            if found_size != size or found != digest:
                raise ImageError(f"{name}: digest mismatch (damaged image)")
        self._expected = listed
        return inv

    def _load(self, name: str) -> list[tuple[Message, bytes | None]]:
        kind = kind_of(name)
        fd = self._open_read(name)
        try:
            size = os.fstat(fd).st_size
            if size > _LARGEST_IMAGE:
                raise ImageError(f"{name}: {size} bytes, too large for an image of its kind")
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(size + 1)
        except OSError as exc:
            raise ImageError(f"{name}: cannot read: {_strerror(exc)}") from None
        finally:
            os.close(fd)
        known = self._written.get(name) or self._expected.get(name)
        if known is not None:
            size, digest = known
            if len(data) != size:
                raise ImageError(
                    f"{name}: size {len(data)} bytes, expected {size} (truncated or damaged image)"
                )
            if digest_bytes(data) != digest:
                raise ImageError(f"{name}: digest mismatch (damaged image)")
        return decode_image(name, kind, data)

    def read(self, name: str) -> list[Message]:
        """All entries of the image file ``name``, fully checked.

        For pipes-data the raw data after each entry is checked but not returned; use
        :meth:`read_with_payloads` for it.
        """
        return [msg for msg, _ in self._load(name)]

    def read_with_payloads(self, name: str) -> list[tuple[Message, bytes]]:
        """Entries of a pipes-data image with the raw data that follows each of them."""
        if kind_of(name).payload_field is None:
            raise ValueError(f"{name}: this kind of image has no data after its entries")
        return [(msg, payload or b"") for msg, payload in self._load(name)]

    def read_one(self, name: str) -> Message:
        """The single entry of the image file ``name``; ImageError if it holds 0 or several."""
        entries = self.read(name)
        if len(entries) != 1:
            raise ImageError(f"{name}: expected exactly one entry, found {len(entries)}")
        return entries[0]

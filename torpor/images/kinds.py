"""The kinds of image file torpor writes: file-name prefix, magic numbers, message classes.

A file's kind follows from its name: ``core-123.img`` is of kind ``core``. The table is the
single place that ties CRIU's file names to magics and protobuf messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from torpor.images import constants as c
from torpor.images import pb


@dataclass(frozen=True)
class ImageKind:
    """How one kind of image file is laid out.

    ``magics``: the 32-bit words the file starts with. ``entry``: the message class of every
    entry, except that a kind with a ``head`` has one ``head`` message first (pagemap).
    ``payload_field``: if set, each entry is followed by that many raw bytes, the count being
    the value of this field of the entry (pipes-data), or the sum of several fields' values
    when it names them all in a tuple (tcp-stream: the receive queue, then the send queue).
    """

    prefix: str
    magic_name: str
    magics: tuple[int, ...]
    entry: type[Message]
    head: type[Message] | None = None
    payload_field: str | tuple[str, ...] | None = None

    def message_class(self, index: int) -> type[Message]:
        """The message class expected for the entry at ``index``."""
        if self.head is not None and index == 0:
            return self.head
        return self.entry

    def payload_size(self, message: Message) -> int:
        """How many bytes of data follow `message` (a kind with a payload)."""
        fields = self.payload_field
        if isinstance(fields, str):
            return getattr(message, fields)
        return sum(getattr(message, f) for f in fields)


def _common(prefix, magic_name, magic, entry, **kw) -> ImageKind:
    return ImageKind(prefix, magic_name, (c.IMG_COMMON_MAGIC, magic), entry, **kw)


KINDS: dict[str, ImageKind] = {
    k.prefix: k
    for k in (
        # CRIU writes (and expects) no IMG_COMMON/IMG_SERVICE word before the inventory magic.
        ImageKind("inventory", "INVENTORY", (c.INVENTORY_MAGIC,), pb.InventoryEntry),
        _common("pstree", "PSTREE", c.PSTREE_MAGIC, pb.PstreeEntry),
        _common("core", "CORE", c.CORE_MAGIC, pb.CoreEntry),
        _common("mm", "MM", c.MM_MAGIC, pb.MmEntry),
        _common("pagemap", "PAGEMAP", c.PAGEMAP_MAGIC, pb.PagemapEntry, head=pb.PagemapHead),
        _common("files", "FILES", c.FILES_MAGIC, pb.FileEntry),
        _common("fdinfo", "FDINFO", c.FDINFO_MAGIC, pb.FdinfoEntry),
        _common("fs", "FS", c.FS_MAGIC, pb.FsEntry),
        _common("tty-info", "TTY_INFO", c.TTY_INFO_MAGIC, pb.TtyInfoEntry),
        _common("tty-data", "TTY_DATA", c.TTY_DATA_MAGIC, pb.TtyDataEntry),
        _common(
            "pipes-data", "PIPES_DATA", c.PIPES_DATA_MAGIC, pb.PipeDataEntry, payload_field="bytes"
        ),
        _common(
            "fifo-data", "FIFO_DATA", c.FIFO_DATA_MAGIC, pb.PipeDataEntry, payload_field="bytes"
        ),
        _common("sigacts", "SIGACT", c.SIGACT_MAGIC, pb.SaEntry),
        _common("cpuinfo", "CPUINFO", c.CPUINFO_MAGIC, pb.CpuinfoEntry),
        _common("timens", "TIMENS", c.TIMENS_MAGIC, pb.TimensEntry),
        _common("file-locks", "FILE_LOCKS", c.FILE_LOCKS_MAGIC, pb.FileLockEntry),
        _common("remap-fpath", "REMAP_FPATH", c.REMAP_FPATH_MAGIC, pb.RemapFilePathEntry),
        _common(
            "ghost-file", "GHOST_FILE", c.GHOST_FILE_MAGIC, pb.GhostFileEntry, payload_field="size"
        ),
        _common("seccomp", "SECCOMP", c.SECCOMP_MAGIC, pb.SeccompEntry),
        _common("cgroup", "CGROUP", c.CGROUP_MAGIC, pb.CgroupEntry),
        _common(
            "sk-queues", "SK_QUEUES", c.SK_QUEUES_MAGIC, pb.SkPacketEntry, payload_field="length"
        ),
        _common(
            "tcp-stream",
            "TCP_STREAM",
            c.TCP_STREAM_MAGIC,
            pb.TcpStreamEntry,
            payload_field=("inq_len", "outq_len"),
        ),
    )
}

PAGES_PREFIX = "pages"  # pages-N.img: raw page contents, no magic, no entries


def check_file_name(name: str) -> None:
    """Refuse anything but a plain file name inside the image directory."""
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise ValueError(f"not an image file name: {name!r}")


def kind_of(name: str) -> ImageKind:
    """The kind of the image file called ``name`` (``core-7.img`` -> core).

    The longest registered prefix that the name's stem equals or continues with ``-`` wins.
    Raises ValueError for names that are not image files of a registered kind.
    """
    check_file_name(name)
    if not name.endswith(".img"):
        raise ValueError(f"{name}: image file names end in .img")
    stem = name[: -len(".img")]
    best = None
    for prefix, kind in KINDS.items():
        if (stem == prefix or stem.startswith(prefix + "-")) and (
            best is None or len(prefix) > len(best.prefix)
        ):
            best = kind
    if best is None:
        if stem.startswith(PAGES_PREFIX + "-"):
            raise ValueError(f"{name}: pages images are raw; use ImageDir.pages_writer()")
        raise ValueError(f"{name}: unknown kind of image (known: {', '.join(sorted(KINDS))})")
    return best

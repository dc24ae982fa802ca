"""The kinds of file descriptor torpor saves, one module each (see base.FdKind): KINDS is
the only list of them, in the order they are restored (a kind after those it names in
`after`)."""

from torpor.parts.fds import pipe, regular, tty
from torpor.parts.fds.base import FdKind

KINDS: tuple[FdKind, ...] = (regular.KIND, pipe.KIND, tty.KIND)
BY_FIELD = {k.field: k for k in KINDS}
RESTORE_ORDER = {k.field: i for i, k in enumerate(KINDS)}

assert all(RESTORE_ORDER[a] < RESTORE_ORDER[k.field] for k in KINDS for a in k.after)


def kind_of(d) -> FdKind | None:
    """The kind that saves fd `d`, or None if torpor saves no such fd."""
    return next((k for k in KINDS if k.recognise(d)), None)


def kind_of_entry(entry) -> FdKind | None:
    """The kind that restores a FileEntry: the one whose member is set."""
    return next((k for k in KINDS if entry.HasField(k.field)), None)

"""Crafting images for the tests that treat images as input: change any field of any message
of an image directory (or a pages file's length), recompute the digests so that torpor's
integrity check does not hide what the change does, then restore it with the command line
and judge what came out.

A mutant is one change, named by where it is and what it puts there (``Mutant.describe()``,
e.g. ``core-42.img[0].thread_info.gpregs.ip = 0xffffffffffffffff``), so that a failure is
reproduced by applying the same one again. :func:`mutants` lists every change the fuzzer
can make to a directory: every field of every message, through the generated classes'
descriptors (repeated fields emptied, one element dropped or duplicated; integers at 0, 1,
-1 and the boundaries of their type and around them; strings empty, not UTF-8, with NUL or a
newline, very long; bytes empty, truncated, extended; enums at values no schema has;
optional fields cleared), and every pages file truncated or extended.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import harness
from command import TORPOR, cli_env
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.internal import encoder

from torpor.images import INVENTORY, ImageDir, kind_of
from torpor.images.digest import digest_bytes
from torpor.images.imagedir import decode_image

_U32 = struct.Struct("<I")
RESTORE_TIMEOUT = 30.0

_INT_BITS = {
    FD.TYPE_INT32: (32, True), FD.TYPE_SINT32: (32, True), FD.TYPE_SFIXED32: (32, True),
    FD.TYPE_INT64: (64, True), FD.TYPE_SINT64: (64, True), FD.TYPE_SFIXED64: (64, True),
    FD.TYPE_UINT32: (32, False), FD.TYPE_FIXED32: (32, False),
    FD.TYPE_UINT64: (64, False), FD.TYPE_FIXED64: (64, False),
}  # fmt: skip


def int_values(bits: int, signed: bool, now: int) -> list[int]:
    """The integers worth trying in a field of this type holding `now`: 0, 1, -1 (as the
    type holds it), its boundaries and their neighbours, 2^31, 2^32-1, 2^63, 2^64-1, now±1."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    wanted = [0, 1, -1, lo, lo + 1, hi, hi - 1, 1 << 31, (1 << 32) - 1, 1 << 63, (1 << 64) - 1]
    wanted += [now + 1, now - 1]
    out = []
    for v in wanted:
        if not signed and v < 0:
            v &= hi  # -1 as an unsigned field holds it
        if lo <= v <= hi and v != now and v not in out:
            out.append(v)
    return out


NOT_UTF8 = b"/tmp/\xff\xfe-not-utf8"
STRING_VALUES = ["", "/tmp/a\0b", "/tmp/a\ntorpor: error: forged line", "x" * 70000]


@dataclass(frozen=True)
class Mutant:
    """One change to an image directory: in image file `file`, at `path` (a tuple of
    field names and element indexes from the entry index on), do `op` with `value`.

    op: "set" (a value), "raw" (a field's wire bytes: a string not UTF-8, an enum value
    no schema has), "clear", "drop" / "dup" (an element of a repeated field, by index),
    "empty" (a repeated field), "length" (a pages file cut or grown to `value` bytes)."""

    file: str
    path: tuple
    op: str
    value: object = None

    def describe(self) -> str:
        where = self.file + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in self.path)
        value = self.value
        if isinstance(value, int) and not isinstance(value, bool):
            value = hex(value)
        elif isinstance(value, (str, bytes)) and len(value) > 40:
            value = f"{value[:20]!r}... ({len(value)} long)"
        else:
            value = repr(value)
        return f"{where} {self.op} {value}" if self.op != "clear" else f"{where} cleared"

    @property
    def group(self) -> tuple:
        """What the fuzzer spreads its sample over: the kind of file and the field, without
        element indexes or the process the file is of."""
        kind = self.file.split("-")[0] if self.op != "length" else "pages"
        return kind, tuple(p for p in self.path[1:] if not isinstance(p, int)), self.op


# --- listing the changes ------------------------------------------------------------------------


def mutants(images: Path) -> list[Mutant]:
    """Every change :func:`apply` can make to the image directory `images`."""
    found: list[Mutant] = []
    for name in sorted(os.listdir(images)):
        data = (images / name).read_bytes()
        if name.startswith("pages-"):
            for size in sorted({0, len(data) // 2, max(len(data) - 1, 0), len(data) + 1,
                                len(data) + 4096}):  # fmt: skip
                if size != len(data):
                    found.append(Mutant(name, (), "length", size))
            continue
        for index, (msg, _) in enumerate(decode_image(name, kind_of(name), data)):
            _message_mutants(name, (index,), msg, found)
    return found


def _message_mutants(name: str, path: tuple, msg, out: list[Mutant]) -> None:
    for field in msg.DESCRIPTOR.fields:
        here = (*path, field.name)
        if field.label == FD.LABEL_REPEATED:
            items = getattr(msg, field.name)
            if len(items):
                out.append(Mutant(name, here, "empty"))
                out.append(Mutant(name, here, "drop", len(items) // 2))
                out.append(Mutant(name, here, "dup", len(items) - 1))
            for i, item in enumerate(items):
                if field.type == FD.TYPE_MESSAGE:
                    _message_mutants(name, (*here, i), item, out)
                else:
                    _scalar_mutants(name, (*here, i), field, item, out, element=True)
            continue
        is_set = msg.HasField(field.name)
        if field.type == FD.TYPE_MESSAGE:
            if is_set:
                if field.label == FD.LABEL_OPTIONAL:
                    out.append(Mutant(name, here, "clear"))
                _message_mutants(name, here, getattr(msg, field.name), out)
            continue
        if is_set:
            out.append(Mutant(name, here, "clear"))
        _scalar_mutants(name, here, field, getattr(msg, field.name), out)


def _scalar_mutants(
    name: str, here: tuple, field, now, out: list[Mutant], element: bool = False
) -> None:
    if field.type in _INT_BITS:
        for v in int_values(*_INT_BITS[field.type], now):
            out.append(Mutant(name, here, "set", v))
    elif field.type == FD.TYPE_BOOL:
        out.append(Mutant(name, here, "set", not now))
    elif field.type == FD.TYPE_ENUM and not element:
        known = {v.number for v in field.enum_type.values}
        for v in (max(known) + 1, 0x7FFFFFFF, -1):
            if v not in known:
                out.append(
                    Mutant(name, here, "raw", encoder.TagBytes(field.number, 0) + _varint(v))
                )
    elif field.type == FD.TYPE_STRING:
        for v in STRING_VALUES:
            if v != now:
                out.append(Mutant(name, here, "set", v))
        if not element:
            out.append(Mutant(name, here, "raw", _length_delimited(field.number, NOT_UTF8)))
    elif field.type == FD.TYPE_BYTES:
        for v in {b"", now[: len(now) // 2], now + bytes(len(now) or 8), now + b"\xff" * 4096}:
            if v != now:
                out.append(Mutant(name, here, "set", v))


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _length_delimited(number: int, data: bytes) -> bytes:
    return encoder.TagBytes(number, 2) + _varint(len(data)) + data


def _inventory_digest(inventory) -> bytes:
    """The digest inventory.img holds of itself (as torpor computes it), also of an entry
    a mutant left without a required field."""
    bare = type(inventory)()
    bare.CopyFrom(inventory)
    bare.ClearField("torpor_inventory_digest")
    return digest_bytes(bare.SerializePartialToString(deterministic=True))


# --- making a mutated copy ----------------------------------------------------------------------


def apply(src: Path, dst: Path, mutant: Mutant) -> None:
    """A copy of image directory `src` in the new directory `dst` with `mutant` applied and
    the digests in inventory.img recomputed (files not changed are hard links)."""
    dst.mkdir(mode=0o700)
    changed: dict[str, bytes] = {}
    data = (src / mutant.file).read_bytes()
    if mutant.op == "length":
        changed[mutant.file] = (data + bytes(mutant.value))[: mutant.value]
    else:
        changed[mutant.file] = _mutated_image(mutant, data)
    write_with_digests(src, dst, changed, keep_inventory=mutant.file == INVENTORY)


def rewrite(images: Path, mutate: Callable[[dict], None]) -> None:
    """Apply `mutate` to the decoded images of `images` in place ({file name: [entries]},
    entries being (message, payload) pairs; inventory.img and pages files left out) and
    write back what it changed, with fresh digests."""
    decoded = {}
    for name in sorted(os.listdir(images)):
        if name != INVENTORY and not name.startswith("pages-"):
            decoded[name] = decode_image(name, kind_of(name), (images / name).read_bytes())
    before = {name: encode_entries(name, entries) for name, entries in decoded.items()}
    mutate(decoded)
    changed = {}
    for name, entries in decoded.items():
        data = encode_entries(name, entries)
        if data != before.get(name):
            changed[name] = data
    tmp = images.with_name(images.name + ".new")
    write_with_digests(images, tmp, changed, keep_inventory=False, copy=True)
    for name in os.listdir(images):
        os.unlink(images / name)
    for name in os.listdir(tmp):
        os.rename(tmp / name, images / name)
    tmp.rmdir()


def _mutated_image(mutant: Mutant, data: bytes) -> bytes:
    entries = decode_image(mutant.file, kind_of(mutant.file), data)
    index, *path = mutant.path
    msg = entries[index][0]
    for step in path[:-1]:
        msg = msg[step] if isinstance(step, int) else getattr(msg, step)
    last = path[-1]
    if isinstance(last, int):  # an element of a repeated scalar field: msg is the container
        if mutant.op == "set":
            msg[last] = mutant.value
        else:  # raw bytes of one element: put them in place of the whole field's
            raise ValueError("raw values are for fields, not elements")
    elif mutant.op == "set":
        setattr(msg, last, mutant.value)
    elif mutant.op == "clear" or mutant.op == "empty":
        msg.ClearField(last)
    elif mutant.op == "drop":
        del getattr(msg, last)[mutant.value]
    elif mutant.op == "dup":
        items = getattr(msg, last)
        field = msg.DESCRIPTOR.fields_by_name[last]
        if field.type == FD.TYPE_MESSAGE:
            items.add().CopyFrom(items[mutant.value])
        else:
            items.append(items[mutant.value])
    elif mutant.op == "raw":
        msg.ClearField(last)
        msg.MergeFromString(mutant.value)  # kept as it is on the wire when re-serialized
    if mutant.file == INVENTORY and path[0] != "torpor_inventory_digest":
        inv = entries[0][0]
        if inv.HasField("torpor_inventory_digest"):
            inv.torpor_inventory_digest = _inventory_digest(inv)
    return encode_entries(mutant.file, entries)


def encode_entries(name: str, entries) -> bytes:
    """The image file `name` holding `entries` ((message, payload) pairs), written as they
    are: missing required fields and wrong payload lengths included."""
    out = bytearray()
    for magic in kind_of(name).magics:
        out += _U32.pack(magic)
    for msg, payload in entries:
        data = msg.SerializePartialToString()
        out += _U32.pack(len(data)) + data + (payload or b"")
    return bytes(out)


def write_with_digests(
    src: Path, dst: Path, changed: dict[str, bytes], *, keep_inventory: bool, copy: bool = False
) -> None:
    """Fill `dst` with the files of `src`, those in `changed` with their new contents, and an
    inventory listing their new digests (unless `keep_inventory`: then as `changed` has it)."""
    dst.mkdir(mode=0o700, exist_ok=True)
    for name in os.listdir(src):
        if name in changed or name == INVENTORY:
            continue
        if copy:
            (dst / name).write_bytes((src / name).read_bytes())
        else:
            os.link(src / name, dst / name)
    for name, data in changed.items():
        if name != INVENTORY:
            (dst / name).write_bytes(data)
    if keep_inventory:
        (dst / INVENTORY).write_bytes(changed[INVENTORY])
        return
    inventory = ImageDir(src).read_one(INVENTORY)
    listed = {d.name for d in inventory.torpor_digests}
    for d in inventory.torpor_digests:
        if d.name in changed:
            d.size, d.digest = len(changed[d.name]), digest_bytes(changed[d.name])
    for name in sorted(set(changed) - listed - {INVENTORY}):
        inventory.torpor_digests.add(name=name, size=len(changed[name]),
                                     digest=digest_bytes(changed[name]))  # fmt: skip
    if inventory.HasField("torpor_inventory_digest"):
        inventory.torpor_inventory_digest = _inventory_digest(inventory)
    (dst / INVENTORY).write_bytes(encode_entries(INVENTORY, [(inventory, None)]))
    for name in os.listdir(dst):
        os.chmod(dst / name, 0o600)


# --- restoring and judging ----------------------------------------------------------------------


def image_pids(images: Path) -> set[int]:
    """Every PID and TID the pstree.img of `images` names."""
    entries = decode_image(
        "pstree.img", kind_of("pstree.img"), (images / "pstree.img").read_bytes()
    )
    return {t for e, _ in entries for t in (e.pid, *e.threads)}


def digests(directory: Path) -> dict[str, str]:
    """Each file of `directory` by name, with a hash of its contents."""
    return {
        name: hashlib.blake2b((directory / name).read_bytes(), digest_size=16).hexdigest()
        for name in sorted(os.listdir(directory))
    }


@dataclass
class Outcome:
    """What restoring one mutant did: the command's exit status and stderr, and every rule
    it broke (nothing when all is well)."""

    status: int | None
    stderr: str
    broken: list[str]


def restore_and_judge(
    images: Path, pids: set[int], watched: dict[Path, bytes] | None = None
) -> Outcome:
    """Run ``torpor restore -D images -d`` (the caller is a child subreaper) and judge it: it
    exits 0 (what it restored is then killed) or non-zero with one line on stderr and no
    traceback; within RESTORE_TIMEOUT; leaving no process with a PID of `pids`; the images
    byte-identical; every file of `watched` holding what it held."""
    before = digests(images)
    broken = []
    status = None
    try:
        res = subprocess.run(
            [TORPOR, "restore", "-D", str(images), "-d"], capture_output=True, text=True,
            env=cli_env(), stdin=subprocess.DEVNULL, timeout=RESTORE_TIMEOUT, check=False,
            errors="replace",
        )  # fmt: skip
        status, stderr = res.returncode, res.stderr
    except subprocess.TimeoutExpired as e:
        stderr = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else ""
        broken.append(f"no answer within {RESTORE_TIMEOUT:.0f} s (a hang)")
    if status is not None and status != 0:
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("torpor: error: "):
            broken.append(f"stderr is not one error line: {stderr!r}")
        elif "internal error" in stderr or "Traceback" in stderr:
            broken.append(f"an internal error: {stderr.strip()}")
    if status is not None and status < 0:
        broken.append(f"torpor died of signal {-status}")
    left = end_descendants(pids)
    if status is not None and status != 0 and left:
        broken.append(f"a refused restore left processes {sorted(left)}")
    if digests(images) != before:
        broken.append("the images changed")
    for path, content in (watched or {}).items():
        if path.read_bytes() != content:
            broken.append(f"{path.name} was written")
            path.write_bytes(content)
    return Outcome(status, stderr, broken)


def end_descendants(pids: set[int]) -> set[int]:
    """Kill every process descending from this one (what a restore made, reparented here
    when the command exited), reap them, and wait until the PIDs `pids` are free; return
    those that were running (not the dead a failed restore killed, reparented here to be
    reaped) and those of `pids` still there."""
    me = os.getpid()
    running = {p for p in harness.tree_pids(me) - {me} if (harness.proc_state(p) or "Z")[0] != "Z"}
    left: set[int] = set()
    while True:  # stopped first, so that none forks meanwhile unseen; then all killed
        new = harness.tree_pids(me) - {me} - left
        if not new:
            break
        for pid in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        left |= new
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG | 0x40000000)[0] > 0:  # __WALL
                pass
        busy = {p for p in pids if harness.pid_alive(p)}
        if not busy and not harness.child_pids(me) or time.monotonic() > deadline:
            return running | busy
        time.sleep(0.01)

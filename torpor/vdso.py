"""The vDSO and its vvar pages: find them, read their ELF symbols, decide whether a dumped vDSO
matches the running kernel's, and plan jump trampolines when it does not.

Everything here is pure logic over plain data (image bytes, maps entries, auxv bytes); the engine
that reads a task's memory and injects syscalls calls it.

Restore has two ways to bring back a task's vDSO:

* **same**: the running kernel's vDSO has the dumped one's size, exported symbols at the same
  offsets and the same vvar layout around it, so the kernel's fresh trio is mapped where the dumped
  one was and every pointer the program holds into it stays valid;
* **different**: the dumped copy is restored as plain memory, the kernel's vDSO is mapped
  elsewhere, and each exported symbol's entry in the old copy is overwritten with a jump to the
  same symbol of the new one (see :func:`trampolines`). AT_SYSINFO_EHDR in the saved auxv is then
  pointed at the new vDSO (:func:`patch_auxv`), which is how a later dump tells the kernel's copy
  (the mapping at AT_SYSINFO_EHDR) from the old, patched one (ordinary memory).

Nothing is assumed about the number, order or sizes of the vvar mappings: the vDSO is the mapping
that holds AT_SYSINFO_EHDR and the vvar mappings are found by name.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from torpor.errors import TorporError

PAGE_SIZE = 4096

VDSO_NAME = "[vdso]"
VVAR_PREFIX = "[vvar"

AT_NULL = 0
AT_SYSINFO_EHDR = 33

# The ELF machine each supported bitness must carry: a vDSO of another architecture cannot be
# restored here, and the trampoline encodings below are x86 only.
_MACHINE = {64: "EM_X86_64", 32: "EM_386"}

_VERSYM_HIDDEN = 0x8000


class VdsoError(TorporError):
    """A vDSO image, layout or auxv blob is malformed, or two of them cannot be reconciled."""


class TrampolineError(VdsoError):
    """Some exported symbol of the old vDSO is too small to hold a jump without overwriting the
    code that follows it; ``symbols`` lists ``(name, offset, room, needed)`` for each."""

    def __init__(self, symbols: list[tuple[str, int, int, int]]):
        self.symbols = symbols
        detail = ", ".join(
            f"{name} at {off:#x} has {room} bytes, needs {need}"
            for name, off, room, need in symbols
        )
        super().__init__(f"vDSO symbol too small for a trampoline: {detail}")


def _check_bits(bits: int) -> None:
    if bits not in _MACHINE:
        raise ValueError(f"bits must be 32 or 64, not {bits!r}")


def _page_up(n: int, page_size: int) -> int:
    return (n + page_size - 1) // page_size * page_size


def _page_down(n: int, page_size: int) -> int:
    return n // page_size * page_size


# --------------------------------------------------------------------------------------------
# The ELF image


@dataclass(frozen=True)
class Symbol:
    """One exported function of a vDSO image.

    ``offset`` is from the image base (where AT_SYSINFO_EHDR points), ``size`` is st_size (0 when
    the image does not say), ``version`` the symbol version name (``LINUX_2.6``) or None, ``bind``
    ``STB_GLOBAL`` or ``STB_WEAK``.
    """

    name: str
    offset: int
    size: int
    version: str | None
    bind: str


@dataclass(frozen=True)
class VdsoImage:
    """A parsed vDSO image: its mapped size, bitness and exported functions.

    ``symbols`` maps a symbol's name to its :class:`Symbol`. Names carry their version only when
    that version is a hidden (non-default, ``name@VER``) one; the default version is the plain
    name, which is how callers ask for ``__vdso_clock_gettime``. Weak aliases such as
    ``clock_gettime`` are exported too (a program may have looked up either name), so they are
    kept; several names may share one offset.
    """

    bits: int
    size: int
    symbols: dict[str, Symbol]
    build_id: str | None = None

    @classmethod
    def from_bytes(cls, blob: bytes, bits: int, page_size: int = PAGE_SIZE) -> VdsoImage:
        """Parse the bytes of a whole [vdso] mapping (as read from memory or a dump).

        The image size is ``len(blob)``, the size of the mapping it came from; the span of its
        PT_LOAD segments, rounded out to pages, may not exceed it (6.1 maps two pages around
        one page of code).
        The ELF class and machine must match ``bits``.
        """
        _check_bits(bits)
        # pyelftools loads only when an image must be read (a restore whose vDSO matches
        # byte for byte never needs it).
        from elftools.common.exceptions import ELFError
        from elftools.elf.elffile import ELFFile

        try:
            elf = ELFFile(io.BytesIO(bytes(blob)))
            return cls._parse(elf, len(blob), bits, page_size)
        except (ELFError, struct.error) as exc:
            raise VdsoError(f"vDSO image is not a valid ELF file: {exc}") from exc

    @classmethod
    def _parse(cls, elf, blob_size: int, bits: int, page_size: int) -> VdsoImage:
        if elf.elfclass != bits:
            raise VdsoError(f"vDSO image is ELFCLASS{elf.elfclass}, expected {bits}-bit")
        if elf["e_machine"] != _MACHINE[bits]:
            raise VdsoError(f"vDSO image is for {elf['e_machine']}, expected {_MACHINE[bits]}")

        loads = [seg for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        if not loads:
            raise VdsoError("vDSO image has no PT_LOAD segment")
        base = _page_down(min(seg["p_vaddr"] for seg in loads), page_size)
        end = _page_up(max(seg["p_vaddr"] + seg["p_memsz"] for seg in loads), page_size)
        # The mapping may be larger than what the program headers cover (6.1 maps two pages
        # for one page of code); it may never be smaller.
        if end - base > blob_size or blob_size % page_size:
            raise VdsoError(
                f"vDSO image spans {end - base} bytes by its program headers "
                f"but its mapping holds {blob_size}"
            )

        symbols = _exported_functions(elf, base)
        return cls(bits=bits, size=blob_size, symbols=symbols, build_id=_build_id(elf))

    def by_offset(self) -> dict[int, list[Symbol]]:
        """Exported symbols grouped by offset (aliases together), in offset order."""
        groups: dict[int, list[Symbol]] = {}
        for sym in sorted(self.symbols.values(), key=lambda s: (s.offset, s.name)):
            groups.setdefault(sym.offset, []).append(sym)
        return groups

    def describe(self, offset: int) -> str:
        """Where ``offset`` lies, for the log: ``name+0xN`` inside an exported function (the
        first alias by name), else the bare offset, e.g. inside a local helper."""
        for off, aliases in reversed(self.by_offset().items()):
            sizes = [s.size for s in aliases if s.size]
            if off <= offset and (not sizes or offset < off + max(sizes)):
                return f"{aliases[0].name}+{offset - off:#x}"
            if off <= offset:
                break
        return f"{offset:#x}, in no exported function"


def _exported_functions(elf, base: int) -> dict[str, Symbol]:
    """Default-visibility global or weak functions of .dynsym, keyed by (versioned) name."""
    dynsym = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_DYNSYM"), None)
    if dynsym is None:
        raise VdsoError("vDSO image has no dynamic symbol table")
    versym = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_GNU_versym"), None)
    verdef = next((s for s in elf.iter_sections() if s["sh_type"] == "SHT_GNU_verdef"), None)

    symbols: dict[str, Symbol] = {}
    for index, sym in enumerate(dynsym.iter_symbols()):
        if (
            sym["st_info"]["type"] != "STT_FUNC"
            or sym["st_info"]["bind"] not in ("STB_GLOBAL", "STB_WEAK")
            or sym["st_other"]["visibility"] != "STV_DEFAULT"
            or sym["st_shndx"] == "SHN_UNDEF"
            or not sym.name
        ):
            continue
        version, hidden = _symbol_version(versym, verdef, index)
        key = f"{sym.name}@{version}" if hidden and version else sym.name
        symbols[key] = Symbol(
            name=key,
            offset=sym["st_value"] - base,
            size=sym["st_size"],
            version=version,
            bind=sym["st_info"]["bind"],
        )
    return symbols


def _symbol_version(versym, verdef, index: int) -> tuple[str | None, bool]:
    """The version name of dynamic symbol ``index`` and whether it is hidden (``@`` not ``@@``)."""
    if versym is None or verdef is None:
        return None, False
    ndx = versym.get_symbol(index)["ndx"]
    if not isinstance(ndx, int):  # VER_NDX_LOCAL / VER_NDX_GLOBAL: unversioned
        return None, False
    found = verdef.get_version(ndx & ~_VERSYM_HIDDEN)
    if found is None:
        raise VdsoError(f"vDSO symbol {index} refers to undefined version {ndx & ~_VERSYM_HIDDEN}")
    _verdef, aux = found
    first = next(iter(aux), None)
    return (first.name if first is not None else None), bool(ndx & _VERSYM_HIDDEN)


def _build_id(elf) -> str | None:
    """The GNU build-id note as hex, for diagnostics: it names a kernel build, not the bytes in
    memory (the kernel patches alternatives into the vDSO at boot)."""
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_NOTE":
            continue
        for note in seg.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return note["n_desc"]
    return None


# --------------------------------------------------------------------------------------------
# The layout of the special mappings in a process


@dataclass(frozen=True)
class MapsEntry:
    """One /proc/PID/maps line reduced to what the vDSO needs: [start, end) and the name."""

    start: int
    end: int
    name: str = ""


class Region(NamedTuple):
    """A special mapping: its name ([vdso], [vvar], [vvar_vclock] ...) and [start, end)."""

    name: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


class VvarPlacement(NamedTuple):
    """A vvar mapping described relative to the vDSO: name, size and start offset from the vDSO
    start (negative when it lies below). Two layouts match when these tuples match."""

    name: str
    size: int
    offset: int

    def __str__(self) -> str:
        sign = "-" if self.offset < 0 else "+"
        return f"{self.name} {self.size:#x}@{sign}{abs(self.offset):#x}"


def _entry_fields(entry) -> tuple[int, int, str]:
    if hasattr(entry, "start"):
        start, end, name = entry.start, entry.end, getattr(entry, "name", "")
    else:
        start, end, name = entry
    return int(start), int(end), name or ""


@dataclass(frozen=True)
class VdsoLayout:
    """The vDSO and vvar mappings of one process, in address order.

    ``regions`` holds every vvar mapping (any name starting with ``[vvar``) and the vDSO mapping.
    ``vdso`` is the mapping that holds AT_SYSINFO_EHDR, or None when the process has no vDSO;
    ``no_vdso_reason`` then says why (AT_SYSINFO_EHDR is 0, points at nothing, or at something
    else than a [vdso] mapping start: the process unmapped its vDSO).
    """

    sysinfo_ehdr: int
    regions: tuple[Region, ...]
    vdso: Region | None
    no_vdso_reason: str | None = None

    @classmethod
    def from_maps(cls, entries: Iterable, sysinfo_ehdr: int) -> VdsoLayout:
        """Build the layout from maps entries (objects with ``start``, ``end``, ``name``, or
        ``(start, end, name)`` tuples, in any order) and the AT_SYSINFO_EHDR value of the auxv."""
        all_entries = sorted((_entry_fields(e) for e in entries), key=lambda f: f[0])
        vvars = [Region(n, s, e) for s, e, n in all_entries if n.startswith(VVAR_PREFIX)]

        vdso: Region | None = None
        reason: str | None = None
        if not sysinfo_ehdr:
            reason = "AT_SYSINFO_EHDR is 0"
        else:
            holder = next(((s, e, n) for s, e, n in all_entries if s <= sysinfo_ehdr < e), None)
            if holder is None:
                reason = f"AT_SYSINFO_EHDR {sysinfo_ehdr:#x} is not mapped"
            elif holder[2] != VDSO_NAME:
                reason = f"AT_SYSINFO_EHDR {sysinfo_ehdr:#x} lies in {holder[2] or 'anonymous'!r}"
            elif holder[0] != sysinfo_ehdr:
                reason = f"AT_SYSINFO_EHDR {sysinfo_ehdr:#x} is not the start of [vdso]"
            else:
                vdso = Region(holder[2], holder[0], holder[1])

        regions = sorted(vvars + ([vdso] if vdso else []), key=lambda r: r.start)
        return cls(sysinfo_ehdr, tuple(regions), vdso, reason)

    @property
    def has_vdso(self) -> bool:
        return self.vdso is not None

    def _need_vdso(self) -> Region:
        if self.vdso is None:
            raise VdsoError(f"no vDSO: {self.no_vdso_reason}")
        return self.vdso

    @property
    def vdso_start(self) -> int:
        return self._need_vdso().start

    @property
    def vdso_end(self) -> int:
        return self._need_vdso().end

    @property
    def vdso_size(self) -> int:
        return self._need_vdso().size

    @property
    def vvars(self) -> tuple[Region, ...]:
        """The vvar mappings, in address order."""
        return tuple(r for r in self.regions if r.name.startswith(VVAR_PREFIX))

    def vvar_placements(self) -> tuple[VvarPlacement, ...]:
        """Each vvar mapping's name, size and offset from the vDSO start, in address order."""
        base = self.vdso_start
        return tuple(VvarPlacement(r.name, r.size, r.start - base) for r in self.vvars)

    @property
    def span_start(self) -> int:
        """Lowest address of all special mappings (0 when there are none)."""
        return self.regions[0].start if self.regions else 0

    @property
    def span_end(self) -> int:
        """Highest end address of all special mappings (0 when there are none)."""
        return max(r.end for r in self.regions) if self.regions else 0

    @property
    def span_size(self) -> int:
        return self.span_end - self.span_start

    @property
    def contiguous(self) -> bool:
        """True when the special mappings form one unbroken range (as the kernel maps them; not
        so after one of them was mremapped away)."""
        return all(a.end == b.start for a, b in zip(self.regions, self.regions[1:], strict=False))


# --------------------------------------------------------------------------------------------
# Same or different


@dataclass(frozen=True)
class Verdict:
    """Whether a dumped vDSO can be replaced by the running kernel's in place; when not,
    ``reasons`` says why, one short line each. Truthy when the two are the same."""

    same: bool
    reasons: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.same


def same_vdso(
    dumped: tuple[VdsoImage, VdsoLayout], running: tuple[VdsoImage, VdsoLayout]
) -> Verdict:
    """Compare the dumped vDSO with the running kernel's.

    They are the same when the bitness and image size match, every exported symbol is present
    in both at the same offset, and the vvar mappings (names, sizes, offsets from the vDSO) match.
    Both layouts must have a vDSO whose mapping size is its image's size.
    """
    (d_img, d_lay), (r_img, r_lay) = dumped, running
    for what, img, lay in (("dumped", d_img, d_lay), ("running", r_img, r_lay)):
        if lay.vdso is None:
            raise VdsoError(f"{what} process has no vDSO: {lay.no_vdso_reason}")
        if lay.vdso_size != img.size:
            raise VdsoError(
                f"{what} [vdso] mapping is {lay.vdso_size} bytes but its image {img.size}"
            )

    reasons: list[str] = []
    if d_img.bits != r_img.bits:
        reasons.append(f"bitness {d_img.bits} != {r_img.bits}")
    if d_img.size != r_img.size:
        reasons.append(f"size {d_img.size} != {r_img.size}")
    for name in sorted(d_img.symbols.keys() | r_img.symbols.keys()):
        d_sym, r_sym = d_img.symbols.get(name), r_img.symbols.get(name)
        if r_sym is None:
            reasons.append(f"missing symbol {name} in running vDSO")
        elif d_sym is None:
            reasons.append(f"missing symbol {name} in dumped vDSO")
        elif d_sym.offset != r_sym.offset:
            reasons.append(f"symbol {name} at {d_sym.offset:#x} != {r_sym.offset:#x}")
    d_vv, r_vv = d_lay.vvar_placements(), r_lay.vvar_placements()
    if d_vv != r_vv:
        reasons.append(f"vvar layout differs: {_describe(d_vv)} != {_describe(r_vv)}")
    return Verdict(not reasons, tuple(reasons))


def _describe(placements: Sequence[VvarPlacement]) -> str:
    return ", ".join(str(p) for p in placements) if placements else "(no vvar)"


# --------------------------------------------------------------------------------------------
# Trampolines


def x86_64_jump(target: int) -> bytes:
    """``movabs $target,%rax; jmp *%rax``: an absolute jump anywhere in the 64-bit space.

    %rax is free at the entry of every 64-bit vDSO function (all follow the C calling
    convention, none is variadic).
    """
    if not 0 <= target < 1 << 64:
        raise VdsoError(f"jump target {target:#x} is not a 64-bit address")
    return b"\x48\xb8" + target.to_bytes(8, "little") + b"\xff\xe0"


IA32_JUMP_SIZE = 5  # jmp rel32


def ia32_jump(target: int, at: int) -> bytes:
    """``jmp rel32`` from ``at`` to ``target``: five bytes that leave every register, flag and
    the stack untouched.

    The ia32 vDSO exports ``__kernel_vsyscall``, which glibc calls for every system call with the
    syscall number in %eax and arguments in the other registers, so the jump may not go through
    a register. Nor may it be longer than five bytes: the time functions of the ia32 vDSO begin
    with ``call __x86.get_pc_thunk.*`` (five bytes), and a task stopped inside that thunk when it
    was dumped returns to the function's sixth byte, in the old copy. A five-byte jump leaves the
    instruction there whole; a six-byte ``push $target; ret`` would put its ``ret`` there, and
    such a task would return the thunk's result, an address in the old copy, as the time
    function's. In 32-bit mode the displacement wraps at 4 GiB, so every target is in reach.
    """
    for what, addr in (("jump target", target), ("jump address", at)):
        if not 0 <= addr < 1 << 32:
            raise VdsoError(f"{what} {addr:#x} is not a 32-bit address")
    return b"\xe9" + ((target - (at + IA32_JUMP_SIZE)) & 0xFFFFFFFF).to_bytes(4, "little")


def trap() -> bytes:
    """``ud2``: stops a program that calls a vDSO symbol the new kernel does not provide with
    SIGILL at that entry, instead of letting it run into whatever follows."""
    return b"\x0f\x0b"


def _jump(bits: int, target: int, at: int) -> bytes:
    """The jump written at address ``at`` of the old copy to ``target`` in the new vDSO."""
    return x86_64_jump(target) if bits == 64 else ia32_jump(target, at)


@dataclass(frozen=True)
class Patch:
    """Bytes to write at ``offset`` from the start of the old vDSO copy; ``symbol`` names the
    entry it replaces (the first of its aliases)."""

    offset: int
    data: bytes
    symbol: str = ""


@dataclass(frozen=True)
class TrampolinePlan:
    """The patches for the old vDSO copy, in offset order, and the exported names the new vDSO
    lacks (their entries get :func:`trap`)."""

    patches: tuple[Patch, ...]
    missing: tuple[str, ...]

    def apply(self, blob: bytes) -> bytes:
        """The old image bytes with every patch written in."""
        out = bytearray(blob)
        for p in self.patches:
            if p.offset + len(p.data) > len(out):
                raise VdsoError(f"patch at {p.offset:#x} runs past the image end")
            out[p.offset : p.offset + len(p.data)] = p.data
        return bytes(out)

    def torn(self, offsets: Iterable[int]) -> list[int]:
        """Those of ``offsets`` (instruction pointers relative to the old vDSO start) that fall
        strictly inside a patch: a task stopped there would resume in the middle of a jump.
        An offset equal to a patch start is fine (the task runs the jump)."""
        return [
            o for o in offsets if any(p.offset < o < p.offset + len(p.data) for p in self.patches)
        ]


def trampolines(
    old: VdsoImage, new: VdsoImage, new_base: int, bits: int, *, old_base: int
) -> TrampolinePlan:
    """Plan the jumps that send every exported entry of the old vDSO copy, kept at ``old_base``,
    to the same symbol of the new vDSO mapped at ``new_base`` (an ia32 jump is relative to
    where it is written).

    Aliases (names at one offset) give one patch; its target is the first alias, global before
    weak, that the new image has. Entries whose names the new image lacks all get a trap. The room
    for a patch is the symbol's st_size when known, and never beyond the next exported symbol (or
    the image end); a symbol too small for its patch raises :class:`TrampolineError` listing all
    such symbols, rather than overwriting the code that follows.
    """
    _check_bits(bits)
    for what, img in (("old", old), ("new", new)):
        if img.bits != bits:
            raise VdsoError(f"{what} vDSO image is {img.bits}-bit, trampolines asked for {bits}")
    groups = old.by_offset()
    offsets = list(groups)
    patches: list[Patch] = []
    missing: list[str] = []
    too_small: list[tuple[str, int, int, int]] = []
    for i, offset in enumerate(offsets):
        aliases = sorted(groups[offset], key=lambda s: (s.bind != "STB_GLOBAL", s.name))
        target = next((new.symbols[s.name] for s in aliases if s.name in new.symbols), None)
        if target is None:
            data = trap()
            missing.extend(s.name for s in aliases)
        else:
            data = _jump(bits, new_base + target.offset, old_base + offset)

        limit = offsets[i + 1] if i + 1 < len(offsets) else old.size
        room = limit - offset
        sizes = [s.size for s in aliases if s.size]
        if sizes:
            room = min(room, min(sizes))
        if len(data) > room:
            too_small.append((aliases[0].name, offset, room, len(data)))
            continue
        patches.append(Patch(offset, data, aliases[0].name))

    if too_small:
        raise TrampolineError(too_small)
    return TrampolinePlan(tuple(patches), tuple(sorted(missing)))


# --------------------------------------------------------------------------------------------
# auxv


def _auxv_format(bits: int) -> struct.Struct:
    _check_bits(bits)
    return struct.Struct("<QQ" if bits == 64 else "<II")


def _auxv_entries(auxv: bytes, bits: int):
    """Yield (byte offset, type, value) for each entry up to and excluding AT_NULL."""
    fmt = _auxv_format(bits)
    if len(auxv) % fmt.size:
        raise VdsoError(f"auxv of {len(auxv)} bytes is not a whole number of {bits}-bit entries")
    for pos in range(0, len(auxv), fmt.size):
        a_type, a_val = fmt.unpack_from(auxv, pos)
        if a_type == AT_NULL:
            return
        yield pos, a_type, a_val


def auxv_get(auxv: bytes, bits: int, a_type: int) -> int | None:
    """The value of the first auxv entry of type ``a_type``, or None when there is none.

    ``auxv`` is a raw vector as /proc/PID/auxv gives it: pairs of u64 for a 64-bit task, of u32
    for an ia32 one, ending at AT_NULL.
    """
    for _pos, t, v in _auxv_entries(auxv, bits):
        if t == a_type:
            return v
    return None


def auxv_set(auxv: bytes, bits: int, a_type: int, value: int) -> bytes:
    """A copy of ``auxv`` with every entry of type ``a_type`` set to ``value``; the entry must
    exist (an auxv cannot grow in place). Bytes after AT_NULL are kept as they are."""
    fmt = _auxv_format(bits)
    if not 0 <= value < 1 << bits:
        raise VdsoError(f"auxv value {value:#x} does not fit {bits} bits")
    out = bytearray(auxv)
    found = False
    for pos, t, _v in _auxv_entries(auxv, bits):
        if t == a_type:
            fmt.pack_into(out, pos, t, value)
            found = True
    if not found:
        raise VdsoError(f"auxv has no entry of type {a_type}")
    return bytes(out)


def patch_auxv(auxv: bytes, bits: int, new_ehdr: int) -> bytes:
    """A copy of ``auxv`` whose AT_SYSINFO_EHDR points at ``new_ehdr``, the new vDSO.

    After a trampoline restore this makes the kernel's vDSO the one a later dump finds at
    AT_SYSINFO_EHDR, while the old, patched copy is ordinary memory. AT_SYSINFO (ia32: the
    address of ``__kernel_vsyscall``) is left alone: it still points into the old copy, whose
    entry jumps to the new one.
    """
    return auxv_set(auxv, bits, AT_SYSINFO_EHDR, new_ehdr)

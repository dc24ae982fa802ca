"""Tests of torpor.vdso on real vDSO images captured from a kernel (tests/data/vdso) and on
copies altered byte by byte, with readelf and objdump as reference oracles where installed."""

from __future__ import annotations

import io
import re
import struct
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from torpor import vdso
from torpor.vdso import (
    AT_SYSINFO_EHDR,
    MapsEntry,
    Patch,
    TrampolineError,
    VdsoError,
    VdsoImage,
    VdsoLayout,
    VvarPlacement,
    auxv_get,
    auxv_set,
    patch_auxv,
    same_vdso,
    trampolines,
)

DATA = Path(__file__).parent / "data" / "vdso"
KERNEL = "6.18"
ARCH = {64: "x86_64", 32: "ia32"}
BITS = [64, 32]
PAGE = 4096

KNOWN = {
    64: ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time", "__vdso_getcpu"],
    32: [
        "__vdso_clock_gettime",
        "__kernel_vsyscall",
        "__kernel_sigreturn",
        "__kernel_rt_sigreturn",
    ],
}


# ---------------------------------------------------------------------------------------------
# helpers


def blob_path(bits: int) -> Path:
    return DATA / f"vdso-{KERNEL}-{ARCH[bits]}.so"


def real_blob(bits: int) -> bytes:
    return blob_path(bits).read_bytes()


def real_auxv(bits: int) -> bytes:
    return (DATA / f"auxv-{KERNEL}-{ARCH[bits]}.bin").read_bytes()


def parse_maps(text: str) -> list[MapsEntry]:
    """The (start, end, name) of each /proc/PID/maps line."""
    entries = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if not fields:
            continue
        start, end = (int(x, 16) for x in fields[0].split("-"))
        entries.append(MapsEntry(start, end, fields[5].strip() if len(fields) > 5 else ""))
    return entries


def real_maps(bits: int) -> list[MapsEntry]:
    return parse_maps((DATA / f"maps-{bits}.txt").read_text())


def real_layout(bits: int) -> VdsoLayout:
    return VdsoLayout.from_maps(real_maps(bits), auxv_get(real_auxv(bits), bits, AT_SYSINFO_EHDR))


def layout_at(vdso_start: int, vdso_size: int, vvars: list[tuple[str, int, int]]) -> VdsoLayout:
    """A synthetic layout: the vDSO at vdso_start and vvar mappings (name, offset, size)."""
    entries = [MapsEntry(vdso_start, vdso_start + vdso_size, "[vdso]")]
    entries += [MapsEntry(vdso_start + off, vdso_start + off + size, n) for n, off, size in vvars]
    return VdsoLayout.from_maps(entries, vdso_start)


# The layout measured on 6.18: [vvar] 4 pages, [vvar_vclock] 2 pages, [vdso] right after.
VVARS_618 = [("[vvar]", -6 * PAGE, 4 * PAGE), ("[vvar_vclock]", -2 * PAGE, 2 * PAGE)]
VDSO_AT = 0x7F0000006000


class Elf:
    """Byte-level edits of a vDSO image, located with pyelftools."""

    def __init__(self, blob: bytes, bits: int):
        self.bits = bits
        self.data = bytearray(blob)
        elf = ELFFile(io.BytesIO(bytes(blob)))
        dynsym = elf.get_section_by_name(".dynsym")
        self.sym_off, self.sym_ent = dynsym["sh_offset"], dynsym["sh_entsize"]
        self.str_off = elf.get_section_by_name(".dynstr")["sh_offset"]
        self.index = {}
        for i, sym in enumerate(dynsym.iter_symbols()):
            self.index.setdefault(sym.name, i)
        self.phoff, self.phent, self.phnum = elf["e_phoff"], elf["e_phentsize"], elf["e_phnum"]
        # field offsets inside Elf{32,64}_Sym and Elf{32,64}_Phdr
        if bits == 64:
            self.f_value, self.f_size, self.word = 8, 16, "<Q"
            self.f_filesz, self.f_memsz = 32, 40
        else:
            self.f_value, self.f_size, self.word = 4, 8, "<I"
            self.f_filesz, self.f_memsz = 16, 20

    def _sym(self, name: str) -> int:
        return self.sym_off + self.index[name] * self.sym_ent

    def set_value(self, name: str, value: int) -> Elf:
        struct.pack_into(self.word, self.data, self._sym(name) + self.f_value, value)
        return self

    def set_size(self, name: str, size: int) -> Elf:
        struct.pack_into(self.word, self.data, self._sym(name) + self.f_size, size)
        return self

    def rename(self, name: str, first_char: bytes = b"X") -> Elf:
        """Overwrite the first character of the symbol's name in .dynstr."""
        (st_name,) = struct.unpack_from("<I", self.data, self._sym(name))
        pos = self.str_off + st_name
        assert self.data[pos : pos + len(name)] == name.encode()
        self.data[pos : pos + 1] = first_char
        return self

    def grow(self, extra: int) -> Elf:
        """Append extra bytes and stretch the PT_LOAD segment over them."""
        old = len(self.data)
        self.data += bytes(extra)
        for i in range(self.phnum):
            ph = self.phoff + i * self.phent
            if struct.unpack_from("<I", self.data, ph)[0] == 1:  # PT_LOAD
                struct.pack_into(self.word, self.data, ph + self.f_filesz, old + extra)
                struct.pack_into(self.word, self.data, ph + self.f_memsz, old + extra)
        return self

    def image(self) -> VdsoImage:
        return VdsoImage.from_bytes(bytes(self.data), self.bits)


def readelf_functions(path: Path) -> dict[str, tuple[int, int, str | None]]:
    """name -> (value, size, version) of the exported functions as readelf lists them."""
    out = subprocess.run(
        ["readelf", "--dyn-syms", "-W", str(path)], check=True, capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].rstrip(":").isdigit():
            continue
        _num, value, size, typ, bind, vis, ndx, name = f[:8]
        if typ != "FUNC" or bind not in ("GLOBAL", "WEAK") or vis != "DEFAULT" or ndx == "UND":
            continue
        version = None
        if "@@" in name:
            name, version = name.split("@@", 1)
        elif "@" in name:
            base, version = name.split("@", 1)
            name = f"{base}@{version}"
        found[name] = (int(value, 16), int(size, 0), version)
    return found


def objdump(blob: bytes, bits: int, start: int, length: int, tmp_path: Path, vma: int = 0) -> str:
    """objdump's disassembly of blob[start:start + length], the blob loaded at ``vma``."""
    path = tmp_path / "code.bin"
    path.write_bytes(blob)
    machine = "i386:x86-64" if bits == 64 else "i386"
    out = subprocess.run(
        [
            "objdump",
            "-D",
            "-b",
            "binary",
            "-m",
            machine,
            f"--adjust-vma={vma:#x}",
            f"--start-address={vma + start:#x}",
            f"--stop-address={vma + start + length:#x}",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return re.sub(r"\s+", " ", out)


# ---------------------------------------------------------------------------------------------
# the ELF image


@pytest.mark.parametrize("bits", BITS)
def test_real_image_size_and_bits(bits):
    blob = real_blob(bits)
    img = VdsoImage.from_bytes(blob, bits)
    assert img.bits == bits
    assert img.size == len(blob) == 2 * PAGE
    assert img.build_id and len(img.build_id) == 40


@pytest.mark.parametrize("bits", BITS)
def test_real_image_known_symbols(bits):
    img = VdsoImage.from_bytes(real_blob(bits), bits)
    for name in KNOWN[bits]:
        sym = img.symbols[name]
        assert 0 < sym.offset < img.size
        assert sym.size > 0
        assert sym.version and sym.version.startswith("LINUX_")
    # version-name pseudo symbols (OBJECT, ABS) are not functions
    assert not any(name.startswith("LINUX_") for name in img.symbols)


@pytest.mark.parametrize("bits", BITS)
def test_symbols_match_readelf(bits):
    img = VdsoImage.from_bytes(real_blob(bits), bits)
    ours = {n: (s.offset, s.size, s.version) for n, s in img.symbols.items()}
    assert ours == readelf_functions(blob_path(bits))


def test_64bit_weak_aliases_kept():
    img = VdsoImage.from_bytes(real_blob(64), 64)
    assert img.symbols["clock_gettime"].bind == "STB_WEAK"
    assert img.symbols["clock_gettime"].offset == img.symbols["__vdso_clock_gettime"].offset


@pytest.mark.parametrize("bits", BITS)
def test_image_wrong_bitness_rejected(bits):
    with pytest.raises(VdsoError, match="ELFCLASS"):
        VdsoImage.from_bytes(real_blob(bits), 96 - bits)


def test_image_not_whole_mapping_rejected():
    with pytest.raises(VdsoError):
        VdsoImage.from_bytes(real_blob(64)[:PAGE], 64)
    with pytest.raises(VdsoError):
        VdsoImage.from_bytes(real_blob(64)[: PAGE + 100], 64)


def test_image_mapping_larger_than_its_code():
    """Linux 6.1 maps two pages around one page of vDSO code: the image is the mapping."""
    img = VdsoImage.from_bytes(real_blob(64) + bytes(PAGE), 64)
    assert img.size == 3 * PAGE
    assert img.symbols == VdsoImage.from_bytes(real_blob(64), 64).symbols


def test_image_garbage_rejected():
    with pytest.raises(VdsoError, match="not a valid ELF"):
        VdsoImage.from_bytes(b"\x7fELF" + bytes(100), 64)
    with pytest.raises(ValueError):
        VdsoImage.from_bytes(real_blob(64), 16)


def test_grown_image_size():
    assert Elf(real_blob(64), 64).grow(PAGE).image().size == 3 * PAGE


# ---------------------------------------------------------------------------------------------
# layouts


@pytest.mark.parametrize("bits", BITS)
def test_real_layout(bits):
    lay = real_layout(bits)
    maps = real_maps(bits)
    vdso_entry = next(e for e in maps if e.name == "[vdso]")
    assert lay.has_vdso and lay.no_vdso_reason is None
    assert (lay.vdso_start, lay.vdso_end) == (vdso_entry.start, vdso_entry.end)
    assert lay.vdso_size == VdsoImage.from_bytes(real_blob(bits), bits).size
    assert [r.name for r in lay.regions] == ["[vvar]", "[vvar_vclock]", "[vdso]"]
    assert lay.vvar_placements() == tuple(VvarPlacement(n, s, o) for n, o, s in VVARS_618)
    assert lay.contiguous
    assert lay.span_start == lay.vdso_start - 6 * PAGE
    assert lay.span_end == lay.vdso_end and lay.span_size == 8 * PAGE


def test_layout_vvar_after_vdso():
    lay = layout_at(VDSO_AT, 2 * PAGE, [("[vvar]", 2 * PAGE, 4 * PAGE)])
    assert [r.name for r in lay.regions] == ["[vdso]", "[vvar]"]
    assert lay.vvar_placements() == (VvarPlacement("[vvar]", 4 * PAGE, 2 * PAGE),)
    assert (lay.span_start, lay.span_end) == (VDSO_AT, VDSO_AT + 6 * PAGE)
    assert str(lay.vvar_placements()[0]) == "[vvar] 0x4000@+0x2000"


def test_layout_three_vvar_mappings_any_input_order():
    entries = [
        MapsEntry(0x20000, 0x22000, "[vdso]"),
        MapsEntry(0x1C000, 0x1D000, "[vvar_c]"),
        (0x10000, 0x18000, "[vvar]"),  # plain tuples work too
        MapsEntry(0x400000, 0x401000, "/usr/bin/prog"),
        MapsEntry(0x18000, 0x1C000, "[vvar_vclock]"),
    ]
    lay = VdsoLayout.from_maps(entries, 0x20000)
    assert [r.name for r in lay.regions] == ["[vvar]", "[vvar_vclock]", "[vvar_c]", "[vdso]"]
    assert [p.offset for p in lay.vvar_placements()] == [-0x10000, -0x8000, -0x4000]
    assert not lay.contiguous  # a hole between [vvar_c] and [vdso]
    assert lay.span_size == 0x12000


def test_layout_mremapped_trio_found_where_maps_say():
    moved = 0x555500000000
    entries = [MapsEntry(moved + o, moved + o + s, n) for n, o, s in VVARS_618]
    entries.append(MapsEntry(moved, moved + 2 * PAGE, "[vdso]"))
    entries.append(MapsEntry(VDSO_AT, VDSO_AT + PAGE, ""))  # something else at the old place
    lay = VdsoLayout.from_maps(reversed(entries), moved)
    assert lay.vdso_start == moved
    assert lay.vvar_placements() == real_layout(64).vvar_placements()


def test_layout_vdso_moved_apart_from_vvar():
    lay = layout_at(VDSO_AT, 2 * PAGE, [("[vvar]", -0x100000, 4 * PAGE)])
    assert lay.vvar_placements()[0].offset == -0x100000
    assert not lay.contiguous


@pytest.mark.parametrize(
    "ehdr, entries, reason",
    [
        (0, [MapsEntry(VDSO_AT, VDSO_AT + 2 * PAGE, "[vdso]")], "is 0"),
        (VDSO_AT, [MapsEntry(0x1000, 0x2000, "[vvar]")], "not mapped"),
        (VDSO_AT, [MapsEntry(VDSO_AT, VDSO_AT + PAGE, "")], "lies in 'anonymous'"),
        (VDSO_AT, [MapsEntry(VDSO_AT, VDSO_AT + PAGE, "/lib/x.so")], "lies in '/lib/x.so'"),
        (VDSO_AT + 16, [MapsEntry(VDSO_AT, VDSO_AT + PAGE, "[vdso]")], "not the start"),
    ],
)
def test_layout_no_vdso(ehdr, entries, reason):
    lay = VdsoLayout.from_maps(entries, ehdr)
    assert not lay.has_vdso and lay.vdso is None
    assert reason in lay.no_vdso_reason
    assert all(r.name != "[vdso]" for r in lay.regions)
    with pytest.raises(VdsoError, match="no vDSO"):
        lay.vdso_start  # noqa: B018
    with pytest.raises(VdsoError, match="no vDSO"):
        lay.vvar_placements()


def test_layout_no_vdso_keeps_vvar():
    lay = VdsoLayout.from_maps([MapsEntry(0x1000, 0x5000, "[vvar]")], 0)
    assert lay.vvars == (vdso.Region("[vvar]", 0x1000, 0x5000),)


# ---------------------------------------------------------------------------------------------
# same or different


def pair(bits: int, img: VdsoImage | None = None, lay: VdsoLayout | None = None):
    img = img or VdsoImage.from_bytes(real_blob(bits), bits)
    return img, lay or layout_at(VDSO_AT, img.size, VVARS_618)


@pytest.mark.parametrize("bits", BITS)
def test_identical_is_same(bits):
    v = same_vdso(pair(bits, lay=real_layout(bits)), pair(bits))
    assert v.same and bool(v) and v.reasons == ()


@pytest.mark.parametrize("bits", BITS)
def test_shifted_symbol_differs(bits):
    name = "__vdso_clock_gettime"
    old = VdsoImage.from_bytes(real_blob(bits), bits).symbols[name].offset
    shifted = Elf(real_blob(bits), bits).set_value(name, old + 0x40).image()
    v = same_vdso(pair(bits), pair(bits, shifted))
    assert not v
    assert v.reasons == (f"symbol {name} at {old:#x} != {old + 0x40:#x}",)


@pytest.mark.parametrize("bits", BITS)
def test_other_size_differs(bits):
    grown = Elf(real_blob(bits), bits).grow(PAGE).image()
    v = same_vdso(pair(bits), pair(bits, grown))
    assert v.reasons == ("size 8192 != 12288",)


@pytest.mark.parametrize("bits", BITS)
def test_missing_symbol_differs(bits):
    renamed = Elf(real_blob(bits), bits).rename("__vdso_getcpu").image()
    assert "__vdso_getcpu" not in renamed.symbols
    v = same_vdso(pair(bits), pair(bits, renamed))
    assert not v
    assert "missing symbol __vdso_getcpu in running vDSO" in v.reasons
    assert "missing symbol X_vdso_getcpu in dumped vDSO" in v.reasons
    assert len(v.reasons) == 2


@pytest.mark.parametrize(
    "vvars",
    [
        pytest.param([("[vvar]", -7 * PAGE, 5 * PAGE), VVARS_618[1]], id="extra-vvar-pages"),
        pytest.param(
            [("[vvar]", 2 * PAGE, 4 * PAGE), ("[vvar_vclock]", 6 * PAGE, 2 * PAGE)],
            id="vvar-after-code",
        ),
        pytest.param([("[vvar]", -4 * PAGE, 4 * PAGE)], id="no-vvar_vclock"),
        pytest.param([], id="no-vvar-at-all"),
    ],
)
@pytest.mark.parametrize("bits", BITS)
def test_vvar_layout_differs(bits, vvars):
    v = same_vdso(pair(bits), pair(bits, lay=layout_at(0x10000000, 2 * PAGE, vvars)))
    assert not v and len(v.reasons) == 1
    assert v.reasons[0].startswith(
        "vvar layout differs: [vvar] 0x4000@-0x6000, [vvar_vclock] 0x2000@-0x2000 != "
    )


def test_mremapped_trio_is_same():
    moved = layout_at(0x10000, 2 * PAGE, VVARS_618)
    assert same_vdso(pair(64), pair(64, lay=moved))


def test_several_reasons_at_once():
    other = Elf(real_blob(64), 64).grow(PAGE).set_value("__vdso_time", 0x2000).image()
    v = same_vdso(pair(64), pair(64, other, layout_at(VDSO_AT, 3 * PAGE, VVARS_618[:1])))
    assert v.reasons[0] == "size 8192 != 12288"
    assert "symbol __vdso_time at 0xac0 != 0x2000" in v.reasons
    assert v.reasons[-1].startswith("vvar layout differs")


def test_same_vdso_needs_consistent_inputs():
    img = VdsoImage.from_bytes(real_blob(64), 64)
    none = VdsoLayout.from_maps([], 0)
    with pytest.raises(VdsoError, match="running process has no vDSO"):
        same_vdso(pair(64), (img, none))
    with pytest.raises(VdsoError, match="mapping is 4096 bytes but its image 8192"):
        same_vdso((img, layout_at(VDSO_AT, PAGE, VVARS_618)), pair(64))


def test_bitness_differs():
    v = same_vdso(pair(64), pair(32))
    assert v.reasons[0] == "bitness 64 != 32"


# ---------------------------------------------------------------------------------------------
# trampolines


def test_jump_encodings():
    assert vdso.x86_64_jump(0x7F0000000AF0).hex() == "48b8f00a0000007f0000ffe0"
    # jmp rel32: relative to the end of the jump, wrapping at 4 GiB either way
    assert vdso.ia32_jump(0xF7F055E0, 0xF7F005E0).hex() == "e9fb4f0000"
    assert vdso.ia32_jump(0xF7F005E0, 0xF7F055E0).hex() == "e9fbafffff"
    assert vdso.ia32_jump(0x10, 0xFFFFF000).hex() == "e90b100000"
    assert vdso.trap().hex() == "0f0b"
    with pytest.raises(VdsoError, match="jump target"):
        vdso.ia32_jump(1 << 32, 0x1000)
    with pytest.raises(VdsoError, match="jump address"):
        vdso.ia32_jump(0x1000, 1 << 32)
    with pytest.raises(VdsoError):
        vdso.x86_64_jump(-1)


def test_trampolines_64_hand_computed():
    old = VdsoImage.from_bytes(real_blob(64), 64)
    # the new kernel's clock_gettime (and its weak alias) lives 0x10 further on
    new = (
        Elf(real_blob(64), 64)
        .set_value("__vdso_clock_gettime", 0xB00)
        .set_value("clock_gettime", 0xB00)
        .image()
    )
    plan = trampolines(old, new, 0x7F0000000000, 64, old_base=0x7F1000000000)
    assert plan.missing == ()
    by_off = {p.offset: p for p in plan.patches}
    # one patch per entry, aliases once, named by the global name
    assert sorted(by_off) == [0x810, 0xAC0, 0xAF0, 0xE80, 0xF00, 0xF40]
    assert all(p.symbol.startswith("__vdso_") for p in plan.patches)
    assert by_off[0xAF0] == Patch(
        0xAF0, bytes.fromhex("48b8000b0000007f0000ffe0"), "__vdso_clock_gettime"
    )
    assert by_off[0xAC0].data == bytes.fromhex("48b8c00a0000007f0000ffe0")


def test_trampolines_ia32_hand_computed():
    img = VdsoImage.from_bytes(real_blob(32), 32)
    # the old copy 0x5000 below the new vDSO: every jump is 0x5000 - 5 bytes forward
    plan = trampolines(img, img, 0xF7F05000, 32, old_base=0xF7F00000)
    by_off = {p.offset: p for p in plan.patches}
    assert len(plan.patches) == len({s.offset for s in img.symbols.values()}) == 9
    assert by_off[0x5E0] == Patch(0x5E0, bytes.fromhex("e9fb4f0000"), "__kernel_vsyscall")
    assert by_off[0x600].data == bytes.fromhex("e9fb4f0000")
    assert by_off[0x610].data == bytes.fromhex("e9fb4f0000")
    # the old copy above the new vDSO: backwards
    plan = trampolines(img, img, 0xF7F00000, 32, old_base=0xF7F05000)
    assert {p.data for p in plan.patches} == {bytes.fromhex("e9fbafffff")}


@pytest.mark.parametrize(
    "bits, base, sym",
    [(64, 0x7F1234560000, "__vdso_clock_gettime"), (32, 0xF7F05000, "__kernel_vsyscall")],
)
def test_trampoline_disassembles(bits, base, sym, tmp_path):
    img = VdsoImage.from_bytes(real_blob(bits), bits)
    old_base = base - 0x3000000
    plan = trampolines(img, img, base, bits, old_base=old_base)
    patched = plan.apply(real_blob(bits))
    off = img.symbols[sym].offset
    patch = next(p for p in plan.patches if p.offset == off)
    text = objdump(patched, bits, off, len(patch.data), tmp_path, vma=old_base)
    target = base + off
    if bits == 64:
        assert f"movabs ${target:#x},%rax" in text and "jmp *%rax" in text
    else:
        assert f"jmp {target:#x}" in text and len(patch.data) == 5


def test_trampoline_missing_symbols_get_ud2():
    old = VdsoImage.from_bytes(real_blob(32), 32)
    new = Elf(real_blob(32), 32).rename("__vdso_getcpu").image()
    plan = trampolines(old, new, 0xF7F05000, 32, old_base=0xF7F00000)
    off = old.symbols["__vdso_getcpu"].offset
    assert plan.missing == ("__vdso_getcpu",)
    assert next(p for p in plan.patches if p.offset == off).data == b"\x0f\x0b"


def test_trampoline_alias_still_present_is_used():
    old = VdsoImage.from_bytes(real_blob(64), 64)
    # the new image lacks __vdso_getcpu but still has its weak alias getcpu
    new = Elf(real_blob(64), 64).rename("__vdso_getcpu").image()
    plan = trampolines(old, new, 0x7F0000000000, 64, old_base=0x7F1000000000)
    assert plan.missing == ()
    patch = next(p for p in plan.patches if p.offset == 0xF00)
    assert patch.data == vdso.x86_64_jump(0x7F0000000F00)
    # and without either name: a trap, both names reported
    new = Elf(real_blob(64), 64).rename("__vdso_getcpu").rename("getcpu").image()
    plan = trampolines(old, new, 0x7F0000000000, 64, old_base=0x7F1000000000)
    assert plan.missing == ("__vdso_getcpu", "getcpu")
    assert next(p for p in plan.patches if p.offset == 0xF00).data == vdso.trap()


def test_trampoline_symbol_too_small_by_size():
    old = Elf(real_blob(32), 32).set_size("__kernel_rt_sigreturn", 4).image()
    new = VdsoImage.from_bytes(real_blob(32), 32)
    with pytest.raises(TrampolineError, match="__kernel_rt_sigreturn at 0x610 has 4 bytes") as e:
        trampolines(old, new, 0xF7F05000, 32, old_base=0xF7F00000)
    assert e.value.symbols == [("__kernel_rt_sigreturn", 0x610, 4, 5)]


def test_trampoline_symbol_too_small_by_neighbour():
    # next symbol 4 bytes further on: __kernel_sigreturn (st_size 9) has room for 4 bytes only
    old = Elf(real_blob(32), 32).set_value("__kernel_rt_sigreturn", 0x604).image()
    new = VdsoImage.from_bytes(real_blob(32), 32)
    with pytest.raises(TrampolineError) as e:
        trampolines(old, new, 0xF7F05000, 32, old_base=0xF7F00000)
    assert e.value.symbols == [("__kernel_sigreturn", 0x600, 4, 5)]


def test_trampoline_64_too_small_reports_all():
    old = (
        Elf(real_blob(64), 64)
        .set_size("__vdso_time", 11)
        .set_size("time", 11)
        .set_size("__vdso_getcpu", 8)
        .set_size("getcpu", 8)
        .image()
    )
    with pytest.raises(TrampolineError) as e:
        trampolines(old, old, 0x7F0000000000, 64, old_base=0x7F1000000000)
    assert [s[0] for s in e.value.symbols] == ["__vdso_time", "__vdso_getcpu"]


def test_trampoline_bitness_checked():
    img = VdsoImage.from_bytes(real_blob(64), 64)
    with pytest.raises(VdsoError, match="64-bit"):
        trampolines(img, img, 0x1000, 32, old_base=0x2000)


def test_trampoline_apply_and_torn():
    img = VdsoImage.from_bytes(real_blob(32), 32)
    plan = trampolines(img, img, 0xF7F05000, 32, old_base=0xF7F00000)
    patched = plan.apply(real_blob(32))
    assert patched[0x5E0:0x5E5] == bytes.fromhex("e9fb4f0000")
    assert patched[0x5E5:0x600] == real_blob(32)[0x5E5:0x600]
    # an ia32 task stopped at __kernel_vsyscall's syscall instruction (0x5e5), after it
    # (0x5e9), or rewound onto int $0x80 (0x5e7), is outside the patch; one at 0x5e2 would
    # resume mid-jump
    assert plan.torn([0x5E0, 0x5E5, 0x5E7, 0x5E9, 0x5E2]) == [0x5E2]


def leading_calls(blob: bytes, img: VdsoImage) -> dict[str, int]:
    """For each exported ia32 function whose first instruction is a call rel32: its name ->
    the offset that call returns to (the function's sixth byte)."""
    return {
        s.name: s.offset + 5
        for s in img.symbols.values()
        if blob[s.offset] == 0xE8  # call rel32
    }


def test_describe_offset():
    """Where a thread stopped in the vDSO was, as the restore logs it."""
    img32 = VdsoImage.from_bytes(real_blob(32), 32)
    assert img32.describe(0x1287) == "__vdso_clock_gettime64+0x67"
    assert img32.describe(0x5E0) == "__kernel_vsyscall+0x0"
    # the pc thunk is no exported function, nor the padding after __kernel_vsyscall
    assert img32.describe(0x18C6) == "0x18c6, in no exported function"
    assert img32.describe(0x5ED) == "0x5ed, in no exported function"
    assert img32.describe(0) == "0x0, in no exported function"
    # an alias is named by the first of its names
    assert VdsoImage.from_bytes(real_blob(64), 64).describe(0xB20) == "__vdso_clock_gettime+0x30"


def test_trampolines_keep_thunk_returns_whole():
    """ia32 vDSO time functions begin with a call of a thunk that returns the caller's own
    address. A task dumped inside that thunk returns to the function's sixth byte in the
    old copy: that instruction must still be there, whole, after the patches."""
    blob = real_blob(32)
    img = VdsoImage.from_bytes(blob, 32)
    returns = leading_calls(blob, img)
    # the captured 6.18 image: every time function starts so
    time_functions = {"__vdso_clock_gettime", "__vdso_clock_gettime64", "__vdso_gettimeofday"}
    assert time_functions <= set(returns)
    plan = trampolines(img, img, 0xF7F05000, 32, old_base=0xF7F00000)
    assert plan.torn(returns.values()) == []
    patched = plan.apply(blob)
    for name, at in returns.items():
        end = min(at + 16, img.symbols[name].offset + img.symbols[name].size)
        assert patched[at:end] == blob[at:end], f"{name}: the bytes after its call changed"


# ---------------------------------------------------------------------------------------------
# auxv


def auxv_pairs(auxv: bytes, bits: int) -> list[tuple[int, int]]:
    fmt = "<QQ" if bits == 64 else "<II"
    return list(struct.iter_unpack(fmt, auxv))


def check_auxv_round_trip(auxv: bytes, bits: int, vdso_start: int):
    ehdr = auxv_get(auxv, bits, AT_SYSINFO_EHDR)
    assert ehdr == vdso_start
    patched = patch_auxv(auxv, bits, 0xE0001000)
    assert len(patched) == len(auxv)
    assert auxv_get(patched, bits, AT_SYSINFO_EHDR) == 0xE0001000
    changed = [
        (a, b)
        for a, b in zip(auxv_pairs(auxv, bits), auxv_pairs(patched, bits), strict=True)
        if a != b
    ]
    assert changed == [((AT_SYSINFO_EHDR, ehdr), (AT_SYSINFO_EHDR, 0xE0001000))]
    assert patch_auxv(patched, bits, ehdr) == auxv


def test_auxv_round_trip_live_self():
    auxv = Path("/proc/self/auxv").read_bytes()
    maps = parse_maps(Path("/proc/self/maps").read_text())
    check_auxv_round_trip(auxv, 64, next(e.start for e in maps if e.name == "[vdso]"))


@pytest.mark.parametrize("bits", BITS)
def test_auxv_round_trip_captured(bits):
    check_auxv_round_trip(real_auxv(bits), bits, real_layout(bits).vdso_start)


def test_auxv_errors():
    auxv = real_auxv(32)
    assert auxv_get(auxv, 32, 0x7777) is None
    with pytest.raises(VdsoError, match="no entry of type"):
        auxv_set(auxv, 32, 0x7777, 1)
    with pytest.raises(VdsoError, match="does not fit 32 bits"):
        patch_auxv(auxv, 32, 1 << 32)
    with pytest.raises(VdsoError, match="whole number"):
        auxv_get(auxv[:-4], 32, AT_SYSINFO_EHDR)


def test_auxv_stops_at_at_null():
    auxv = struct.pack("<4I", AT_SYSINFO_EHDR, 0x1000, 0, 0) + struct.pack("<2I", 33, 0x2000)
    assert auxv_get(auxv, 32, AT_SYSINFO_EHDR) == 0x1000
    assert patch_auxv(auxv, 32, 0x3000)[8:] == auxv[8:]


# ---------------------------------------------------------------------------------------------
# the vDSO of the kernel running the tests, whatever it is


def live_self_64() -> tuple[bytes, list[MapsEntry], bytes]:
    auxv = Path("/proc/self/auxv").read_bytes()
    maps = parse_maps(Path("/proc/self/maps").read_text())
    ehdr = auxv_get(auxv, 64, AT_SYSINFO_EHDR)
    entry = next(e for e in maps if e.start == ehdr)
    with open("/proc/self/mem", "rb") as mem:
        mem.seek(entry.start)
        return mem.read(entry.end - entry.start), maps, auxv


def live_selfdump(bits: int, tmp_path: Path) -> tuple[bytes, list[MapsEntry], bytes]:
    exe = build(bits, "selfdump.c", tmp_path)
    subprocess.run([str(exe), str(tmp_path)], check=True)
    return (
        (tmp_path / "vdso.so").read_bytes(),
        parse_maps((tmp_path / "maps.txt").read_text()),
        (tmp_path / "auxv.bin").read_bytes(),
    )


@pytest.mark.parametrize("source", ["python", "selfdump64", "selfdump32"])
def test_live_vdso(source, tmp_path):
    if source == "python":
        bits, (blob, maps, auxv) = 64, live_self_64()
    else:
        bits = int(source[-2:])
        blob, maps, auxv = live_selfdump(bits, tmp_path)
    img = VdsoImage.from_bytes(blob, bits)
    lay = VdsoLayout.from_maps(maps, auxv_get(auxv, bits, AT_SYSINFO_EHDR))
    assert lay.has_vdso and lay.vdso_size == img.size == len(blob)
    assert "__vdso_clock_gettime" in img.symbols
    assert same_vdso((img, lay), (img, lay))
    # every exported entry of this kernel's vDSO has room for a trampoline
    plan = trampolines(img, img, lay.vdso_start, bits, old_base=lay.vdso_start - 0x10000)
    assert len(plan.patches) == len({s.offset for s in img.symbols.values()})


def build(bits: int, source: str, tmp_path: Path) -> Path:
    """Compile one of the C helpers of tests/data/vdso for -m64 or -m32."""
    exe = tmp_path / f"{Path(source).stem}{bits}"
    cmd = ["gcc", f"-m{bits}", "-O2", "-o", str(exe), str(DATA / source)]
    done = subprocess.run(cmd, capture_output=True)
    assert done.returncode == 0, f"cannot build -m{bits} programs: {done.stderr.decode()}"
    return exe


@pytest.mark.parametrize("bits", BITS)
def test_trampolines_run(bits, tmp_path):
    """A process copies its own vDSO into plain memory, behind zero pages where its vvar is (as
    a restore with trampolines leaves the dumped one), writes the planned trampolines into the
    copy and calls through it: clock_gettime, and on ia32 a getpid through __kernel_vsyscall,
    whose syscall number arrives in %eax and must survive the jump.

    On ia32, where clock_gettime begins with a call of its pc thunk, the process first resumes
    a clock_gettime caught inside that thunk in the copy (as one dumped there is restored):
    it must return 0 and the right time, not the thunk's result."""
    exe = build(bits, "trampoline_run.c", tmp_path)
    # the image of the running kernel: the copy and the target are the same vDSO here
    blob, maps, auxv = live_self_64() if bits == 64 else live_selfdump(bits, tmp_path)
    img = VdsoImage.from_bytes(blob, bits)
    args = [str(exe), hex(img.symbols["__vdso_clock_gettime"].offset)]
    if bits == 32:
        args.append(hex(img.symbols["__kernel_vsyscall"].offset))
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    base, copy = (int(x, 16) for x in proc.stdout.readline().split())
    plan = trampolines(img, img, base, bits, old_base=copy)
    records = b"".join(struct.pack("<II", p.offset, len(p.data)) + p.data for p in plan.patches)
    out, _ = proc.communicate(records, timeout=30)
    in_flight = bits == 32 and "__vdso_clock_gettime" in leading_calls(blob, img)
    expected = (b"in-flight ok\n" if in_flight else b"") + b"ok\n"
    assert (proc.returncode, out) == (0, expected)

"""The x86 xsave area as ptrace shows it (standard, uncompacted format).

A dump splits it into the components CRIU's image names (x87/SSE legacy area, AVX, MPX,
AVX-512, PKRU); a restore lays them out again where the restoring CPU keeps them, which need
not be where the dumping CPU did (component offsets come from CPUID leaf 0xD and differ
between vendors). A component in use that the restoring CPU lacks refuses the restore.
"""

import struct

from torpor.kernel.cpuid import cpuid

LEGACY_SIZE = 512
SW_BYTES_AT = 464  # ptrace puts the enabled feature mask (XCR0) in the first 8 of these
HEADER_AT = 512
HEADER_SIZE = 64
X87_SSE = 0b11

PKRU = 9
# Linux's initial PKRU for every process: keys 1-15 access-disabled, key 0 open. It is not the
# xsave init state (0), so PKRU is always "in use"; this value means no key was ever set up.
DEFAULT_PKRU = 0x55555554

_AVX512 = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")

# component number -> (CRIU UserX86XsaveEntry field, size in bytes, element format, name,
# the CPU features (Linux names) through which programs come to use the component)
COMPONENTS = {
    2: ("ymmh_space", 256, "I", "AVX registers", ("avx", "avx2", "fma", *_AVX512)),
    3: ("bndreg_state", 64, "Q", "MPX bound registers", ()),
    4: ("bndcsr_state", 64, "Q", "MPX configuration", ()),
    5: ("opmask_reg", 64, "Q", "AVX-512 opmask registers", _AVX512),
    6: ("zmm_upper", 512, "Q", "AVX-512 upper halves of zmm0-15", _AVX512),
    7: ("hi16_zmm", 1024, "Q", "AVX-512 registers zmm16-31", _AVX512),
    PKRU: ("pkru", 8, "I", "protection keys (PKRU)", ()),
}


def enabled_features(buf: bytes) -> int:
    """The xsave features the kernel enabled, from the software bytes it put in the buffer."""
    (features,) = struct.unpack_from("<Q", buf, SW_BYTES_AT)
    return features


def xstate_bv(buf: bytes) -> int:
    return struct.unpack_from("<Q", buf, HEADER_AT)[0] if len(buf) > HEADER_AT else X87_SSE


def offsets(features: int, layout: dict[int, int] | None = None) -> dict[int, int]:
    """Where the CPU keeps each enabled component in the standard format: `layout`
    (component -> offset, as CPUID leaf 0xD gives it) or this CPU's own."""
    if layout is None:
        return {i: cpuid(0xD, i)[1] for i in COMPONENTS if features >> i & 1}
    return {i: layout[i] for i in COMPONENTS if features >> i & 1}


def split(buf: bytes, layout: dict[int, int] | None = None) -> dict[str, list[int]]:
    """The non-legacy components in use, as CRIU field name -> values (`layout`: the
    component offsets of the CPU that produced `buf`, if not this one)."""
    fields: dict[str, list[int]] = {}
    in_use = xstate_bv(buf)
    for i, at in offsets(enabled_features(buf), layout).items():
        name, size, fmt, *_ = COMPONENTS[i]
        if in_use >> i & 1 and at + size <= len(buf):
            fields[name] = list(
                struct.unpack_from(f"<{size // struct.calcsize(fmt)}{fmt}", buf, at)
            )
    return fields


def in_use(used: int, fields: dict[str, list[int]]) -> int:
    """`used` without the components whose saved values are all zero, their initial state:
    a CPU may mark a component in use that the program never touched (seen with MPX)."""
    for i, (name, *_rest) in COMPONENTS.items():
        if used >> i & 1 and not any(fields.get(name, ())):
            used &= ~(1 << i)
    return used


def lacking(used: int, available: int) -> list[int]:
    """The components in `used` beyond the legacy area that `available` (a feature mask) lacks."""
    missing = used & ~available & ~X87_SSE
    return [i for i in range(64) if missing >> i & 1]


def describe(component: int) -> str:
    return COMPONENTS[component][3] if component in COMPONENTS else f"xsave component {component}"


def features_behind(components) -> list[str]:
    """The CPU features through which programs come to use `components`."""
    names: list[str] = []
    for i in components:
        names += [n for n in (COMPONENTS[i][4] if i in COMPONENTS else ()) if n not in names]
    return names


def pkru(fields: dict[str, list[int]]) -> int | None:
    """The saved PKRU value, if the buffer held one."""
    values = fields.get("pkru")
    return values[0] if values else None


def compose(
    target: bytes,
    legacy: bytes,
    used: int,
    fields: dict[str, list[int]],
    layout: dict[int, int] | None = None,
) -> bytes:
    """An xsave buffer for the CPU that produced `target` (a buffer read from the new task;
    `layout`: that CPU's component offsets, if not this one's), holding the saved legacy
    area and components. Components the image does not hold are left in their initial
    state, but for PKRU, which keeps the new task's value: the kernel's default, not the
    xsave init state."""
    out = bytearray(target)
    out[:SW_BYTES_AT] = legacy[:SW_BYTES_AT]  # the software bytes stay the target kernel's
    bv = used & enabled_features(target)
    if not used >> PKRU & 1:
        bv |= xstate_bv(target) & 1 << PKRU
    struct.pack_into("<QQ", out, HEADER_AT, bv, 0)
    for i, at in offsets(enabled_features(target), layout).items():
        name, size, fmt, *_ = COMPONENTS[i]
        values = fields.get(name)
        if used >> i & 1 and values:
            struct.pack_into(f"<{size // struct.calcsize(fmt)}{fmt}", out, at, *values)
    return bytes(out)

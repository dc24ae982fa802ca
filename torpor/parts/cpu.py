"""The CPU a dump was made on (cpuinfo.img), and what the restoring CPU lacks of it.

Programs pick code paths at start-up from the CPU's features (glibc's string functions, and
its lazy-binding trampoline, which uses xsavec where it exists). Restored on a CPU without such
a feature, that code faults with an invalid opcode much later. The restore names what is
missing: refusing when asked to be strict, warning otherwise.
"""

from torpor.errors import RestoreError
from torpor.images import ImageDir, pb
from torpor.kernel.cpuid import cpuid

CAPABILITY_VERSION = 2
CAPABILITY_WORDS = 20

# Linux's x86 capability word index -> the CPUID (leaf, subleaf, register) it holds.
WORDS = {
    0: (0x1, 0, 3), 1: (0x80000001, 0, 3), 4: (0x1, 0, 2), 6: (0x80000001, 0, 2),
    9: (0x7, 0, 1), 10: (0xD, 1, 0), 16: (0x7, 0, 2), 18: (0x7, 0, 3),
}  # fmt: skip

# Features user-space code commonly selects at run time: (word, bit) -> name.
FEATURES = {
    (4, 0): "sse3", (4, 9): "ssse3", (4, 12): "fma", (4, 19): "sse4_1", (4, 20): "sse4_2",
    (4, 22): "movbe", (4, 23): "popcnt", (4, 25): "aes", (4, 26): "xsave", (4, 28): "avx",
    (4, 29): "f16c", (4, 30): "rdrand", (1, 27): "rdtscp", (6, 5): "lzcnt",
    (9, 3): "bmi1", (9, 5): "avx2", (9, 8): "bmi2", (9, 9): "erms", (9, 16): "avx512f",
    (9, 17): "avx512dq", (9, 18): "rdseed", (9, 19): "adx", (9, 28): "avx512cd", (9, 29): "sha_ni",
    (9, 30): "avx512bw", (9, 31): "avx512vl", (10, 0): "xsaveopt", (10, 1): "xsavec",
    (10, 3): "xsaves", (16, 1): "avx512vbmi", (16, 6): "avx512_vbmi2", (16, 8): "gfni",
    (16, 9): "vaes", (16, 10): "vpclmulqdq", (16, 11): "avx512_vnni", (16, 14): "avx512_vpopcntdq",
    (16, 22): "rdpid", (18, 4): "fsrm", (18, 23): "avx512_fp16",
}  # fmt: skip


# Features glibc picks at start-up and lets a program be started without, through
# GLIBC_TUNABLES=glibc.cpu.hwcaps=-NAME,... : Linux name -> glibc's name (each checked to
# change what glibc uses, with ld.so --list-diagnostics).
GLIBC_HWCAPS = {
    "ssse3": "SSSE3", "fma": "FMA", "sse4_1": "SSE4_1", "sse4_2": "SSE4_2", "movbe": "MOVBE",
    "popcnt": "POPCNT", "xsave": "XSAVE", "avx": "AVX", "lzcnt": "LZCNT", "bmi1": "BMI1",
    "avx2": "AVX2", "bmi2": "BMI2", "erms": "ERMS", "avx512f": "AVX512F",
    "avx512dq": "AVX512DQ", "avx512cd": "AVX512CD", "avx512bw": "AVX512BW",
    "avx512vl": "AVX512VL", "xsavec": "XSAVEC",
}  # fmt: skip


def glibc_tunables(features) -> str | None:
    """The GLIBC_TUNABLES value that keeps glibc off `features` (Linux names), if it can."""
    names = [GLIBC_HWCAPS[f] for f in features if f in GLIBC_HWCAPS]
    return "glibc.cpu.hwcaps=" + ",".join(f"-{n}" for n in names) if names else None


def portable_start(features) -> str | None:
    """Advice for starting a program that will not use `features`, for a message."""
    tunables = glibc_tunables(features)
    if tunables is None:
        return None
    return f"start the program with GLIBC_TUNABLES={tunables} so that it cannot pick them"


def capability_words() -> list[int]:
    """This CPU's feature words, at the indices Linux (and CRIU's cpuinfo.img) uses."""
    highest = cpuid(0)[0]
    highest_ext = cpuid(0x80000000)[0]
    words = [0] * CAPABILITY_WORDS
    for index, (leaf, subleaf, reg) in WORDS.items():
        top = highest_ext if leaf >= 0x80000000 else highest
        if leaf <= top:
            words[index] = cpuid(leaf, subleaf)[reg]
    return words


def _vendor() -> int:
    _, ebx, ecx, edx = cpuid(0)
    name = b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx))
    entry = pb.cpuinfo_pb2.CpuinfoX86Entry
    return {b"GenuineIntel": entry.INTEL, b"AuthenticAMD": entry.AMD}.get(name, entry.UNKNOWN)


def dump(images: ImageDir) -> None:
    eax = cpuid(1)[0]
    family = (eax >> 8) & 0xF
    model = (eax >> 4) & 0xF
    if family == 0xF:
        family += (eax >> 20) & 0xFF
    if family >= 0x6:
        model |= ((eax >> 16) & 0xF) << 4
    entry = pb.cpuinfo_pb2.CpuinfoX86Entry(
        vendor_id=_vendor(), cpu_family=family, model=model, stepping=eax & 0xF,
        capability_ver=CAPABILITY_VERSION, capability=capability_words(),
    )  # fmt: skip
    images.write("cpuinfo.img", [pb.cpuinfo_pb2.CpuinfoEntry(x86_entry=[entry])])


def missing_features(saved: list[int], current: list[int]) -> list[str]:
    """Names of the features the saved CPU had and the current one lacks."""
    return [
        name
        for (word, bit), name in FEATURES.items()
        if word < len(saved) and saved[word] >> bit & 1 and not current[word] >> bit & 1
    ]


def check(images: ImageDir, strict: bool) -> list[str]:
    """Refuse, if strict, features of the dumping CPU this CPU lacks; else return a warning
    naming them (none when nothing is missing)."""
    if not images.has("cpuinfo.img"):
        return []
    entries = images.read_one("cpuinfo.img").x86_entry
    if not entries:
        return []
    missing = missing_features(list(entries[0].capability), capability_words())
    if not missing:
        return []
    what = "this CPU lacks " + ", ".join(missing) + ", which the dumping CPU had"
    advice = portable_start(missing)
    hint = f"; {advice}" if advice else ""
    if strict:
        raise RestoreError(f"{what} (restore without --cpu-check=strict to try anyway){hint}")
    return [f"{what}: code that chose them at start-up will fault{hint}"]

"""`torpor check`: what this kernel and machine offer torpor, feature by feature."""

import ctypes
import errno
import os
import sys

from torpor.arch import ABIS
from torpor.kernel import libc, procfs, ptrace
from torpor.remote import scratch_child

CAP_CHECKPOINT_RESTORE = 40
CAP_SYS_ADMIN = 21
CAP_SYS_PTRACE = 19


def _cap(n: int) -> bool:
    return bool(int(procfs.read_status(os.getpid())["CapEff"], 16) & (1 << n))


def _pagemap_scan() -> tuple[bool, str]:
    from torpor.kernel.pagescan import PageScanner

    scanner = PageScanner(os.getpid())
    try:
        buf = ctypes.create_string_buffer(4096)
        addr = ctypes.addressof(buf)
        scanner._scan(addr & ~4095, (addr & ~4095) + 4096, anon_only=False)
        return True, "PAGEMAP_SCAN finds present pages in one call"
    except OSError as e:
        return False, f"PAGEMAP_SCAN unavailable ({e.strerror}); falling back to pagemap"
    finally:
        scanner.close()


def _vdso_layouts() -> list[tuple[str, bool, str]]:
    """Map each ABI's vDSO into a scratch child and describe it."""
    from torpor import vdso as vdsolib
    from torpor.vdso_probe import kernel_vdso

    results = []
    for abi in ABIS:
        try:
            blob, layout = kernel_vdso(abi, own_names=True)
            image = vdsolib.VdsoImage.from_bytes(blob, abi.bits)
        except Exception as e:  # noqa: BLE001 - a check reports, never fails
            results.append((f"vDSO {abi.name}", False, str(e)))
            continue
        regions = ", ".join(f"{r.name} {r.size // 4096}p" for r in layout.regions)
        symbols = " ".join(f"{n}@{image.symbols[n].offset:#x}" for n in sorted(image.symbols))
        results.append((f"vDSO {abi.name}", True, f"{regions}; {image.size} bytes; {symbols}"))
    return results


def clone3() -> tuple[bool, str]:
    """clone3 exists (an empty argument struct gets EINVAL, not ENOSYS) and may set PIDs."""
    try:
        libc.syscall(libc.SYS_CLONE3, 0, 0)
    except OSError as e:
        if e.errno == errno.ENOSYS:
            return False, "this kernel has no clone3 (Linux 5.5 or later needed)"
    if not (_cap(CAP_CHECKPOINT_RESTORE) or _cap(CAP_SYS_ADMIN)):
        return False, "needs CAP_CHECKPOINT_RESTORE to choose PIDs"
    return True, "restores exact PIDs"


def _rseq() -> tuple[bool, str]:
    """PTRACE_GET_RSEQ_CONFIGURATION reads a task's rseq registration (Linux 5.13)."""
    try:
        with scratch_child() as (pid, rt):
            try:
                conf = ptrace.get_rseq_configuration(pid)
            finally:
                rt.detach()
    except OSError as e:
        return False, f"PTRACE_GET_RSEQ_CONFIGURATION failed ({e.strerror}): rseq is not kept"
    registered = "registered" if conf.rseq_abi_pointer else "not registered by this Python"
    return True, f"registrations are read and restored ({registered})"


def run_checks() -> list[tuple[str, bool, str]]:
    results: list[tuple[str, bool, str]] = []
    results.append(("clone3 set_tid", *clone3()))
    results.append(
        (
            "ptrace",
            _cap(CAP_SYS_PTRACE),
            "seize and inject into any process"
            if _cap(CAP_SYS_PTRACE)
            else "needs CAP_SYS_PTRACE to trace others",
        )
    )
    results.append(("PAGEMAP_SCAN", *_pagemap_scan()))
    results.append(
        (
            "time namespaces",
            os.path.exists("/proc/self/ns/time"),
            "monotonic clocks can be carried across boots",
        )
    )
    results.append(("rseq", *_rseq()))
    results.extend(_vdso_layouts())
    return results


def _print_lines(lines: list[tuple[str, str, str, str]]) -> None:
    """Print `torpor check`'s lines, each (topic, mark, padding, text), the mark coloured on a
    terminal ("green yes"). Elsewhere the same text is printed plain, without importing rich,
    which would add some 40 ms to the command's start-up for colours nobody sees."""
    if not sys.stdout.isatty():
        for topic, mark, pad, text in lines:
            print(f"{topic:<18} {mark.split()[1]}{pad}  {text}")
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    for topic, mark, pad, text in lines:
        style, word = mark.split()
        console.print(f"{topic:<18} [{style}]{word}[/]{pad}  {escape(text)}", soft_wrap=True)


def print_report() -> int:
    ok = True
    lines = []
    for feature, available, why in run_checks():
        lines.append((feature, "green yes" if available else "red no", "", why))
        ok &= available or feature in ("time namespaces", "userfaultfd", "PAGEMAP_SCAN")
    _print_lines(lines)
    return 0 if ok else 1


def print_findings(findings) -> int:
    """Print `torpor check -D`'s findings, one line each; 1 if the restore would be refused."""
    marks = {"ok": ("green ok", "  "), "warn": ("yellow warn", ""), "refuse": ("red no", "  ")}
    _print_lines([(f.topic, *marks[f.level], f.message) for f in findings])
    return 1 if any(f.refused for f in findings) else 0

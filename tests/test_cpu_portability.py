"""Moving between unlike CPUs, over recorded data: every rule runs on any host.

tests/data/cpus/ holds what record.py saw on two real CPUs (an Intel Xeon with AVX-512,
AMX and protection keys; QEMU's TCG CPU with AVX, MPX and protection keys, no AVX-512, no
xsavec): flags, the xsave components the kernel enables and their offsets, torpor's
capability words, and the xsave buffer of a `sleep` started as is (glibc picked AVX-512 on
the Xeon) and started portably. A third CPU, AVX-512 without protection keys (the AMD EPYC
hosts of this workplace), is played by its component mask alone. The tests play these CPUs
against each other: what a restore loads, drops or refuses, and what it tells the user.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
from pathlib import Path

import pytest

from torpor.arch import xstate
from torpor.errors import RestoreError
from torpor.images import pb
from torpor.kernel import cpuid, ptrace
from torpor.parts import cpu, pkeys, regs
from torpor.remote import RemoteTask

DATA = Path(__file__).resolve().parent / "data" / "cpus"
AVX512_NO_PKU = 0b11100111  # x87, SSE, AVX, opmask, zmm_hi256, hi16_zmm
PORTABLE_AVX512 = "glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL"


class Cpu:
    def __init__(self, name: str):
        record = json.loads((DATA / f"{name}.json").read_text())
        self.flags = set(record["flags"])
        self.xfeatures = record["xfeatures"]
        self.layout = {int(i): at for i, at in record["offsets"].items()}
        self.capability = record["capability"]
        self.xstate = bytes.fromhex(record["xstate"])
        self.portable = bytes.fromhex(record["xstate_portable"])

    def fpregs(self, buf: bytes):
        """The image entry a dump on this CPU writes for `buf`."""
        return regs._fpregs(buf, self.layout)


XEON = Cpu("intel-xeon-avx512-pku")
QEMU = Cpu("qemu-tcg-max-pku")


def test_records_are_what_they_claim():
    assert {"avx512f", "pku", "xsavec"} <= XEON.flags
    assert "pku" in QEMU.flags and not {"avx512f", "xsavec"} & QEMU.flags
    assert xstate.enabled_features(XEON.xstate) == XEON.xfeatures
    assert xstate.enabled_features(QEMU.xstate) == QEMU.xfeatures
    assert xstate.xstate_bv(XEON.xstate) & 0b11100000, "glibc did not pick AVX-512 there"
    assert not xstate.xstate_bv(XEON.portable) & 0b11100000, "the tunables did not work"


def test_avx512_in_use_refused_with_advice():
    """A process glibc put on AVX-512 cannot move to QEMU's CPU; the message says how to
    start one that can."""
    with pytest.raises(RestoreError) as refused:
        regs.loadable_components(XEON.fpregs(XEON.xstate), QEMU.xfeatures)
    message = str(refused.value)
    assert "AVX-512 opmask registers" in message and "zmm16-31" in message
    assert f"GLIBC_TUNABLES={PORTABLE_AVX512}" in message
    assert "\n" not in message


def _with_ymm_upper(fp):
    """`fp` with values in the upper halves of ymm0-15 (the recorded ones are all zero)."""
    del fp.xsave.ymmh_space[:]
    fp.xsave.ymmh_space.extend(range(1, 65))
    fp.xsave.xstate_bv |= 1 << 2
    return fp


def test_portable_process_moves_with_its_registers():
    """Started portably on the Xeon, the state moves to QEMU's CPU and its other layout:
    the legacy area, the AVX upper halves and PKRU land where that CPU keeps them."""
    fp = _with_ymm_upper(XEON.fpregs(XEON.portable))
    used = regs.loadable_components(fp, QEMU.xfeatures)
    assert used & 1 << 2 and used & 1 << xstate.PKRU and not used & 0b11100000
    fp.ClearField("torpor_xstate")  # rebuilt from the components, as from a CPU without it
    rebuilt = regs.xstate_for_this_cpu(fp, QEMU.xstate, QEMU.layout)
    assert len(rebuilt) == len(QEMU.xstate)
    assert rebuilt[: xstate.SW_BYTES_AT] == XEON.portable[: xstate.SW_BYTES_AT]
    assert xstate.enabled_features(rebuilt) == QEMU.xfeatures
    at = QEMU.layout[2]
    assert list(struct.unpack_from("<64I", rebuilt, at)) == list(range(1, 65))
    pkru_to = QEMU.layout[xstate.PKRU]
    assert struct.unpack_from("<I", rebuilt, pkru_to)[0] == xstate.DEFAULT_PKRU


def test_default_pkru_dropped_on_a_cpu_without_keys(caplog):
    """Every process holds PKRU at the kernel's default; a CPU without protection keys
    restores it without, saying so in the debug log."""
    fp = _with_ymm_upper(QEMU.fpregs(QEMU.xstate))
    assert xstate.pkru({"pkru": list(fp.xsave.pkru)}) == xstate.DEFAULT_PKRU
    with caplog.at_level(logging.DEBUG, logger="torpor"):
        used = regs.loadable_components(fp, AVX512_NO_PKU)
    assert not used >> xstate.PKRU & 1 and used & 1 << 2
    assert any("PKRU at its default dropped" in r.getMessage() for r in caplog.records)


def test_set_pkru_refused_on_a_cpu_without_keys():
    fp = QEMU.fpregs(QEMU.xstate)
    fp.xsave.pkru[0] = 0x55555550  # key 1 opened: the process set up a key
    with pytest.raises(RestoreError, match="saved PKRU is 0x55555550"):
        regs.loadable_components(fp, AVX512_NO_PKU)


def test_image_without_pkru_gets_the_kernels_default():
    """Dumped where there are no protection keys, restored where there are: PKRU is the new
    task's own (the kernel's default), not the xsave init state 0 that opens every key."""
    fp = XEON.fpregs(XEON.portable)
    fp.xsave.xstate_bv &= ~(1 << xstate.PKRU)
    del fp.xsave.pkru[:]
    fp.ClearField("torpor_xstate")
    rebuilt = regs.xstate_for_this_cpu(fp, XEON.xstate, XEON.layout)
    assert xstate.xstate_bv(rebuilt) >> xstate.PKRU & 1
    at = XEON.layout[xstate.PKRU]
    assert struct.unpack_from("<I", rebuilt, at)[0] == xstate.DEFAULT_PKRU


def _mm(allocated: int, vma_keys: list[int]):
    mm = pb.mm_pb2.MmEntry(torpor_pkeys=allocated)
    for n, key in enumerate(vma_keys):
        vma = mm.vmas.add(start=n << 12, end=(n + 1) << 12, pgoff=0, shmid=0, prot=3)
        vma.flags, vma.status, vma.fd = 0x22, 1, -1
        if key:
            vma.torpor_pkey = key
    return mm


@pytest.mark.parametrize("has_keys", [True, False], ids=["pku", "no-pku"])
def test_keys_in_use_need_a_cpu_with_keys(has_keys, monkeypatch):
    monkeypatch.setattr(cpuid, "protection_keys", lambda: has_keys)
    for mm, what in (
        (_mm(0b1010, [0, 1]), "protection keys 1, 3 (1 mappings guarded by them)"),
        (_mm(0b100, []), "protection keys 2 (0 mappings"),
        (_mm(0, [0, 5]), "protection keys 5 (1 mappings"),
    ):
        assert what in pkeys.in_use(mm)
        problem = pkeys.check(mm)
        if has_keys:
            assert problem is None
        else:
            assert "this CPU has no protection keys" in problem and what in problem
    assert pkeys.in_use(_mm(0, [0, 0])) is None and pkeys.check(_mm(0, [0])) is None


def test_missing_features_named_with_advice():
    missing = cpu.missing_features(XEON.capability, QEMU.capability)
    assert {"avx512f", "avx512vl", "xsavec"} <= set(missing)
    assert not cpu.missing_features(QEMU.capability, XEON.capability) or "pku" not in missing
    advice = cpu.portable_start(missing)
    assert "-AVX512F" in advice and "-XSAVEC" in advice and "GLIBC_TUNABLES=" in advice


def test_tunables_for_the_features_the_other_side_lacks():
    """What the cross-kernel tests start their workloads with: off everything glibc can
    avoid that the other CPU lacks."""
    tunables = cpu.glibc_tunables(sorted(XEON.flags - QEMU.flags))
    names = set(tunables.removeprefix("glibc.cpu.hwcaps=").split(","))
    assert {"-AVX512F", "-AVX512BW", "-XSAVEC"} <= names
    assert cpu.glibc_tunables(sorted(QEMU.flags - XEON.flags)) is None


def test_this_cpus_components_are_what_ptrace_shows():
    """cpuid.xfeatures() (what restore checks against up front) is the XCR0 a stopped task's
    buffer carries, on whatever CPU this runs."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        task = RemoteTask.seize(child.pid)
        try:
            buf = ptrace.get_regset(child.pid, ptrace.NT_X86_XSTATE)
        finally:
            task.detach()
    finally:
        child.kill()
        child.wait()
    assert xstate.enabled_features(buf) == cpuid.xfeatures()
    assert cpuid.protection_keys() == bool(cpuid.xfeatures() >> xstate.PKRU & 1)

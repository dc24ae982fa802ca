"""The xsave area: split into CRIU's components at dump, laid out again for the restoring CPU,
refused when the restoring CPU lacks a component in use. Buffers here are this CPU's own, as
ptrace returns them, with components altered in the test."""

from __future__ import annotations

import struct
import subprocess

import pytest

from torpor.arch import xstate
from torpor.errors import RestoreError
from torpor.images import pb
from torpor.kernel import ptrace
from torpor.parts import regs
from torpor.remote import RemoteTask


@pytest.fixture(scope="module")
def own_buffer() -> bytes:
    """The NT_X86_XSTATE buffer of a stopped child of this test (this CPU's layout)."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        rt = RemoteTask.seize(child.pid)
        try:
            return ptrace.get_regset(child.pid, ptrace.NT_X86_XSTATE)
        finally:
            rt.detach()
    finally:
        child.kill()
        child.wait()


def test_enabled_features_match_cpuid(own_buffer):
    features = xstate.enabled_features(own_buffer)
    assert features & xstate.X87_SSE == xstate.X87_SSE
    for i, at in xstate.offsets(features).items():
        assert xstate.LEGACY_SIZE + xstate.HEADER_SIZE <= at < len(own_buffer), (i, at)


def test_split_and_compose_round_trip(own_buffer):
    buf = bytearray(own_buffer)
    features = xstate.enabled_features(buf)
    assert features >> 2 & 1, "this CPU has no AVX: nothing to carry"
    at = xstate.offsets(features)[2]
    buf[at : at + 256] = bytes(range(256))
    struct.pack_into("<Q", buf, xstate.HEADER_AT, xstate.X87_SSE | 1 << 2)
    fields = xstate.split(bytes(buf))
    assert fields["ymmh_space"] == list(struct.unpack_from("<64I", buf, at))
    rebuilt = xstate.compose(own_buffer, bytes(buf[: xstate.LEGACY_SIZE]), 0b111, fields)
    assert rebuilt[at : at + 256] == bytes(range(256))
    # PKRU, not in the saved state, stays the new task's own (where this CPU has it)
    assert xstate.xstate_bv(rebuilt) == 0b111 | xstate.xstate_bv(own_buffer) & 1 << xstate.PKRU


def _fpregs(buf: bytes, fields: dict, used: int):
    fp = regs._fpregs(buf)
    fp.ClearField("torpor_xstate")  # as from a CPU with another layout
    fp.xsave.xstate_bv = used
    for name, values in fields.items():
        field = getattr(fp.xsave, name)
        del field[:]
        field.extend(values)
    return fp


def test_component_this_cpu_lacks_refuses(own_buffer):
    features = xstate.enabled_features(own_buffer)
    absent = next(i for i in (5, 6, 7, 3) if not features >> i & 1)
    name, size, fmt, label, _ = xstate.COMPONENTS[absent]
    count = size // struct.calcsize(fmt)
    fp = _fpregs(own_buffer, {name: [1] * count}, xstate.X87_SSE | 1 << absent)
    with pytest.raises(RestoreError, match=label):
        regs.xstate_for_this_cpu(fp, own_buffer)


def test_component_in_initial_state_is_ignored(own_buffer):
    features = xstate.enabled_features(own_buffer)
    absent = next(i for i in (3, 4, 5) if not features >> i & 1)
    name, size, fmt, *_ = xstate.COMPONENTS[absent]
    fp = _fpregs(
        own_buffer, {name: [0] * (size // struct.calcsize(fmt))}, xstate.X87_SSE | 1 << absent
    )
    rebuilt = regs.xstate_for_this_cpu(fp, own_buffer)
    assert len(rebuilt) == len(own_buffer)
    assert not xstate.xstate_bv(rebuilt) >> absent & 1


def test_image_fields_are_criu_components(own_buffer):
    fp = regs._fpregs(own_buffer)
    assert isinstance(fp, pb.core_x86_pb2.UserX86FpregsEntry)
    assert len(fp.st_space) == 32 and len(fp.xmm_space) == 64
    assert fp.torpor_xstate == own_buffer

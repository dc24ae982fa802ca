"""struct sched_attr, read and set on any thread with sched_getattr(2) and sched_setattr(2):
the scheduling parameters that sched_getscheduler and friends do not show (SCHED_DEADLINE's
runtime, deadline and period; utilization clamps)."""

import ctypes

from torpor.kernel import libc

SYS_SCHED_SETATTR, SYS_SCHED_GETATTR = 314, 315
SCHED_DEADLINE = 6
SCHED_FLAG_RESET_ON_FORK = 0x01
SCHED_FLAG_RECLAIM = 0x02
SCHED_FLAG_DL_OVERRUN = 0x04
SCHED_FLAG_KEEP_POLICY = 0x08
SCHED_FLAG_KEEP_PARAMS = 0x10
SCHED_FLAG_UTIL_CLAMP_MIN = 0x20
SCHED_FLAG_UTIL_CLAMP_MAX = 0x40
DEADLINE_FLAGS = SCHED_FLAG_RESET_ON_FORK | SCHED_FLAG_RECLAIM | SCHED_FLAG_DL_OVERRUN
UCLAMP_MAX = 1024  # SCHED_CAPACITY_SCALE: a clamp's full range is 0..1024
NO_CLAMPS = ((0, 0), (0, UCLAMP_MAX))  # a kernel without clamps, or a thread that set none


class SchedAttr(ctypes.Structure):
    _fields_ = [
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
        ("util_min", ctypes.c_uint32),
        ("util_max", ctypes.c_uint32),
    ]


def get(tid: int) -> SchedAttr:
    attr = SchedAttr()
    libc.syscall(SYS_SCHED_GETATTR, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    return attr


def put(tid: int, attr: SchedAttr) -> None:
    """sched_setattr(tid, attr); raises OSError."""
    attr.size = ctypes.sizeof(attr)
    libc.syscall(SYS_SCHED_SETATTR, tid, ctypes.byref(attr), 0)

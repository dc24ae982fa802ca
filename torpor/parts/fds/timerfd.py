"""timerfd: its clock, the time left and the interval, and the expirations not read yet.
CRIU's TIMERFD kind.

The time left is what it was at the dump: the process was frozen in between, so the timer
fires as long after the restore as it had left. A timer set on a wall clock for an absolute
time (TFD_TIMER_ABSTIME) keeps that time instead. Unread expirations are put back with
TFD_IOC_SET_TICKS (a kernel with CONFIG_CHECKPOINT_RESTORE). A periodic timer that has
fired shows no time left until a read re-arms it: it is armed one interval ahead.
"""

import os
import struct
import time

from torpor.arch import X86_64
from torpor.errors import RestoreError
from torpor.images import pb
from torpor.kernel import fdinfo
from torpor.parts.fds.base import FdKind, place

TFD_TIMER_ABSTIME = 1
TFD_TIMER_CANCEL_ON_SET = 2
TFD_IOC_SET_TICKS = 0x40085400  # _IOW('T', 0, u64)
WALL_CLOCKS = (time.CLOCK_REALTIME, 8)  # CLOCK_REALTIME, CLOCK_REALTIME_ALARM
NSEC = 1_000_000_000


class Timerfd(FdKind):
    name = "a timerfd"
    fd_type = pb.fdinfo_pb2.TIMERFD
    field = "tfd"
    travels = True

    def recognise(self, d) -> bool:
        return d.kind == "timerfd"

    def dump(self, ctx, d, state, fown):
        info = fdinfo.timerfd(ctx.pid, d.fd)
        entry = pb.timerfd_pb2.TimerfdEntry(
            flags=d.flags & ~os.O_CLOEXEC, fown=fown, clockid=info.clockid, ticks=info.ticks,
            settime_flags=info.settime_flags, vsec=info.value[0], vnsec=info.value[1],
            isec=info.interval[0], insec=info.interval[1],
        )  # fmt: skip
        armed = info.value != (0, 0)
        if armed and info.settime_flags & TFD_TIMER_ABSTIME and info.clockid in WALL_CLOCKS:
            left = info.value[0] * NSEC + info.value[1]
            entry.torpor_expiry_ns = time.clock_gettime_ns(time.CLOCK_REALTIME) + left
        return entry

    def restore(self, ctx, entry, fd, cloexec, state) -> None:
        task = ctx.task
        got = task.call(X86_64, "timerfd_create", entry.clockid, entry.flags & os.O_NONBLOCK)
        value, flags = (entry.vsec, entry.vnsec), 0
        if value == (0, 0) and entry.ticks:  # it fired, and waits for a read to re-arm
            value = (entry.isec, entry.insec)
        if entry.HasField("torpor_expiry_ns"):
            value = divmod(entry.torpor_expiry_ns, NSEC)
            flags = TFD_TIMER_ABSTIME | entry.settime_flags & TFD_TIMER_CANCEL_ON_SET
        if value != (0, 0):
            spec = struct.pack("<4q", entry.isec, entry.insec, *value)
            task.call(X86_64, "timerfd_settime", got, flags, task.put(spec), 0)
        if entry.ticks:
            ticks = task.put(struct.pack("<Q", entry.ticks))
            if task.syscall(X86_64, "ioctl", got, TFD_IOC_SET_TICKS, ticks) < 0:
                raise RestoreError(
                    f"cannot give timerfd {fd} of process {ctx.image_pid} its {entry.ticks} "
                    "unread expirations: this kernel lacks TFD_IOC_SET_TICKS"
                )
        place(ctx, got, fd, cloexec)


KIND = Timerfd()

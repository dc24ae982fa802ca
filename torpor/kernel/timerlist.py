"""/proc/timer_list: the hrtimers queued on every CPU, with their expiry times.

Only root reads it. Format v0.10 (Linux 4.11 and later): a "now at N nsecs" line (the host's
CLOCK_MONOTONIC, ktime_get), then per CPU, per clock base, the base's index and its offset
from CLOCK_MONOTONIC, and its active timers, each as

     #0: <00000000f46dc21c>, hrtimer_wakeup, S:01
     # expires at 22805830850834-22805830900834 nsecs [in 41961353 to 42011353 nsecs]

that is, its (hashed, but stable) address, its callback and its soft-hard expiry range in the
base's clock. A task sleeping with a timeout (poll, futex, nanosleep, epoll_wait...) sleeps on
an hrtimer_sleeper on its kernel stack, whose callback is hrtimer_wakeup; nothing names the
task, and the timer is cancelled as soon as the task leaves its call.
"""

import re
from dataclasses import dataclass, field

PATH = "/proc/timer_list"
SLEEPER = "hrtimer_wakeup"

_NOW = re.compile(r"now at (\d+) nsecs")
_CLOCK = re.compile(r"\s*clock (\d+):")
_OFFSET = re.compile(r"\s*\.offset:\s+(-?\d+) nsecs")
_TIMER = re.compile(r"\s*#\d+: <([0-9a-f]+)>, (\S+), S:")
_EXPIRES = re.compile(r"\s*# expires at (-?\d+)-(-?\d+) nsecs")


@dataclass(frozen=True)
class Sleeper:
    """One queued hrtimer_sleeper: its clock base's index and its soft expiry (the deadline
    asked for; the hard one adds the timer slack)."""

    base: int
    soft: int


@dataclass
class TimerList:
    now: int  # host CLOCK_MONOTONIC when the kernel wrote the list, ns
    offsets: dict[int, int] = field(default_factory=dict)  # base index -> offset from now's clock
    sleepers: dict[str, Sleeper] = field(default_factory=dict)  # by address

    def left(self, sleeper: Sleeper) -> int:
        """Nanoseconds from `now` to the sleeper's deadline, in its base's clock."""
        return sleeper.soft - (self.now + self.offsets.get(sleeper.base, 0))


def parse(text: str) -> TimerList | None:
    """The sleepers of a timer_list text; None if it is not in the format above."""
    now = _NOW.search(text)
    if now is None:
        return None
    result = TimerList(int(now.group(1)))
    base, timer = None, None
    for line in text.splitlines():
        if m := _CLOCK.match(line):
            base = int(m.group(1))
        elif base is not None and (m := _OFFSET.match(line)):
            result.offsets[base] = int(m.group(1))
        elif m := _TIMER.match(line):
            timer = (m.group(1), m.group(2))
        elif timer and (m := _EXPIRES.match(line)):
            if timer[1] == SLEEPER and base is not None:
                result.sleepers[timer[0]] = Sleeper(base, int(m.group(1)))
            timer = None
    return result


def read() -> TimerList | None:
    """The host's queued sleepers now; None if this process may not read the list."""
    try:
        with open(PATH) as f:
            return parse(f.read())
    except OSError:
        return None

"""Keeping the signals that stop torpor (SIGINT, SIGTERM, SIGHUP) from cutting a step in two.

The command line turns the first of them into KeyboardInterrupt, which a dump or restore
answers by putting everything back (the tree let go as it was, or the restored tasks
killed), and ignores the others so that this clean-up runs to its end. Around the steps that
must not be interrupted half-way, and after which there is nothing to put back (killing or
letting go a dumped tree), `shielded()` holds those signals off; one that came meanwhile is
dropped, since what it would have stopped is done.
"""

import contextlib
import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_on_signals() -> None:
    """Make the first stop signal raise KeyboardInterrupt, and later ones do nothing."""

    def stop(signum, frame):
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt

    for s in STOP_SIGNALS:
        signal.signal(s, stop)


@contextlib.contextmanager
def shielded():
    """Within the block the stop signals wait; those that came are dropped after it."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
            pass
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

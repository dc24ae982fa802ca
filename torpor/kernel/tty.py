"""Terminal ioctls (asm-generic/ioctls.h, the x86 numbers) and what torpor reads through
them from its own copy of a terminal fd."""

import fcntl
import os
import struct

TIOCEXCL, TIOCNXCL, TIOCSCTTY = 0x540C, 0x540D, 0x540E
TIOCGPGRP, TIOCSPGRP = 0x540F, 0x5410
TIOCGWINSZ, TIOCSWINSZ = 0x5413, 0x5414
FIONREAD = 0x541B
TIOCPKT = 0x5420
TIOCGSID = 0x5429
TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431
TIOCGPKT, TIOCGPTLCK, TIOCGEXCL = 0x80045438, 0x80045439, 0x80045440
TIOCGPTPEER = 0x5441
TIOCGETD = 0x5424  # the line discipline

N_TTY = 0  # the terminal line discipline (n_tty.c), whose queues torpor knows
EXTPROC = 0o200000  # c_lflag: external processing (not in Python's termios)

N_TTY_BUF_SIZE = 4096  # the line discipline's input queue, in bytes

PTMX_MAJOR, PTMX_MINOR = 5, 2
DEV_TTY_MINOR = 0  # /dev/tty (5, 0): the opening process's controlling terminal
PTS_MAJORS = range(136, 144)  # Unix98 pty slaves: /dev/pts/N, N = (major - 136) * 256 + minor


def is_pty_master(rdev: int) -> bool:
    return os.major(rdev) == PTMX_MAJOR and os.minor(rdev) == PTMX_MINOR


def is_dev_tty(rdev: int) -> bool:
    return os.major(rdev) == PTMX_MAJOR and os.minor(rdev) == DEV_TTY_MINOR


def slave_rdev(index: int) -> int:
    return os.makedev(PTS_MAJORS.start + index // 256, index % 256)


def is_pty_slave(rdev: int) -> bool:
    return os.major(rdev) in PTS_MAJORS


def slave_index(rdev: int) -> int:
    """The N of /dev/pts/N from the slave's device number."""
    return (os.major(rdev) - PTS_MAJORS.start) * 256 + os.minor(rdev)


def get_int(fd: int, request: int) -> int:
    """An int an ioctl writes back (TIOCGPTN, TIOCGPKT, TIOCGPGRP, FIONREAD, ...)."""
    return struct.unpack("i", fcntl.ioctl(fd, request, bytes(4)))[0]


def open_peer(master: int, flags: int) -> int:
    """A new open file of the slave of `master` (TIOCGPTPEER), with open flags `flags`."""
    return fcntl.ioctl(master, TIOCGPTPEER, flags)


def session_of(fd: int) -> int:
    """The session whose controlling terminal the tty is (for a master, its slave's);
    0 when it controls none."""
    try:
        return get_int(fd, TIOCGSID)
    except OSError:
        return 0


def foreground_of(fd: int) -> int:
    """The terminal's foreground process group (for a master, its slave's); 0 if none."""
    try:
        return max(get_int(fd, TIOCGPGRP), 0)
    except OSError:
        return 0

"""What kind of file an fd of another process is, and whether two fds share one open file."""

import contextlib
import ctypes
import fcntl
import os
import select
import stat
import struct
import termios
from dataclasses import dataclass
from functools import cached_property

from torpor.kernel.libc import SYS_PIDFD_GETFD, syscall
from torpor.kernel.procfs import proc, read_fdinfo

SYS_KCMP = 312
KCMP_FILE, KCMP_VM, KCMP_FILES, KCMP_FS = 0, 1, 2, 3
KCMP_EPOLL_TFD = 7
SYS_TEE = 276
SPLICE_F_NONBLOCK = 2

TTY_MAJORS = {4, 5, 136, 137, 138, 139, 140, 141, 142, 143}  # tty, tty aux, Unix98 pty slaves
MEM_MAJOR = 1  # /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom


@dataclass
class FdDescription:
    fd: int
    target: str  # readlink of /proc/PID/fd/N
    mode: int
    rdev: int
    inode: int
    pos: int
    flags: int  # open flags from fdinfo, O_CLOEXEC included
    link: str = ""  # /proc/PID/fd/N

    @property
    def kind(self) -> str:
        """ "reg", "dir", "chr-mem", "tty", "pipe", "socket", or another name for refusals."""
        if stat.S_ISREG(self.mode):
            return "reg"
        if stat.S_ISDIR(self.mode):
            return "dir"
        if stat.S_ISFIFO(self.mode):
            return "pipe" if self.target.startswith("pipe:") else "fifo"
        if stat.S_ISSOCK(self.mode):
            return "socket"
        if stat.S_ISCHR(self.mode):
            major = os.major(self.rdev)
            if major == MEM_MAJOR:
                return "chr-mem"
            if major in TTY_MAJORS:
                return "tty"
            return "character device"
        if self.target.startswith("anon_inode:"):
            return self.target.removeprefix("anon_inode:").strip("[]")
        return "unknown"

    @cached_property
    def protocol(self) -> str:
        """A socket's protocol as the kernel names it ("UNIX-STREAM", "TCP", "UDPv6",
        "NETLINK", ...; xattr system.sockprotoname); empty for other files."""
        if not stat.S_ISSOCK(self.mode):
            return ""
        try:
            name = os.getxattr(self.link, "system.sockprotoname")
        except OSError:
            return ""
        return name.rstrip(b"\0").decode(errors="replace")


MQUEUE_MAGIC = 0x19800202  # statfs f_type of the POSIX message queue filesystem
SYS_STATFS = 137
_STATFS = struct.Struct("=q")  # struct statfs starts with f_type (a long on x86_64)


def filesystem_type(pid: int, fd: int) -> int:
    """The statfs f_type of the filesystem holding the file behind fd `fd` of `pid`."""
    buf = ctypes.create_string_buffer(120)  # struct statfs: 120 bytes on x86_64
    syscall(SYS_STATFS, str(proc(pid, "fd", str(fd))).encode(), buf)
    return _STATFS.unpack_from(buf.raw)[0]


def describe_fd(pid: int, fd: int) -> FdDescription:
    link = str(proc(pid, "fd", str(fd)))
    target = os.readlink(link)
    st = os.stat(link)
    info = read_fdinfo(pid, fd)
    return FdDescription(fd, target, st.st_mode, st.st_rdev, st.st_ino, info.pos, info.flags, link)


@contextlib.contextmanager
def borrowed(pid: int, fd: int):
    """A copy, in torpor, of fd `fd` of process `pid` (pidfd_getfd(2)): the same open
    file, closed again when the block ends."""
    pidfd = os.pidfd_open(pid)
    try:
        own = syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    try:
        yield own
    finally:
        os.close(own)


def shared_with(pid1: int, pid2: int, what: int) -> bool:
    """Whether two processes share one kernel object (kcmp(2): KCMP_VM, KCMP_FILES, KCMP_FS)."""
    return syscall(SYS_KCMP, pid1, pid2, what, 0, 0) == 0


def same_open_file(pid1: int, fd1: int, pid2: int, fd2: int) -> bool:
    """Whether two fds refer to one open file description (kcmp(2))."""
    return syscall(SYS_KCMP, pid1, pid2, KCMP_FILE, fd1, fd2) == 0


def epoll_watches(pid: int, epfd: int, tfd: int) -> bool:
    """Whether fd `tfd` of `pid` is the file that eventpoll `epfd` of `pid` watches under
    that number (kcmp(2) KCMP_EPOLL_TFD)."""
    slot = (ctypes.c_uint32 * 3)(epfd, tfd, 0)  # struct kcmp_epoll_slot: efd, tfd, toff
    try:
        return syscall(SYS_KCMP, pid, pid, KCMP_EPOLL_TFD, tfd, ctypes.addressof(slot)) == 0
    except OSError:
        return False  # tfd is not open, or the eventpoll watches no such file


SYS_OPEN_BY_HANDLE_AT = 304


def path_of_handle(sdev: int, handle_type: int, handle: bytes) -> str | None:
    """The path of the file a file handle names on the filesystem with kernel device number
    `sdev` (major << 20 | minor), found through a mount of it (open_by_handle_at(2), which
    needs CAP_DAC_READ_SEARCH); None where no mount of it is seen or it is gone."""
    wanted = f"{sdev >> 20}:{sdev & 0xFFFFF}"
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        if fields[2] != wanted or fields[3] != "/":
            continue
        mount_fd = os.open(fields[4], os.O_RDONLY | os.O_DIRECTORY)
        try:
            buf = ctypes.create_string_buffer(struct.pack("<Ii", len(handle), handle_type) + handle)
            try:
                fd = syscall(SYS_OPEN_BY_HANDLE_AT, mount_fd, ctypes.addressof(buf), os.O_PATH)
            except OSError:
                return None
            try:
                path = os.readlink(f"/proc/self/fd/{fd}")
            finally:
                os.close(fd)
            return None if path.endswith(" (deleted)") else path
        finally:
            os.close(mount_fd)
    return None


def pipe_has_other_end(pid: int, fd: int, reading: bool) -> bool:
    """Whether the pipe behind fd `fd` of `pid` still has writers (for a read end) or
    readers (for a write end) anywhere. Asked through a copy of that very fd (pidfd_getfd):
    a pipe reports POLLHUP to a reader, POLLERR to a writer, once the other side is gone
    (a new open of the pipe would not see the hang-up)."""
    with borrowed(pid, fd) as own:
        poller = select.poll()
        poller.register(own, select.POLLIN if reading else select.POLLOUT)
        events = poller.poll(0)
        gone = select.POLLHUP if reading else select.POLLERR
        return not (events and events[0][1] & gone)


def pipe_unread(pid: int, fd: int) -> int:
    """How many bytes the pipe (or FIFO) behind fd `fd` of `pid` holds unread (FIONREAD)."""
    own = os.open(proc(pid, "fd", str(fd)), os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("i", fcntl.ioctl(own, termios.FIONREAD, bytes(4)))[0]
    finally:
        os.close(own)


def peek_pipe(pid: int, fd: int, limit: int = 1 << 20) -> bytes:
    """The unread bytes in the pipe behind `fd` of `pid`, left in place (tee(2) into our own)."""
    src = os.open(proc(pid, "fd", str(fd)), os.O_RDONLY | os.O_NONBLOCK)
    r, w = os.pipe2(os.O_NONBLOCK)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, limit)  # room for all of it
        try:
            n = syscall(SYS_TEE, src, w, limit, SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return b""  # the pipe is empty
        return os.read(r, n) if n else b""
    finally:
        for f in (src, r, w):
            os.close(f)


SEEK_DATA, SEEK_HOLE = 3, 4


def data_runs(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The (offset, length) runs of the file behind `fd` between offsets `start` (a page
    boundary) and `end` that hold data (SEEK_DATA: pages written through any fd or mapping),
    widened to whole pages."""
    page = os.sysconf("SC_PAGE_SIZE")
    runs, pos = [], start
    while pos < end:
        try:
            data = os.lseek(fd, pos, SEEK_DATA)
        except OSError:  # ENXIO: no data after pos
            break
        if data >= end:
            break
        hole = min(os.lseek(fd, data, SEEK_HOLE), end)
        data -= data % page
        hole += -hole % page
        runs.append((data, hole - data))
        pos = hole
    return runs

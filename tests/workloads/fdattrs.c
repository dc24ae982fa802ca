/*
 * fdattrs: the settings of open files that a restore must give back, checked by using them.
 *
 * - pipe A made 1 MiB large (F_SETPIPE_SZ) and holding 200 KiB, more than a pipe of the
 *   default size can: after the restore all of it reads back, and F_GETPIPE_SZ says 1 MiB;
 * - a second open file description of pipe A's read end, opened with O_NONBLOCK through
 *   /proc/self/fd: after the restore it is non-blocking (an empty read says EAGAIN) and the
 *   first read end is still blocking;
 * - pipe B's read end with O_ASYNC, owned by this thread (F_SETOWN_EX) with signal
 *   SIGRTMIN+2 (F_SETSIG): after the restore a byte written into pipe B raises that signal,
 *   with the read end's fd in si_fd.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/syscall.h>

#define A_SIZE (1 << 20)
#define A_DATA (200 << 10)

static volatile sig_atomic_t io_signals, io_fd = -1;

static void on_io(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)ctx;
    io_signals++;
    io_fd = info->si_fd;
}

int main(void)
{
    int a[2], b[2];
    static unsigned char data[A_DATA], back[A_DATA];
    workload_init("fdattrs", 0);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)pattern32(7, (uint32_t)i);

    if (pipe(a) != 0 || pipe(b) != 0)
        FAIL_ERRNO("pipe");
    if (fcntl(a[1], F_SETPIPE_SZ, A_SIZE) < 0)
        FAIL_ERRNO("F_SETPIPE_SZ");
    fcntl(a[1], F_SETFL, O_NONBLOCK);
    if (write(a[1], data, sizeof(data)) != (ssize_t)sizeof(data))
        FAIL_ERRNO("filling pipe A");
    fcntl(a[1], F_SETFL, 0);
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", a[0]);
    int a_nonblock = open(path, O_RDONLY | O_NONBLOCK);
    if (a_nonblock < 0)
        FAIL_ERRNO("reopening pipe A");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_io;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN + 2, &sa, NULL);
    struct f_owner_ex owner = {F_OWNER_TID, (pid_t)syscall(SYS_gettid)};
    if (fcntl(b[0], F_SETOWN_EX, &owner) != 0 || fcntl(b[0], F_SETSIG, SIGRTMIN + 2) != 0 ||
        fcntl(b[0], F_SETFL, O_ASYNC) != 0)
        FAIL_ERRNO("setting up SIGIO on pipe B");
    ready();
    wait_for_usr1();

    CHECK_EQ("pipe A size", fcntl(a[0], F_GETPIPE_SZ), A_SIZE);
    CHECK_EQ("first read end of A blocking", fcntl(a[0], F_GETFL) & O_NONBLOCK, 0);
    CHECK_EQ("second read end of A non-blocking", fcntl(a_nonblock, F_GETFL) & O_NONBLOCK,
             O_NONBLOCK);
    size_t got = 0;
    while (got < sizeof(back)) {
        ssize_t n = read(a_nonblock, back + got, sizeof(back) - got);
        if (n <= 0) {
            fail("pipe A ended after %zu of %zu bytes: %s", got, sizeof(back),
                 n < 0 ? strerror(errno) : "EOF");
            break;
        }
        got += (size_t)n;
    }
    if (got == sizeof(back) && memcmp(back, data, sizeof(data)) != 0)
        fail("pipe A data differs");
    errno = 0;
    CHECK_EQ("read of empty non-blocking A", read(a_nonblock, back, 1), -1);
    CHECK_EQ("errno of empty non-blocking A", errno, EAGAIN);

    struct f_owner_ex now;
    fcntl(b[0], F_GETOWN_EX, &now);
    CHECK_EQ("owner type of B", now.type, F_OWNER_TID);
    CHECK_EQ("owner of B", now.pid, owner.pid);
    CHECK_EQ("signal of B", fcntl(b[0], F_GETSIG), SIGRTMIN + 2);
    CHECK_EQ("O_ASYNC on B", fcntl(b[0], F_GETFL) & O_ASYNC, O_ASYNC);
    if (write(b[1], "x", 1) != 1)
        FAIL_ERRNO("writing pipe B");
    for (int i = 0; i < 200 && !io_signals; i++)
        usleep(10000);
    CHECK_EQ("SIGIO signals from B", io_signals, 1);
    CHECK_EQ("si_fd of B's signal", io_fd, b[0]);
    finish();
}

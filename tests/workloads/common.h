/*
 * The workload protocol shared by every test workload.
 *
 * A workload sets up some state, records what it expects to find later, prints
 * "READY" and waits.  torpor may checkpoint and restore it while it waits.  The
 * harness then sends SIGUSR1; the workload leaves its wait, checks every piece
 * of its state against what it recorded, prints "PASS <name>" or one
 * "FAIL <name>: <what differed>" line per problem, and exits 0 or 1.
 *
 * Output goes through write(2) in whole lines so that lines from the original
 * and the restored process never interleave and nothing sits in a stdio
 * buffer that a checkpoint would have to carry.
 */
#ifndef TORPOR_WORKLOAD_COMMON_H
#define TORPOR_WORKLOAD_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Set by the SIGUSR1 handler: the harness asks the workload to check itself. */
static volatile sig_atomic_t usr1_received;

static const char *workload_name = "workload";
static int workload_failures;

static inline void usr1_handler(int sig)
{
    (void)sig;
    usr1_received = 1;
}

/* Write a whole buffer to stdout, retrying on short writes and EINTR. */
static inline void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* printf to stdout as one write(2). */
static inline __attribute__((format(printf, 1, 2))) void say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = sizeof(line) - 1;
    write_all(line, (size_t)n);
}

/* Report one problem: "FAIL <name>: <message>". */
static inline __attribute__((format(printf, 1, 2))) void fail(const char *fmt, ...)
{
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    workload_failures++;
    say("FAIL %s: %s\n", workload_name, msg);
}

/* Compare two integers; on mismatch report both in hex. Returns 1 if equal. */
#define CHECK_EQ(what, got, want)                                                      \
    ({                                                                                 \
        unsigned long long _g = (unsigned long long)(got);                             \
        unsigned long long _w = (unsigned long long)(want);                            \
        if (_g != _w)                                                                  \
            fail("%s: got 0x%llx, expected 0x%llx", (what), _g, _w);                  \
        _g == _w;                                                                      \
    })

/* Report a failed libc/syscall call with errno. */
#define FAIL_ERRNO(what) fail("%s failed: %s", (what), strerror(errno))

/*
 * Install the SIGUSR1 handler and remember the workload's name.
 * sa_flags lets a workload choose SA_RESTART semantics for its wait.
 */
static inline void workload_init(const char *name, int usr1_flags)
{
    struct sigaction sa;
    workload_name = name;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = usr1_handler;
    sa.sa_flags = usr1_flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        FAIL_ERRNO("sigaction(SIGUSR1)");
        exit(1);
    }
}

/* Tell the harness the state is set up; it may checkpoint from now on. */
static inline void ready(void)
{
    write_all("READY\n", 6);
}

/*
 * The default wait: pause() until SIGUSR1 arrives.  pause() returning while
 * the flag is still clear means something interrupted the wait that should
 * not have (for instance a restore that turned the interrupted call into
 * EINTR); that is reported once and the wait goes on.
 */
static inline void wait_for_usr1(void)
{
    int reported = 0;
    while (!usr1_received) {
        int r = pause();
        int err = errno;
        if (!usr1_received && !reported) {
            fail("pause returned early: %s without SIGUSR1", r < 0 ? strerror(err) : "0");
            reported = 1;
        }
    }
}

/* Print the verdict and exit: 0 when every check passed, 1 otherwise. */
static inline __attribute__((noreturn)) void finish(void)
{
    if (workload_failures == 0) {
        say("PASS %s\n", workload_name);
        exit(0);
    }
    exit(1);
}

/* A cheap, deterministic 32-bit pattern for (seed, index). */
static inline uint32_t pattern32(uint32_t seed, uint32_t i)
{
    uint32_t x = seed * 0x9e3779b1u ^ (i + 0x7f4a7c15u) * 0x85ebca6bu;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return x | 1; /* never zero, so it never looks like an untouched page */
}

#define PAGE 4096UL

/*
 * A Unix stream socket whose peer is held by a process outside this process's tree (a
 * grandchild let go, so it is reparented): it echoes every byte sent to it and exits
 * at end of file.  Returns this side's fd, or -1.
 */
static inline int outside_peer_socket(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0) {
            char c;
            int devnull = open("/dev/null", O_RDWR);
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
            dup2(sv[1], 3);
            syscall(SYS_close_range, 4, ~0U, 0);
            while (read(3, &c, 1) == 1)
                if (write(3, &c, 1) != 1)
                    break;
            _exit(0);
        }
        _exit(0);
    }
    waitpid(middle, NULL, 0);
    close(sv[1]);
    return sv[0];
}

/* Send one byte carrying `n` (at most 4) fds over Unix socket `via` (SCM_RIGHTS). */
static inline void send_fds(int via, const int *fds, int n)
{
    char data = 'F';
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    if (sendmsg(via, &msg, 0) != 1)
        FAIL_ERRNO("sendmsg SCM_RIGHTS");
}

/* Receive, without waiting, one message send_fds sent, its fds into `fds` (room for `n`);
   how many it carried (0: none, or no such message). */
static inline int receive_fds(int via, int *fds, int n)
{
    char data;
    struct iovec iov = {&data, 1};
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    if (recvmsg(via, &msg, MSG_DONTWAIT) != 1 || data != 'F')
        return 0;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return 0;
    int got = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    memcpy(fds, CMSG_DATA(c), (size_t)(got < n ? got : n) * sizeof(int));
    return got;
}

/* One byte to the outside peer and back, within 10 s; 1 when it came back. */
static inline int outside_peer_echoes(int fd)
{
    char c = 'S';
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (send(fd, &c, 1, 0) != 1 || poll(&p, 1, 10000) != 1)
        return 0;
    c = 0;
    return recv(fd, &c, 1, 0) == 1 && c == 'S';
}

#endif

/*
 * pidfds: pidfds of children of the tree and of a process that has exited, each checked by
 * using it after the restore.
 *
 * - A: pidfd_open of child a (blocking), which reports the SIGUSR2 it gets on a pipe: after
 *   the restore pidfd_send_signal(A, SIGUSR2) reaches it and it writes "2";
 * - B: child b made with clone(CLONE_PIDFD), a non-blocking pidfd (PIDFD_NONBLOCK, set with
 *   F_SETFL): b waits for a byte on a pipe and exits with status 7; after the restore B
 *   does not poll readable, the byte is sent, B becomes readable, and waitid(P_PIDFD, B)
 *   reaps b with status 7;
 * - T: pidfd_open(a, PIDFD_THREAD) where the kernel has it (Linux 6.9): the flag is kept;
 * - F: a pidfd of a in flight, sent on a Unix socketpair (SCM_RIGHTS) and closed: after the
 *   restore it is received, and pidfd_send_signal through it reaches a again;
 * - Z: pidfd of child z, a zombie (exited with status 5, not reaped): after the restore Z
 *   polls readable and waitid(P_PIDFD, Z) reaps z with status 5;
 * - D: pidfd of child d, which exited and was reaped before the checkpoint: after the restore
 *   D polls POLLIN|POLLHUP and pidfd_send_signal through it fails with ESRCH; D2, opened
 *   non-blocking on the same process, keeps O_NONBLOCK.
 *
 * Mode "outside": the process also holds a pidfd of a process outside the tree (a
 * grandchild let go), which refuses the dump; it checks that the pidfd still signals it.
 * Mode "thread": it also holds a pidfd (PIDFD_THREAD) of a second thread of its own, which
 * refuses the dump; it checks that the pidfd still signals the thread.
 */
#include "common.h"

#include <pthread.h>
#include <sched.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x1000
#endif

static int pidfd_open(pid_t pid, unsigned flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_send_signal(int fd, int sig)
{
    return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

static int report_fd = -1;

static void on_usr2(int sig)
{
    (void)sig;
    if (write(report_fd, "2", 1) != 1)
        _exit(3);
}

static int wait_readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 10000) == 1 ? p.revents : 0;
}

static int child_reports(int report)
{
    char c = 0;
    return wait_readable(report) && read(report, &c, 1) == 1 && c == '2';
}

static int readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

static volatile pid_t thread_tid;

static void *thread_main(void *arg)
{
    (void)arg;
    thread_tid = (pid_t)syscall(SYS_gettid);
    for (;;)
        pause();
    return NULL;
}

static pid_t child_b(int *pidfd, int go)
{
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PIDFD | SIGCHLD, 0, pidfd, NULL, 0);
    if (pid == 0) {
        char c;
        _exit(read(go, &c, 1) == 1 ? 7 : 1);
    }
    return pid;
}

int main(int argc, char **argv)
{
    int outside = argc > 1 && strcmp(argv[1], "outside") == 0;
    int thread = argc > 1 && strcmp(argv[1], "thread") == 0;
    workload_init("pidfds", 0);
    int report[2], go[2];
    if (pipe(report) != 0 || pipe(go) != 0)
        FAIL_ERRNO("pipe");

    pid_t a = fork();
    if (a == 0) {
        report_fd = report[1];
        signal(SIGUSR2, on_usr2);
        for (;;)
            pause();
    }
    int fa = pidfd_open(a, 0);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        FAIL_ERRNO("socketpair");
    int fly = pidfd_open(a, 0);
    send_fds(sv[0], &fly, 1);
    close(fly);

    int fb = -1;
    pid_t b = child_b(&fb, go[0]);
    if (b < 0 || fb < 0)
        FAIL_ERRNO("clone(CLONE_PIDFD)");
    if (fcntl(fb, F_SETFL, O_NONBLOCK) != 0)
        FAIL_ERRNO("F_SETFL O_NONBLOCK");
    int ft = pidfd_open(a, PIDFD_THREAD); /* -1 (EINVAL) before Linux 6.9 */

    pid_t z = fork();
    if (z == 0)
        _exit(5);
    int fz = pidfd_open(z, 0);
    if (fz < 0)
        FAIL_ERRNO("pidfd_open(z)");
    siginfo_t zinfo;
    memset(&zinfo, 0, sizeof(zinfo));
    if (waitid(P_PID, z, &zinfo, WEXITED | WNOWAIT) != 0) /* z is a zombie now */
        FAIL_ERRNO("waitid(z, WNOWAIT)");

    pid_t d = fork();
    if (d == 0)
        _exit(0);
    int fd_dead = pidfd_open(d, 0);
    int fd_dead2 = pidfd_open(d, O_NONBLOCK);
    if (fa < 0 || fd_dead < 0 || fd_dead2 < 0)
        FAIL_ERRNO("pidfd_open");
    waitpid(d, NULL, 0);

    int fo = -1;
    pid_t far = -1;
    int far_pipe[2];
    if (outside) {
        int pid_pipe[2];
        if (pipe(far_pipe) != 0 || pipe(pid_pipe) != 0)
            FAIL_ERRNO("pipe");
        pid_t middle = fork();
        if (middle == 0) {
            pid_t g = fork();
            if (g == 0) {
                char c;
                int devnull = open("/dev/null", O_RDWR);
                dup2(devnull, 1);
                dup2(devnull, 2);
                close(far_pipe[1]);
                if (read(far_pipe[0], &c, 1) < 0)
                    _exit(1);
                _exit(0);
            }
            if (write(pid_pipe[1], &g, sizeof(g)) != sizeof(g))
                _exit(1);
            _exit(0);
        }
        waitpid(middle, NULL, 0);
        if (read(pid_pipe[0], &far, sizeof(far)) != sizeof(far))
            FAIL_ERRNO("read the outside PID");
        close(pid_pipe[0]);
        close(pid_pipe[1]);
        close(far_pipe[0]);
        fo = pidfd_open(far, 0);
        if (fo < 0)
            FAIL_ERRNO("pidfd_open of the outside process");
    }
    int fth = -1;
    if (thread) {
        pthread_t t;
        signal(SIGUSR2, SIG_IGN);
        if (pthread_create(&t, NULL, thread_main, NULL) != 0)
            FAIL_ERRNO("pthread_create");
        while (!thread_tid)
            sched_yield();
        fth = pidfd_open(thread_tid, PIDFD_THREAD);
        if (fth < 0)
            FAIL_ERRNO("pidfd_open of the thread");
    }
    int flags_a = fcntl(fa, F_GETFL), flags_b = fcntl(fb, F_GETFL);
    int flags_t = ft >= 0 ? fcntl(ft, F_GETFL) : -1, flags_d2 = fcntl(fd_dead2, F_GETFL);
    ready();
    wait_for_usr1();

    CHECK_EQ("A flags", fcntl(fa, F_GETFL), flags_a);
    CHECK_EQ("B flags", fcntl(fb, F_GETFL), flags_b);
    CHECK_EQ("B non-blocking", fcntl(fb, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    if (ft >= 0) {
        CHECK_EQ("T flags", fcntl(ft, F_GETFL), flags_t);
        CHECK_EQ("T is a thread pidfd", fcntl(ft, F_GETFL) & PIDFD_THREAD, PIDFD_THREAD);
    }
    CHECK_EQ("D2 flags", fcntl(fd_dead2, F_GETFL), flags_d2);

    /* A reaches child a, which reports the signal. */
    if (pidfd_send_signal(fa, SIGUSR2) != 0)
        FAIL_ERRNO("pidfd_send_signal(A)");
    else if (!child_reports(report[0]))
        fail("child a did not report SIGUSR2 sent through A");
    int ff = -1;
    receive_fds(sv[1], &ff, 1);
    if (ff < 0)
        fail("no pidfd received from the socketpair");
    else if (pidfd_send_signal(ff, SIGUSR2) != 0)
        FAIL_ERRNO("pidfd_send_signal(F)");
    else if (!child_reports(report[0]))
        fail("child a did not report SIGUSR2 sent through F");
    if (ft >= 0 && pidfd_send_signal(ft, 0) != 0)
        FAIL_ERRNO("pidfd_send_signal(T, 0)");

    /* B becomes readable when b exits; waitid reaps it through B. */
    CHECK_EQ("B readable while b runs", readable(fb), 0);
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    errno = 0;
    CHECK_EQ("waitid(B) while b runs (non-blocking)",
             syscall(SYS_waitid, P_PIDFD, fb, &info, WEXITED, NULL) == -1 && errno == EAGAIN, 1);
    if (write(go[1], "g", 1) != 1)
        FAIL_ERRNO("write to b");
    CHECK_EQ("B readable once b exited", wait_readable(fb) & POLLIN, POLLIN);
    memset(&info, 0, sizeof(info));
    if (syscall(SYS_waitid, P_PIDFD, fb, &info, WEXITED, NULL) != 0)
        FAIL_ERRNO("waitid(P_PIDFD, B)");
    else {
        CHECK_EQ("b's PID", info.si_pid, b);
        CHECK_EQ("b's status", info.si_status, 7);
    }

    /* Z is a zombie of the tree again. */
    CHECK_EQ("Z readable", readable(fz) & POLLIN, POLLIN);
    memset(&info, 0, sizeof(info));
    if (syscall(SYS_waitid, P_PIDFD, fz, &info, WEXITED, NULL) != 0)
        FAIL_ERRNO("waitid(P_PIDFD, Z)");
    else {
        CHECK_EQ("z's PID", info.si_pid, z);
        CHECK_EQ("z's status", info.si_status, 5);
    }

    /* D names a process that is gone. */
    CHECK_EQ("D polls POLLIN|POLLHUP", readable(fd_dead) & (POLLIN | POLLHUP), POLLIN | POLLHUP);
    CHECK_EQ("D2 polls POLLIN", readable(fd_dead2) & POLLIN, POLLIN);
    errno = 0;
    CHECK_EQ("signal through D fails with ESRCH",
             pidfd_send_signal(fd_dead, SIGUSR2) == -1 && errno == ESRCH, 1);

    if (outside) {
        if (pidfd_send_signal(fo, 0) != 0)
            FAIL_ERRNO("pidfd_send_signal to the outside process");
        close(far_pipe[1]); /* it exits */
    }
    if (thread && pidfd_send_signal(fth, SIGUSR2) != 0)
        FAIL_ERRNO("pidfd_send_signal to the thread");
    kill(a, SIGKILL);
    waitpid(a, NULL, 0);
    finish();
}

/*
 * storm: process trees that keep changing, or hold what a dump must refuse.
 * argv[1] picks the mode:
 *
 * fork (default) -- the top process forks children in a tight loop, up to
 *   IN_FLIGHT of them at a time; each child spins for a few microseconds and
 *   _exit(3)s, and the parent reaps them with waitpid and counts them.  So at
 *   any moment the tree holds some running children, some zombies and a
 *   parent in fork() or wait4().  READY comes after the first 100 forks; the
 *   storm goes on until SIGUSR1, whose flag is checked on every iteration.
 *   SIGUSR1 is blocked around fork(), so children are born with it blocked.
 *   Then the parent reaps what is left, forks and reaps one more child, and
 *   checks that every child it forked was reaped exactly once and exited
 *   with status 3.
 *
 * socket-child -- the top process forks one child that opens a Unix socket
 *   connected to a process outside the tree and blocks in read() on a control
 *   pipe; the parent prints READY once the child reported its socket.  On
 *   SIGUSR1 the parent writes 'c' to the control pipe; the child checks that
 *   its socket still reaches its peer and exits 0 (1 on a problem); the parent
 *   reaps it and checks that.  EOF on the control pipe (the parent died) ends the child with 2.
 *
 * Only the top process prints READY and the verdict.
 */
#include "common.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#define IN_FLIGHT 4
#define READY_AFTER 100
#define TIMEOUT_MS 10000

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_usr1_blocked(int how)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(how, &s, NULL);
}

/* ================================= fork ================================= */

static unsigned long forked, reaped, bad_status;
static pid_t in_flight[IN_FLIGHT];
static int n_in_flight;

/* Fork one child that exits 3 after a few microseconds; returns 0 on failure. */
static int fork_one(void)
{
    set_usr1_blocked(SIG_BLOCK);
    pid_t pid = fork();
    if (pid == 0) {
        long long until = now_ns() + 5000 + (long long)(getpid() % 8) * 1000;
        while (now_ns() < until)
            ;
        _exit(3);
    }
    int err = errno;
    set_usr1_blocked(SIG_UNBLOCK);
    if (pid < 0) {
        errno = err;
        FAIL_ERRNO("fork");
        return 0;
    }
    in_flight[n_in_flight++] = pid;
    forked++;
    return 1;
}

/* Reap one child (waiting if block), check its status; returns 1 if one was reaped. */
static int reap_one(int block)
{
    int st;
    pid_t pid;
    do
        pid = waitpid(-1, &st, block ? 0 : WNOHANG);
    while (pid < 0 && errno == EINTR && block);
    if (pid <= 0) {
        if (pid < 0 && errno != EINTR)
            FAIL_ERRNO("waitpid");
        return 0;
    }
    int found = -1;
    for (int i = 0; i < n_in_flight; i++)
        if (in_flight[i] == pid)
            found = i;
    if (found < 0) {
        fail("waitpid returned pid %d, which is not one of the children in flight", pid);
        return 1;
    }
    in_flight[found] = in_flight[--n_in_flight];
    reaped++;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 3) {
        if (bad_status++ == 0)
            fail("child %d ended with wait status 0x%x, expected exit 3", pid, st);
    }
    return 1;
}

/* Reap every child in flight, polling, for at most 10 s. */
static void reap_all(void)
{
    long long deadline = now_ns() + TIMEOUT_MS * 1000000LL;
    while (n_in_flight > 0 && now_ns() < deadline) {
        if (!reap_one(0))
            usleep(1000);
    }
    if (n_in_flight > 0)
        fail("%d children not reaped within 10 s", n_in_flight);
}

static void storm(void)
{
    workload_init("storm", 0); /* SIGUSR1 interrupts waitpid: the flag is seen at once */
    int ready_said = 0;
    while (!usr1_received) {
        if (n_in_flight == IN_FLIGHT && !reap_one(1)) {
            if (workload_failures)
                finish();
            continue;
        }
        while (n_in_flight > 0 && reap_one(0))
            ;
        if (workload_failures)
            finish();
        if (usr1_received)
            break;
        if (!fork_one())
            finish();
        if (!ready_said && forked >= READY_AFTER) {
            ready();
            ready_said = 1;
        }
    }
    if (!ready_said)
        fail("SIGUSR1 before READY (after %lu forks)", forked);

    reap_all();
    unsigned long before = reaped;
    if (n_in_flight == 0 && fork_one()) {
        reap_all();
        if (reaped != before + 1)
            fail("the child forked after SIGUSR1 was not reaped");
    }
    if (forked != reaped)
        fail("forked %lu children but reaped %lu", forked, reaped);
    if (bad_status)
        fail("%lu of %lu children did not exit with 3", bad_status, reaped);
    if (waitpid(-1, NULL, WNOHANG) != -1 || errno != ECHILD)
        fail("a child is left over after the last reap");
    say("storm: %lu children forked and reaped\n", reaped);
    finish();
}

/* ============================= socket-child ============================= */

/* The child: sockets, a report to the parent, then wait for the word. */
static __attribute__((noreturn)) void socket_child(int ctl, int report)
{
    int sock = outside_peer_socket();
    if (sock < 0) {
        FAIL_ERRNO("child: socketpair");
        _exit(1);
    }
    if (write(report, "r", 1) != 1)
        _exit(1);
    close(report);
    char c;
    ssize_t n;
    do
        n = read(ctl, &c, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1)
        _exit(2);
    if (c != 'c')
        fail("child: unexpected control byte 0x%02x", (unsigned char)c);
    struct stat st;
    if (fstat(sock, &st) != 0 || !S_ISSOCK(st.st_mode))
        fail("child: fd %d is no longer a socket", sock);
    if (!outside_peer_echoes(sock))
        fail("child: the byte sent to the peer outside the tree did not come back");
    _exit(workload_failures ? 1 : 0);
}

static void socket_parent(void)
{
    workload_init("storm", 0);
    set_usr1_blocked(SIG_BLOCK); /* inherited by the child */
    int ctl[2], report[2];
    if (pipe(ctl) != 0 || pipe(report) != 0) {
        FAIL_ERRNO("pipe");
        finish();
    }
    pid_t kid = fork();
    if (kid < 0) {
        FAIL_ERRNO("fork");
        finish();
    }
    if (kid == 0) {
        close(ctl[1]);
        close(report[0]);
        socket_child(ctl[0], report[1]);
    }
    close(ctl[0]);
    close(report[1]);
    struct pollfd p = {.fd = report[0], .events = POLLIN};
    char c = 0;
    if (poll(&p, 1, TIMEOUT_MS) != 1 || read(report[0], &c, 1) != 1 || c != 'r') {
        fail("the child did not report its sockets within 10 s");
        kill(kid, SIGKILL);
        finish();
    }
    close(report[0]);
    set_usr1_blocked(SIG_UNBLOCK);
    ready();
    wait_for_usr1();

    if (write(ctl[1], "c", 1) != 1)
        FAIL_ERRNO("write to the child's control pipe");
    long long deadline = now_ns() + TIMEOUT_MS * 1000000LL;
    int st;
    pid_t r;
    while ((r = waitpid(kid, &st, WNOHANG)) == 0 && now_ns() < deadline)
        usleep(5000);
    if (r != kid)
        fail("the child (pid %d) did not exit within 10 s", kid);
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("the child (pid %d) did not pass: wait status 0x%x", kid, st);
    finish();
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "fork";
    if (strcmp(mode, "fork") == 0)
        storm();
    else if (strcmp(mode, "socket-child") == 0)
        socket_parent();
    workload_init("storm", 0);
    fail("unknown mode '%s'", mode);
    finish();
}

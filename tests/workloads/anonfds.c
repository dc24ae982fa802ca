/*
 * anonfds: eventfd, signalfd, timerfd and eventpoll descriptors, each checked by using it.
 *
 * - eventfd E (non-blocking) holding 0x100000005, beyond the 32 bits eventfd2 takes; eventfd
 *   M a semaphore holding 3: after the restore E reads 0x100000005 once, M reads 1 three
 *   times and then EAGAIN;
 * - signalfd S for SIGUSR2 (blocked, one pending): after the restore S reads SIGUSR2, with
 *   the sender's value;
 * - timerfd T (CLOCK_MONOTONIC, about 1 s left, interval 200 ms): after the restore it fires
 *   between 0.3 and 3 s later, and its interval is still 200 ms; timerfd U fired once before
 *   the checkpoint and was not read: it reads 1; timerfd D is disarmed: EAGAIN, zero time;
 * - eventpoll P watching E (data 0xdeadbeefcafe), pipe R (edge-triggered, data 7), T (data 8)
 *   and eventpoll Q, which watches S (data 9), under data 10: after the restore P reports E
 *   and Q ready with their data words, Q reports S, and a byte written to R shows as data 7.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void watch(int epfd, int fd, uint32_t events, uint64_t data)
{
    struct epoll_event ev = {.events = events, .data.u64 = data};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        FAIL_ERRNO("epoll_ctl");
}

static int ready_data(int epfd, uint64_t *data, int max)
{
    struct epoll_event evs[8];
    int n = epoll_wait(epfd, evs, max, 0);
    for (int i = 0; i < n; i++)
        data[i] = evs[i].data.u64;
    return n;
}

static int has(const uint64_t *data, int n, uint64_t want)
{
    for (int i = 0; i < n; i++)
        if (data[i] == want)
            return 1;
    return 0;
}

int main(void)
{
    workload_init("anonfds", 0);
    int e = eventfd(0, EFD_NONBLOCK);
    uint64_t big = 0x100000005ULL, three = 3;
    int m = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
    if (e < 0 || m < 0 || write(e, &big, 8) != 8 || write(m, &three, 8) != 8)
        FAIL_ERRNO("eventfd");

    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    sigprocmask(SIG_BLOCK, &usr2, NULL);
    int s = signalfd(-1, &usr2, SFD_NONBLOCK);
    union sigval value = {.sival_int = 4242};
    if (s < 0 || sigqueue(getpid(), SIGUSR2, value) != 0)
        FAIL_ERRNO("signalfd");

    int t = timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec spec = {.it_interval = {0, 200000000}, .it_value = {1, 0}};
    int u = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec once = {.it_interval = {0, 0}, .it_value = {0, 1000000}};
    int d = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    if (t < 0 || u < 0 || d < 0 || timerfd_settime(t, 0, &spec, NULL) != 0 ||
        timerfd_settime(u, 0, &once, NULL) != 0)
        FAIL_ERRNO("timerfd");
    uint64_t u_ticks = 0;
    struct pollfd pu = {.fd = u, .events = POLLIN};
    if (poll(&pu, 1, 1000) != 1)
        fail("timerfd U did not fire before the checkpoint");

    int r[2];
    if (pipe(r) != 0)
        FAIL_ERRNO("pipe");
    int p = epoll_create1(0), q = epoll_create1(EPOLL_CLOEXEC);
    watch(q, s, EPOLLIN, 9);
    watch(p, e, EPOLLIN, 0xdeadbeefcafeULL);
    watch(p, r[0], EPOLLIN | EPOLLET, 7);
    watch(p, t, EPOLLIN, 8);
    watch(p, q, EPOLLIN, 10);
    ready();
    wait_for_usr1();
    double restored = now();

    uint64_t got = 0, data[8];
    int n = ready_data(p, data, 8);
    if (!has(data, n, 0xdeadbeefcafeULL) || !has(data, n, 10) || has(data, n, 7))
        fail("eventpoll P reports %d ready files, not E and Q (and not R)", n);
    n = ready_data(q, data, 8);
    CHECK_EQ("eventpoll Q ready", n == 1 && data[0] == 9, 1);

    CHECK_EQ("eventfd E read", read(e, &got, 8), 8);
    CHECK_EQ("eventfd E value", got, 0x100000005ULL);
    for (int i = 0; i < 3; i++) {
        got = 0;
        CHECK_EQ("semaphore M read", read(m, &got, 8), 8);
        CHECK_EQ("semaphore M value", got, 1);
    }
    errno = 0;
    CHECK_EQ("semaphore M empty", read(m, &got, 8) == -1 && errno == EAGAIN, 1);

    struct signalfd_siginfo si;
    CHECK_EQ("signalfd S read", read(s, &si, sizeof(si)), sizeof(si));
    CHECK_EQ("signalfd S signal", si.ssi_signo, SIGUSR2);
    CHECK_EQ("signalfd S value", si.ssi_int, 4242);

    CHECK_EQ("timerfd U read", read(u, &u_ticks, 8), 8);
    CHECK_EQ("timerfd U expirations", u_ticks, 1);
    errno = 0;
    CHECK_EQ("timerfd D empty", read(d, &got, 8) == -1 && errno == EAGAIN, 1);
    struct itimerspec cur;
    timerfd_gettime(d, &cur);
    CHECK_EQ("timerfd D disarmed", cur.it_value.tv_sec || cur.it_value.tv_nsec, 0);
    timerfd_gettime(t, &cur);
    CHECK_EQ("timerfd T interval", cur.it_interval.tv_nsec, 200000000);
    CHECK_EQ("timerfd T read", read(t, &got, 8), 8);
    double waited = now() - restored;
    if (waited < 0.3 || waited > 3.0)
        fail("timerfd T fired %.3f s after the restore, not 0.3-3 s", waited);

    if (write(r[1], "x", 1) != 1)
        FAIL_ERRNO("write R");
    n = ready_data(p, data, 8);
    CHECK_EQ("eventpoll P reports R", has(data, n, 7), 1);
    finish();
}

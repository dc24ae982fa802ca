/*
 * sleeper: a call sleeping with a relative timeout, interrupted by the checkpoint, must end
 * when it would have, not start over.
 *
 * Without a mode, or with mode "nanosleep": after READY it sleeps 3 s (clock_nanosleep,
 * relative, with a remainder buffer, as sleep(1) does; or nanosleep(2)), measuring the sleep
 * on CLOCK_MONOTONIC, which the restore carries on from the dump (the frozen time does not
 * count).  Then it waits for SIGUSR1 and checks that the sleep took 2.5-3.7 s: a sleep
 * started over after a checkpoint 1.5 s in takes 4.5 s.
 *
 * Any other mode names a call that sleeps with a timeout of 6 s (TIMEOUT), relative unless
 * the mode says "abs" or "bitset" (a deadline 6 s ahead), in which nothing wakes it.  When
 * the call returns, the workload checks that it returned what the call returns on timeout
 * and that it returned 4.5-7.5 s after it began, and prints its verdict at once (no SIGUSR1):
 * a checkpoint 2 s in and a call started over would return 8 s in.  A mode ending in
 * "-stopped" expects instead EINTR before 4.5 s (the harness stops the workload before the
 * checkpoint, so that the time the call had left is unknown).  "-time64" modes make the
 * *_time64 call of an ia32 program (the native call on x86_64).  Mode "threads" sleeps in
 * poll in the main thread and in futex in a second one (on its own mmap'd stack), both
 * judged as above.
 */
#include "common.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <time.h>

#include <linux/futex.h>

#define TIMEOUT 6
#define EARLIEST 4.5
#define LATEST 7.5

#ifdef __i386__
#define NR_FUTEX_TIME64 422
#define NR_SIGTIMEDWAIT_TIME64 421
#define NR_SEMTIMEDOP_TIME64 420
#define NR_CLOCK_NANOSLEEP_TIME64 407
#else
#define NR_FUTEX_TIME64 SYS_futex
#define NR_SIGTIMEDWAIT_TIME64 SYS_rt_sigtimedwait
#define NR_SEMTIMEDOP_TIME64 SYS_semtimedop
#define NR_CLOCK_NANOSLEEP_TIME64 SYS_clock_nanosleep
#endif
#define NR_EPOLL_PWAIT2 441

struct timespec64 {
    int64_t tv_sec;
    int64_t tv_nsec;
};

static double seconds(const struct timespec *t)
{
    return t->tv_sec + t->tv_nsec / 1e9;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return seconds(&t);
}

static __attribute__((noreturn)) void sleep_3s(int use_nanosleep)
{
    struct timespec start, end, req = {3, 0}, rem = {0, 0};
    clock_gettime(CLOCK_MONOTONIC, &start);
    ready();
    int r = use_nanosleep ? nanosleep(&req, &rem) : clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    if (r != 0)
        fail("the sleep ended with %s", use_nanosleep ? strerror(errno) : strerror(r));
    clock_gettime(CLOCK_MONOTONIC, &end);
    wait_for_usr1();
    double took = seconds(&end) - seconds(&start);
    if (took < 2.5 || took > 3.7)
        fail("the 3 s sleep took %.3f s", took);
    finish();
}

/* What the call of `mode` returned: 0 on success, else the error (errno). */
static int sleep_in(const char *mode)
{
    static int word;
    static const struct timespec rel = {TIMEOUT, 0};
    static const struct timespec64 rel64 = {TIMEOUT, 0};
    struct timespec abs;
    clock_gettime(CLOCK_MONOTONIC, &abs);
    abs.tv_sec += TIMEOUT;
    long r;
    if (strcmp(mode, "poll") == 0 || strcmp(mode, "poll-stopped") == 0)
        r = poll(NULL, 0, TIMEOUT * 1000);
    else if (strcmp(mode, "ppoll") == 0) {
        struct timespec ts = rel;
        r = ppoll(NULL, 0, &ts, NULL);
    } else if (strcmp(mode, "select") == 0) {
        struct timeval tv = {TIMEOUT, 0};
        r = select(0, NULL, NULL, NULL, &tv);
    } else if (strcmp(mode, "pselect6") == 0)
        r = pselect(0, NULL, NULL, NULL, &rel, NULL);
    else if (strncmp(mode, "epoll", 5) == 0) {
        struct epoll_event ev;
        int ep = epoll_create1(0);
        if (ep < 0)
            return errno;
        if (strcmp(mode, "epoll_wait") == 0)
            r = epoll_wait(ep, &ev, 1, TIMEOUT * 1000);
        else if (strcmp(mode, "epoll_pwait") == 0)
            r = epoll_pwait(ep, &ev, 1, TIMEOUT * 1000, NULL);
        else
            r = syscall(NR_EPOLL_PWAIT2, ep, &ev, 1, &rel64, NULL, 8);
    } else if (strcmp(mode, "futex") == 0)
        r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &rel, NULL, 0);
    else if (strcmp(mode, "futex-time64") == 0)
        r = syscall(NR_FUTEX_TIME64, &word, FUTEX_WAIT_PRIVATE, 0, &rel64, NULL, 0);
    else if (strcmp(mode, "futex-bitset") == 0)
        r = syscall(SYS_futex, &word, FUTEX_WAIT_BITSET_PRIVATE, 0, &abs, NULL,
                    FUTEX_BITSET_MATCH_ANY);
    else if (strncmp(mode, "sigtimedwait", 12) == 0) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR2);
        sigprocmask(SIG_BLOCK, &set, NULL);
        if (strcmp(mode, "sigtimedwait") == 0)
            r = sigtimedwait(&set, NULL, &rel);
        else
            r = syscall(NR_SIGTIMEDWAIT_TIME64, &set, NULL, &rel64, 8);
    } else if (strncmp(mode, "semtimedop", 10) == 0) {
        struct sembuf op = {0, -1, 0};
        int sem = semget(IPC_PRIVATE, 1, 0600);
        if (sem < 0)
            return errno;
        if (strcmp(mode, "semtimedop") == 0)
            r = semtimedop(sem, &op, 1, &rel);
        else
            r = syscall(NR_SEMTIMEDOP_TIME64, sem, &op, 1, &rel64);
        int err = errno;
        semctl(sem, 0, IPC_RMID);
        errno = err;
    } else if (strcmp(mode, "nanosleep-null") == 0)
        r = syscall(SYS_nanosleep, &rel, NULL);
    else if (strcmp(mode, "clock_nanosleep-null") == 0)
        r = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &rel, NULL);
    else if (strcmp(mode, "clock_nanosleep-time64-null") == 0)
        r = syscall(NR_CLOCK_NANOSLEEP_TIME64, CLOCK_MONOTONIC, 0, &rel64, NULL);
    else if (strcmp(mode, "clock_nanosleep-abs") == 0)
        r = syscall(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &abs, NULL);
    else {
        fail("unknown mode %s", mode);
        finish();
    }
    return r < 0 ? errno : 0;
}

struct sleeper_thread {
    const char *mode;
    double start, took;
    int err;
};

static void *sleeper_thread(void *arg)
{
    struct sleeper_thread *t = arg;
    t->start = now();
    t->err = sleep_in(t->mode);
    t->took = now() - t->start;
    return NULL;
}

/* What the call of `mode` returns when its time is up. */
static int on_timeout(const char *mode)
{
    if (strncmp(mode, "futex", 5) == 0)
        return ETIMEDOUT;
    if (strncmp(mode, "sigtimedwait", 12) == 0 || strncmp(mode, "semtimedop", 10) == 0)
        return EAGAIN;
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "clock_nanosleep";
    workload_init("sleeper", 0);
    if (strcmp(mode, "clock_nanosleep") == 0 || strcmp(mode, "nanosleep") == 0)
        sleep_3s(strcmp(mode, "nanosleep") == 0);
    int stopped = strstr(mode, "-stopped") != NULL;
    struct sleeper_thread other = {"futex", 0, 0, 0};
    pthread_t thread;
    int threads = strcmp(mode, "threads") == 0;
    if (threads) {
        mode = "poll";
        if (pthread_create(&thread, NULL, sleeper_thread, &other) != 0) {
            fail("pthread_create failed");
            finish();
        }
        while (!other.start) /* until the thread is about to sleep */
            usleep(1000);
        usleep(20000);
    }
    struct sleeper_thread main_call = {mode, now(), 0, 0};
    ready();
    main_call.err = sleep_in(mode);
    main_call.took = now() - main_call.start;
    if (threads)
        pthread_join(thread, NULL);
    struct sleeper_thread *calls[] = {&main_call, threads ? &other : NULL};
    for (int i = 0; i < 2 && calls[i]; i++) {
        struct sleeper_thread *c = calls[i];
        int want = stopped ? EINTR : on_timeout(c->mode);
        if (c->err != want)
            fail("%s returned %s after %.3f s, not %s", c->mode, c->err ? strerror(c->err) : "0",
                 c->took, want ? strerror(want) : "0");
        else if (stopped ? c->took >= EARLIEST : c->took < EARLIEST || c->took >= LATEST)
            fail("%s with a %d s timeout returned after %.3f s", c->mode, TIMEOUT, c->took);
    }
    finish();
}

/*
 * timers: interval timers and POSIX timers, used after a checkpoint.
 *
 * Before READY it arms
 *   alarm(4)                                ITIMER_REAL, 4 s left
 *   ITIMER_PROF 300 ms, interval 100 ms     process CPU time
 * and creates these POSIX timers, in this order (so with consecutive IDs):
 *   periodic   CLOCK_REALTIME, SIGEV_SIGNAL SIGRTMIN with sival data, every 250 ms
 *   thread     CLOCK_BOOTTIME, SIGEV_THREAD_ID SIGRTMIN+1 to a second thread, every 400 ms
 *   deleted    created and deleted again: a hole in the IDs
 *   disarmed   CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+2, never armed
 *   monotonic  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+3, one shot, 4 s left
 *   none       CLOCK_MONOTONIC, SIGEV_NONE, 100 s left, interval 7 s
 *   blocked    CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+4, every 50 ms, its signal blocked in
 *              every thread: pending (with overruns) when the dump comes
 * and records the IDs /proc/self/timers lists.
 *
 * On SIGUSR1 (sent right after a restore, or after a dump that left it running) it checks
 * that /proc/self/timers lists the same IDs, that timer_gettime works on each saved timer_t
 * with its interval unchanged and fails with EINVAL on the deleted one, that the disarmed
 * timer is still disarmed and never fired, and then, using the timers: the alarm and the
 * monotonic timer fire between 1.5 and 5.5 s after SIGUSR1 (about 3.7 s when the dump came
 * right after READY, however long the process was frozen), the periodic one fires every
 * 250 ms with its signal, sival and timer ID, the thread one reaches the second thread, the
 * blocked one's pending signal is there to take, another follows and between them they
 * count the expiries missed while blocked as overruns, and
 * ITIMER_PROF fires again once the process burns CPU time.
 */
#include "common.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define NSEC 1000000000LL
#define MAX_TIMERS 16

enum { T_PERIODIC, T_THREAD, T_DISARMED, T_MONOTONIC, T_NONE, T_BLOCKED, NTIMERS };
static timer_t timers[NTIMERS];
static timer_t deleted;
static const long long period_ns[NTIMERS] = {250000000LL, 400000000LL, 0, 0, 7 * NSEC, 50000000LL};

/* What the handlers saw, per signal: how often, when last, with what. */
struct seen {
    volatile int count;
    volatile long long last_ns;
    volatile long long first_after_usr1_ns;
    volatile int after_usr1;
    volatile uintptr_t sival;
    volatile int timerid;
    volatile int code;
    volatile pid_t tid;
};
static struct seen alrm, prof, periodic, thread_sig, disarmed_sig, mono;
static volatile long long usr1_ns;

static pid_t helper_tid;
static volatile int helper_ready;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NSEC + ts.tv_nsec;
}

static uintptr_t sival_data(void)
{
    return sizeof(void *) == 8 ? (uintptr_t)0x1122334455667788ULL : (uintptr_t)0x55667788u;
}

static struct seen *seen_for(int sig)
{
    if (sig == SIGALRM)
        return &alrm;
    if (sig == SIGPROF)
        return &prof;
    if (sig == SIGRTMIN)
        return &periodic;
    if (sig == SIGRTMIN + 1)
        return &thread_sig;
    if (sig == SIGRTMIN + 2)
        return &disarmed_sig;
    if (sig == SIGRTMIN + 3)
        return &mono;
    return NULL;
}

static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    struct seen *s = seen_for(sig);
    long long t = now_ns();
    if (!s)
        return;
    s->count++;
    s->last_ns = t;
    if (usr1_ns && !s->after_usr1++)
        s->first_after_usr1_ns = t;
    s->code = si->si_code;
    s->sival = (uintptr_t)si->si_value.sival_ptr;
    s->timerid = si->si_timerid;
    s->tid = (pid_t)syscall(SYS_gettid);
}

static void *helper(void *arg)
{
    (void)arg;
    helper_tid = (pid_t)syscall(SYS_gettid);
    helper_ready = 1;
    for (;;)
        pause();
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* The IDs /proc/self/timers lists, sorted; their number. */
static int proc_timer_ids(int *ids)
{
    FILE *f = fopen("/proc/self/timers", "r");
    char line[256];
    int n = 0, id;
    if (!f) {
        FAIL_ERRNO("open /proc/self/timers");
        return 0;
    }
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "ID: %d", &id) == 1 && n < MAX_TIMERS)
            ids[n++] = id;
    fclose(f);
    qsort(ids, (size_t)n, sizeof(ids[0]), by_value);
    return n;
}

static void create(int which, clockid_t clock, int notify, int sig, uintptr_t sival)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof(ev));
    ev.sigev_notify = notify;
    ev.sigev_signo = sig;
    ev.sigev_value.sival_ptr = (void *)sival;
    if (notify == SIGEV_THREAD_ID)
        ev.sigev_notify_thread_id = helper_tid;
    if (timer_create(clock, &ev, which < 0 ? &deleted : &timers[which]) != 0) {
        FAIL_ERRNO("timer_create");
        exit(1);
    }
}

static void arm(int which, long long value_ns, long long interval_ns)
{
    struct itimerspec spec = {
        .it_value = {value_ns / NSEC, value_ns % NSEC},
        .it_interval = {interval_ns / NSEC, interval_ns % NSEC},
    };
    if (timer_settime(timers[which], 0, &spec, NULL) != 0)
        FAIL_ERRNO("timer_settime");
}

static void setup(void)
{
    struct sigaction sa;
    pthread_t thread;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_timer;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGALRM, SIGPROF, SIGRTMIN, SIGRTMIN + 1, SIGRTMIN + 2, SIGRTMIN + 3};
    for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) != 0)
            FAIL_ERRNO("sigaction");

    sigset_t blocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGRTMIN + 4);
    sigprocmask(SIG_BLOCK, &blocked, NULL); /* the helper thread inherits the mask */
    if (pthread_create(&thread, NULL, helper, NULL) != 0) {
        fail("pthread_create failed");
        exit(1);
    }
    while (!helper_ready)
        usleep(1000);

    create(T_PERIODIC, CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN, sival_data());
    create(T_THREAD, CLOCK_BOOTTIME, SIGEV_THREAD_ID, SIGRTMIN + 1, 0x7104);
    create(-1, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 2, 0);
    create(T_DISARMED, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 2, 0xd15a);
    create(T_MONOTONIC, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, 0x3030);
    create(T_NONE, CLOCK_MONOTONIC, SIGEV_NONE, 0, 0);
    create(T_BLOCKED, CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 4, 0xb10c);
    if (timer_delete(deleted) != 0)
        FAIL_ERRNO("timer_delete");

    arm(T_PERIODIC, period_ns[T_PERIODIC], period_ns[T_PERIODIC]);
    arm(T_THREAD, period_ns[T_THREAD], period_ns[T_THREAD]);
    arm(T_MONOTONIC, 4 * NSEC, 0);
    arm(T_NONE, 100 * NSEC, period_ns[T_NONE]);
    arm(T_BLOCKED, period_ns[T_BLOCKED], period_ns[T_BLOCKED]);

    struct itimerval it = {.it_value = {0, 300000}, .it_interval = {0, 100000}};
    if (setitimer(ITIMER_PROF, &it, NULL) != 0)
        FAIL_ERRNO("setitimer(ITIMER_PROF)");
    alarm(4);
}

/* Check the state that can be looked at without waiting. */
static void check_state(const int *ids_before, int n_before)
{
    int ids[MAX_TIMERS];
    int n = proc_timer_ids(ids);
    if (n != n_before) {
        fail("/proc/self/timers lists %d timers, %d before", n, n_before);
    } else {
        for (int i = 0; i < n; i++)
            if (ids[i] != ids_before[i])
                fail("/proc/self/timers lists ID %d where it listed %d", ids[i], ids_before[i]);
    }

    for (int i = 0; i < NTIMERS; i++) {
        struct itimerspec spec;
        if (timer_gettime(timers[i], &spec) != 0) {
            fail("timer_gettime on timer %d (ID %ld): %s", i, (long)(intptr_t)timers[i],
                 strerror(errno));
            continue;
        }
        long long interval = spec.it_interval.tv_sec * NSEC + spec.it_interval.tv_nsec;
        long long value = spec.it_value.tv_sec * NSEC + spec.it_value.tv_nsec;
        if (interval != period_ns[i])
            fail("timer %d has interval %lld ns, expected %lld", i, interval, period_ns[i]);
        if (i == T_DISARMED && value != 0)
            fail("the disarmed timer is armed: %lld ns left", value);
        if (i == T_NONE && (value <= 90 * NSEC || value > 100 * NSEC))
            fail("the SIGEV_NONE timer has %lld ns left, expected a little under 100 s", value);
        if (i == T_MONOTONIC && (value <= NSEC || value > 4 * NSEC))
            fail("the monotonic timer has %lld ns left, expected 1 to 4 s", value);
    }
    struct itimerspec spec;
    if (timer_gettime(deleted, &spec) == 0)
        fail("timer_gettime works on the deleted timer ID %ld", (long)(intptr_t)deleted);
    else if (errno != EINVAL)
        fail("timer_gettime on the deleted timer: %s, expected EINVAL", strerror(errno));

    struct itimerval it;
    if (getitimer(ITIMER_PROF, &it) != 0)
        FAIL_ERRNO("getitimer(ITIMER_PROF)");
    else {
        CHECK_EQ("ITIMER_PROF interval (us)", it.it_interval.tv_sec * 1000000 + it.it_interval.tv_usec,
                 100000);
        long us = it.it_value.tv_sec * 1000000 + it.it_value.tv_usec;
        if (us <= 0 || us > 320000) /* the kernel adds a tick to every CPU itimer it arms */
            fail("ITIMER_PROF has %ld us left, expected up to 300 ms and a tick or two", us);
    }
    if (getitimer(ITIMER_REAL, &it) != 0)
        FAIL_ERRNO("getitimer(ITIMER_REAL)");
    else if (it.it_value.tv_sec == 0 && it.it_value.tv_usec == 0)
        fail("the alarm is no longer armed");
}

/* Wait until `done` says so or `seconds` pass; signals wake the sleep. */
static void wait_for(int (*done)(void), double seconds)
{
    long long deadline = now_ns() + (long long)(seconds * NSEC);
    while (!done() && now_ns() < deadline) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
}

static int all_fired(void)
{
    return alrm.after_usr1 && mono.after_usr1 && periodic.after_usr1 >= 3 && thread_sig.after_usr1;
}

static int prof_fired_twice(void)
{
    return prof.after_usr1 >= 2;
}

static void check_fired_at(const char *what, struct seen *s, int count_before)
{
    if (s->count != count_before + 1 || !s->after_usr1) {
        fail("%s fired %d times before SIGUSR1 and %d after, expected once, after",
             what, s->count - s->after_usr1, s->after_usr1);
        return;
    }
    double after = (s->first_after_usr1_ns - usr1_ns) / 1e9;
    if (after < 1.5 || after > 5.5)
        fail("%s fired %.3f s after SIGUSR1, expected 1.5 to 5.5 s", what, after);
    else
        say("%s fired %.3f s after SIGUSR1\n", what, after);
}

/* Take the blocked timer's signals: the one pending since before READY, then the next. */
static void check_blocked(void)
{
    sigset_t set;
    siginfo_t si;
    struct timespec wait = {1, 0};
    sigemptyset(&set);
    sigaddset(&set, SIGRTMIN + 4);
    int overruns = 0;
    for (int i = 0; i < 2; i++) {
        int got;
        do /* the other timers' handled signals interrupt the wait: wait on */
            got = sigtimedwait(&set, &si, &wait);
        while (got < 0 && errno == EINTR);
        if (got != SIGRTMIN + 4) {
            fail("no signal %d from the blocked timer: %s", i, strerror(errno));
            return;
        }
        CHECK_EQ("blocked timer si_code", si.si_code, SI_TIMER);
        CHECK_EQ("blocked timer sival", (uintptr_t)si.si_value.sival_ptr, 0xb10c);
        CHECK_EQ("blocked timer si_timerid", si.si_timerid, (int)(intptr_t)timers[T_BLOCKED]);
        overruns += si.si_overrun;
    }
    /* Blocked for seconds at a 50 ms period: expiries were counted (a restored pending
     * signal has the count it had when queued; the restored timer's own one counts on). */
    if (overruns < 1)
        fail("the blocked timer's signals have %d overruns in all, expected some", overruns);
}

static void burn_cpu(void)
{
    volatile unsigned long x = 0;
    long long deadline = now_ns() + 4 * NSEC;
    while (!prof_fired_twice() && now_ns() < deadline)
        for (int i = 0; i < 100000; i++)
            x += i;
}

int main(void)
{
    int ids_before[MAX_TIMERS];
    workload_init("timers", 0);
    setup();
    int n_before = proc_timer_ids(ids_before);
    if (n_before != NTIMERS)
        fail("/proc/self/timers lists %d timers, expected %d", n_before, NTIMERS);
    ready();
    while (!usr1_received)
        pause(); /* the periodic timers wake it; only SIGUSR1 ends the wait */
    usr1_ns = now_ns();
    int alarms_before = alrm.count, mono_before = mono.count;

    check_state(ids_before, n_before);
    wait_for(all_fired, 6.0);
    check_fired_at("the alarm", &alrm, alarms_before);
    check_fired_at("the monotonic timer", &mono, mono_before);
    if (periodic.after_usr1 < 3)
        fail("the periodic timer fired %d times in the wait, expected 3 or more",
             periodic.after_usr1);
    CHECK_EQ("periodic timer si_code", periodic.code, SI_TIMER);
    CHECK_EQ("periodic timer sival", periodic.sival, sival_data());
    CHECK_EQ("periodic timer si_timerid", periodic.timerid, (int)(intptr_t)timers[T_PERIODIC]);
    if (!thread_sig.after_usr1)
        fail("the thread timer did not fire after SIGUSR1");
    CHECK_EQ("thread timer target", thread_sig.tid, helper_tid);
    CHECK_EQ("thread timer sival", thread_sig.sival, 0x7104);
    CHECK_EQ("thread timer si_timerid", thread_sig.timerid, (int)(intptr_t)timers[T_THREAD]);
    if (disarmed_sig.count)
        fail("the disarmed timer fired %d times", disarmed_sig.count);

    check_blocked();
    burn_cpu();
    if (!prof_fired_twice())
        fail("ITIMER_PROF fired %d times while burning CPU, expected 2 or more", prof.after_usr1);
    finish();
}

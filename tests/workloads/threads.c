/*
 * threads: a process with many threads, each blocked in a different way and
 * each with its own per-thread state.  argv[1] is the number of extra threads
 * (default 6).
 *
 * Thread i blocks by kind i % 6:
 *   0 pthread_cond_wait on a shared condvar,
 *   1 a 20 ms nanosleep loop polling a "go" flag,
 *   2 read() on its own pipe,
 *   3 poll() on its own pipe,
 *   4 FUTEX_WAIT on a shared word,
 *   5 returns at once and is left joinable (an exited, unjoined thread).
 *
 * Before READY every thread (and the main thread) records its TID, a __thread
 * value and the address of it, the thread pointer, its own sigaltstack
 * (distinct buffer and size), its blocked signal mask (SIGUSR1 plus
 * SIGRTMIN + i % 8), its rounding mode (fesetround by i % 4, x87 and SSE), its
 * name "t<i>", its robust futex list, its clear_child_tid address and whether
 * glibc's rseq area is registered.  On SIGUSR1 the main thread wakes every
 * thread; each one compares all of that against what it recorded, reports
 * FAIL lines itself and bumps a shared counter.  The main thread checks
 * itself, the counter, the number of tasks in /proc/self/task, and joins
 * every thread (10 s guard), checking each return value.
 */
#include "common.h"

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31) /* linux/signal.h: disarmed while a handler runs on it */
#endif

#include <dirent.h>
#include <fenv.h>
#include <limits.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <time.h>

enum kind { K_COND, K_SLEEP, K_READ, K_POLL, K_FUTEX, K_RETURN, NKINDS };
static const char *const kind_name[NKINDS] = {
    "cond", "nanosleep", "read", "poll", "futex", "return",
};

static const int round_modes[4] = {FE_TONEAREST, FE_DOWNWARD, FE_UPWARD, FE_TOWARDZERO};

#define RSEQ_NOT_USED (-1)

/* Everything a thread records about itself before READY and compares afterwards. */
struct snap {
    pid_t tid;
    void *tp;
    uint64_t *tls_addr;
    uint64_t tls_value;
    void *ss_sp;
    size_t ss_size;
    int ss_flags;
    uint64_t mask; /* the kernel's 64-bit blocked mask */
    int round;
    unsigned mxcsr_rc;
    char name[16];
    void *robust_head;
    size_t robust_len;
    int tid_address_ok;
    uint64_t tid_address;
    int rseq; /* errno of re-registering glibc's area (EBUSY), or RSEQ_NOT_USED */
};

struct thr {
    int idx;
    enum kind kind;
    pthread_t th;
    int pipe[2];
    struct snap before;
};

static __thread uint64_t tls_value;

static int nthreads;
static struct thr *thr;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t main_cv = PTHREAD_COND_INITIALIZER; /* main waits for set-up / woken counts */
static pthread_cond_t go_cv = PTHREAD_COND_INITIALIZER;   /* kind K_COND waits here */
static pthread_cond_t release_cv = PTHREAD_COND_INITIALIZER;
static int set_up;   /* threads that finished recording */
static int go;       /* under mu: the check was requested */
static int woken;    /* under mu: threads that woke and checked themselves */
static int released; /* under mu: threads may return */
static volatile int go_flag;    /* for the nanosleep threads */
static volatile int futex_word; /* for the futex threads */

static void *thread_ret(int idx)
{
    return (void *)(uintptr_t)(0x7a000000u + (unsigned)idx);
}

static unsigned read_mxcsr_rc(void)
{
    unsigned m;
    asm volatile("stmxcsr %0" : "=m"(m));
    return (m >> 13) & 3;
}

static uint64_t blocked_mask(void)
{
    uint64_t m = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, sizeof(m)) != 0)
        FAIL_ERRNO("rt_sigprocmask");
    return m;
}

/*
 * Registering glibc's rseq area again answers EBUSY when it is registered.
 * glibc registers 32 bytes; newer ones advertise a smaller __rseq_size, which
 * the kernel rejects with EINVAL, so 32 is tried as well.
 */
static int rseq_probe(void)
{
    if (__rseq_size == 0)
        return RSEQ_NOT_USED;
    void *area = (char *)__builtin_thread_pointer() + __rseq_offset;
    if (syscall(SYS_rseq, area, __rseq_size, 0, RSEQ_SIG) == 0)
        return 0;
    int err = errno;
    if (err == EINVAL && __rseq_size != 32) {
        if (syscall(SYS_rseq, area, 32, 0, RSEQ_SIG) == 0)
            return 0;
        err = errno;
    }
    return err;
}

static size_t altstack_size(int idx)
{
    return 32768 + 512 * (size_t)idx;
}

/* Give the calling thread (number idx; the main thread is nthreads) its own state. */
static void set_up_self(int idx, int extra_blocked)
{
    tls_value = 0x5eed000000000000ull + (uint64_t)idx * 0x10001;

    /* odd threads disarm their alternate stack while a handler runs on it */
    stack_t ss = {.ss_size = altstack_size(idx), .ss_flags = idx % 2 ? SS_AUTODISARM : 0};
    ss.ss_sp = malloc(ss.ss_size);
    if (!ss.ss_sp || sigaltstack(&ss, NULL) != 0)
        fail("thread %d: sigaltstack failed: %s", idx, strerror(errno));

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, extra_blocked);
    if (idx != nthreads)
        sigaddset(&set, SIGUSR1);
    if (pthread_sigmask(SIG_SETMASK, &set, NULL) != 0)
        fail("thread %d: pthread_sigmask failed", idx);

    if (fesetround(round_modes[idx % 4]) != 0)
        fail("thread %d: fesetround failed", idx);

    char name[16];
    if (idx == nthreads)
        snprintf(name, sizeof(name), "threads-main");
    else
        snprintf(name, sizeof(name), "t%d", idx);
    int e = pthread_setname_np(pthread_self(), name);
    if (e != 0)
        fail("thread %d: pthread_setname_np failed: %s", idx, strerror(e));
}

static void snapshot(struct snap *s)
{
    memset(s, 0, sizeof(*s));
    s->tid = (pid_t)syscall(SYS_gettid);
    s->tp = __builtin_thread_pointer();
    s->tls_addr = &tls_value;
    s->tls_value = tls_value;
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0)
        FAIL_ERRNO("sigaltstack(NULL)");
    s->ss_sp = ss.ss_sp;
    s->ss_size = ss.ss_size;
    s->ss_flags = ss.ss_flags;
    s->mask = blocked_mask();
    s->round = fegetround();
    s->mxcsr_rc = read_mxcsr_rc();
    int e = pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    if (e != 0)
        snprintf(s->name, sizeof(s->name), "<error %d>", e);
    if (syscall(SYS_get_robust_list, 0, &s->robust_head, &s->robust_len) != 0)
        FAIL_ERRNO("get_robust_list");
    /* The kernel stores a native (64-bit) pointer here even for 32-bit tasks. */
    s->tid_address_ok = prctl(PR_GET_TID_ADDRESS, &s->tid_address) == 0;
    s->rseq = rseq_probe();
}

#define CMP(field, fmt, cast)                                                                  \
    do {                                                                                       \
        if (now.field != before->field)                                                        \
            fail("thread %d (%s): " #field " is " fmt ", was " fmt, idx, kind, cast now.field,  \
                 cast before->field);                                                          \
    } while (0)

/* Compare the calling thread's state with what it recorded before READY. */
static void check_self(int idx, const char *kind, const struct snap *before)
{
    struct snap now;
    snapshot(&now);
    CMP(tid, "%d", (int));
    CMP(tp, "%p", (void *));
    CMP(tls_addr, "%p", (void *));
    CMP(tls_value, "0x%llx", (unsigned long long));
    CMP(ss_sp, "%p", (void *));
    CMP(ss_size, "%zu", (size_t));
    CMP(ss_flags, "0x%x", (int));
    CMP(mask, "0x%llx", (unsigned long long));
    CMP(round, "0x%x", (int));
    CMP(mxcsr_rc, "%u", (unsigned));
    CMP(robust_head, "%p", (void *));
    CMP(robust_len, "%zu", (size_t));
    CMP(tid_address_ok, "%d", (int));
    CMP(tid_address, "0x%llx", (unsigned long long));
    if (now.rseq != before->rseq)
        fail("thread %d (%s): re-registering rseq answered %s, before READY %s", idx, kind,
             now.rseq ? strerror(now.rseq) : "success", strerror(before->rseq));
    if (strcmp(now.name, before->name) != 0)
        fail("thread %d (%s): name is '%s', was '%s'", idx, kind, now.name, before->name);
    if ((void *)pthread_self() != now.tp)
        fail("thread %d (%s): pthread_self %p is not the thread pointer %p", idx, kind,
             (void *)pthread_self(), now.tp);
}

/* Sanity checks of a fresh snapshot, so that a broken recording cannot pass unnoticed. */
static void check_recorded(int idx, const struct snap *s, int extra_blocked)
{
    if (s->ss_size != altstack_size(idx) || s->ss_flags != (idx % 2 ? (int)SS_AUTODISARM : 0))
        fail("thread %d: sigaltstack reads back size %zu flags 0x%x", idx, s->ss_size,
             s->ss_flags);
    uint64_t want = 1ull << (extra_blocked - 1);
    if (idx != nthreads)
        want |= 1ull << (SIGUSR1 - 1);
    if (s->mask != want)
        fail("thread %d: blocked mask 0x%llx, expected 0x%llx", idx,
             (unsigned long long)s->mask, (unsigned long long)want);
    if (s->round != round_modes[idx % 4])
        fail("thread %d: rounding mode 0x%x, expected 0x%x", idx, s->round,
             round_modes[idx % 4]);
    if (s->rseq != RSEQ_NOT_USED && s->rseq != EBUSY)
        fail("thread %d: re-registering rseq answered %s, expected EBUSY", idx,
             s->rseq ? strerror(s->rseq) : "success");
}

static void wait_blocking(struct thr *t)
{
    char b;
    ssize_t n;
    switch (t->kind) {
    case K_COND:
        pthread_mutex_lock(&mu);
        while (!go)
            pthread_cond_wait(&go_cv, &mu);
        pthread_mutex_unlock(&mu);
        break;
    case K_SLEEP:
        while (!go_flag) {
            struct timespec d = {0, 20 * 1000 * 1000};
            nanosleep(&d, NULL);
        }
        break;
    case K_POLL:
        for (;;) {
            struct pollfd p = {.fd = t->pipe[0], .events = POLLIN};
            int r = poll(&p, 1, -1);
            if (r == 1 && (p.revents & POLLIN))
                break;
            fail("thread %d (poll): poll returned %d revents 0x%x: %s", t->idx, r, p.revents,
                 r < 0 ? strerror(errno) : "-");
            if (r == 1)
                return;
        }
        /* fall through: read the byte that woke the poll */
    case K_READ:
        n = read(t->pipe[0], &b, 1);
        while (n < 0 && errno == EINTR) {
            fail("thread %d (%s): read interrupted", t->idx, kind_name[t->kind]);
            n = read(t->pipe[0], &b, 1);
        }
        if (n != 1 || b != 'g')
            fail("thread %d (%s): read returned %zd (byte 0x%x)", t->idx, kind_name[t->kind], n,
                 n == 1 ? (unsigned char)b : 0);
        break;
    case K_FUTEX:
        while (__atomic_load_n(&futex_word, __ATOMIC_ACQUIRE) == 0)
            syscall(SYS_futex, &futex_word, FUTEX_WAIT, 0, NULL, NULL, 0);
        break;
    case K_RETURN:
    case NKINDS:
        break;
    }
}

static void *thread_main(void *arg)
{
    struct thr *t = arg;
    int extra = SIGRTMIN + t->idx % 8;
    set_up_self(t->idx, extra);
    snapshot(&t->before);
    check_recorded(t->idx, &t->before, extra);

    pthread_mutex_lock(&mu);
    set_up++;
    pthread_cond_signal(&main_cv);
    pthread_mutex_unlock(&mu);
    if (t->kind == K_RETURN)
        return thread_ret(t->idx);

    wait_blocking(t);
    check_self(t->idx, kind_name[t->kind], &t->before);

    pthread_mutex_lock(&mu);
    woken++;
    pthread_cond_signal(&main_cv);
    while (!released)
        pthread_cond_wait(&release_cv, &mu);
    pthread_mutex_unlock(&mu);
    return thread_ret(t->idx);
}

static void deadline_in(struct timespec *ts, int seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += seconds;
}

/* Wait (under mu) until *counter reaches want; FAIL after 10 s. */
static int wait_count(int *counter, int want, const char *what)
{
    struct timespec dl;
    deadline_in(&dl, 10);
    pthread_mutex_lock(&mu);
    while (*counter < want) {
        if (pthread_cond_timedwait(&main_cv, &mu, &dl) == ETIMEDOUT)
            break;
    }
    int got = *counter;
    pthread_mutex_unlock(&mu);
    if (got != want)
        fail("%d threads %s after 10 s, expected %d", got, what, want);
    return got == want;
}

static int count_tasks(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d) {
        FAIL_ERRNO("opendir /proc/self/task");
        return -1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* Wait until the exited thread's task is gone, so the checkpoint sees it exited. */
static void wait_task_gone(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/task/%d", tid);
    for (int i = 0; i < 10000; i++) {
        if (access(path, F_OK) != 0)
            return;
        struct timespec d = {0, 1000 * 1000};
        nanosleep(&d, NULL);
    }
    fail("the returned thread %d still exists after 10 s", tid);
}

int main(int argc, char **argv)
{
    workload_init("threads", 0);
    nthreads = argc > 1 ? atoi(argv[1]) : 6;
    if (nthreads < 0 || nthreads > 1000) {
        fail("bad thread count '%s'", argv[1]);
        finish();
    }
    thr = calloc((size_t)nthreads + 1, sizeof(*thr));

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, NULL); /* no thread ever sees SIGUSR1 */

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    int live = 0;
    for (int i = 0; i < nthreads; i++) {
        struct thr *t = &thr[i];
        t->idx = i;
        t->kind = (enum kind)(i % NKINDS);
        t->pipe[0] = t->pipe[1] = -1;
        if ((t->kind == K_READ || t->kind == K_POLL) && pipe(t->pipe) != 0) {
            FAIL_ERRNO("pipe");
            finish();
        }
        int e = pthread_create(&t->th, &attr, thread_main, t);
        if (e != 0) {
            fail("pthread_create %d failed: %s", i, strerror(e));
            finish();
        }
        if (t->kind != K_RETURN)
            live++;
    }
    pthread_attr_destroy(&attr);

    struct snap main_before;
    int main_extra = SIGRTMIN + 7;
    set_up_self(nthreads, main_extra); /* also unblocks SIGUSR1 in this thread only */
    snapshot(&main_before);
    check_recorded(nthreads, &main_before, main_extra);
    if (main_before.tid != getpid())
        fail("main thread tid %d is not the pid %d", main_before.tid, getpid());

    if (!wait_count(&set_up, nthreads, "set up"))
        finish();
    for (int i = 0; i < nthreads; i++)
        if (thr[i].kind == K_RETURN)
            wait_task_gone(thr[i].before.tid);
    int tasks = count_tasks();
    if (tasks != 1 + live)
        fail("%d tasks in /proc/self/task before READY, expected %d", tasks, 1 + live);
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    /* Wake every thread, each the way it sleeps. */
    pthread_mutex_lock(&mu);
    go = 1;
    pthread_cond_broadcast(&go_cv);
    pthread_mutex_unlock(&mu);
    go_flag = 1;
    __atomic_store_n(&futex_word, 1, __ATOMIC_RELEASE);
    if (syscall(SYS_futex, &futex_word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0) < 0)
        FAIL_ERRNO("FUTEX_WAKE");
    for (int i = 0; i < nthreads; i++)
        if (thr[i].pipe[1] >= 0 && write(thr[i].pipe[1], "g", 1) != 1)
            fail("waking thread %d: write failed: %s", i, strerror(errno));

    check_self(nthreads, "main", &main_before);

    wait_count(&woken, live, "woke and checked themselves");
    tasks = count_tasks();
    if (tasks != 1 + live)
        fail("%d tasks in /proc/self/task after waking, expected %d", tasks, 1 + live);

    pthread_mutex_lock(&mu);
    released = 1;
    pthread_cond_broadcast(&release_cv);
    pthread_mutex_unlock(&mu);

    struct timespec dl;
    deadline_in(&dl, 10);
    for (int i = 0; i < nthreads; i++) {
        void *ret = NULL;
        int e = pthread_timedjoin_np(thr[i].th, &ret, &dl);
        if (e != 0)
            fail("joining thread %d (%s): %s", i, kind_name[thr[i].kind], strerror(e));
        else if (ret != thread_ret(i))
            fail("thread %d (%s) returned %p, expected %p", i, kind_name[thr[i].kind], ret,
                 thread_ret(i));
    }
    finish();
}

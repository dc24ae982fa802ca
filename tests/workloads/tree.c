/*
 * tree: process trees.  argv[1] picks the mode:
 *
 * family (default) -- the top process P has these children:
 *   A   setsid() (own session) with grandchild A1 in A's session; A and A1
 *       each have an extra thread (condvar wait / nanosleep loop);
 *   B   its own process group (setpgid(0,0)), with child B1 in that group;
 *   M   in the process group of L, whose leader L has exited and was reaped:
 *       no process with PID L is left, the group lives on through M;
 *   Z1  a zombie that exited with _exit(7), Z2 a zombie killed by SIGTERM,
 *       both left unreaped until the check;
 *   C   blocks on its control pipe while a pipe P->C holds unread data (read
 *       and compared by C after the check) and a pipe C->P too (read by P);
 *   D   shares P's open file description of shared.txt: D set O_APPEND
 *       before READY and P wrote 10 bytes; after the check D writes 5 more
 *       and P must see offset 15 and the same flags;
 *   E   shares a MAP_SHARED|MAP_ANONYMOUS region and a memfd mapping with P
 *       and has its own copy of a private region; all filled with patterns
 *       before READY, after the check each side writes new patterns and the
 *       other must see them in the shared regions only.
 *   Every process compares its pid, ppid (all but P, whose parent is whoever
 *   restored it), process group and session.
 *
 * wide [N] -- N processes in all (default 50): process i > 0 is a child of
 *   i - 1, except that every i divisible by 5 is a child of i / 5, so the
 *   tree mixes chains and fan-out.  Each compares pid, ppid, pgid and sid.
 *
 * mixed -- P execs the other flavour of this program as its child, which
 *   execs P's flavour as the grandchild: 64 -> 32 -> 64 or 32 -> 64 -> 32.
 *   Each has two extra threads (condvar wait, nanosleep loop) and checks its
 *   ids, TIDs and pointer size.  The control fds are passed in argv.
 *
 * Only P prints READY and the verdict; SIGUSR1 goes to P alone.  Every other
 * process blocks SIGUSR1 and waits in read() on a control pipe from its
 * parent: a byte means "check now" (passed on to its own children), EOF means
 * the parent died and it _exits(2) silently.  Each child exits 0 when it and
 * all of its children passed, else 1; parents wait for that with a 10 s
 * guard.  Before READY every process has written one byte to a "ready" pipe
 * that P counts.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define TIMEOUT_MS 10000

static const char *role = "P";
static int ready_w = -1; /* write end of the ready pipe that P counts */

static void fail_errno(const char *what)
{
    fail("%s: %s failed: %s", role, what, strerror(errno));
}

static void expect_eq(const char *what, long long got, long long want)
{
    if (got != want)
        fail("%s: %s is %lld, expected %lld", role, what, got, want);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec d = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&d, NULL);
}

/* Close every fd above 2 except the ones listed. */
static void keep_fds(const int *keep, int n)
{
    for (int fd = 3; fd < 1024; fd++) {
        int k = 0;
        for (int i = 0; i < n; i++)
            if (keep[i] == fd)
                k = 1;
        if (!k)
            close(fd);
    }
}

static void block_usr1(void)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigprocmask(SIG_BLOCK, &s, NULL);
}

/* A child tells P it is set up ('r') or that its set-up failed ('F'). */
static void child_ready(int ok)
{
    if (write(ready_w, ok ? "r" : "F", 1) != 1)
        fail_errno("write to the ready pipe");
    close(ready_w);
    ready_w = -1;
}

/* P waits for count bytes on the ready pipe; a failure or a 10 s wait ends the run. */
static void await_ready(int fd, int count)
{
    long long deadline = now_ms() + TIMEOUT_MS;
    while (count > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long long left = deadline - now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) == 0) {
            fail("%s: %d processes not set up after 10 s", role, count);
            finish();
        }
        char buf[64];
        ssize_t n = read(fd, buf, (size_t)count < sizeof(buf) ? (size_t)count : sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno == EINTR)
                continue;
            fail("%s: ready pipe read returned %zd", role, n);
            finish();
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != 'r') {
                fail("%s: a child failed to set up", role);
                finish();
            }
        count -= (int)n;
    }
}

/* Block until the parent writes a byte; EOF (parent gone) ends this process silently. */
static char wait_ctl(int fd)
{
    char c;
    for (;;) {
        ssize_t n = read(fd, &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno == EINTR) {
            fail("%s: read on the control pipe interrupted", role);
            continue;
        }
        _exit(2);
    }
}

/* Read exactly len bytes from fd within 10 s; returns 1, or 0 (reported). */
static int read_timed(int fd, void *buf, size_t len, const char *what)
{
    long long deadline = now_ms() + TIMEOUT_MS;
    char *p = buf;
    while (len > 0) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        long long left = deadline - now_ms();
        int r = left > 0 ? poll(&pf, 1, (int)left) : 0;
        if (r < 0 && errno == EINTR)
            continue;
        ssize_t n = r == 1 ? read(fd, p, len) : -1;
        if (n <= 0) {
            fail("%s: no %s within 10 s", role, what);
            return 0;
        }
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Wait up to 10 s for one byte on fd; returns it, or 0 (reported). */
static char wait_byte(int fd, const char *what)
{
    char c;
    return read_timed(fd, &c, 1, what) ? c : 0;
}

static void send_byte(int fd, char c, const char *who)
{
    if (write(fd, &c, 1) != 1)
        fail("%s: writing '%c' to %s failed: %s", role, c, who, strerror(errno));
}

/* Reap pid within the deadline; returns its wait status, or -1 (reported). */
static int reap_by(pid_t pid, long long deadline, const char *who)
{
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0) {
            fail("%s: waitpid(%s, pid %d) failed: %s", role, who, pid, strerror(errno));
            return -1;
        }
        if (now_ms() > deadline) {
            fail("%s: %s (pid %d) did not exit within 10 s", role, who, pid);
            return -1;
        }
        sleep_ms(5);
    }
}

/* Reap a child that must have passed (exit 0). */
static void reap_passed(pid_t pid, long long deadline, const char *who)
{
    int st = reap_by(pid, deadline, who);
    if (st == -1)
        return;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail("%s: %s (pid %d) did not pass: %s %d", role, who, pid,
             WIFEXITED(st) ? "exit status" : "killed by signal",
             WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
}

static __attribute__((noreturn)) void child_exit(void)
{
    _exit(workload_failures ? 1 : 0);
}

/* ---- ids ---- */

struct ids {
    pid_t pid, tid, ppid, pgid, sid;
};

static void get_ids(struct ids *s)
{
    s->pid = getpid();
    s->tid = (pid_t)syscall(SYS_gettid);
    s->ppid = getppid();
    s->pgid = getpgid(0);
    s->sid = getsid(0);
}

static void check_ids(const struct ids *before, int check_ppid)
{
    struct ids now;
    get_ids(&now);
    expect_eq("pid", now.pid, before->pid);
    expect_eq("tid", now.tid, before->tid);
    if (check_ppid)
        expect_eq("ppid", now.ppid, before->ppid);
    expect_eq("process group", now.pgid, before->pgid);
    expect_eq("session", now.sid, before->sid);
}

/* ---- extra threads that sleep until woken ---- */

enum { SLEEP_COND, SLEEP_NANO };

struct sleeper {
    pthread_t th;
    int kind;
    pid_t pid, tid;
    int started; /* under sl_mu */
};

static pthread_mutex_t sl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sl_cv = PTHREAD_COND_INITIALIZER;
static int sl_go;             /* under sl_mu */
static volatile int sl_go_flag; /* for the nanosleep loop */

static void *sleeper_main(void *arg)
{
    struct sleeper *s = arg;
    pthread_mutex_lock(&sl_mu);
    s->pid = getpid();
    s->tid = (pid_t)syscall(SYS_gettid);
    s->started = 1;
    pthread_cond_broadcast(&sl_cv);
    if (s->kind == SLEEP_COND) {
        while (!sl_go)
            pthread_cond_wait(&sl_cv, &sl_mu);
        pthread_mutex_unlock(&sl_mu);
    } else {
        pthread_mutex_unlock(&sl_mu);
        while (!sl_go_flag)
            sleep_ms(20);
    }
    if (getpid() != s->pid || (pid_t)syscall(SYS_gettid) != s->tid)
        fail("%s: %s thread is pid %d tid %d, was pid %d tid %d", role,
             s->kind == SLEEP_COND ? "condvar" : "nanosleep", getpid(),
             (int)syscall(SYS_gettid), s->pid, s->tid);
    return s;
}

/* Start a sleeper thread and wait until it has recorded its ids. */
static void start_sleeper(struct sleeper *s, int kind)
{
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    int e = pthread_create(&s->th, NULL, sleeper_main, s);
    if (e != 0) {
        fail("%s: pthread_create failed: %s", role, strerror(e));
        return;
    }
    pthread_mutex_lock(&sl_mu);
    while (!s->started)
        pthread_cond_wait(&sl_cv, &sl_mu);
    pthread_mutex_unlock(&sl_mu);
}

static void wake_sleepers(void)
{
    pthread_mutex_lock(&sl_mu);
    sl_go = 1;
    pthread_cond_broadcast(&sl_cv);
    pthread_mutex_unlock(&sl_mu);
    sl_go_flag = 1;
}

static void join_sleepers(struct sleeper *s, int n)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += TIMEOUT_MS / 1000;
    for (int i = 0; i < n; i++) {
        void *ret = NULL;
        int e = pthread_timedjoin_np(s[i].th, &ret, &dl);
        if (e != 0)
            fail("%s: joining thread %d failed: %s", role, s[i].tid, strerror(e));
        else if (ret != &s[i])
            fail("%s: thread %d returned %p", role, s[i].tid, ret);
    }
}

/* The number of threads in this process, from /proc/self/status. */
static int count_tasks(void)
{
    int n = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

/* ================================ family ================================ */

static pid_t top_pid;

static __attribute__((noreturn)) void run_a1(int ctl, pid_t a)
{
    role = "A1";
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, a);
    expect_eq("session (A's)", me.sid, a);
    expect_eq("process group (A's)", me.pgid, a);
    struct sleeper sl;
    start_sleeper(&sl, SLEEP_NANO);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("A1: unexpected control byte");
    expect_eq("threads", count_tasks(), 2);
    wake_sleepers();
    check_ids(&me, 1);
    join_sleepers(&sl, 1);
    child_exit();
}

static __attribute__((noreturn)) void run_a(int ctl)
{
    role = "A";
    if (setsid() < 0)
        fail_errno("setsid");
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    expect_eq("session (its own)", me.sid, me.pid);
    expect_eq("process group (its own)", me.pgid, me.pid);
    int p[2];
    if (pipe(p) != 0)
        fail_errno("pipe");
    pid_t a1 = fork();
    if (a1 == 0) {
        int keep[] = {p[0], ready_w};
        keep_fds(keep, 2);
        run_a1(p[0], me.pid);
    }
    if (a1 < 0)
        fail_errno("fork A1");
    close(p[0]);
    struct sleeper sl;
    start_sleeper(&sl, SLEEP_COND);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("A: unexpected control byte");
    send_byte(p[1], 'c', "A1");
    expect_eq("threads", count_tasks(), 2);
    wake_sleepers();
    check_ids(&me, 1);
    join_sleepers(&sl, 1);
    reap_passed(a1, now_ms() + TIMEOUT_MS, "A1");
    child_exit();
}

static __attribute__((noreturn)) void run_b1(int ctl, pid_t b)
{
    role = "B1";
    if (setpgid(0, b) != 0)
        fail_errno("setpgid(0, B)");
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, b);
    expect_eq("process group (B's)", me.pgid, b);
    expect_eq("session (P's)", me.sid, top_pid);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("B1: unexpected control byte");
    check_ids(&me, 1);
    child_exit();
}

static __attribute__((noreturn)) void run_b(int ctl)
{
    role = "B";
    if (setpgid(0, 0) != 0)
        fail_errno("setpgid(0, 0)");
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    expect_eq("process group (its own)", me.pgid, me.pid);
    expect_eq("session (P's)", me.sid, top_pid);
    int p[2];
    if (pipe(p) != 0)
        fail_errno("pipe");
    pid_t b1 = fork();
    if (b1 == 0) {
        int keep[] = {p[0], ready_w};
        keep_fds(keep, 2);
        run_b1(p[0], me.pid);
    }
    if (b1 < 0)
        fail_errno("fork B1");
    close(p[0]);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("B: unexpected control byte");
    send_byte(p[1], 'c', "B1");
    check_ids(&me, 1);
    reap_passed(b1, now_ms() + TIMEOUT_MS, "B1");
    child_exit();
}

static __attribute__((noreturn)) void run_l(int ctl)
{
    role = "L";
    if (setpgid(0, 0) != 0)
        fail_errno("setpgid(0, 0)");
    child_ready(workload_failures == 0);
    char c = wait_ctl(ctl);
    _exit(c == 'x' && workload_failures == 0 ? 0 : 1);
}

static __attribute__((noreturn)) void run_m(int ctl, pid_t l)
{
    role = "M";
    if (setpgid(0, l) != 0)
        fail_errno("setpgid(0, L)");
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    expect_eq("process group (L's)", me.pgid, l);
    expect_eq("session (P's)", me.sid, top_pid);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("M: unexpected control byte");
    check_ids(&me, 1);
    /* The group outlives its leader: no process L may be alive in our session. */
    pid_t lsid = getsid(l);
    if (lsid == me.sid)
        fail("M: a process with the leader's pid %d is alive in our session", l);
    if (kill(-l, 0) != 0)
        fail("M: process group %d cannot be signalled: %s", l, strerror(errno));
    child_exit();
}

static const char to_c[] = "hello through the pipe";
static const char from_c[] = "greetings from C";

static __attribute__((noreturn)) void run_c(int ctl, int data_r, int back_w)
{
    role = "C";
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    ssize_t n = write(back_w, from_c, sizeof(from_c) - 1);
    if (n != (ssize_t)sizeof(from_c) - 1)
        fail_errno("write to P");
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("C: unexpected control byte");
    check_ids(&me, 1);
    if (fcntl(data_r, F_SETFL, O_NONBLOCK) != 0)
        fail_errno("fcntl(O_NONBLOCK)");
    char buf[128];
    n = read(data_r, buf, sizeof(buf));
    if (n != (ssize_t)sizeof(to_c) - 1 || memcmp(buf, to_c, sizeof(to_c) - 1) != 0)
        fail("C: read %zd bytes '%.*s' from P's pipe, expected '%s'", n, n > 0 ? (int)n : 0,
             buf, to_c);
    n = read(data_r, buf, sizeof(buf));
    if (n != -1 || errno != EAGAIN)
        fail("C: P's pipe has more in it (read returned %zd)", n);
    child_exit();
}

static const char p_bytes[] = "0123456789";
static const char d_bytes[] = "abcde";

struct d_report {
    int flags;
    long long offset;
};

static __attribute__((noreturn)) void run_d(int ctl, int fd, int reply)
{
    role = "D";
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    if (fcntl(fd, F_SETFL, O_APPEND) != 0)
        fail_errno("fcntl(F_SETFL, O_APPEND)");
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("D: unexpected control byte");
    check_ids(&me, 1);
    expect_eq("offset of the shared file before D writes", lseek(fd, 0, SEEK_CUR), 10);
    if (write(fd, d_bytes, 5) != 5)
        fail_errno("write to the shared file");
    struct d_report r = {fcntl(fd, F_GETFL), (long long)lseek(fd, 0, SEEK_CUR)};
    expect_eq("offset of the shared file after D wrote", r.offset, 15);
    if (write(reply, &r, sizeof(r)) != (ssize_t)sizeof(r))
        fail_errno("write to P");
    child_exit();
}

#define REGION (64 * 1024)
#define WORDS (REGION / 4)

enum { SEED_ANON = 11, SEED_MEMFD = 12, SEED_PRIV = 13, SEED_E_PRIV = 14, SEED_E_ANON = 15,
       SEED_P_MEMFD = 16, SEED_E_AFTER = 20, SEED_P_AFTER = 30 };

static uint32_t *anon_sh, *memfd_sh, *priv;
static int memfd;

static void fill(uint32_t *r, uint32_t seed, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        r[i] = pattern32(seed, (uint32_t)i);
}

/* Is r[from..to) the pattern for seed?  Reports the first difference. */
static int expect_fill(const char *what, const uint32_t *r, uint32_t seed, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (r[i] != pattern32(seed, (uint32_t)i)) {
            fail("%s: %s word %zu is 0x%08x, expected 0x%08x (seed %u)", role, what, i, r[i],
                 pattern32(seed, (uint32_t)i), seed);
            return 0;
        }
    return 1;
}

/* The memfd read through its fd, not the mapping. */
static void expect_memfd_file(uint32_t seed)
{
    static uint32_t buf[WORDS];
    if (pread(memfd, buf, REGION, 0) != REGION)
        fail_errno("pread memfd");
    else
        expect_fill("memfd contents read through the fd", buf, seed, 0, WORDS);
}

static __attribute__((noreturn)) void run_e(int ctl, int reply)
{
    role = "E";
    struct ids me;
    get_ids(&me);
    expect_eq("ppid", me.ppid, top_pid);
    fill(priv, SEED_E_PRIV, WORDS / 2, WORDS);
    fill(anon_sh, SEED_E_ANON, WORDS / 2, WORDS);
    child_ready(workload_failures == 0);
    if (wait_ctl(ctl) != 'c')
        fail("E: unexpected control byte");
    check_ids(&me, 1);
    expect_fill("shared anonymous region (first half)", anon_sh, SEED_ANON, 0, WORDS / 2);
    expect_fill("shared anonymous region (E's half)", anon_sh, SEED_E_ANON, WORDS / 2, WORDS);
    expect_fill("memfd region (first half)", memfd_sh, SEED_MEMFD, 0, WORDS / 2);
    expect_fill("memfd region (P's half)", memfd_sh, SEED_P_MEMFD, WORDS / 2, WORDS);
    expect_fill("private region (first half)", priv, SEED_PRIV, 0, WORDS / 2);
    expect_fill("private region (E's half)", priv, SEED_E_PRIV, WORDS / 2, WORDS);

    fill(anon_sh, SEED_E_AFTER + 1, 0, WORDS);
    fill(memfd_sh, SEED_E_AFTER + 2, 0, WORDS);
    fill(priv, SEED_E_AFTER + 3, 0, WORDS);
    send_byte(reply, 'w', "P");
    if (wait_byte(ctl, "word from P that it wrote its regions") == 'p') {
        expect_fill("shared anonymous region after P wrote", anon_sh, SEED_P_AFTER + 1, 0, WORDS);
        expect_fill("memfd region after P wrote", memfd_sh, SEED_P_AFTER + 2, 0, WORDS);
        expect_memfd_file(SEED_P_AFTER + 2);
        expect_fill("private region after P wrote its own", priv, SEED_E_AFTER + 3, 0, WORDS);
    }
    child_exit();
}

static void *map_region(int shared_fd, int flags)
{
    void *p = mmap(NULL, REGION, PROT_READ | PROT_WRITE, flags, shared_fd, 0);
    if (p == MAP_FAILED) {
        fail_errno("mmap");
        finish();
    }
    return p;
}

struct kid {
    const char *name;
    pid_t pid;
    int ctl; /* write end of its control pipe */
};

/* Fork a child of P with a new control pipe; the child keeps only the listed fds. */
static pid_t fork_child(struct kid *k, const char *name, int *ctl_r, const int *keep, int nkeep)
{
    int p[2];
    if (pipe(p) != 0) {
        fail_errno("pipe");
        finish();
    }
    k->name = name;
    k->pid = fork();
    if (k->pid < 0) {
        fail_errno("fork");
        finish();
    }
    if (k->pid == 0) {
        int all[16] = {p[0], ready_w};
        for (int i = 0; i < nkeep; i++)
            all[2 + i] = keep[i];
        keep_fds(all, 2 + nkeep);
        *ctl_r = p[0];
        return 0;
    }
    close(p[0]);
    k->ctl = p[1];
    return k->pid;
}

static void family(void)
{
    int rp[2];
    if (pipe(rp) != 0) {
        fail_errno("pipe");
        finish();
    }
    ready_w = rp[1];
    top_pid = getpid();
    struct ids me;
    get_ids(&me);
    int ctl;

    /* L makes a process group, M joins it, L exits and is reaped. */
    struct kid l, m;
    if (fork_child(&l, "L", &ctl, NULL, 0) == 0)
        run_l(ctl);
    await_ready(rp[0], 1);
    if (fork_child(&m, "M", &ctl, NULL, 0) == 0)
        run_m(ctl, l.pid);
    await_ready(rp[0], 1);
    expect_eq("M's process group", getpgid(m.pid), l.pid);
    send_byte(l.ctl, 'x', "L");
    close(l.ctl);
    reap_passed(l.pid, now_ms() + TIMEOUT_MS, "L");

    /* Two zombies. */
    pid_t z1 = fork();
    if (z1 == 0)
        _exit(7);
    pid_t z2 = fork();
    if (z2 == 0) {
        raise(SIGTERM);
        _exit(3);
    }
    if (z1 < 0 || z2 < 0) {
        fail_errno("fork");
        finish();
    }

    struct kid a, b, c, d, e;
    if (fork_child(&a, "A", &ctl, NULL, 0) == 0)
        run_a(ctl);
    if (fork_child(&b, "B", &ctl, NULL, 0) == 0)
        run_b(ctl);

    int to_c_pipe[2], from_c_pipe[2];
    if (pipe(to_c_pipe) != 0 || pipe(from_c_pipe) != 0) {
        fail_errno("pipe");
        finish();
    }
    int keep_c[] = {to_c_pipe[0], from_c_pipe[1]};
    if (fork_child(&c, "C", &ctl, keep_c, 2) == 0)
        run_c(ctl, to_c_pipe[0], from_c_pipe[1]);
    close(to_c_pipe[0]);
    close(from_c_pipe[1]);

    int fd = open("shared.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
    int d_reply[2];
    if (fd < 0 || pipe(d_reply) != 0) {
        fail_errno("open shared.txt");
        finish();
    }
    int keep_d[] = {fd, d_reply[1]};
    if (fork_child(&d, "D", &ctl, keep_d, 2) == 0)
        run_d(ctl, fd, d_reply[1]);
    close(d_reply[1]);

    anon_sh = map_region(-1, MAP_SHARED | MAP_ANONYMOUS);
    priv = map_region(-1, MAP_PRIVATE | MAP_ANONYMOUS);
    memfd = memfd_create("tree-memfd", 0);
    if (memfd < 0 || ftruncate(memfd, REGION) != 0) {
        fail_errno("memfd_create");
        finish();
    }
    memfd_sh = map_region(memfd, MAP_SHARED);
    fill(anon_sh, SEED_ANON, 0, WORDS);
    fill(memfd_sh, SEED_MEMFD, 0, WORDS);
    fill(priv, SEED_PRIV, 0, WORDS);
    int e_reply[2];
    if (pipe(e_reply) != 0) {
        fail_errno("pipe");
        finish();
    }
    int keep_e[] = {memfd, e_reply[1]};
    if (fork_child(&e, "E", &ctl, keep_e, 2) == 0)
        run_e(ctl, e_reply[1]);
    close(e_reply[1]);
    fill(memfd_sh, SEED_P_MEMFD, WORDS / 2, WORDS);

    /* A, A1, B, B1, C, D, E. */
    await_ready(rp[0], 7);
    if (write(to_c_pipe[1], to_c, sizeof(to_c) - 1) != (ssize_t)sizeof(to_c) - 1)
        fail_errno("write to C");
    if (write(fd, p_bytes, 10) != 10)
        fail_errno("write shared.txt");
    expect_eq("offset of shared.txt before READY", lseek(fd, 0, SEEK_CUR), 10);
    expect_eq("O_APPEND set by D", fcntl(fd, F_GETFL) & O_APPEND, O_APPEND);

    siginfo_t si;
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)z1, &si, WEXITED | WNOWAIT) != 0 || si.si_code != CLD_EXITED ||
        si.si_status != 7)
        fail("P: Z1 is not a zombie that exited with 7 (code %d status %d)", si.si_code,
             si.si_status);
    memset(&si, 0, sizeof(si));
    if (waitid(P_PID, (id_t)z2, &si, WEXITED | WNOWAIT) != 0 || si.si_code != CLD_KILLED ||
        si.si_status != SIGTERM)
        fail("P: Z2 is not a zombie killed by SIGTERM (code %d status %d)", si.si_code,
             si.si_status);
    if (workload_failures)
        finish();

    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_UNBLOCK, &usr1, NULL);
    ready();
    wait_for_usr1();

    check_ids(&me, 0);
    /* P's own view of the regions before E touches them again. */
    expect_fill("shared anonymous region (first half)", anon_sh, SEED_ANON, 0, WORDS / 2);
    expect_fill("shared anonymous region (E's half)", anon_sh, SEED_E_ANON, WORDS / 2, WORDS);
    expect_fill("memfd region (first half)", memfd_sh, SEED_MEMFD, 0, WORDS / 2);
    expect_fill("memfd region (P's half)", memfd_sh, SEED_P_MEMFD, WORDS / 2, WORDS);
    expect_fill("private region", priv, SEED_PRIV, 0, WORDS);

    struct kid *kids[] = {&a, &b, &m, &c, &d, &e};
    const int nkids = (int)(sizeof(kids) / sizeof(kids[0]));
    for (int i = 0; i < nkids; i++)
        send_byte(kids[i]->ctl, 'c', kids[i]->name);

    /* D wrote 5 bytes through the shared open file description. */
    struct d_report dr;
    if (read_timed(d_reply[0], &dr, sizeof(dr), "report from D")) {
        expect_eq("offset of shared.txt after D wrote", lseek(fd, 0, SEEK_CUR), 15);
        int flags = fcntl(fd, F_GETFL);
        expect_eq("file status flags (D's are equal)", flags, dr.flags);
        expect_eq("file status flags", flags & (O_ACCMODE | O_APPEND), O_RDWR | O_APPEND);
        char buf[32];
        ssize_t n = pread(fd, buf, sizeof(buf), 0);
        if (n != 15 || memcmp(buf, "0123456789abcde", 15) != 0)
            fail("P: shared.txt holds %zd bytes '%.*s', expected '0123456789abcde'", n,
                 n > 0 ? (int)n : 0, buf);
    }

    /* E wrote its regions: P sees the shared ones only, then writes its own. */
    if (wait_byte(e_reply[0], "word from E that it wrote its regions") == 'w') {
        expect_fill("shared anonymous region after E wrote", anon_sh, SEED_E_AFTER + 1, 0, WORDS);
        expect_fill("memfd region after E wrote", memfd_sh, SEED_E_AFTER + 2, 0, WORDS);
        expect_memfd_file(SEED_E_AFTER + 2);
        expect_fill("private region after E wrote its own", priv, SEED_PRIV, 0, WORDS);
        fill(anon_sh, SEED_P_AFTER + 1, 0, WORDS);
        fill(memfd_sh, SEED_P_AFTER + 2, 0, WORDS);
        fill(priv, SEED_P_AFTER + 3, 0, WORDS);
        send_byte(e.ctl, 'p', "E");
    }

    /* What C wrote to P before READY. */
    char buf[128];
    if (fcntl(from_c_pipe[0], F_SETFL, O_NONBLOCK) != 0)
        fail_errno("fcntl(O_NONBLOCK)");
    ssize_t n = read(from_c_pipe[0], buf, sizeof(buf));
    if (n != (ssize_t)sizeof(from_c) - 1 || memcmp(buf, from_c, sizeof(from_c) - 1) != 0)
        fail("P: read %zd bytes '%.*s' from C's pipe, expected '%s'", n, n > 0 ? (int)n : 0,
             buf, from_c);

    /* The zombies are still there and keep their exit statuses. */
    int st;
    pid_t r = waitpid(z1, &st, WNOHANG);
    if (r != z1)
        fail("P: zombie Z1 (pid %d) is not there to reap (waitpid returned %d: %s)", z1, r,
             r < 0 ? strerror(errno) : "still running");
    else if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
        fail("P: Z1 has wait status 0x%x, expected exit 7", st);
    r = waitpid(z2, &st, WNOHANG);
    if (r != z2)
        fail("P: zombie Z2 (pid %d) is not there to reap (waitpid returned %d: %s)", z2, r,
             r < 0 ? strerror(errno) : "still running");
    else if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM)
        fail("P: Z2 has wait status 0x%x, expected killed by SIGTERM", st);

    long long deadline = now_ms() + TIMEOUT_MS;
    for (int i = 0; i < nkids; i++)
        reap_passed(kids[i]->pid, deadline, kids[i]->name);
    finish();
}

/* ================================= wide ================================= */

static int wide_n;
static char role_buf[32];

/* Process i > 0 is a child of i - 1, or of i / 5 when i is divisible by 5. */
static int parent_of(int i)
{
    return i % 5 == 0 ? i / 5 : i - 1;
}

static __attribute__((noreturn)) void wide_node(int i, int ctl, pid_t parent, const struct ids *top)
{
    snprintf(role_buf, sizeof(role_buf), "process %d", i);
    role = i == 0 ? "P" : role_buf;
    struct ids me;
    get_ids(&me);
    if (i > 0) {
        expect_eq("ppid", me.ppid, parent);
        expect_eq("process group (P's)", me.pgid, top->pgid);
        expect_eq("session (P's)", me.sid, top->sid);
    }

    int rp[2] = {-1, -1};
    if (i == 0) {
        if (pipe(rp) != 0) {
            fail_errno("pipe");
            finish();
        }
        ready_w = rp[1];
    }
    int nkids = 0;
    pid_t *kid = calloc((size_t)wide_n, sizeof(*kid));
    int *kid_ctl = calloc((size_t)wide_n, sizeof(*kid_ctl));
    int *kid_idx = calloc((size_t)wide_n, sizeof(*kid_idx));
    for (int j = i + 1; j < wide_n; j++) {
        if (parent_of(j) != i)
            continue;
        int p[2];
        if (pipe(p) != 0) {
            fail_errno("pipe");
            break;
        }
        pid_t pid = fork();
        if (pid == 0) {
            int keep[] = {p[0], ready_w};
            keep_fds(keep, 2);
            free(kid);
            free(kid_ctl);
            free(kid_idx);
            wide_node(j, p[0], me.pid, top);
        }
        close(p[0]);
        if (pid < 0) {
            fail_errno("fork");
            close(p[1]);
            break;
        }
        kid[nkids] = pid;
        kid_ctl[nkids] = p[1];
        kid_idx[nkids] = j;
        nkids++;
    }

    if (i == 0) {
        await_ready(rp[0], wide_n - 1);
        if (workload_failures)
            finish();
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_UNBLOCK, &usr1, NULL);
        ready();
        wait_for_usr1();
    } else {
        child_ready(workload_failures == 0);
        if (wait_ctl(ctl) != 'c')
            fail("%s: unexpected control byte", role);
    }

    char name[32];
    for (int k = 0; k < nkids; k++) {
        snprintf(name, sizeof(name), "process %d", kid_idx[k]);
        send_byte(kid_ctl[k], 'c', name);
    }
    check_ids(&me, i > 0);
    long long deadline = now_ms() + TIMEOUT_MS;
    for (int k = 0; k < nkids; k++) {
        snprintf(name, sizeof(name), "process %d", kid_idx[k]);
        reap_passed(kid[k], deadline, name);
    }
    if (i == 0)
        finish();
    child_exit();
}

static void wide(int n)
{
    if (n < 1 || n > 2000) {
        fail("wide: bad process count %d", n);
        finish();
    }
    wide_n = n;
    struct ids top;
    get_ids(&top);
    wide_node(0, -1, 0, &top);
}

/* ================================ mixed ================================= */

/*
 * level 0 is P, 1 the child (the other flavour), 2 the grandchild (P's
 * flavour again).  ctl, top_bits and parent are unused for P.
 */
static __attribute__((noreturn)) void mixed(int level, int ctl, int top_bits, pid_t parent)
{
    static const char *const roles[] = {"P", "mixed-child", "mixed-grandchild"};
    role = roles[level];
    int bits = (int)sizeof(void *) * 8;
    if (level == 0)
        top_bits = bits;
    expect_eq("pointer size in bits", bits, level == 1 ? 96 - top_bits : top_bits);

    char exe[4096], other[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    exe[len > 0 ? len : 0] = 0;
    size_t l = strlen(exe);
    if (l < 3 || (strcmp(exe + l - 3, "-64") != 0 && strcmp(exe + l - 3, "-32") != 0)) {
        fail("%s: /proc/self/exe '%s' does not end in -64 or -32", role, exe);
    } else {
        expect_eq("pointer size in bits (by the program's name)", bits, atoi(exe + l - 2));
        memcpy(other, exe, l + 1);
        memcpy(other + l - 2, exe[l - 2] == '6' ? "32" : "64", 2);
    }

    struct ids me;
    get_ids(&me);
    if (level > 0)
        expect_eq("ppid", me.ppid, parent);

    int rp[2] = {-1, -1};
    if (level == 0) {
        if (pipe(rp) != 0) {
            fail_errno("pipe");
            finish();
        }
        ready_w = rp[1];
    }
    pid_t kid = -1;
    int kid_ctl = -1;
    if (level < 2 && workload_failures == 0) {
        int p[2];
        if (pipe(p) != 0)
            fail_errno("pipe");
        char a_ctl[16], a_ready[16], a_bits[16], a_ppid[16];
        snprintf(a_ctl, sizeof(a_ctl), "%d", p[0]);
        snprintf(a_ready, sizeof(a_ready), "%d", ready_w);
        snprintf(a_bits, sizeof(a_bits), "%d", top_bits);
        snprintf(a_ppid, sizeof(a_ppid), "%d", (int)me.pid);
        char *args[] = {other, (char *)roles[level + 1], a_ctl, a_ready, a_bits, a_ppid, NULL};
        kid = fork();
        if (kid == 0) {
            int keep[] = {p[0], ready_w};
            keep_fds(keep, 2);
            execv(other, args);
            fail("%s: exec %s failed: %s", roles[level + 1], other, strerror(errno));
            child_ready(0);
            _exit(1);
        }
        if (kid < 0)
            fail_errno("fork");
        close(p[0]);
        kid_ctl = p[1];
    }

    struct sleeper sl[2];
    start_sleeper(&sl[0], SLEEP_COND);
    start_sleeper(&sl[1], SLEEP_NANO);
    if (level == 0) {
        if (workload_failures)
            finish();
        await_ready(rp[0], 2);
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_UNBLOCK, &usr1, NULL);
        ready();
        wait_for_usr1();
    } else {
        child_ready(workload_failures == 0);
        if (wait_ctl(ctl) != 'c')
            fail("%s: unexpected control byte", role);
    }

    if (kid > 0)
        send_byte(kid_ctl, 'c', roles[level + 1]);
    expect_eq("threads", count_tasks(), 3);
    wake_sleepers();
    check_ids(&me, level > 0);
    join_sleepers(sl, 2);
    if (kid > 0)
        reap_passed(kid, now_ms() + TIMEOUT_MS, roles[level + 1]);
    if (level == 0)
        finish();
    child_exit();
}

int main(int argc, char **argv)
{
    workload_init("tree", 0);
    signal(SIGPIPE, SIG_IGN); /* a dead child's pipe is a FAIL line, not a silent death */
    block_usr1();             /* inherited by every child; P unblocks it before READY */
    const char *mode = argc > 1 ? argv[1] : "family";
    if (strcmp(mode, "family") == 0)
        family();
    else if (strcmp(mode, "wide") == 0)
        wide(argc > 2 ? atoi(argv[2]) : 50);
    else if (strcmp(mode, "mixed") == 0)
        mixed(0, -1, 0, 0);
    else if (strcmp(mode, "mixed-child") == 0 || strcmp(mode, "mixed-grandchild") == 0) {
        /* argv: mode, control fd, ready fd, P's pointer bits, parent pid */
        if (argc != 6) {
            fail("%s: expected 4 arguments, got %d", mode, argc - 2);
            _exit(1);
        }
        ready_w = atoi(argv[3]);
        mixed(mode[6] == 'c' ? 1 : 2, atoi(argv[2]), atoi(argv[4]), (pid_t)atoi(argv[5]));
    } else {
        fail("unknown mode '%s'", mode);
    }
    finish();
}

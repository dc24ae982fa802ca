/*
 * attrs: the settings of a process and its threads that a restore must give back, each
 * checked by using it where it can be used.
 *
 * Process: resource limits (RLIMIT_NOFILE soft 77 and hard 177: the first fd past the soft
 * limit fails with EMFILE; RLIMIT_FSIZE soft 1 MiB: a write past it fails with EFBIG;
 * RLIMIT_STACK soft 4 MiB), oom_score_adj 345, child subreaper (an orphaned grandchild is
 * reparented to it: after the restore it is still our child, killed and reaped by us), THP
 * disabled, membarrier PRIVATE_EXPEDITED registration (the barrier works, not EPERM) and
 * GLOBAL_EXPEDITED (MEMBARRIER_CMD_GET_REGISTRATIONS shows both, where the kernel has it), the
 * login UID (4242, where this process may set it), not dumpable (PR_SET_DUMPABLE 0), core
 * dumps filtered by coredump_filter 0x5f.
 *
 * Main thread: SCHED_BATCH, nice 7, bound to the first CPU, I/O class idle, timer slack
 * 123456 ns, parent-death signal SIGUSR2.  Second thread: SCHED_IDLE, nice 11, bound to the
 * last CPU, I/O best-effort level 2, timer slack 7777 ns, parent-death signal SIGWINCH.
 * Each thread checks its own settings after the restore (and runs on a CPU of its set).
 * Third thread: SCHED_DEADLINE, runtime 2 ms every 50 ms within 20 ms (sched_getattr).
 */
#include "common.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define IOPRIO_WHO_PROCESS 1
#define IOPRIO_VALUE(class, data) (((class) << 13) | (data))
#define MEMBARRIER_PRIVATE_EXPEDITED 8
#define MEMBARRIER_REGISTER_PRIVATE_EXPEDITED 16
#define MEMBARRIER_REGISTER_GLOBAL_EXPEDITED 4
#define MEMBARRIER_GET_REGISTRATIONS 512

struct settings {
    int policy, nice, cpu, ioprio, pdeath;
    unsigned long slack;
    const char *who;
};

static struct settings main_settings = {SCHED_BATCH, 7, 0, IOPRIO_VALUE(3, 0), SIGUSR2, 123456, "main"};
static struct settings thread_settings = {SCHED_IDLE, 11, 0, IOPRIO_VALUE(2, 2), SIGWINCH, 7777, "thread"};
static int set_loginuid;
static pid_t grandchild;
static pthread_barrier_t ready_barrier;
static volatile int checked;

static void apply(struct settings *s)
{
    struct sched_param param = {0};
    cpu_set_t cpus;
    if (sched_setscheduler(0, s->policy, &param) != 0)
        FAIL_ERRNO("sched_setscheduler");
    if (setpriority(PRIO_PROCESS, syscall(SYS_gettid), s->nice) != 0)
        FAIL_ERRNO("setpriority");
    CPU_ZERO(&cpus);
    CPU_SET(s->cpu, &cpus);
    if (sched_setaffinity(0, sizeof(cpus), &cpus) != 0)
        FAIL_ERRNO("sched_setaffinity");
    if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, s->ioprio) != 0)
        FAIL_ERRNO("ioprio_set");
    if (prctl(PR_SET_TIMERSLACK, s->slack, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_TIMERSLACK");
    if (prctl(PR_SET_PDEATHSIG, s->pdeath, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_PDEATHSIG");
}

static void check(struct settings *s)
{
    char what[64];
    int pdeath = 0;
    cpu_set_t cpus;
#define WHAT(x) (snprintf(what, sizeof(what), "%s: %s", s->who, x), what)
    CHECK_EQ(WHAT("policy"), sched_getscheduler(0), s->policy);
    errno = 0;
    CHECK_EQ(WHAT("nice"), getpriority(PRIO_PROCESS, syscall(SYS_gettid)), s->nice);
    if (sched_getaffinity(0, sizeof(cpus), &cpus) != 0)
        FAIL_ERRNO("sched_getaffinity");
    CHECK_EQ(WHAT("CPUs allowed"), CPU_COUNT(&cpus), 1);
    CHECK_EQ(WHAT("CPU allowed"), CPU_ISSET(s->cpu, &cpus), 1);
    sched_yield();
    CHECK_EQ(WHAT("CPU running on"), sched_getcpu(), s->cpu);
    CHECK_EQ(WHAT("I/O priority"), syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0), s->ioprio);
    CHECK_EQ(WHAT("timer slack"), prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), s->slack);
    prctl(PR_GET_PDEATHSIG, &pdeath, 0, 0, 0);
    CHECK_EQ(WHAT("parent-death signal"), pdeath, s->pdeath);
}

static void *second_thread(void *arg)
{
    (void)arg;
    apply(&thread_settings);
    pthread_barrier_wait(&ready_barrier);
    while (!usr1_received)
        usleep(10000);
    check(&thread_settings);
    checked = 1;
    return NULL;
}

/* The kernel's struct sched_attr (libc has no wrapper). */
struct dl_attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

#define DL_POLICY 6 /* SCHED_DEADLINE */
static const struct dl_attr dl_settings = {sizeof(struct dl_attr), DL_POLICY, 0, 0, 0,
                                           2000000, 20000000, 50000000};
static volatile int dl_checked;

static void *deadline_thread(void *arg)
{
    (void)arg;
    struct dl_attr attr = dl_settings, got = {0};
    if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0)
        FAIL_ERRNO("sched_setattr SCHED_DEADLINE");
    pthread_barrier_wait(&ready_barrier);
    while (!usr1_received)
        usleep(10000);
    if (syscall(SYS_sched_getattr, 0, &got, sizeof(got), 0) != 0)
        FAIL_ERRNO("sched_getattr");
    CHECK_EQ("deadline thread: policy", got.policy, DL_POLICY);
    CHECK_EQ("deadline thread: runtime", got.runtime, dl_settings.runtime);
    CHECK_EQ("deadline thread: deadline", got.deadline, dl_settings.deadline);
    CHECK_EQ("deadline thread: period", got.period, dl_settings.period);
    dl_checked = 1;
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        fail("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static long read_number(const char *path)
{
    char buf[64] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
        fail("cannot read %s", path);
    if (fd >= 0)
        close(fd);
    return strtol(buf, NULL, 10);
}

static void make_orphan(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        FAIL_ERRNO("pipe");
    pid_t child = fork();
    if (child == 0) {
        pid_t gc = fork();
        if (gc == 0) {
            close(fds[0]);
            close(fds[1]);
            for (;;)
                pause();
        }
        write(fds[1], &gc, sizeof(gc));
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &grandchild, sizeof(grandchild)) != sizeof(grandchild))
        fail("no grandchild PID");
    close(fds[0]);
    waitpid(child, NULL, 0);
}

static void set_limit(int which, rlim_t cur, rlim_t max)
{
    struct rlimit r;
    getrlimit(which, &r);
    r.rlim_cur = cur;
    if (max)
        r.rlim_max = max;
    if (setrlimit(which, &r) != 0)
        fail("setrlimit(%d): %s", which, strerror(errno));
}

int main(void)
{
    workload_init("attrs", 0);
    signal(SIGXFSZ, SIG_IGN);
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    thread_settings.cpu = ncpu > 1 ? ncpu - 1 : 0;

    set_limit(RLIMIT_NOFILE, 77, 177);
    set_limit(RLIMIT_FSIZE, 1 << 20, 0);
    set_limit(RLIMIT_STACK, 4 << 20, 0);
    write_file("/proc/self/oom_score_adj", "345");
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_CHILD_SUBREAPER");
    make_orphan();
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_THP_DISABLE");
    if (syscall(SYS_membarrier, MEMBARRIER_REGISTER_PRIVATE_EXPEDITED, 0, 0) != 0)
        FAIL_ERRNO("membarrier register");
    if (syscall(SYS_membarrier, MEMBARRIER_REGISTER_GLOBAL_EXPEDITED, 0, 0) != 0)
        FAIL_ERRNO("membarrier register global");
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_DUMPABLE");
    write_file("/proc/self/coredump_filter", "0x5f");
    int fd = open("/proc/self/loginuid", O_WRONLY);
    set_loginuid = fd >= 0 && write(fd, "4242", 4) == 4;
    if (fd >= 0)
        close(fd);

    pthread_t thread, dl_thread;
    pthread_barrier_init(&ready_barrier, NULL, 3);
    pthread_create(&thread, NULL, second_thread, NULL);
    pthread_create(&dl_thread, NULL, deadline_thread, NULL);
    pthread_barrier_wait(&ready_barrier);
    apply(&main_settings);
    ready();
    wait_for_usr1();

    check(&main_settings);
    pthread_join(thread, NULL);
    pthread_join(dl_thread, NULL);
    if (!checked)
        fail("the second thread did not check its settings");
    if (!dl_checked)
        fail("the deadline thread did not check its settings");

    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    CHECK_EQ("RLIMIT_NOFILE soft", r.rlim_cur, 77);
    CHECK_EQ("RLIMIT_NOFILE hard", r.rlim_max, 177);
    errno = 0;
    CHECK_EQ("fd past RLIMIT_NOFILE", fcntl(0, F_DUPFD, 77), -1);
    CHECK_EQ("errno past RLIMIT_NOFILE", errno, EINVAL); /* F_DUPFD at or past the limit */
    CHECK_EQ("fd just below RLIMIT_NOFILE", fcntl(0, F_DUPFD, 76), 76);
    int big = open("fsize-probe", O_CREAT | O_TRUNC | O_WRONLY, 0600);
    if (big < 0 || lseek(big, 1 << 20, SEEK_SET) < 0)
        FAIL_ERRNO("fsize probe");
    errno = 0;
    CHECK_EQ("write past RLIMIT_FSIZE", write(big, "x", 1), -1);
    CHECK_EQ("errno past RLIMIT_FSIZE", errno, EFBIG);
    close(big);
    unlink("fsize-probe");
    getrlimit(RLIMIT_STACK, &r);
    CHECK_EQ("RLIMIT_STACK soft", r.rlim_cur, 4 << 20);

    CHECK_EQ("oom_score_adj", read_number("/proc/self/oom_score_adj"), 345);
    int subreaper = 0;
    prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
    CHECK_EQ("child subreaper", subreaper, 1);
    int status = 0;
    kill(grandchild, SIGTERM);
    CHECK_EQ("orphan reaped by us", waitpid(grandchild, &status, 0), grandchild);
    CHECK_EQ("orphan's end", WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM, 1);
    CHECK_EQ("THP disabled", prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), 1);
    CHECK_EQ("membarrier private expedited", syscall(SYS_membarrier, MEMBARRIER_PRIVATE_EXPEDITED, 0, 0), 0);
    long registrations = syscall(SYS_membarrier, MEMBARRIER_GET_REGISTRATIONS, 0, 0);
    if (registrations >= 0) /* Linux 6.3 and later show them */
        CHECK_EQ("membarrier registrations", registrations,
                 MEMBARRIER_REGISTER_GLOBAL_EXPEDITED | MEMBARRIER_REGISTER_PRIVATE_EXPEDITED);
    if (set_loginuid)
        CHECK_EQ("login UID", read_number("/proc/self/loginuid"), 4242);
    CHECK_EQ("dumpable", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
    char filter[32] = "";
    int cf = open("/proc/self/coredump_filter", O_RDONLY);
    if (cf < 0 || read(cf, filter, sizeof(filter) - 1) <= 0)
        FAIL_ERRNO("read coredump_filter");
    if (cf >= 0)
        close(cf);
    CHECK_EQ("coredump_filter", strtoul(filter, NULL, 16), 0x5f);
    finish();
}

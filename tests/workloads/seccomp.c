/*
 * seccomp MODE: runs under seccomp and, on SIGUSR1, checks that the kernel enforces it as
 * before: each filter still acts, /proc shows the same mode and number of filters, and
 * no_new_privs is as it was.  Filter A kills the process on a system call of another
 * architecture (so that a 64-bit call into the 32-bit build dies) and makes getsid fail with
 * ENOTTY and getppid with EDOM; filter B makes getppid fail with ERANGE instead (of two errno
 * answers the newer filter's wins, so the order counts), uname with EXDEV and kills the
 * process on getpgid (tried in a child, which must die by SIGSYS).  MODE is
 *   shared    no_new_privs; A installed before a second thread starts (it inherits A), B with
 *             SECCOMP_FILTER_FLAG_TSYNC; at the check the main thread installs a third filter
 *             with TSYNC, which the kernel allows only while the threads share their filters
 *   partial   no_new_privs; A inherited by both threads, B installed by the second alone (a
 *             TSYNC from the main thread must then fail, naming the second thread)
 *   no-nnp    like shared, without no_new_privs (the filters need CAP_SYS_ADMIN): afterwards
 *             no_new_privs must still be clear
 *   strict    the second thread in strict mode, waiting in read(2); at the check it writes
 *             one byte and makes a forbidden call, which must kill it
 *   listener  no_new_privs; a filter that hands getppid to a user-space listener, held by a
 *             supervisor process outside the process tree that answers 4242 (once)
 */
#include "common.h"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

#ifdef __x86_64__
#define OWN_ARCH AUDIT_ARCH_X86_64
#else
#define OWN_ARCH AUDIT_ARCH_I386
#endif

#define LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, field))
#define RET(action) BPF_STMT(BPF_RET | BPF_K, (action))
#define ON_NR(nr, action) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), RET(action)

static struct sock_filter filter_a[] = {
    LOAD(arch),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, OWN_ARCH, 1, 0),
    RET(SECCOMP_RET_KILL_PROCESS),
    LOAD(nr),
    ON_NR(__NR_getsid, SECCOMP_RET_ERRNO | ENOTTY),
    ON_NR(__NR_getppid, SECCOMP_RET_ERRNO | EDOM),
    RET(SECCOMP_RET_ALLOW),
};
static struct sock_filter filter_b[] = {
    LOAD(nr),
    ON_NR(__NR_getppid, SECCOMP_RET_ERRNO | ERANGE),
    ON_NR(__NR_uname, SECCOMP_RET_ERRNO | EXDEV),
    ON_NR(__NR_getpgid, SECCOMP_RET_KILL_PROCESS),
    RET(SECCOMP_RET_ALLOW),
};
static struct sock_filter allow_all[] = {RET(SECCOMP_RET_ALLOW)};
static struct sock_filter filter_notify[] = {
    LOAD(nr),
    ON_NR(__NR_getppid, SECCOMP_RET_USER_NOTIF),
    RET(SECCOMP_RET_ALLOW),
};

#define INSTALL(f, flags) install((f), sizeof(f) / sizeof((f)[0]), (flags))

static long install(struct sock_filter *filter, unsigned short len, unsigned int flags)
{
    struct sock_fprog prog = {.len = len, .filter = filter};
    return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static const char *mode = "";
static int setup_pipe[2], go_pipe[2], done_pipe[2];
static volatile pid_t thread_tid;

static int is(const char *name)
{
    return strcmp(mode, name) == 0;
}

static long status_field(const char *path, const char *key)
{
    char buf[8192];
    int fd = open(path, O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
    if (fd >= 0)
        close(fd);
    if (n <= 0) {
        fail("cannot read %s", path);
        return -1;
    }
    buf[n] = 0;
    char *at = strstr(buf, key);
    if (!at) {
        fail("%s has no %s line", path, key);
        return -1;
    }
    return strtol(at + strlen(key), NULL, 10);
}

static void expect_errno(const char *who, const char *call, long result, int want)
{
    int got = errno;
    if (result != -1 || got != want)
        fail("%s: %s returned %ld (%s) instead of failing with the filter's %s", who, call,
             result, result == -1 ? strerror(got) : "no error", strerror(want));
}

/* A child makes the call filter B forbids: it must die by SIGSYS if `forbidden`. */
static void check_forbidden(const char *who, int forbidden)
{
    int status;
    pid_t child = fork();
    if (child == 0) {
        struct rlimit none = {0, 0};
        setrlimit(RLIMIT_CORE, &none);
        syscall(__NR_getpgid, 0);
        _exit(0);
    }
    if (child < 0 || waitpid(child, &status, 0) != child) {
        FAIL_ERRNO("fork or waitpid");
        return;
    }
    if (forbidden && !(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS))
        fail("%s: a child making the forbidden getpgid was not killed by SIGSYS (status %#x)",
             who, status);
    if (!forbidden && !(WIFEXITED(status) && WEXITSTATUS(status) == 0))
        fail("%s: a child calling getpgid died (status %#x) without filter B", who, status);
}

/* The calling thread's filters: A always, B if `has_b`; `count` filters in all. */
static void check_filters(const char *who, int has_b, long count, int no_new_privs)
{
    struct utsname u;
    expect_errno(who, "getsid", syscall(__NR_getsid, 0), ENOTTY);
    expect_errno(who, "getppid", syscall(__NR_getppid), has_b ? ERANGE : EDOM);
    if (has_b)
        expect_errno(who, "uname", syscall(__NR_uname, &u), EXDEV);
    else if (syscall(__NR_uname, &u) != 0)
        fail("%s: uname failed (%s) without filter B", who, strerror(errno));
    check_forbidden(who, has_b);
    CHECK_EQ("Seccomp of the thread", status_field("/proc/thread-self/status", "Seccomp:"), 2);
    CHECK_EQ("Seccomp_filters of the thread",
             status_field("/proc/thread-self/status", "Seccomp_filters:"), count);
    CHECK_EQ("no_new_privs of the thread", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), no_new_privs);
}

static void *second_thread(void *arg)
{
    sigset_t all;
    char c = 0;
    (void)arg;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* SIGUSR1 is for the main thread */
    thread_tid = syscall(__NR_gettid);
    if (is("partial") && INSTALL(filter_b, 0) != 0)
        FAIL_ERRNO("filter B in the second thread");
    if (is("strict")) {
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) != 0)
            FAIL_ERRNO("strict mode");
        /* From here on only read, write, _exit and sigreturn. */
        write(setup_pipe[1], "s", 1);
        read(go_pipe[0], &c, 1);
        write(done_pipe[1], "A", 1);
        syscall(__NR_getpid);
        write(done_pipe[1], "B", 1);
        syscall(__NR_exit, 0);
    }
    write(setup_pipe[1], "s", 1);
    if (read(go_pipe[0], &c, 1) != 1)
        FAIL_ERRNO("read in the second thread");
    check_filters("second thread", 1, is("partial") ? 2 : 3, !is("no-nnp"));
    write(done_pipe[1], "A", 1);
    return NULL;
}

static void supervise(int listener)
{
    struct seccomp_notif req;
    struct seccomp_notif_resp resp;
    memset(&req, 0, sizeof(req));
    if (ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0)
        _exit(1);
    memset(&resp, 0, sizeof(resp));
    resp.id = req.id;
    resp.val = 4242;
    ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    _exit(0);
}

/* A listener for filter_notify, held by a grandchild that is orphaned at once. */
static void start_supervisor(void)
{
    long listener = INSTALL(filter_notify, SECCOMP_FILTER_FLAG_NEW_LISTENER);
    if (listener < 0) {
        FAIL_ERRNO("a filter with a listener");
        return;
    }
    pid_t middle = fork();
    if (middle == 0) {
        if (fork() == 0)
            supervise((int)listener);
        _exit(0);
    }
    waitpid(middle, NULL, 0);
    close((int)listener);
}

static void run_listener(void)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_NO_NEW_PRIVS");
    start_supervisor();
    ready();
    wait_for_usr1();
    CHECK_EQ("getppid answered by the listener", syscall(__NR_getppid), 4242);
    CHECK_EQ("Seccomp", status_field("/proc/self/status", "Seccomp:"), 2);
    finish();
}

int main(int argc, char **argv)
{
    pthread_t thread;
    char done[4];
    mode = argc > 1 ? argv[1] : "";
    workload_init("seccomp", 0);
    if (is("listener"))
        run_listener();
    if (!is("shared") && !is("partial") && !is("no-nnp") && !is("strict")) {
        fail("unknown mode '%s' (shared, partial, no-nnp, strict, listener)", mode);
        finish();
    }
    int no_new_privs = is("shared") || is("partial");
    if (no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        FAIL_ERRNO("PR_SET_NO_NEW_PRIVS");
    if (!is("strict") && INSTALL(filter_a, 0) != 0)
        FAIL_ERRNO("filter A");
    if (pipe(setup_pipe) || pipe(go_pipe) || pipe(done_pipe) ||
        pthread_create(&thread, NULL, second_thread, NULL) != 0) {
        FAIL_ERRNO("pipes and thread");
        finish();
    }
    if (read(setup_pipe[0], done, 1) != 1)
        FAIL_ERRNO("read of the second thread's setup");
    if ((is("shared") || is("no-nnp")) && INSTALL(filter_b, SECCOMP_FILTER_FLAG_TSYNC) != 0)
        FAIL_ERRNO("filter B with TSYNC");
    ready();
    wait_for_usr1();

    char task_status[64];
    snprintf(task_status, sizeof(task_status), "/proc/self/task/%d/status", (int)thread_tid);
    if (is("strict")) {
        CHECK_EQ("Seccomp of the main thread", status_field("/proc/self/status", "Seccomp:"), 0);
        CHECK_EQ("Seccomp of the strict thread", status_field(task_status, "Seccomp:"), 1);
    } else {
        check_filters("main thread", !is("partial"), is("partial") ? 1 : 2, no_new_privs);
        long synced = INSTALL(allow_all, SECCOMP_FILTER_FLAG_TSYNC);
        if (is("partial"))
            CHECK_EQ("TSYNC over a thread with a filter of its own", synced, thread_tid);
        else
            CHECK_EQ("TSYNC over threads that share their filters", synced, 0);
    }
    write(go_pipe[1], "g", 1);
    pthread_join(thread, NULL);
    fcntl(done_pipe[0], F_SETFL, O_NONBLOCK);
    ssize_t n = read(done_pipe[0], done, sizeof(done));
    if (n != 1 || done[0] != 'A')
        fail("the second thread wrote %zd bytes ('%.*s') instead of 'A'%s", n, n > 0 ? (int)n : 0,
             done, is("strict") ? ", then died in strict mode" : "");
    finish();
}

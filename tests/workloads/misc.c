/*
 * misc: the small per-process facts a restore must put back.
 *
 * - the robust futex list head and length (get_robust_list);
 * - glibc's rseq registration: still registered with the kernel (a second
 *   registration of the same area answers EBUSY), cpu_id valid and equal to
 *   the CPU the task runs on;
 * - clear_child_tid (PR_GET_TID_ADDRESS);
 * - the program break, which must also still grow;
 * - /proc/self/cmdline, /proc/self/environ and /proc/self/auxv byte for byte,
 *   and readlink /proc/self/exe (start it with some argv and env entries);
 * - comm (PR_SET_NAME "torpor-misc"), personality (UNAME26 and
 *   ADDR_NO_RANDOMIZE added), umask 027, the working directory, the PID/TID,
 *   and the session and process group.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/rseq.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define RSEQ_SIG_X86 0x53053053

struct blob {
    char data[16384];
    ssize_t len;
};

static void read_blob(const char *path, struct blob *b)
{
    int fd = open(path, O_RDONLY);
    b->len = -1;
    if (fd < 0)
        return;
    ssize_t n, len = 0;
    while (len < (ssize_t)sizeof(b->data) && (n = read(fd, b->data + len, sizeof(b->data) - len)) > 0)
        len += n;
    close(fd);
    b->len = len;
}

static void check_blob(const char *path, const struct blob *before)
{
    static struct blob now;
    read_blob(path, &now);
    if (now.len < 0)
        fail("cannot read %s", path);
    else if (now.len != before->len || memcmp(now.data, before->data, (size_t)now.len) != 0)
        fail("%s differs (%zd bytes, was %zd)", path, now.len, before->len);
}

struct state {
    void *robust_head;
    size_t robust_len;
    uint64_t tid_address;
    void *brk;
    char comm[17];
    int personality;
    mode_t umask;
    char cwd[4096];
    char exe[4096];
    pid_t pid, tid, sid, pgid;
};

static struct state before;
static struct blob cmdline, environ_blob, auxv;

static void *rseq_area(void)
{
    uintptr_t tp;
#ifdef __x86_64__
    asm("mov %%fs:0, %0" : "=r"(tp));
#else
    asm("mov %%gs:0, %0" : "=r"(tp));
#endif
    return (void *)(tp + __rseq_offset);
}

static void snapshot(struct state *s)
{
    memset(s, 0, sizeof(*s));
    if (syscall(SYS_get_robust_list, 0, &s->robust_head, &s->robust_len) != 0)
        FAIL_ERRNO("get_robust_list");
    if (prctl(PR_GET_TID_ADDRESS, &s->tid_address) != 0)
        FAIL_ERRNO("PR_GET_TID_ADDRESS");
    s->brk = sbrk(0);
    if (prctl(PR_GET_NAME, s->comm) != 0)
        FAIL_ERRNO("PR_GET_NAME");
    s->personality = personality(0xffffffff);
    s->umask = umask(0);
    umask(s->umask);
    if (!getcwd(s->cwd, sizeof(s->cwd)))
        FAIL_ERRNO("getcwd");
    if (readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1) < 0)
        FAIL_ERRNO("readlink /proc/self/exe");
    s->pid = (pid_t)syscall(SYS_getpid);
    s->tid = (pid_t)syscall(SYS_gettid);
    s->sid = getsid(0);
    s->pgid = getpgrp();
}

static void compare(const struct state *now)
{
    CHECK_EQ("robust list head", (uintptr_t)now->robust_head, (uintptr_t)before.robust_head);
    CHECK_EQ("robust list length", now->robust_len, before.robust_len);
    CHECK_EQ("clear_child_tid address", now->tid_address, before.tid_address);
    CHECK_EQ("program break", (uintptr_t)now->brk, (uintptr_t)before.brk);
    if (strcmp(now->comm, before.comm) != 0)
        fail("comm is '%s', was '%s'", now->comm, before.comm);
    CHECK_EQ("personality", now->personality, before.personality);
    CHECK_EQ("umask", now->umask, before.umask);
    if (strcmp(now->cwd, before.cwd) != 0)
        fail("cwd is '%s', was '%s'", now->cwd, before.cwd);
    if (strcmp(now->exe, before.exe) != 0)
        fail("/proc/self/exe is '%s', was '%s'", now->exe, before.exe);
    CHECK_EQ("pid", now->pid, before.pid);
    CHECK_EQ("tid", now->tid, before.tid);
    CHECK_EQ("session id", now->sid, before.sid);
    CHECK_EQ("process group", now->pgid, before.pgid);
}

static void check_rseq(void)
{
    if (__rseq_size == 0) {
        fail("glibc did not register rseq (__rseq_size is 0)");
        return;
    }
    struct rseq *rs = rseq_area();
    /* Registering the same area again must fail with EBUSY if it is registered. */
    long r = syscall(SYS_rseq, rs, 32, 0, RSEQ_SIG_X86);
    if (r != 0 && errno == EINVAL && __rseq_size != 32)
        r = syscall(SYS_rseq, rs, __rseq_size, 0, RSEQ_SIG_X86);
    if (r == 0)
        fail("rseq area %p was not registered with the kernel", (void *)rs);
    else if (errno != EBUSY)
        fail("rseq re-registration answered %s, expected EBUSY", strerror(errno));

    int cpu = -1, ok = 0;
    int32_t id = -1;
    for (int attempt = 0; attempt < 1000 && !ok; attempt++) {
        unsigned c1 = ~0u, c2 = ~0u;
        syscall(SYS_getcpu, &c1, NULL, NULL);
        id = (int32_t)*(volatile uint32_t *)&rs->cpu_id;
        syscall(SYS_getcpu, &c2, NULL, NULL);
        cpu = (int)c1;
        ok = c1 == c2 && id == (int32_t)c1;
    }
    if (!ok)
        fail("rseq cpu_id is %d, the task runs on cpu %d", id, cpu);
    int sc = sched_getcpu();
    if (sc < 0)
        FAIL_ERRNO("sched_getcpu");
}

int main(void)
{
    workload_init("misc", 0);

    if (prctl(PR_SET_NAME, "torpor-misc") != 0)
        FAIL_ERRNO("PR_SET_NAME");
    if (personality((unsigned long)personality(0xffffffff) | UNAME26 | ADDR_NO_RANDOMIZE) < 0)
        FAIL_ERRNO("personality");
    umask(027);
    read_blob("/proc/self/cmdline", &cmdline);
    read_blob("/proc/self/environ", &environ_blob);
    read_blob("/proc/self/auxv", &auxv);
    snapshot(&before);
    if (strcmp(before.comm, "torpor-misc") != 0)
        fail("PR_SET_NAME did not take ('%s')", before.comm);
    if (!(before.personality & UNAME26))
        fail("personality did not take (0x%x)", before.personality);
    if (!before.robust_head || !before.tid_address)
        fail("glibc set no robust list or clear_child_tid");
    if (cmdline.len <= 0 || environ_blob.len <= 0 || auxv.len <= 0)
        fail("could not read cmdline, environ or auxv");
    check_rseq();
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    static struct state now;
    snapshot(&now);
    compare(&now);
    check_blob("/proc/self/cmdline", &cmdline);
    check_blob("/proc/self/environ", &environ_blob);
    check_blob("/proc/self/auxv", &auxv);
    check_rseq();

    unsigned char *p = sbrk(1 << 20);
    if (p == (void *)-1) {
        FAIL_ERRNO("sbrk(1 MiB) after the wait");
    } else {
        memset(p, 0xab, 1 << 20);
        if (p[(1 << 20) - 1] != 0xab || sbrk(0) != p + (1 << 20))
            fail("the heap grown by sbrk does not hold data");
    }
    finish();
}

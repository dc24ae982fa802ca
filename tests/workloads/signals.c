/*
 * signals: dispositions, masks, the alternate stack and pending signals
 * survive a checkpoint, and handlers still run correctly afterwards.
 *
 * Before READY: handlers with varied flags (SA_SIGINFO, SA_RESTART,
 * SA_ONSTACK, SA_NODEFER, SA_RESETHAND, none) and sa_mask sets, one ignored
 * signal, a blocked mask, a sigaltstack, and three signals left pending while
 * blocked (SIGQUIT from kill, SIGRTMIN+5 queued twice with values).
 *
 * After restore: every disposition (raw rt_sigaction: handler, flags as the
 * kernel reports them, restorer, mask), the blocked mask, the pending set and
 * the altstack must equal what was recorded.  Then the pending signals are
 * unblocked and every handled signal is raised (kill gives SI_USER, tgkill
 * SI_TKILL, sigqueue SI_QUEUE): each handler must run once per signal with the
 * right si_signo/si_code/si_pid/si_value, the right blocked mask inside the
 * handler, on the alternate stack exactly when SA_ONSTACK is set, and
 * SA_RESETHAND must have reset its handler.  On i386 this also proves the
 * handlers got proper 32-bit frames.
 */
#include "common.h"

#include <sys/syscall.h>

#define MAXSIG 64
#define MAX_DELIVERIES 4
#define ALTSTACK_SIZE (64 * 1024)

/* The kernel's struct sigaction for rt_sigaction (both ABIs, native word size). */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
} __attribute__((packed, aligned(4)));

enum raise_how { BY_KILL, BY_TGKILL, PENDING, NOT_RAISED };

struct handled {
    int sig;
    int flags;
    uint64_t sa_mask;
    enum raise_how how;
};

struct record {
    volatile int count;
    int signo[MAX_DELIVERIES];
    int code[MAX_DELIVERIES];
    int pid[MAX_DELIVERIES];
    int value[MAX_DELIVERIES];
    uint64_t blocked[MAX_DELIVERIES];
    uintptr_t local[MAX_DELIVERIES];
};

static struct record rec[MAXSIG + 1];
static struct handled handled[16];
static int nhandled;
static struct ksigaction recorded_act[MAXSIG + 1];
static uint64_t recorded_blocked, recorded_pending;
static stack_t recorded_altstack;
static char altstack[ALTSTACK_SIZE];
static int sig_rt2, sig_rt5;

static uint64_t bit(int sig)
{
    return 1ULL << (sig - 1);
}

static uint64_t blocked_now(void)
{
    uint64_t m = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
    return m;
}

static void note_delivery(int sig, int code, int pid, int value, int signo)
{
    struct record *r = &rec[sig];
    int k = r->count;
    volatile char local;
    if (k < MAX_DELIVERIES) {
        r->signo[k] = signo;
        r->code[k] = code;
        r->pid[k] = pid;
        r->value[k] = value;
        r->blocked[k] = blocked_now();
        r->local[k] = (uintptr_t)&local;
    }
    r->count = k + 1;
}

static void on_siginfo(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    note_delivery(sig, si->si_code, si->si_pid, si->si_value.sival_int, si->si_signo);
}

static void on_plain(int sig)
{
    note_delivery(sig, 0, 0, 0, sig);
}

static void add_handler(int sig, int flags, uint64_t mask, enum raise_how how)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s <= MAXSIG; s++)
        if (mask & bit(s))
            sigaddset(&sa.sa_mask, s);
    if (flags & SA_SIGINFO)
        sa.sa_sigaction = on_siginfo;
    else
        sa.sa_handler = on_plain;
    sa.sa_flags = flags;
    if (sigaction(sig, &sa, NULL) != 0) {
        fail("sigaction(%d) failed: %s", sig, strerror(errno));
        finish();
    }
    handled[nhandled++] = (struct handled){sig, flags, mask, how};
}

static int query_action(int sig, struct ksigaction *ka)
{
    memset(ka, 0, sizeof(*ka));
    return (int)syscall(SYS_rt_sigaction, sig, NULL, ka, 8);
}

static void record_state(void)
{
    for (int s = 1; s <= MAXSIG; s++)
        if (s != SIGKILL && s != SIGSTOP && query_action(s, &recorded_act[s]) != 0)
            fail("rt_sigaction(%d) query failed: %s", s, strerror(errno));
    recorded_blocked = blocked_now();
    syscall(SYS_rt_sigpending, &recorded_pending, 8);
    sigaltstack(NULL, &recorded_altstack);
}

static void check_recorded_state(void)
{
    for (int s = 1; s <= MAXSIG; s++) {
        struct ksigaction ka;
        const struct ksigaction *want = &recorded_act[s];
        if (s == SIGKILL || s == SIGSTOP)
            continue;
        if (query_action(s, &ka) != 0) {
            fail("rt_sigaction(%d) query failed: %s", s, strerror(errno));
            continue;
        }
        if (ka.handler != want->handler)
            fail("signal %d: handler %p, was %p", s, ka.handler, want->handler);
        if (ka.flags != want->flags)
            fail("signal %d: sa_flags 0x%lx, was 0x%lx", s, ka.flags, want->flags);
        if (ka.restorer != want->restorer)
            fail("signal %d: sa_restorer %p, was %p", s, ka.restorer, want->restorer);
        if (ka.mask != want->mask)
            fail("signal %d: sa_mask 0x%llx, was 0x%llx", s, (unsigned long long)ka.mask,
                 (unsigned long long)want->mask);
    }
    CHECK_EQ("blocked mask", blocked_now(), recorded_blocked);
    uint64_t pending = 0;
    syscall(SYS_rt_sigpending, &pending, 8);
    CHECK_EQ("pending set", pending, recorded_pending);

    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0)
        FAIL_ERRNO("sigaltstack query");
    CHECK_EQ("altstack ss_sp", (uintptr_t)ss.ss_sp, (uintptr_t)recorded_altstack.ss_sp);
    CHECK_EQ("altstack ss_size", ss.ss_size, recorded_altstack.ss_size);
    CHECK_EQ("altstack ss_flags", ss.ss_flags, recorded_altstack.ss_flags);
}

/* Check the k-th delivery of h->sig, raised while `mask_at_raise` was blocked. */
static void check_delivery(const struct handled *h, int k, int code, int value,
                           uint64_t mask_at_raise)
{
    const struct record *r = &rec[h->sig];
    int s = h->sig;
    if (r->signo[k] != s)
        fail("signal %d delivery %d: si_signo %d", s, k, r->signo[k]);
    if (h->flags & SA_SIGINFO) {
        if (r->code[k] != code)
            fail("signal %d delivery %d: si_code %d, expected %d", s, k, r->code[k], code);
        if (r->pid[k] != getpid())
            fail("signal %d delivery %d: si_pid %d, expected %d", s, k, r->pid[k], getpid());
        if (code == SI_QUEUE && r->value[k] != value)
            fail("signal %d delivery %d: si_value %d, expected %d", s, k, r->value[k], value);
    }
    uint64_t want = mask_at_raise | h->sa_mask | ((h->flags & SA_NODEFER) ? 0 : bit(s));
    if (r->blocked[k] != want)
        fail("signal %d: blocked mask inside the handler 0x%llx, expected 0x%llx", s,
             (unsigned long long)r->blocked[k], (unsigned long long)want);
    uintptr_t lo = (uintptr_t)altstack, hi = lo + sizeof(altstack);
    int on_alt = r->local[k] >= lo && r->local[k] < hi;
    if ((h->flags & SA_ONSTACK) && !on_alt)
        fail("signal %d (SA_ONSTACK) handler ran at %p, off the alternate stack", s,
             (void *)r->local[k]);
    if (!(h->flags & SA_ONSTACK) && on_alt)
        fail("signal %d handler ran on the alternate stack without SA_ONSTACK", s);
}

static void deliver_pending(void)
{
    sigset_t one;
    for (int i = 0; i < nhandled; i++) {
        const struct handled *h = &handled[i];
        if (h->how != PENDING)
            continue;
        int expected = h->sig == sig_rt5 ? 2 : 1;
        sigemptyset(&one);
        sigaddset(&one, h->sig);
        uint64_t mask_at_raise = blocked_now() & ~bit(h->sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        if (rec[h->sig].count != expected) {
            fail("pending signal %d: handler ran %d times after unblocking, expected %d",
                 h->sig, rec[h->sig].count, expected);
            continue;
        }
        for (int k = 0; k < expected; k++)
            check_delivery(h, k, h->sig == sig_rt5 ? SI_QUEUE : SI_USER, 11 * (k + 1),
                           mask_at_raise);
    }
}

static void raise_handled(void)
{
    for (int i = 0; i < nhandled; i++) {
        const struct handled *h = &handled[i];
        if (h->how != BY_KILL && h->how != BY_TGKILL)
            continue;
        uint64_t mask_at_raise = blocked_now();
        int before = rec[h->sig].count;
        if (h->how == BY_KILL)
            kill(getpid(), h->sig);
        else
            syscall(SYS_tgkill, getpid(), (pid_t)syscall(SYS_gettid), h->sig);
        if (rec[h->sig].count != before + 1) {
            fail("signal %d: handler ran %d times, expected once", h->sig,
                 rec[h->sig].count - before);
            continue;
        }
        check_delivery(h, before, h->how == BY_KILL ? SI_USER : SI_TKILL, 0, mask_at_raise);
        if (h->flags & SA_RESETHAND) {
            struct ksigaction ka;
            query_action(h->sig, &ka);
            if (ka.handler != SIG_DFL)
                fail("signal %d (SA_RESETHAND): handler %p after delivery, expected SIG_DFL",
                     h->sig, ka.handler);
        }
    }
    /* Ignored must still mean ignored: the default action would kill us. */
    kill(getpid(), SIGPIPE);
}

int main(void)
{
    workload_init("signals", 0);
    sig_rt2 = SIGRTMIN + 2;
    sig_rt5 = SIGRTMIN + 5;

    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack), .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0)
        FAIL_ERRNO("sigaltstack");

    add_handler(SIGUSR2, SA_SIGINFO | SA_RESTART, bit(SIGTERM), BY_KILL);
    add_handler(SIGHUP, SA_SIGINFO | SA_ONSTACK, bit(SIGPROF) | bit(SIGXCPU), BY_TGKILL);
    add_handler(SIGALRM, SA_SIGINFO | SA_NODEFER, 0, BY_KILL);
    add_handler(SIGWINCH, SA_SIGINFO | SA_RESETHAND, bit(SIGVTALRM), BY_TGKILL);
    add_handler(sig_rt2, SA_SIGINFO | SA_ONSTACK | SA_RESTART, bit(SIGUSR2) | bit(SIGRTMIN + 7),
                BY_KILL);
    add_handler(SIGTERM, 0, bit(SIGHUP), BY_TGKILL);
    add_handler(SIGQUIT, SA_SIGINFO, 0, PENDING);
    add_handler(sig_rt5, SA_SIGINFO | SA_ONSTACK, bit(SIGALRM), PENDING);
    signal(SIGPIPE, SIG_IGN);

    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGTTOU);
    sigaddset(&block, sig_rt5);
    if (sigprocmask(SIG_BLOCK, &block, NULL) != 0)
        FAIL_ERRNO("sigprocmask");

    kill(getpid(), SIGQUIT);
    sigqueue(getpid(), sig_rt5, (union sigval){.sival_int = 11});
    sigqueue(getpid(), sig_rt5, (union sigval){.sival_int = 22});

    record_state();
    if (recorded_pending != (bit(SIGQUIT) | bit(sig_rt5)))
        fail("pending set before the wait is 0x%llx", (unsigned long long)recorded_pending);

    ready();
    wait_for_usr1();

    check_recorded_state();
    deliver_pending();
    raise_handled();
    finish();
}

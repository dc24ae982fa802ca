/*
 * pkeys: memory protection keys a restore must give back.
 *
 * Allocates keys a, b and c, frees b (a hole in the allocation), maps a page
 * guarded by a with data in it, opens key a in PKRU to fill the page, then
 * disables access through key a and write through key c.  After the restore:
 * - PKRU holds the same rights for a and c (pkey_get);
 * - reading the page faults with SEGV_PKUERR, and after pkey_set(a, 0) the
 *   data reads back;
 * - the allocation is as it was: the next pkey_alloc returns b (the hole),
 *   pkey_free(c) succeeds (c is still allocated) and a second one fails.
 *
 * Mode "default" allocates nothing: PKRU stays at the kernel's default, which
 * the restore must keep as it was (or drop, on a CPU without protection keys).
 *
 * Where the CPU has no protection keys, pkey_alloc fails and the workload
 * prints "NOPKU" instead of READY.
 */
#include "common.h"

#include <cpuid.h>

#include <setjmp.h>
#include <sys/mman.h>

#define SEGV_PKUERR_CODE 4

static sigjmp_buf fault_jump;
static volatile int fault_code;
static int key_a = -1, key_c = -1;
static unsigned rights_a, rights_c;

/* PKRU as the program set it: the kernel resets it to its default for a signal handler,
 * and leaving the handler by siglongjmp (not sigreturn) keeps that default. */
static void apply_rights(void)
{
    if (key_a >= 0) {
        pkey_set(key_a, rights_a);
        pkey_set(key_c, rights_c);
    }
}

static void on_segv(int sig, siginfo_t *info, void *ctx)
{
    (void)sig;
    (void)ctx;
    fault_code = info->si_code;
    siglongjmp(fault_jump, 1);
}

/* Read one byte of p; return -1 if it faulted (fault_code says why). */
static int read_byte(volatile const char *p)
{
    fault_code = 0;
    if (sigsetjmp(fault_jump, 1)) {
        apply_rights();
        return -1;
    }
    return *p;
}

/* Whether this CPU and kernel have protection keys (CPUID.7.0:ECX.OSPKE): RDPKRU and
 * WRPKRU fault where they do not. */
static int os_has_pkeys(void)
{
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && (ecx >> 4 & 1);
}

int main(int argc, char **argv)
{
    int only_default = argc > 1 && strcmp(argv[1], "default") == 0;
    workload_init("pkeys", 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);

    int a = pkey_alloc(0, 0);
    if (a < 0) {
        say("NOPKU %s\n", strerror(errno));
        return 0;
    }
    if (only_default) {
        /* pkey_alloc gave the key all rights: give it back the kernel's default (no
         * access), so that PKRU is the default a process that never used keys holds. */
        pkey_set(a, PKEY_DISABLE_ACCESS);
        pkey_free(a);
        unsigned before = pkey_get(1);
        ready();
        while (!usr1_received)
            pause();
        if (!os_has_pkeys()) /* restored on a CPU without them: PKRU was dropped */
            finish();
        CHECK_EQ("rights of key 1 (the kernel's default)", pkey_get(1), before);
        if (pkey_alloc(0, 0) != 1)
            fail("key 1 is no longer free");
        finish();
    }
    int b = pkey_alloc(0, 0);
    int c = pkey_alloc(0, 0);
    if (b < 0 || c < 0 || pkey_free(b) != 0) {
        FAIL_ERRNO("allocating keys");
        finish();
    }
    char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED || pkey_mprotect(page, 4096, PROT_READ | PROT_WRITE, a) != 0) {
        FAIL_ERRNO("mapping a guarded page");
        finish();
    }
    strcpy(page, "guarded by a key");
    key_a = a, key_c = c;
    rights_a = PKEY_DISABLE_ACCESS, rights_c = PKEY_DISABLE_WRITE;
    apply_rights();
    if (read_byte(page) != -1 || fault_code != SEGV_PKUERR_CODE)
        fail("a read through a disabled key did not fault before the checkpoint");
    ready();

    while (!usr1_received)
        pause();

    CHECK_EQ("rights of key a", pkey_get(a), PKEY_DISABLE_ACCESS);
    CHECK_EQ("rights of key c", pkey_get(c), PKEY_DISABLE_WRITE);
    if (read_byte(page) != -1)
        fail("a read through disabled key %d did not fault", a);
    else
        CHECK_EQ("fault code", fault_code, SEGV_PKUERR_CODE);
    rights_a = 0;
    apply_rights();
    if (read_byte(page) == -1 || strcmp(page, "guarded by a key") != 0)
        fail("the guarded page does not read back with its key open");
    CHECK_EQ("next key allocated (the hole)", pkey_alloc(0, 0), b);
    if (pkey_free(c) != 0)
        fail("key %d is no longer allocated: %s", c, strerror(errno));
    else if (pkey_free(c) == 0)
        fail("key %d could be freed twice", c);
    finish();
}

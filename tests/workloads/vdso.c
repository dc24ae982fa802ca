/*
 * vdso: time and CPU queries keep working after restore, both through glibc
 * and through function pointers taken from the vDSO before the checkpoint.
 *
 * Before READY the workload parses the vDSO's ELF image (at
 * getauxval(AT_SYSINFO_EHDR): dynamic symbols and their names) and keeps
 * pointers to __vdso_clock_gettime, __vdso_gettimeofday, __vdso_time,
 * __vdso_getcpu (and on i386 __vdso_clock_gettime64 and __kernel_vsyscall).
 * It calls everything once before the wait, and again after it: each result
 * must agree with the raw syscall bracketing it (realtime clocks within 50 ms;
 * monotonic clocks may not be behind the syscall before them), must not have
 * gone backwards since before the wait, and AT_SYSINFO_EHDR must be the same
 * address, still a mapping named [vdso] in /proc/self/maps.
 *
 * Mode "trampolines": the restore was asked to keep the dumped vDSO as plain
 * memory and jump from it to the new one, so the old address need not be
 * named [vdso]; it must still hold the vDSO's ELF image, and some [vdso]
 * mapping must exist.
 */
#include "common.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

#define TOLERANCE_NS 50000000LL

/* Kernel structs of the native word size (old 32-bit layout on i386). */
struct kts {
    long tv_sec;
    long tv_nsec;
};
struct ktv {
    long tv_sec;
    long tv_usec;
};
struct kts64 {
    int64_t tv_sec;
    int64_t tv_nsec;
};

typedef int (*clock_gettime_fn)(clockid_t, struct kts *);
typedef int (*clock_gettime64_fn)(clockid_t, struct kts64 *);
typedef int (*gettimeofday_fn)(struct ktv *, void *);
typedef long (*time_fn)(long *);
typedef int (*getcpu_fn)(unsigned *, unsigned *, void *);

static uintptr_t vdso_base;
static clock_gettime_fn v_clock_gettime;
static gettimeofday_fn v_gettimeofday;
static time_fn v_time;
static getcpu_fn v_getcpu;
#ifndef __x86_64__
static clock_gettime64_fn v_clock_gettime64;
static void *v_kernel_vsyscall;
#endif

static const struct {
    clockid_t id;
    const char *name;
    int monotonic;
} clocks[] = {
    {CLOCK_REALTIME, "CLOCK_REALTIME", 0},
    {CLOCK_MONOTONIC, "CLOCK_MONOTONIC", 1},
    {CLOCK_BOOTTIME, "CLOCK_BOOTTIME", 1},
    {CLOCK_MONOTONIC_COARSE, "CLOCK_MONOTONIC_COARSE", 1},
    {CLOCK_REALTIME_COARSE, "CLOCK_REALTIME_COARSE", 0},
};
#define NCLOCKS (sizeof(clocks) / sizeof(clocks[0]))

/* The latest value seen per monotonic clock, by any route: it must never go backwards. */
static long long last_ns[NCLOCKS];

/* ---- vDSO ELF lookup ------------------------------------------------------- */

static void *vdso_sym(const char *name)
{
    const ElfW(Ehdr) *eh = (const void *)vdso_base;
    const ElfW(Phdr) *ph = (const void *)(vdso_base + eh->e_phoff);
    const ElfW(Shdr) *sh = (const void *)(vdso_base + eh->e_shoff);
    intptr_t bias = 0;
    int have_load = 0;

    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !have_load) {
            bias = (intptr_t)vdso_base + (intptr_t)ph[i].p_offset - (intptr_t)ph[i].p_vaddr;
            have_load = 1;
        }
    }
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sh[i].sh_type != SHT_DYNSYM)
            continue;
        const ElfW(Sym) *sym = (const void *)(vdso_base + sh[i].sh_offset);
        const char *str = (const char *)(vdso_base + sh[sh[i].sh_link].sh_offset);
        size_t n = sh[i].sh_size / sh[i].sh_entsize;
        for (size_t j = 0; j < n; j++) {
            if (sym[j].st_shndx != SHN_UNDEF && strcmp(str + sym[j].st_name, name) == 0)
                return (void *)(bias + (intptr_t)sym[j].st_value);
        }
    }
    return NULL;
}

static void *need_sym(const char *name)
{
    void *p = vdso_sym(name);
    if (!p)
        fail("the vDSO exports no %s", name);
    return p;
}

static int is_elf(uintptr_t addr)
{
    return memcmp((const void *)addr, ELFMAG, SELFMAG) == 0;
}

static void find_vdso_functions(void)
{
    vdso_base = getauxval(AT_SYSINFO_EHDR);
    if (!vdso_base || !is_elf(vdso_base)) {
        fail("no vDSO ELF image at AT_SYSINFO_EHDR (0x%lx)", (unsigned long)vdso_base);
        finish();
    }
    v_clock_gettime = (clock_gettime_fn)need_sym("__vdso_clock_gettime");
    v_gettimeofday = (gettimeofday_fn)need_sym("__vdso_gettimeofday");
    v_time = (time_fn)need_sym("__vdso_time");
    v_getcpu = (getcpu_fn)need_sym("__vdso_getcpu");
#ifndef __x86_64__
    v_clock_gettime64 = (clock_gettime64_fn)need_sym("__vdso_clock_gettime64");
    v_kernel_vsyscall = need_sym("__kernel_vsyscall");
    if (v_kernel_vsyscall && getauxval(AT_SYSINFO) != (unsigned long)v_kernel_vsyscall)
        fail("AT_SYSINFO 0x%lx is not __kernel_vsyscall %p", getauxval(AT_SYSINFO),
             v_kernel_vsyscall);
#endif
    if (workload_failures)
        finish();
}

/* ---- comparisons ------------------------------------------------------------ */

static long long raw_clock_ns(clockid_t id)
{
    struct kts ts;
    if (syscall(SYS_clock_gettime, id, &ts) != 0)
        return -1;
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void note(size_t c, const char *how, long long ns)
{
    if (!clocks[c].monotonic)
        return; /* the realtime clocks may legitimately be set back */
    if (ns < last_ns[c])
        fail("%s via %s went backwards: %lld ns, earlier %lld ns", clocks[c].name, how, ns,
             last_ns[c]);
    else
        last_ns[c] = ns;
}

/* Is value consistent with the syscall bracket [lo, hi]? */
static void bracket(size_t c, const char *how, long long lo, long long value, long long hi)
{
    long long back = clocks[c].monotonic ? 0 : TOLERANCE_NS;
    if (value < lo - back || value > hi + TOLERANCE_NS)
        fail("%s via %s = %lld ns, outside the syscall bracket [%lld, %lld]", clocks[c].name,
             how, value, lo, hi);
}

static void check_clocks(void)
{
    for (size_t c = 0; c < NCLOCKS; c++) {
        clockid_t id = clocks[c].id;
        struct timespec g;
        struct kts v;
        long long lo, hi;

        lo = raw_clock_ns(id);
        note(c, "syscall", lo);
        if (clock_gettime(id, &g) != 0)
            FAIL_ERRNO("glibc clock_gettime");
        hi = raw_clock_ns(id);
        bracket(c, "glibc", lo, g.tv_sec * 1000000000LL + g.tv_nsec, hi);
        note(c, "glibc", g.tv_sec * 1000000000LL + g.tv_nsec);

        lo = raw_clock_ns(id);
        if (v_clock_gettime(id, &v) != 0)
            fail("__vdso_clock_gettime(%s) failed", clocks[c].name);
        hi = raw_clock_ns(id);
        bracket(c, "__vdso_clock_gettime", lo, v.tv_sec * 1000000000LL + v.tv_nsec, hi);
        note(c, "__vdso_clock_gettime", v.tv_sec * 1000000000LL + v.tv_nsec);
#ifndef __x86_64__
        struct kts64 v64;
        struct kts64 r64;
        lo = raw_clock_ns(id);
        if (v_clock_gettime64(id, &v64) != 0)
            fail("__vdso_clock_gettime64(%s) failed", clocks[c].name);
        if (syscall(SYS_clock_gettime64, id, &r64) != 0)
            FAIL_ERRNO("clock_gettime64 syscall");
        hi = r64.tv_sec * 1000000000LL + r64.tv_nsec;
        bracket(c, "__vdso_clock_gettime64", lo, v64.tv_sec * 1000000000LL + v64.tv_nsec, hi);
        note(c, "__vdso_clock_gettime64", v64.tv_sec * 1000000000LL + v64.tv_nsec);
#endif
    }
}

static long long raw_tod_us(void)
{
    struct ktv tv;
    if (syscall(SYS_gettimeofday, &tv, NULL) != 0)
        return -1;
    return tv.tv_sec * 1000000LL + tv.tv_usec;
}

static void check_gettimeofday_and_time(void)
{
    const long long tol_us = TOLERANCE_NS / 1000;
    struct timeval g;
    struct ktv v;
    long long lo, hi, x;

    lo = raw_tod_us();
    gettimeofday(&g, NULL);
    hi = raw_tod_us();
    x = g.tv_sec * 1000000LL + g.tv_usec;
    if (x < lo - tol_us || x > hi + tol_us)
        fail("glibc gettimeofday %lld us outside [%lld, %lld]", x, lo, hi);

    lo = raw_tod_us();
    if (v_gettimeofday(&v, NULL) != 0)
        fail("__vdso_gettimeofday failed");
    hi = raw_tod_us();
    x = v.tv_sec * 1000000LL + v.tv_usec;
    if (x < lo - tol_us || x > hi + tol_us)
        fail("__vdso_gettimeofday %lld us outside [%lld, %lld]", x, lo, hi);

    long tlo = syscall(SYS_time, NULL);
    long tg = (long)time(NULL);
    long tv = v_time(NULL);
    long thi = syscall(SYS_time, NULL);
    if (tg < tlo - 1 || tg > thi + 1)
        fail("glibc time() %ld outside [%ld, %ld]", tg, tlo, thi);
    if (tv < tlo - 1 || tv > thi + 1)
        fail("__vdso_time %ld outside [%ld, %ld]", tv, tlo, thi);
}

/* The task may migrate between calls: retry until one round agrees. */
static void check_getcpu(void)
{
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    unsigned rc = ~0u, rn = ~0u, vc = ~0u, vn = ~0u, gc = ~0u, gn = ~0u, rc2 = ~0u, rn2 = ~0u;
    int sc = -1;
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (syscall(SYS_getcpu, &rc, &rn, NULL) != 0)
            FAIL_ERRNO("getcpu syscall");
        if (v_getcpu(&vc, &vn, NULL) != 0)
            fail("__vdso_getcpu failed");
        if (getcpu(&gc, &gn) != 0)
            FAIL_ERRNO("glibc getcpu");
        sc = sched_getcpu();
        syscall(SYS_getcpu, &rc2, &rn2, NULL);
        if (rc == rc2 && vc == rc && gc == rc && (unsigned)sc == rc && vn == rn && gn == rn)
            break;
    }
    if (vc != rc || vn != rn)
        fail("__vdso_getcpu says cpu %u node %u, the syscall cpu %u node %u", vc, vn, rc, rn);
    if (gc != rc || gn != rn)
        fail("glibc getcpu says cpu %u node %u, the syscall cpu %u node %u", gc, gn, rc, rn);
    if (sc < 0 || (unsigned)sc != rc)
        fail("sched_getcpu says %d, the getcpu syscall %u", sc, rc);
    if ((long)rc >= ncpu)
        fail("getcpu says cpu %u of %ld", rc, ncpu);
}

#ifndef __x86_64__
static void check_kernel_vsyscall(void)
{
    long pid;
    asm volatile("call *%[fn]" : "=a"(pid) : "0"((long)SYS_getpid), [fn] "rm"(v_kernel_vsyscall)
                 : "memory", "cc");
    if (pid != getpid())
        fail("getpid through __kernel_vsyscall returned %ld, expected %d", pid, getpid());
}
#endif

/* Name of the mapping that contains addr, from /proc/self/maps ("" if anonymous, NULL if none). */
static const char *mapping_name(uintptr_t addr, char *out, size_t outlen, int *any_vdso)
{
    static char buf[1 << 17];
    size_t len = 0;
    ssize_t n;
    const char *found = NULL;
    int fd = open("/proc/self/maps", O_RDONLY);
    *any_vdso = 0;
    if (fd < 0)
        return NULL;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long start, end;
        int pathpos = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &pathpos) < 2)
            continue;
        const char *path = pathpos ? line + pathpos : "";
        if (strcmp(path, "[vdso]") == 0)
            *any_vdso = 1;
        if (addr >= start && addr < end) {
            snprintf(out, outlen, "%s", path);
            found = out;
        }
    }
    return found;
}

static void check_vdso_mapping(uintptr_t recorded, int trampolines)
{
    char name[256];
    int any_vdso;
    uintptr_t now = getauxval(AT_SYSINFO_EHDR);
    if (now != recorded)
        fail("AT_SYSINFO_EHDR is now 0x%lx, was 0x%lx", (unsigned long)now,
             (unsigned long)recorded);
    const char *n = mapping_name(now, name, sizeof(name), &any_vdso);
    if (!n)
        fail("AT_SYSINFO_EHDR 0x%lx is not mapped", (unsigned long)now);
    else if (!trampolines && strcmp(n, "[vdso]") != 0)
        fail("AT_SYSINFO_EHDR 0x%lx is in a mapping named '%s', not [vdso]", (unsigned long)now,
             n);
    else if (!is_elf(now))
        fail("AT_SYSINFO_EHDR 0x%lx no longer holds an ELF image", (unsigned long)now);
    if (!any_vdso)
        fail("no [vdso] mapping in /proc/self/maps");
}

static void check_all(void)
{
    check_clocks();
    check_gettimeofday_and_time();
    check_getcpu();
#ifndef __x86_64__
    check_kernel_vsyscall();
#endif
}

int main(int argc, char **argv)
{
    int trampolines = argc > 1 && strcmp(argv[1], "trampolines") == 0;
    workload_init("vdso", 0);
    if (argc > 1 && !trampolines) {
        fail("unknown mode '%s' (trampolines)", argv[1]);
        finish();
    }
    find_vdso_functions();
    uintptr_t recorded_base = vdso_base;
    check_vdso_mapping(recorded_base, 0);
    check_all(); /* the same checks before the wait: the baseline must pass too */
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    check_vdso_mapping(recorded_base, trampolines);
    check_all();
    finish();
}

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
 *
 * The modes below take "trampolines" as an optional second argument, with the
 * same meaning (the restore kept the dumped vDSO as plain memory).
 *
 * Mode "unmapped": before READY the workload munmaps its [vdso] and every
 * [vvar*] mapping. glibc may then no longer call into the vDSO, so from then
 * on time comes only from raw syscalls. On i386 glibc also enters the kernel
 * through __kernel_vsyscall and returns from signal handlers through the vDSO,
 * so the workload first points glibc's TCB sysinfo slot at its own
 * "int $0x80; ret" and reinstalls its SIGUSR1 handler with a restorer of its
 * own. After the wait /proc/self/maps must still show no [vdso] and no
 * [vvar*], nothing may be mapped at the old vDSO address, and the raw clock,
 * gettimeofday, time and getcpu syscalls must work and agree.
 *
 * Mode "moved": before READY the workload mremaps the whole trio ([vvar],
 * [vvar_vclock], [vdso], whichever exist, each mapping whole, keeping their
 * relative offsets) to a free address, then takes its function pointers from
 * the moved vDSO's ELF image (on i386 glibc's sysinfo slot is pointed at the
 * moved __kernel_vsyscall). glibc's own vDSO pointers are stale after the
 * move, so only the moved vDSO's functions and raw syscalls are compared,
 * before the wait and after it. After the wait the trio must still be at the
 * moved addresses, with the same names and sizes; with "trampolines" the moved
 * vDSO address must instead hold the old ELF image as plain memory (not named
 * [vdso]) while some [vdso] exists elsewhere, and calls through it must still
 * give the right time.
 *
 * Mode "spin": instead of pausing, the workload calls glibc's clock_gettime in
 * a tight loop until SIGUSR1, so that a checkpoint may catch it inside the
 * vDSO. CLOCK_MONOTONIC must never go backwards across the loop, and the
 * default checks must pass after it.
 */
#include "common.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>
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

/*
 * Whether glibc's time functions may be called: not once the vDSO glibc found at
 * startup has been unmapped or moved, since glibc keeps pointers into it.
 */
static int use_glibc_time = 1;

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

/*
 * Take the function pointers from the vDSO image at base. check_sysinfo: base is
 * where the kernel put it, so AT_SYSINFO must name its __kernel_vsyscall (i386).
 */
static void lookup_vdso_functions(uintptr_t base, int check_sysinfo)
{
    vdso_base = base;
    if (!vdso_base || !is_elf(vdso_base)) {
        fail("no vDSO ELF image at 0x%lx", (unsigned long)vdso_base);
        finish();
    }
    v_clock_gettime = (clock_gettime_fn)need_sym("__vdso_clock_gettime");
    v_gettimeofday = (gettimeofday_fn)need_sym("__vdso_gettimeofday");
    v_time = (time_fn)need_sym("__vdso_time");
    v_getcpu = (getcpu_fn)vdso_sym("__vdso_getcpu"); /* not in every ia32 vDSO (6.1) */
#ifndef __x86_64__
    v_clock_gettime64 = (clock_gettime64_fn)need_sym("__vdso_clock_gettime64");
    v_kernel_vsyscall = need_sym("__kernel_vsyscall");
    if (check_sysinfo && v_kernel_vsyscall &&
        getauxval(AT_SYSINFO) != (unsigned long)v_kernel_vsyscall)
        fail("AT_SYSINFO 0x%lx is not __kernel_vsyscall %p", getauxval(AT_SYSINFO),
             v_kernel_vsyscall);
#else
    (void)check_sysinfo;
#endif
    if (workload_failures)
        finish();
}

static void find_vdso_functions(void)
{
    lookup_vdso_functions(getauxval(AT_SYSINFO_EHDR), 1);
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
        if (use_glibc_time) {
            if (clock_gettime(id, &g) != 0)
                FAIL_ERRNO("glibc clock_gettime");
            hi = raw_clock_ns(id);
            bracket(c, "glibc", lo, g.tv_sec * 1000000000LL + g.tv_nsec, hi);
            note(c, "glibc", g.tv_sec * 1000000000LL + g.tv_nsec);
        }

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

    if (use_glibc_time) {
        lo = raw_tod_us();
        gettimeofday(&g, NULL);
        hi = raw_tod_us();
        x = g.tv_sec * 1000000LL + g.tv_usec;
        if (x < lo - tol_us || x > hi + tol_us)
            fail("glibc gettimeofday %lld us outside [%lld, %lld]", x, lo, hi);
    }

    lo = raw_tod_us();
    if (v_gettimeofday(&v, NULL) != 0)
        fail("__vdso_gettimeofday failed");
    hi = raw_tod_us();
    x = v.tv_sec * 1000000LL + v.tv_usec;
    if (x < lo - tol_us || x > hi + tol_us)
        fail("__vdso_gettimeofday %lld us outside [%lld, %lld]", x, lo, hi);

    long tlo = syscall(SYS_time, NULL);
    long tg = use_glibc_time ? (long)time(NULL) : tlo;
    long tv = v_time(NULL);
    long thi = syscall(SYS_time, NULL);
    if (tg < tlo - 1 || tg > thi + 1)
        fail("glibc time() %ld outside [%ld, %ld]", tg, tlo, thi);
    if (tv < tlo - 1 || tv > thi + 1)
        fail("__vdso_time %ld outside [%ld, %ld]", tv, tlo, thi);
}

/*
 * A restore onto a kernel whose vDSO lacks a function makes that function trap. The test
 * lists such functions (from torpor's warning) in the file vdso-missing in the working
 * directory; the checks leave them alone, glibc's cached pointers to them included.
 */
static int missing_in_vdso(const char *name)
{
    char buf[4096];
    FILE *f = fopen("vdso-missing", "r");
    if (!f)
        return 0;
    int found = 0;
    while (fgets(buf, sizeof(buf), f))
        if (strncmp(buf, name, strlen(name)) == 0 && (buf[strlen(name)] == '\n' || !buf[strlen(name)]))
            found = 1;
    fclose(f);
    return found;
}

/* The task may migrate between calls: retry until one round agrees. */
static void check_getcpu(void)
{
    if (!v_getcpu || missing_in_vdso("__vdso_getcpu"))
        return;
    long ncpu = sysconf(_SC_NPROCESSORS_CONF);
    unsigned rc = ~0u, rn = ~0u, vc = ~0u, vn = ~0u, gc = ~0u, gn = ~0u, rc2 = ~0u, rn2 = ~0u;
    int sc = -1;
    for (int attempt = 0; attempt < 1000; attempt++) {
        if (syscall(SYS_getcpu, &rc, &rn, NULL) != 0)
            FAIL_ERRNO("getcpu syscall");
        if (v_getcpu(&vc, &vn, NULL) != 0)
            fail("__vdso_getcpu failed");
        if (use_glibc_time) {
            if (getcpu(&gc, &gn) != 0)
                FAIL_ERRNO("glibc getcpu");
            sc = sched_getcpu();
        } else {
            gc = rc, gn = rn, sc = (int)rc; /* glibc's vDSO pointers are stale */
        }
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

/* ---- the vDSO's own mappings ------------------------------------------------ */

struct region {
    uintptr_t start, end;
    char name[32];
};
#define MAX_REGIONS 8

/* The [vdso] and [vvar*] lines of /proc/self/maps, in address order; returns how many. */
static int special_mappings(struct region *out, int max)
{
    static char buf[1 << 17];
    size_t len = 0;
    ssize_t got;
    int n = 0;
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0) {
        FAIL_ERRNO("open /proc/self/maps");
        return 0;
    }
    while (len < sizeof(buf) - 1 && (got = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)got;
    close(fd);
    buf[len] = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        unsigned long start, end;
        int pathpos = 0;
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &pathpos) < 2)
            continue;
        const char *path = pathpos ? line + pathpos : "";
        if (strcmp(path, "[vdso]") != 0 && strncmp(path, "[vvar", 5) != 0)
            continue;
        if (n < max) {
            out[n].start = start;
            out[n].end = end;
            snprintf(out[n].name, sizeof(out[n].name), "%s", path);
        }
        n++;
    }
    return n;
}

#ifndef __x86_64__
/*
 * glibc on i386 enters the kernel through the pointer in its TCB at %gs:0x10
 * (tcbhead_t.sysinfo, normally __kernel_vsyscall in the vDSO). This entry does
 * the same job without the vDSO.
 */
static __attribute__((naked, used)) void int80_entry(void)
{
    __asm__ volatile("int $0x80\n\tret");
}

static void *glibc_sysinfo(void)
{
    void *p;
    __asm__ volatile("movl %%gs:0x10, %0" : "=r"(p));
    return p;
}

static void set_glibc_sysinfo(void *entry)
{
    __asm__ volatile("movl %0, %%gs:0x10" : : "r"(entry) : "memory");
}

/* Make glibc's syscalls independent of the vDSO before it is unmapped or moved. */
static void detach_glibc_syscalls(void)
{
    if (glibc_sysinfo() != (void *)getauxval(AT_SYSINFO)) {
        fail("glibc's sysinfo slot %%gs:0x10 holds %p, not AT_SYSINFO 0x%lx", glibc_sysinfo(),
             getauxval(AT_SYSINFO));
        finish();
    }
    set_glibc_sysinfo((void *)int80_entry);
}

/* Returns from a SA_SIGINFO handler, as the vDSO's __kernel_rt_sigreturn would. */
static __attribute__((naked, used)) void rt_sigreturn_entry(void)
{
    __asm__ volatile("movl $173, %eax\n\tint $0x80"); /* 173: rt_sigreturn */
}

/*
 * glibc on i386 installs handlers without SA_RESTORER, so the kernel returns from
 * them through the vDSO. Reinstall the SIGUSR1 handler with a restorer of our own.
 */
static void detach_signal_return(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint32_t mask[2];
    } ka = {usr1_handler, SA_SIGINFO | 0x04000000 /* SA_RESTORER */, rt_sigreturn_entry, {0, 0}};
    if (syscall(SYS_rt_sigaction, SIGUSR1, &ka, NULL, 8) != 0) {
        FAIL_ERRNO("rt_sigaction(SIGUSR1) with a restorer");
        finish();
    }
}
#else
static void detach_glibc_syscalls(void)
{
}

static void detach_signal_return(void)
{
}
#endif

/* The vDSO mappings as /proc/self/maps lists them; at least a [vdso], or the run ends. */
static int need_special_mappings(struct region *out)
{
    int n = special_mappings(out, MAX_REGIONS);
    int have_vdso = 0;
    for (int i = 0; i < n && i < MAX_REGIONS; i++)
        have_vdso |= strcmp(out[i].name, "[vdso]") == 0;
    if (n > MAX_REGIONS)
        fail("%d [vdso]/[vvar*] mappings, more than the %d expected", n, MAX_REGIONS);
    else if (!have_vdso)
        fail("no [vdso] mapping in /proc/self/maps");
    if (workload_failures)
        finish();
    return n;
}

/* ---- mode "unmapped" ----------------------------------------------------------- */

static long ncpu_conf;

static void check_no_vdso_mappings(uintptr_t old_base)
{
    struct region r[MAX_REGIONS];
    char name[256];
    int any_vdso;
    int n = special_mappings(r, MAX_REGIONS);
    for (int i = 0; i < n && i < MAX_REGIONS; i++)
        fail("%s is mapped at 0x%lx-0x%lx", r[i].name, (unsigned long)r[i].start,
             (unsigned long)r[i].end);
    if (mapping_name(old_base, name, sizeof(name), &any_vdso))
        fail("the old vDSO address 0x%lx is mapped again ('%s')", (unsigned long)old_base, name);
}

/* Time and CPU through raw syscalls only: each works and they agree with each other. */
static void check_raw_time(void)
{
    const long long tol_us = TOLERANCE_NS / 1000;
    for (size_t c = 0; c < NCLOCKS; c++) {
        long long ns = raw_clock_ns(clocks[c].id);
        if (ns < 0)
            fail("clock_gettime(%s) syscall failed: %s", clocks[c].name, strerror(errno));
        else
            note(c, "syscall", ns);
#ifndef __x86_64__
        struct kts64 r64;
        long long lo = raw_clock_ns(clocks[c].id);
        if (syscall(SYS_clock_gettime64, clocks[c].id, &r64) != 0)
            FAIL_ERRNO("clock_gettime64 syscall");
        long long hi = raw_clock_ns(clocks[c].id);
        bracket(c, "the clock_gettime64 syscall", lo, r64.tv_sec * 1000000000LL + r64.tv_nsec,
                hi);
#endif
    }

    long long lo = raw_tod_us();
    long long rt = raw_clock_ns(CLOCK_REALTIME);
    long long hi = raw_tod_us();
    if (lo < 0 || hi < 0)
        FAIL_ERRNO("gettimeofday syscall");
    else if (rt / 1000 < lo - tol_us || rt / 1000 > hi + tol_us)
        fail("CLOCK_REALTIME syscall %lld ns outside the gettimeofday bracket [%lld, %lld] us", rt,
             lo, hi);

    long t = syscall(SYS_time, NULL);
    long long tod = raw_tod_us();
    if (t < 0)
        FAIL_ERRNO("time syscall");
    else if (t < tod / 1000000 - 1 || t > tod / 1000000 + 1)
        fail("time syscall %ld, gettimeofday %lld us", t, tod);

    unsigned cpu = ~0u, node = ~0u;
    if (syscall(SYS_getcpu, &cpu, &node, NULL) != 0)
        FAIL_ERRNO("getcpu syscall");
    else if ((long)cpu >= ncpu_conf)
        fail("getcpu syscall says cpu %u of %ld", cpu, ncpu_conf);
}

static __attribute__((noreturn)) void run_unmapped(void)
{
    struct region r[MAX_REGIONS];
    uintptr_t old_base = getauxval(AT_SYSINFO_EHDR);
    int n = need_special_mappings(r);

    ncpu_conf = sysconf(_SC_NPROCESSORS_CONF);
    use_glibc_time = 0;
    detach_glibc_syscalls();
    detach_signal_return();
    for (int i = 0; i < n; i++) {
        if (munmap((void *)r[i].start, r[i].end - r[i].start) != 0) {
            fail("munmap %s at 0x%lx: %s", r[i].name, (unsigned long)r[i].start,
                 strerror(errno));
            finish();
        }
    }
    check_no_vdso_mappings(old_base);
    check_raw_time();
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    check_no_vdso_mappings(old_base);
    check_raw_time();
    finish();
}

/* ---- mode "moved" -------------------------------------------------------------- */

/* /proc/self/maps lists exactly the moved trio, at the moved addresses, with its names. */
static void check_moved_mappings(const struct region *moved, int n)
{
    struct region now[MAX_REGIONS];
    int m = special_mappings(now, MAX_REGIONS);
    int same = m == n;
    for (int i = 0; same && i < n; i++)
        same = now[i].start == moved[i].start && now[i].end == moved[i].end &&
               strcmp(now[i].name, moved[i].name) == 0;
    if (same)
        return;
    for (int i = 0; i < n; i++)
        fail("expected %s at 0x%lx-0x%lx", moved[i].name, (unsigned long)moved[i].start,
             (unsigned long)moved[i].end);
    for (int i = 0; i < m && i < MAX_REGIONS; i++)
        fail("found %s at 0x%lx-0x%lx", now[i].name, (unsigned long)now[i].start,
             (unsigned long)now[i].end);
}

/* After a restore with trampolines: the moved copy is plain memory, the kernel's is elsewhere. */
static void check_moved_copy_kept(uintptr_t at)
{
    char name[256];
    int any_vdso;
    const char *n = mapping_name(at, name, sizeof(name), &any_vdso);
    if (!n)
        fail("the moved vDSO address 0x%lx is not mapped", (unsigned long)at);
    else if (strcmp(n, "[vdso]") == 0)
        fail("the moved vDSO address 0x%lx is still the kernel's [vdso]", (unsigned long)at);
    else if (!is_elf(at))
        fail("the moved vDSO address 0x%lx no longer holds an ELF image", (unsigned long)at);
    if (!any_vdso)
        fail("no [vdso] mapping in /proc/self/maps");
}

static __attribute__((noreturn)) void run_moved(int trampolines)
{
    struct region r[MAX_REGIONS], moved[MAX_REGIONS];
    int n = need_special_mappings(r);
    uintptr_t lo = r[0].start, hi = r[n - 1].end, vdso_at = 0;

    use_glibc_time = 0;
    detach_glibc_syscalls();
    /* A free range for the whole span; each MREMAP_FIXED replaces its part of it. */
    char *to = mmap(NULL, hi - lo, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (to == MAP_FAILED) {
        FAIL_ERRNO("mmap of the destination");
        finish();
    }
    for (int i = 0; i < n; i++) {
        size_t size = r[i].end - r[i].start;
        char *dest = to + (r[i].start - lo);
        void *got = mremap((void *)r[i].start, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dest);
        if (got != dest) {
            fail("mremap %s 0x%lx -> %p: %s", r[i].name, (unsigned long)r[i].start,
                 (void *)dest, got == MAP_FAILED ? strerror(errno) : "moved elsewhere");
            finish();
        }
        moved[i] = r[i];
        moved[i].start = (uintptr_t)dest;
        moved[i].end = (uintptr_t)dest + size;
        if (strcmp(r[i].name, "[vdso]") == 0)
            vdso_at = (uintptr_t)dest;
    }
    check_moved_mappings(moved, n);
    lookup_vdso_functions(vdso_at, 0);
#ifndef __x86_64__
    set_glibc_sysinfo(v_kernel_vsyscall); /* glibc's syscalls now go through the moved vDSO */
#endif
    check_all();
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    if (trampolines)
        check_moved_copy_kept(vdso_at);
    else
        check_moved_mappings(moved, n);
    check_all();
    finish();
}

/* ---- mode "spin" --------------------------------------------------------------- */

/* glibc's clock_gettime(CLOCK_MONOTONIC) in a tight loop until SIGUSR1; never backwards. */
static void spin_until_usr1(void)
{
    const size_t mono = 1; /* clocks[1] is CLOCK_MONOTONIC */
    unsigned long long calls = 0;
    long long prev = last_ns[mono];
    int reported = 0;
    while (!usr1_received) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
            FAIL_ERRNO("glibc clock_gettime in the loop");
            break;
        }
        long long ns = ts.tv_sec * 1000000000LL + ts.tv_nsec;
        if (ns < prev && !reported) {
            fail("CLOCK_MONOTONIC via glibc went backwards in the loop after %llu calls: "
                 "%lld ns, earlier %lld ns",
                 calls, ns, prev);
            reported = 1;
        }
        if (ns > prev)
            prev = ns;
        calls++;
    }
    if (calls == 0)
        fail("the loop made no clock_gettime call");
    note(mono, "glibc in the loop", prev);
}

static __attribute__((noreturn)) void run_spin(int trampolines)
{
    find_vdso_functions();
    uintptr_t recorded_base = vdso_base;
    check_vdso_mapping(recorded_base, 0);
    check_all();
    if (workload_failures)
        finish();

    ready();
    spin_until_usr1();

    check_vdso_mapping(recorded_base, trampolines);
    check_all();
    finish();
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    int trampolines = strcmp(mode, "trampolines") == 0 ||
                      (argc > 2 && strcmp(argv[2], "trampolines") == 0);
    workload_init("vdso", 0);
    if (argc > 3 || (argc > 2 && strcmp(argv[2], "trampolines") != 0)) {
        fail("usage: vdso [MODE [trampolines]]");
        finish();
    }
    if (strcmp(mode, "unmapped") == 0)
        run_unmapped();
    if (strcmp(mode, "moved") == 0)
        run_moved(trampolines);
    if (strcmp(mode, "spin") == 0)
        run_spin(trampolines);
    if (argc > 1 && strcmp(mode, "trampolines") != 0) {
        fail("unknown mode '%s' (trampolines, unmapped, moved, spin)", mode);
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

/*
 * memory: every kind of user memory a process typically has, filled with
 * known patterns, checked after restore.
 *
 * - private anonymous regions of several sizes, some pages never touched
 *   (they must still read as zeroes), plus a shared anonymous region;
 * - heap: many malloc sizes (small chunks, and large ones glibc mmaps), some
 *   freed again, and an explicit sbrk() extension;
 * - a deep stack: 32 nested frames each holding a pattern; the wait happens
 *   at the bottom and every frame is checked on the way back up;
 * - a private file mapping with some pages modified (modified pages keep the
 *   modification, clean pages still equal the file, the file never sees the
 *   modification) and a shared file mapping (writes keep reaching the file,
 *   writes to the file keep reaching the mapping);
 * - a never-touched PROT_NONE region, a PROT_NONE region hiding data, a
 *   read-only region holding data, and a MAP_GROWSDOWN region that must still
 *   grow downwards after restore;
 * - /proc/self/maps (address, perms, offset, path) must be identical before
 *   the wait and after it;
 * - sbrk() and malloc() must still work after restore;
 * - regions given MADV_DONTFORK, MADV_WIPEONFORK, MADV_DONTDUMP and MADV_NOHUGEPAGE keep
 *   their data and show the advice in smaps VmFlags; a child forked after the restore has
 *   no DONTFORK region and a zeroed WIPEONFORK one.
 */
#include "common.h"

#include <fcntl.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MAX_FAILS_PER_REGION 3

/* ---- patterned regions ---------------------------------------------------- */

struct region {
    const char *name;
    unsigned char *addr;
    size_t pages;
    uint32_t seed;
    size_t stride; /* page p holds the pattern if p % stride == 0, else zeroes */
};

static void fill_page(unsigned char *page, uint32_t seed, size_t index)
{
    uint32_t *w = (uint32_t *)page;
    for (size_t i = 0; i < PAGE / 4; i++)
        w[i] = pattern32(seed, (uint32_t)(index * (PAGE / 4) + i));
}

/* Returns the index of the first differing word, or -1. */
static long check_page(const unsigned char *page, uint32_t seed, size_t index, int zero)
{
    const uint32_t *w = (const uint32_t *)page;
    for (size_t i = 0; i < PAGE / 4; i++) {
        uint32_t want = zero ? 0 : pattern32(seed, (uint32_t)(index * (PAGE / 4) + i));
        if (w[i] != want)
            return (long)i;
    }
    return -1;
}

static void fill_region(struct region *r)
{
    for (size_t p = 0; p < r->pages; p += r->stride)
        fill_page(r->addr + p * PAGE, r->seed, p);
}

static void check_region(const struct region *r)
{
    int fails = 0;
    for (size_t p = 0; p < r->pages && fails < MAX_FAILS_PER_REGION; p++) {
        int zero = p % r->stride != 0;
        long w = check_page(r->addr + p * PAGE, r->seed, p, zero);
        if (w >= 0) {
            fail("%s: page %zu (%s) differs at byte %ld", r->name, p,
                 zero ? "never touched, should be zero" : "pattern", w * 4);
            fails++;
        }
    }
}

static void *map_anon(size_t pages, int prot, int flags)
{
    void *p = mmap(NULL, pages * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (p == MAP_FAILED) {
        FAIL_ERRNO("mmap");
        exit(1);
    }
    return p;
}

enum { R_SMALL, R_MID, R_SPARSE, R_HUGE_SPARSE, R_SHARED_ANON, R_READONLY, R_HIDDEN, R_SBRK,
       R_DONTFORK, R_WIPEONFORK, R_DONTDUMP, R_NOHUGEPAGE, R_COUNT };
static struct region regions[R_COUNT];

/* ---- heap ------------------------------------------------------------------- */

#define HEAP_CHUNKS 300
static unsigned char *chunks[HEAP_CHUNKS];
static size_t chunk_sizes[HEAP_CHUNKS];
static void *brk_before_wait;

static size_t chunk_size(int i)
{
    if (i % 50 == 7)
        return 200000 + (size_t)i * 1000; /* above the mmap threshold */
    return 1 + (size_t)((i * 7919) % 6000);
}

static unsigned char chunk_byte(int i, size_t off)
{
    return (unsigned char)(i * 31 + off * 7 + (off >> 8));
}

static void setup_heap(void)
{
    for (int i = 0; i < HEAP_CHUNKS; i++) {
        chunk_sizes[i] = chunk_size(i);
        chunks[i] = malloc(chunk_sizes[i]);
        if (!chunks[i]) {
            fail("malloc(%zu) failed", chunk_sizes[i]);
            exit(1);
        }
        for (size_t o = 0; o < chunk_sizes[i]; o++)
            chunks[i][o] = chunk_byte(i, o);
    }
    for (int i = 0; i < HEAP_CHUNKS; i += 5) { /* leave holes */
        free(chunks[i]);
        chunks[i] = NULL;
    }
}

static void check_heap(void)
{
    int fails = 0;
    for (int i = 0; i < HEAP_CHUNKS && fails < MAX_FAILS_PER_REGION; i++) {
        if (!chunks[i])
            continue;
        for (size_t o = 0; o < chunk_sizes[i]; o++) {
            if (chunks[i][o] != chunk_byte(i, o)) {
                fail("heap chunk %d (%zu bytes) differs at byte %zu", i, chunk_sizes[i], o);
                fails++;
                break;
            }
        }
    }
}

/* ---- file mappings -------------------------------------------------------- */

#define PRIV_PAGES 16
#define SHARED_PAGES 8
static int priv_fd, shared_fd;
static unsigned char *priv_map, *shared_map;
static const uint32_t priv_file_seed = 0xf11e0001, priv_dirty_seed = 0xd1270001;
static const uint32_t shared_seed = 0x5ead0001, shared_new_seed = 0x5ead0002;
static const uint32_t shared_file_seed = 0x5ead0003;

static int priv_page_modified(size_t p)
{
    return p == 2 || p == 3 || p == 9;
}

static int create_file(const char *name, size_t pages, uint32_t seed)
{
    static unsigned char buf[PAGE];
    int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        FAIL_ERRNO("open data file");
        exit(1);
    }
    for (size_t p = 0; p < pages; p++) {
        fill_page(buf, seed, p);
        if (write(fd, buf, PAGE) != (ssize_t)PAGE) {
            FAIL_ERRNO("write data file");
            exit(1);
        }
    }
    return fd;
}

static void setup_file_mappings(void)
{
    priv_fd = create_file("private.dat", PRIV_PAGES, priv_file_seed);
    priv_map = mmap(NULL, PRIV_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, priv_fd, 0);
    shared_fd = create_file("shared.dat", SHARED_PAGES, 0);
    shared_map = mmap(NULL, SHARED_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, shared_fd, 0);
    if (priv_map == MAP_FAILED || shared_map == MAP_FAILED) {
        FAIL_ERRNO("mmap file");
        exit(1);
    }
    /* Read every private page (clean, file-backed), then dirty a few. */
    for (size_t p = 0; p < PRIV_PAGES; p++) {
        if (check_page(priv_map + p * PAGE, priv_file_seed, p, 0) >= 0)
            fail("private mapping does not show the file before the wait (page %zu)", p);
        if (priv_page_modified(p))
            fill_page(priv_map + p * PAGE, priv_dirty_seed, p);
    }
    for (size_t p = 0; p < SHARED_PAGES; p++)
        fill_page(shared_map + p * PAGE, shared_seed, p);
    if (msync(shared_map, SHARED_PAGES * PAGE, MS_SYNC) != 0)
        FAIL_ERRNO("msync");
}

static void check_file_mappings(void)
{
    static unsigned char buf[PAGE];

    for (size_t p = 0; p < PRIV_PAGES; p++) {
        if (pread(priv_fd, buf, PAGE, (off_t)(p * PAGE)) != (ssize_t)PAGE) {
            FAIL_ERRNO("pread private.dat");
            break;
        }
        if (check_page(buf, priv_file_seed, p, 0) >= 0)
            fail("private.dat page %zu changed on disk (private writes leaked?)", p);
        if (priv_page_modified(p)) {
            if (check_page(priv_map + p * PAGE, priv_dirty_seed, p, 0) >= 0)
                fail("private file mapping: modified page %zu lost its modification", p);
        } else if (memcmp(priv_map + p * PAGE, buf, PAGE) != 0) {
            fail("private file mapping: clean page %zu no longer equals the file", p);
        }
    }

    for (size_t p = 0; p < SHARED_PAGES; p++) {
        if (check_page(shared_map + p * PAGE, shared_seed, p, 0) >= 0)
            fail("shared file mapping: page %zu differs", p);
        if (pread(shared_fd, buf, PAGE, (off_t)(p * PAGE)) != (ssize_t)PAGE)
            FAIL_ERRNO("pread shared.dat");
        else if (check_page(buf, shared_seed, p, 0) >= 0)
            fail("shared.dat page %zu does not hold what was written through the mapping", p);
    }
    /* Still really shared with the file, in both directions? */
    fill_page(shared_map + 5 * PAGE, shared_new_seed, 5);
    if (msync(shared_map, SHARED_PAGES * PAGE, MS_SYNC) != 0)
        FAIL_ERRNO("msync after restore");
    if (pread(shared_fd, buf, PAGE, 5 * PAGE) != (ssize_t)PAGE)
        FAIL_ERRNO("pread shared.dat");
    else if (check_page(buf, shared_new_seed, 5, 0) >= 0)
        fail("a write through the shared mapping did not reach shared.dat");
    fill_page(buf, shared_file_seed, 6);
    if (pwrite(shared_fd, buf, PAGE, 6 * PAGE) != (ssize_t)PAGE)
        FAIL_ERRNO("pwrite shared.dat");
    else if (check_page(shared_map + 6 * PAGE, shared_file_seed, 6, 0) >= 0)
        fail("a write to shared.dat did not show in the shared mapping");
}

/* ---- PROT_NONE and MAP_GROWSDOWN ---------------------------------------------- */

#define GUARD_PAGES 4
#define GD_PAGES 4
static unsigned char *guard;   /* PROT_NONE, never touched */
static unsigned char *gd;      /* MAP_GROWSDOWN, GD_PAGES pages */
static const uint32_t gd_seed = 0x6d000001;

static void setup_growsdown(void)
{
    /*
     * [0,16) PROT_NONE | [16,36) hole | [36,40) MAP_GROWSDOWN.  The region
     * below the hole is inaccessible, so the kernel's stack guard gap does not
     * stop the growsdown region from growing into the hole.
     */
    unsigned char *base = map_anon(40, PROT_NONE, 0);
    if (munmap(base + 16 * PAGE, 24 * PAGE) != 0)
        FAIL_ERRNO("munmap");
    gd = mmap(base + 36 * PAGE, GD_PAGES * PAGE, PROT_READ | PROT_WRITE,
              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
    if (gd == MAP_FAILED) {
        FAIL_ERRNO("mmap MAP_GROWSDOWN");
        exit(1);
    }
    for (size_t p = 1; p < GD_PAGES; p++) /* page 0 stays untouched */
        fill_page(gd + p * PAGE, gd_seed, p);
}

static sigjmp_buf segv_jump;

static void segv_handler(int sig)
{
    siglongjmp(segv_jump, sig);
}

/* Does the VMA starting at addr carry the "gd" (grows down) VmFlag? */
static int vma_grows_down(const void *addr)
{
    static char buf[1 << 20];
    char head[32];
    int fd = open("/proc/self/smaps", O_RDONLY);
    size_t len = 0;
    ssize_t n;
    if (fd < 0)
        return -1;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    snprintf(head, sizeof(head), "%lx-", (unsigned long)addr);
    for (char *line = buf; line && *line;) {
        if (strncmp(line, head, strlen(head)) == 0) {
            char *flags = strstr(line, "VmFlags:");
            if (!flags)
                return -1;
            char *eol = strchr(flags, '\n');
            if (eol)
                *eol = 0;
            return strstr(flags, " gd") != NULL;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return -1;
}

static void check_growsdown(void)
{
    for (size_t p = 0; p < GD_PAGES; p++) {
        if (check_page(gd + p * PAGE, gd_seed, p, p == 0) >= 0)
            fail("MAP_GROWSDOWN region: page %zu differs", p);
    }
    int gdflag = vma_grows_down(gd);
    if (gdflag != 1)
        fail("MAP_GROWSDOWN region at %p: VmFlags has no 'gd' (%d)", (void *)gd, gdflag);

    struct sigaction sa = {0}, old;
    sa.sa_handler = segv_handler;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old);
    if (sigsetjmp(segv_jump, 1) == 0) {
        volatile unsigned char *below = gd - PAGE / 2;
        *below = 0x42;
        if (*below != 0x42)
            fail("MAP_GROWSDOWN region: the page it grew into does not keep data");
    } else {
        fail("MAP_GROWSDOWN region did not grow downwards (SIGSEGV below %p)", (void *)gd);
    }
    sigaction(SIGSEGV, &old, NULL);
}

static void check_prot_none(void)
{
    /* The hidden region's data was written before it became PROT_NONE. */
    if (mprotect(regions[R_HIDDEN].addr, regions[R_HIDDEN].pages * PAGE, PROT_READ) != 0)
        FAIL_ERRNO("mprotect hidden region");
    else
        check_region(&regions[R_HIDDEN]);
}

/* ---- /proc/self/maps -------------------------------------------------------- */

#define MAX_MAPS 512
#define MAP_LINE 320

struct maps_snapshot {
    int count;
    char line[MAX_MAPS][MAP_LINE];
};

static struct maps_snapshot maps_before, maps_after;

/* Read maps without malloc or mmap, keeping address, perms, offset and path. */
static void snapshot_maps(struct maps_snapshot *s)
{
    static char buf[1 << 18];
    size_t len = 0;
    ssize_t n;
    int fd = open("/proc/self/maps", O_RDONLY);
    s->count = 0;
    if (fd < 0)
        return;
    while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    buf[len] = 0;
    for (char *line = buf; *line && s->count < MAX_MAPS;) {
        char *eol = strchr(line, '\n');
        if (eol)
            *eol = 0;
        unsigned long start, end;
        unsigned long long off;
        char perms[8];
        int pathpos = 0;
        if (sscanf(line, "%lx-%lx %7s %llx %*s %*s %n", &start, &end, perms, &off, &pathpos) >= 4)
            snprintf(s->line[s->count++], MAP_LINE, "%lx-%lx %s %llx %s", start, end, perms, off,
                     pathpos ? line + pathpos : "");
        if (!eol)
            break;
        line = eol + 1;
    }
}

static void compare_maps(void)
{
    int fails = 0;
    if (maps_before.count < 5)
        fail("could not read /proc/self/maps before the wait (%d lines)", maps_before.count);
    if (maps_before.count != maps_after.count)
        fail("/proc/self/maps has %d lines, had %d", maps_after.count, maps_before.count);
    for (int i = 0; i < maps_before.count || i < maps_after.count; i++) {
        const char *b = i < maps_before.count ? maps_before.line[i] : "(none)";
        const char *a = i < maps_after.count ? maps_after.line[i] : "(none)";
        if (strcmp(a, b) != 0 && fails++ < 8)
            fail("maps line %d: now '%s', was '%s'", i, a, b);
    }
}

/* ---- the deep stack ----------------------------------------------------------- */

#define STACK_DEPTH 32
#define FRAME_WORDS 512

/* ---- madvise advice, seen in smaps VmFlags; the fork-time kinds used by a child -------- */

static const struct { int region, advice; const char *flag; } advised[] = {
    {R_DONTFORK, MADV_DONTFORK, "dc"}, {R_WIPEONFORK, MADV_WIPEONFORK, "wf"},
    {R_DONTDUMP, MADV_DONTDUMP, "dd"}, {R_NOHUGEPAGE, MADV_NOHUGEPAGE, "nh"},
};

static void setup_advice(void)
{
    for (size_t i = 0; i < sizeof(advised) / sizeof(advised[0]); i++)
        if (madvise(regions[advised[i].region].addr, 4 * PAGE, advised[i].advice) != 0)
            fail("madvise(%s): %s", regions[advised[i].region].name, strerror(errno));
}

/* Whether the smaps entry of the VMA starting at `addr` lists VmFlags `flag`. */
static int has_vmflag(const void *addr, const char *flag)
{
    char line[512], start[32];
    int in_vma = 0, found = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    snprintf(start, sizeof(start), "%lx-", (unsigned long)addr);
    while (f && fgets(line, sizeof(line), f)) {
        if (strchr(line, '-') && strncmp(line, "VmFlags", 7) != 0 && line[0] != ' ')
            in_vma = strncmp(line, start, strlen(start)) == 0;
        if (in_vma && strncmp(line, "VmFlags:", 8) == 0) {
            char needle[8];
            snprintf(needle, sizeof(needle), " %s", flag);
            found = strstr(line + 8, needle) != NULL;
        }
    }
    if (f)
        fclose(f);
    return found;
}

static void check_advice(void)
{
    for (size_t i = 0; i < sizeof(advised) / sizeof(advised[0]); i++)
        if (!has_vmflag(regions[advised[i].region].addr, advised[i].flag))
            fail("%s: VmFlags lack %s", regions[advised[i].region].name, advised[i].flag);
    pid_t child = fork();
    if (child == 0) { /* not mapped at all; mapped, but zeroes */
        int gone = msync(regions[R_DONTFORK].addr, PAGE, MS_ASYNC) != 0 && errno == ENOMEM;
        const unsigned char *wiped = regions[R_WIPEONFORK].addr;
        int zero = 1;
        for (size_t b = 0; b < 4 * PAGE; b++)
            zero &= wiped[b] == 0;
        _exit((gone ? 0 : 1) | (zero ? 0 : 2));
    }
    int status = 0;
    if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status))
        fail("the fork for MADV_DONTFORK / MADV_WIPEONFORK failed");
    else if (WEXITSTATUS(status) & 1)
        fail("a child has the MADV_DONTFORK region");
    else if (WEXITSTATUS(status) & 2)
        fail("a child finds data in the MADV_WIPEONFORK region");
}

static void check_everything(void)
{
    compare_maps();
    for (int i = 0; i < R_COUNT; i++)
        if (i != R_HIDDEN)
            check_region(&regions[i]);
    check_prot_none();
    check_heap();
    check_file_mappings();
    check_growsdown();
    check_advice();
    if (sbrk(0) != brk_before_wait)
        fail("program break moved: %p, was %p", sbrk(0), brk_before_wait);
}

/* Grow the stack VMA well below the deepest frame so the wait cannot change it. */
static void __attribute__((noinline)) pretouch_stack(void)
{
    volatile unsigned char pad[128 * 1024];
    for (size_t i = 0; i < sizeof(pad); i += 256)
        pad[i] = 0;
}

static void __attribute__((noinline)) at_bottom(void)
{
    pretouch_stack();
    brk_before_wait = sbrk(0);
    snapshot_maps(&maps_before);
    ready();
    wait_for_usr1();
    snapshot_maps(&maps_after); /* first thing: nothing may change the layout before */
    check_everything();
}

static void __attribute__((noinline)) descend(int depth)
{
    volatile uint32_t frame[FRAME_WORDS];
    for (int i = 0; i < FRAME_WORDS; i++)
        frame[i] = pattern32(0x57ac0000u + (uint32_t)depth, (uint32_t)i);
    if (depth == 0)
        at_bottom();
    else
        descend(depth - 1);
    for (int i = 0; i < FRAME_WORDS; i++) {
        if (frame[i] != pattern32(0x57ac0000u + (uint32_t)depth, (uint32_t)i)) {
            fail("stack frame at depth %d differs at word %d", depth, i);
            break;
        }
    }
}

/* ---- after restore: the heap must still grow ---------------------------------- */

static void check_heap_grows(void)
{
    const size_t grow = 4UL << 20;
    unsigned char *old_brk = sbrk(0);
    unsigned char *p = sbrk((intptr_t)grow);
    if (p == (void *)-1) {
        FAIL_ERRNO("sbrk(4 MiB) after restore");
    } else {
        if (p != old_brk)
            fail("sbrk returned %p, expected the old break %p", (void *)p, (void *)old_brk);
        memset(p, 0x5a, grow);
        for (size_t i = 0; i < grow; i += PAGE)
            if (p[i] != 0x5a) {
                fail("memory from sbrk after restore does not keep data");
                break;
            }
        if (sbrk(0) != p + grow)
            fail("program break is %p after growing, expected %p", sbrk(0), (void *)(p + grow));
    }

    enum { N = 768 };
    static unsigned char *small[N];
    for (int i = 0; i < N; i++) {
        small[i] = malloc(4096 + (size_t)i);
        if (!small[i]) {
            fail("malloc after restore failed (allocation %d)", i);
            return;
        }
        memset(small[i], i & 0xff, 4096 + (size_t)i);
    }
    for (int i = 0; i < N; i++) {
        if (small[i][4095 + i] != (i & 0xff) || small[i][0] != (i & 0xff))
            fail("malloc'd block %d after restore does not keep data", i);
        free(small[i]);
    }
}

int main(void)
{
    workload_init("memory", 0);

    regions[R_SMALL] = (struct region){"anon 1 page", map_anon(1, PROT_READ | PROT_WRITE, 0), 1,
                                       0xa0000001, 1};
    regions[R_MID] = (struct region){"anon 16 pages", map_anon(16, PROT_READ | PROT_WRITE, 0), 16,
                                     0xa0000002, 1};
    regions[R_SPARSE] = (struct region){"anon 1 MiB, every 3rd page",
                                        map_anon(256, PROT_READ | PROT_WRITE, 0), 256, 0xa0000003,
                                        3};
    regions[R_HUGE_SPARSE] = (struct region){"anon 64 MiB, every 1000th page",
                                             map_anon(16384, PROT_READ | PROT_WRITE, 0), 16384,
                                             0xa0000004, 1000};
    unsigned char *shared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE,
                                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
        FAIL_ERRNO("mmap shared anonymous");
        exit(1);
    }
    regions[R_SHARED_ANON] = (struct region){"shared anon 4 pages", shared, 4, 0xa0000005, 1};
    regions[R_READONLY] = (struct region){"read-only 3 pages",
                                          map_anon(3, PROT_READ | PROT_WRITE, 0), 3, 0xa0000006, 1};
    regions[R_HIDDEN] = (struct region){"PROT_NONE 4 pages with data",
                                        map_anon(4, PROT_READ | PROT_WRITE, 0), 4, 0xa0000007, 1};
    guard = map_anon(GUARD_PAGES, PROT_NONE, 0);

    setup_heap();
    unsigned char *grown = sbrk(64 * PAGE);
    if (grown == (void *)-1) {
        FAIL_ERRNO("sbrk");
        exit(1);
    }
    regions[R_SBRK] = (struct region){"sbrk 64 pages", grown, 64, 0xa0000008, 1};
    const char *advice_names[] = {"MADV_DONTFORK 4 pages", "MADV_WIPEONFORK 4 pages",
                                  "MADV_DONTDUMP 4 pages", "MADV_NOHUGEPAGE 4 pages"};
    for (int i = R_DONTFORK; i <= R_NOHUGEPAGE; i++)
        regions[i] = (struct region){advice_names[i - R_DONTFORK],
                                     map_anon(4, PROT_READ | PROT_WRITE, 0), 4,
                                     0xa0000009u + (uint32_t)(i - R_DONTFORK), 1};

    for (int i = 0; i < R_COUNT; i++)
        fill_region(&regions[i]);
    setup_advice();
    if (mprotect(regions[R_READONLY].addr, 3 * PAGE, PROT_READ) != 0 ||
        mprotect(regions[R_HIDDEN].addr, 4 * PAGE, PROT_NONE) != 0)
        FAIL_ERRNO("mprotect");

    setup_file_mappings();
    setup_growsdown();

    descend(STACK_DEPTH);
    check_heap_grows();
    (void)guard;
    finish();
}

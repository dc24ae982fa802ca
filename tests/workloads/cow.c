/*
 * cow: memory a process shares copy-on-write with the children it forked, and with their
 * children.  The top process P fills REGION_MB MiB of private anonymous memory (argv[1],
 * default 32) with one pattern and a heap buffer with another, then forks:
 *   C1  changes nothing, and forks G, which rewrites one page;
 *   C2  rewrites the first MiB;
 *   C3  drops pages 16..31 (MADV_DONTNEED: they read as zeros) and rewrites page 40.
 * After the forks P rewrites pages 64..79.  Each process thus shares the pages it did not
 * write with its parent, its children and its siblings; torpor must bring back every page as
 * each process sees it (a page another process wrote stays that process's own) and the
 * sharing itself, which the test measures from outside (Pss).
 *
 * On SIGUSR1, P passes "check" on to its children, which pass it on to theirs; each process
 * checks every page of the region and the heap buffer, then writes a page of its own
 * (200 + its number) and exits 0 if all was well.  P waits for them and checks that no
 * write of theirs reached it.  Only P prints READY and the verdict.
 */
#include "common.h"

#include <sys/mman.h>

#define MAX_PROCS 5

static const char *role = "P";
static unsigned char *region;
static size_t region_pages;
static uint32_t *heap_buf;
static const size_t heap_words = 64 * 1024;

struct change {
    size_t first, count; /* pages */
    uint32_t seed;       /* 0: dropped, reads as zeros */
};

/* What each process did to the region after it was forked, on top of its parent's view. */
static struct change changes[8];
static int nchanges;

static void fill_page(size_t page, uint32_t seed)
{
    uint32_t *w = (uint32_t *)(region + page * PAGE);
    for (size_t i = 0; i < PAGE / 4; i++)
        w[i] = seed ? pattern32(seed, (uint32_t)(page * 1024 + i)) : 0;
}

static void change(size_t first, size_t count, uint32_t seed)
{
    if (seed)
        for (size_t p = first; p < first + count; p++)
            fill_page(p, seed);
    else if (madvise(region + first * PAGE, count * PAGE, MADV_DONTNEED) != 0)
        fail("%s: madvise(MADV_DONTNEED): %s", role, strerror(errno));
    changes[nchanges++] = (struct change){first, count, seed};
}

static uint32_t expected_seed(size_t page)
{
    uint32_t seed = 1;
    for (int i = 0; i < nchanges; i++)
        if (page >= changes[i].first && page < changes[i].first + changes[i].count)
            seed = changes[i].seed;
    return seed;
}

static void check_memory(void)
{
    int reported = 0;
    for (size_t page = 0; page < region_pages && reported < 3; page++) {
        uint32_t seed = expected_seed(page);
        uint32_t *w = (uint32_t *)(region + page * PAGE);
        for (size_t i = 0; i < PAGE / 4; i++) {
            uint32_t want = seed ? pattern32(seed, (uint32_t)(page * 1024 + i)) : 0;
            if (w[i] != want) {
                fail("%s: page %zu word %zu: got 0x%x, expected 0x%x (seed %u)", role, page,
                     i, w[i], want, seed);
                reported++;
                break;
            }
        }
    }
    for (size_t i = 0; i < heap_words; i++)
        if (heap_buf[i] != pattern32(77, (uint32_t)i)) {
            fail("%s: heap word %zu: got 0x%x", role, i, heap_buf[i]);
            break;
        }
}

struct child {
    pid_t pid;
    int control_w; /* a byte: check now */
};

static struct child kids[MAX_PROCS];
static int nkids;
static int ready_w;

/* Fork a child that runs `body` (its number given), waits for the word to check, passes
   it on to its own children, checks, writes its own page, and exits with the verdict. */
static void spawn(const char *name, int number, void (*body)(int))
{
    int control[2];
    if (pipe(control) != 0) {
        fail("pipe: %s", strerror(errno));
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        fail("fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        role = name;
        close(control[1]);
        for (int i = 0; i < nkids; i++)
            close(kids[i].control_w);
        nkids = 0;
        body(number);
        if (write(ready_w, "r", 1) != 1)
            _exit(2);
        char c;
        if (read(control[0], &c, 1) != 1)
            _exit(2); /* the parent is gone */
        for (int i = 0; i < nkids; i++)
            if (write(kids[i].control_w, "c", 1) != 1)
                fail("%s: cannot pass the check on", role);
        check_memory();
        fill_page(200 + number, 100 + number);
        for (int i = 0; i < nkids; i++) {
            int status;
            if (waitpid(kids[i].pid, &status, 0) != kids[i].pid || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                fail("%s: child %d failed", role, kids[i].pid);
        }
        _exit(workload_failures ? 1 : 0);
    }
    close(control[0]);
    kids[nkids++] = (struct child){pid, control[1]};
}

static void grandchild(int number)
{
    (void)number;
    change(100, 1, 5);
}

static void unchanged(int number)
{
    (void)number;
    spawn("G", 4, grandchild);
}

static void rewrites_first_mib(int number)
{
    (void)number;
    change(0, 256, 2);
}

static void drops_and_rewrites(int number)
{
    (void)number;
    change(16, 16, 0);
    change(40, 1, 3);
}

int main(int argc, char **argv)
{
    workload_init("cow", SA_RESTART);
    size_t mb = argc > 1 ? strtoul(argv[1], NULL, 10) : 32;
    if (mb < 1)
        mb = 1;
    region_pages = mb * 256;
    if (region_pages < 256)
        region_pages = 256;
    region = mmap(NULL, region_pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                  -1, 0);
    heap_buf = malloc(heap_words * 4);
    if (region == MAP_FAILED || !heap_buf) {
        FAIL_ERRNO("mmap/malloc");
        finish();
    }
    for (size_t page = 0; page < region_pages; page++)
        fill_page(page, 1);
    for (size_t i = 0; i < heap_words; i++)
        heap_buf[i] = pattern32(77, (uint32_t)i);

    int ready_pipe[2];
    if (pipe(ready_pipe) != 0) {
        FAIL_ERRNO("pipe");
        finish();
    }
    ready_w = ready_pipe[1];
    spawn("C1", 1, unchanged);
    spawn("C2", 2, rewrites_first_mib);
    spawn("C3", 3, drops_and_rewrites);
    change(64, 16, 4);
    for (int got = 0; got < 4;) { /* C1, C2, C3 and G */
        char c;
        ssize_t n = read(ready_pipe[0], &c, 1);
        if (n == 1)
            got++;
        else if (n < 0 && errno != EINTR) {
            FAIL_ERRNO("read ready");
            finish();
        }
    }
    ready();
    wait_for_usr1();
    for (int i = 0; i < nkids; i++)
        if (write(kids[i].control_w, "c", 1) != 1)
            FAIL_ERRNO("write control");
    for (int i = 0; i < nkids; i++) {
        int status;
        if (waitpid(kids[i].pid, &status, 0) != kids[i].pid || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            fail("child %d failed (status 0x%x)", kids[i].pid, status);
    }
    check_memory(); /* the children's own pages (200 + n) must not have reached P */
    finish();
}

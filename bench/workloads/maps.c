/*
 * Many small mappings: N one-page private anonymous mappings, each holding its own pattern and
 * separated from the next by an unmapped page, so the kernel can never merge them into one
 * VMA.  Prints READY, waits for SIGUSR1, then checks every page and prints PASS or FAIL.
 * Built -m64 and -m32 by the Makefile next to it.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig) { (void)sig; go = 1; }

static uint32_t pattern(size_t page, size_t word)
{
    return (uint32_t)(page * 2654435761u) ^ (uint32_t)(word * 40503u) ^ 0xa5a55a5au;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 100;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t words = page / sizeof(uint32_t);
    char *base = mmap(NULL, 2 * (n ? n : 1) * page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { printf("FAIL maps: mmap\n"); return 1; }
    for (size_t i = 0; i < n; i++) {
        uint32_t *p = (uint32_t *)(base + 2 * i * page);
        for (size_t w = 0; w < words; w++) p[w] = pattern(i, w);
        if (munmap(base + (2 * i + 1) * page, page)) { printf("FAIL maps: munmap\n"); return 1; }
    }
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    signal(SIGUSR1, on_usr1);
    printf("READY\n");
    fflush(stdout);
    while (!go) sigsuspend(&old);
    for (size_t i = 0; i < n; i++) {
        uint32_t *p = (uint32_t *)(base + 2 * i * page);
        for (size_t w = 0; w < words; w++)
            if (p[w] != pattern(i, w)) { printf("FAIL maps: page %zu word %zu\n", i, w); return 1; }
    }
    printf("PASS maps\n");
    return 0;
}

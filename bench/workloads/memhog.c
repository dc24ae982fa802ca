/*
 * A memory-heavy benchmark target: allocates MIB mebibytes, fills every word with a pattern
 * derived from its index, says READY, waits for SIGUSR1, then verifies every word and says
 * PASS or FAIL.  SIGUSR1 stays blocked outside sigsuspend: a restored process re-issues the call
 * it was dumped in, and a signal handled just before that (pause) would leave it waiting
 * forever.  Built -m64 and -m32 by the Makefile next to it.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig) { (void)sig; go = 1; }

static uint32_t pattern(size_t i) { return (uint32_t)(i * 2654435761u) ^ 0x5a5aa5a5u; }

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t words = mib * 1024 * 1024 / sizeof(uint32_t);
    uint32_t *mem = malloc(words * sizeof(uint32_t));
    if (!mem) { printf("FAIL memhog: malloc\n"); return 1; }
    for (size_t i = 0; i < words; i++) mem[i] = pattern(i);
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    signal(SIGUSR1, on_usr1);
    printf("READY\n");
    fflush(stdout);
    while (!go) sigsuspend(&old);
    for (size_t i = 0; i < words; i++)
        if (mem[i] != pattern(i)) { printf("FAIL memhog: word %zu\n", i); return 1; }
    printf("PASS memhog\n");
    return 0;
}

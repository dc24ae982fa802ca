/*
 * The receiving end of the restore limit: maps MIB mebibytes of anonymous memory and never
 * touches them, like the fresh mapping a restore fills, then prints "READY <address>" so the
 * benchmark can write into it with process_vm_writev.  It idles until killed.
 * Built -m64 and -m32 by the Makefile next to it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
    size_t size = mib * 1024 * 1024;
    void *mem = mmap(NULL, size ? size : 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { printf("FAIL sink: mmap\n"); return 1; }
    printf("READY %#llx\n", (unsigned long long)(uintptr_t)mem);
    fflush(stdout);
    for (;;) pause();
}

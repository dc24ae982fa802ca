/* Makes one six-argument system call through __kernel_vsyscall, at a moment the test picks.
 *
 * It prints "READY <address of go>" and waits (usleep) until the test, tracing it, sets go;
 * the test then single-steps it to the vDSO's fast syscall instruction and leaves it there.
 * The call is mmap2 of its own executable at page offset 1: its result must be a mapping
 * (not an error, not another call's result) of that file's second page (so the sixth
 * argument, which __kernel_vsyscall passes on its stack, must be the right one). It prints
 * PASS or FAIL and exits 0 or 1. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int go;

int main(void)
{
    static char expected[4096];
    int fd = open("/proc/self/exe", O_RDONLY);
    if (fd < 0 || pread(fd, expected, sizeof expected, 4096) != sizeof expected) {
        printf("FAIL cannot read my executable\n");
        return 1;
    }
    syscall(SYS_getpid); /* binds syscall() now, not while the test steps */
    printf("READY %p\n", (void *)&go);
    fflush(stdout);
    while (!go)
        usleep(1000);
    long got = syscall(SYS_mmap2, 0, 4096, PROT_READ, MAP_PRIVATE, fd, 1);
    if (got == -1 || (unsigned long)got & 4095) {
        printf("FAIL mmap2 returned %ld\n", got);
        return 1;
    }
    if (memcmp((void *)got, expected, sizeof expected) != 0) {
        printf("FAIL mmap2 mapped another part of the file\n");
        return 1;
    }
    printf("PASS\n");
    return 0;
}

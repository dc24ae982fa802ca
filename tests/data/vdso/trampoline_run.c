/* Run this process's vDSO through trampolines: copy the vDSO into plain memory, write the
 * patches torpor planned into the copy (so each entry jumps to the real vDSO), then call
 * clock_gettime and, on ia32, a getpid system call through the copy's entries.
 *   trampoline_run CLOCK_GETTIME_OFFSET [VSYSCALL_OFFSET]
 * It prints the vDSO address (hex) on a line, then reads the patches from stdin until EOF:
 * records of u32 offset, u32 length, bytes. Prints "ok" when the calls through the copy give
 * the same answers as direct ones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

int main(int argc, char **argv)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR), start, end, size = 0;
	unsigned char *copy, buf[64];
	unsigned int rec[2];
	char line[512];
	struct timespec a, b;
	FILE *f;

	if (argc < 2 || !base)
		return 2;
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "%lx-%lx", &start, &end) == 2 && start == base)
			size = end - start;
	if (!size)
		return 2;
	copy = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (copy == MAP_FAILED)
		return 2;
	memcpy(copy, (void *)base, size);
	printf("%lx\n", base);
	fflush(stdout);

	while (fread(rec, sizeof rec, 1, stdin) == 1) {
		if (rec[1] > sizeof buf || rec[0] + rec[1] > size || fread(buf, 1, rec[1], stdin) != rec[1])
			return 2;
		memcpy(copy + rec[0], buf, rec[1]);
	}
	if (mprotect(copy, size, PROT_READ | PROT_EXEC))
		return 2;

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (((clock_gettime_fn)(copy + strtoul(argv[1], NULL, 0)))(CLOCK_MONOTONIC, &b))
		return 3;
	if (b.tv_sec < a.tv_sec || b.tv_sec > a.tv_sec + 5)
		return 3;
#ifdef __i386__
	if (argc > 2) {
		long nr = SYS_getpid, ret;
		void *vsyscall = copy + strtoul(argv[2], NULL, 0);
		/* the syscall number travels in %eax into __kernel_vsyscall */
		__asm__ volatile("call *%2" : "=a"(ret) : "0"(nr), "r"(vsyscall) : "memory");
		if (ret != getpid())
			return 4;
	}
#endif
	puts("ok");
	return 0;
}

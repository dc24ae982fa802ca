/* Run this process's vDSO through trampolines: copy the vDSO into plain memory, behind zero
 * pages where its vvar mappings are (as a restore with trampolines leaves the dumped vDSO),
 * write the patches torpor planned into the copy (so each entry jumps to the real vDSO), then
 * call clock_gettime and, on ia32, a getpid system call through the copy's entries.
 *   trampoline_run CLOCK_GETTIME_OFFSET [VSYSCALL_OFFSET]
 * It prints the vDSO address and the copy's (hex) on a line, then reads the patches from stdin
 * until EOF: records of u32 offset, u32 length, bytes. Prints "ok" when the calls through the
 * copy give the same answers as direct ones.
 *
 * On ia32, when clock_gettime begins with a call (to the __x86.get_pc_thunk that gives it its
 * own address), it also resumes a clock_gettime caught in flight in the copy: the stack as that
 * call leaves it, the thunk next to run, as a task dumped there is restored. Once the thunk
 * returns, the rest of the copy's clock_gettime runs on the zero pages, which send it to the
 * system call; it must give the right time too, and then "in-flight ok" is printed first. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

#ifdef __i386__
/* Calls `thunk` with `after_call` pushed as its return address on top of a call frame for
 * clock_gettime(clk, ts): the state of a clock_gettime whose first instruction, a call of
 * `thunk`, was just made. Returns what that clock_gettime returns. */
__attribute__((naked, noinline)) static long resume_in_thunk(void *thunk, void *after_call,
								clockid_t clk, struct timespec *ts)
{
	__asm__ volatile("movl 4(%esp), %ecx\n\t"
			 "movl 8(%esp), %edx\n\t"
			 "pushl 16(%esp)\n\t" /* ts */
			 "pushl 16(%esp)\n\t" /* clk */
			 "call 1f\n\t" /* the caller's return address */
			 "addl $8, %esp\n\t"
			 "ret\n"
			 "1:\tpushl %edx\n\t" /* as the function's first instruction left it */
			 "jmp *%ecx\n\t");
}

static int time_ok(const struct timespec *before, const struct timespec *got)
{
	return got->tv_sec >= before->tv_sec && got->tv_sec <= before->tv_sec + 5 &&
	       got->tv_nsec >= 0 && got->tv_nsec < 1000000000;
}
#endif

int main(int argc, char **argv)
{
	unsigned long base = getauxval(AT_SYSINFO_EHDR), start, end, size = 0, low = base;
	unsigned char *area, *copy, buf[64];
	unsigned int rec[2];
	char line[512];
	struct timespec a, b;
	FILE *f;

	if (argc < 2 || !base)
		return 2;
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof line, f)) {
		if (sscanf(line, "%lx-%lx", &start, &end) != 2)
			continue;
		if (start == base)
			size = end - start;
		if (strstr(line, "[vvar") && start < low)
			low = start;
	}
	if (!size)
		return 2;
	area = mmap(NULL, base - low + size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		    -1, 0);
	if (area == MAP_FAILED)
		return 2;
	copy = area + (base - low);
	memcpy(copy, (void *)base, size);
	printf("%lx %lx\n", base, (unsigned long)copy);
	fflush(stdout);

	unsigned long cg = strtoul(argv[1], NULL, 0);
	if (cg + 5 > size)
		return 2;
#ifdef __i386__
	int in_flight = copy[cg] == 0xe8; /* call rel32, read before the patches */
	int32_t rel;
	memcpy(&rel, copy + cg + 1, sizeof rel);
#endif

	while (fread(rec, sizeof rec, 1, stdin) == 1) {
		if (rec[1] > sizeof buf || rec[0] + rec[1] > size || fread(buf, 1, rec[1], stdin) != rec[1])
			return 2;
		memcpy(copy + rec[0], buf, rec[1]);
	}
	if (mprotect(copy, size, PROT_READ | PROT_EXEC))
		return 2;

#ifdef __i386__
	if (in_flight) {
		struct timespec got = {0, 0};
		clock_gettime(CLOCK_MONOTONIC, &a);
		long ret = resume_in_thunk(copy + cg + 5 + rel, copy + cg + 5, CLOCK_MONOTONIC, &got);
		if (ret != 0 || !time_ok(&a, &got)) {
			printf("in-flight clock_gettime returned %#lx, time %ld.%09ld, now %ld\n",
			       (unsigned long)ret, (long)got.tv_sec, (long)got.tv_nsec, (long)a.tv_sec);
			return 5;
		}
		puts("in-flight ok");
	}
#endif

	clock_gettime(CLOCK_MONOTONIC, &a);
	if (((clock_gettime_fn)(copy + cg))(CLOCK_MONOTONIC, &b))
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

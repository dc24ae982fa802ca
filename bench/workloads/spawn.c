/*
 * spawn INFO CMD [ARG...]: start CMD as a child of this small program, write "PID START_NS"
 * (START_NS: CLOCK_MONOTONIC just before the fork) to the file INFO, and exit at once.
 *
 * The benchmark measures the peak RSS of the torpor command with wait4, but a process keeps
 * the peak RSS of whatever it was before exec: started straight from the benchmark's Python
 * it would report the benchmark's own size.  Forked from this program instead, CMD starts
 * from a few hundred KiB and, orphaned when this program exits, is adopted and waited for by
 * the benchmark (a child subreaper).  Built -m64 and -m32 by the Makefile next to it.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) { fprintf(stderr, "usage: spawn INFO CMD [ARG...]\n"); return 2; }
    FILE *info = fopen(argv[1], "w");
    if (!info) { perror(argv[1]); return 1; }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) {
        fclose(info);
        execvp(argv[2], argv + 2);
        perror(argv[2]);
        _exit(127);
    }
    fprintf(info, "%d %lld\n", (int)pid, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    return fclose(info) ? 1 : 0;
}

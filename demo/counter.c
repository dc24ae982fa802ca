/*
 * A friendly demo program for torpor: it counts, and says so twice a second.
 *
 *   [64-bit pid 4242] tick 17, t=14:03:22.512
 *
 * The tick number lives in this process's memory, so after a checkpoint and
 * restore it carries on from where it was instead of starting again at 1,
 * while t (the wall clock, read with clock_gettime) shows how much time the
 * process spent frozen.  Build it with `make -C demo`, run
 * demo/build/counter-64 (or counter-32), and in another terminal:
 *
 *   mkdir images
 *   torpor dump --shell-job -t PID -D images     # the counter stops
 *   torpor restore --shell-job -D images         # ... and goes on counting
 *
 * Given a program as its argument, the counter first starts it as its child
 * (counter-64 demo/build/counter-32 makes a mixed 64/32-bit process tree).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const int bits = (int)sizeof(void *) * 8;
    unsigned long tick = 0;

    if (argc > 1 && fork() == 0) {
        execl(argv[1], argv[1], (char *)NULL);
        perror(argv[1]);
        _exit(127);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (;;) {
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        localtime_r(&now.tv_sec, &tm);
        printf("[%d-bit pid %d] tick %lu, t=%02d:%02d:%02d.%03ld\n", bits, (int)getpid(), ++tick,
               tm.tm_hour, tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

        struct timespec half = {0, 500 * 1000 * 1000};
        while (nanosleep(&half, &half) != 0)
            ; /* interrupted (e.g. by a stop/continue): sleep what is left */
    }
}

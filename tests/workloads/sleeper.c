/*
 * sleeper: a relative sleep interrupted by the checkpoint must go on for the time it had
 * left, not start over.  After READY it sleeps 3 s (clock_nanosleep, relative, with a
 * remainder buffer, as sleep(1) does), measuring the sleep on CLOCK_MONOTONIC, which the
 * restore carries on from the dump (the frozen time does not count).  Mode "nanosleep"
 * sleeps with nanosleep(2) instead.  Then it waits for SIGUSR1 and checks that the sleep
 * took 2.5-3.7 s: a sleep started over after a checkpoint 1.5 s in takes 4.5 s.
 */
#include "common.h"

#include <time.h>

int main(int argc, char **argv)
{
    int use_nanosleep = argc > 1 && strcmp(argv[1], "nanosleep") == 0;
    struct timespec start, end, req = {3, 0}, rem = {0, 0};
    workload_init("sleeper", 0);
    clock_gettime(CLOCK_MONOTONIC, &start);
    ready();
    int r = use_nanosleep ? nanosleep(&req, &rem) : clock_nanosleep(CLOCK_MONOTONIC, 0, &req, &rem);
    if (r != 0)
        fail("the sleep ended with %s", use_nanosleep ? strerror(errno) : strerror(r));
    clock_gettime(CLOCK_MONOTONIC, &end);
    wait_for_usr1();
    double took = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    if (took < 2.5 || took > 3.7)
        fail("the 3 s sleep took %.3f s", took);
    finish();
}

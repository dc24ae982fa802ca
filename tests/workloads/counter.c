/*
 * counter: a process that keeps doing visible work.  It prints "tick N" every
 * 100 ms (N counts up from 1, kept in memory), which makes it a simple target
 * for refusal tests and shows in the log that a restored process carried on
 * counting instead of starting over.
 *
 * It follows the READY/SIGUSR1 protocol: on SIGUSR1 it checks that the
 * counter only ever went up by one (a running sum must equal 1 + 2 + ... + N)
 * and that CLOCK_MONOTONIC never went backwards between ticks.  A 100 ms
 * sleep that ends early without SIGUSR1 is a failure too.
 */
#include "common.h"

#include <time.h>

static unsigned long count, sum;

int main(void)
{
    struct timespec last, now;
    workload_init("counter", 0);
    clock_gettime(CLOCK_MONOTONIC, &last);
    ready();

    while (!usr1_received) {
        struct timespec delay = {0, 100 * 1000 * 1000};
        if (nanosleep(&delay, NULL) != 0) {
            if (usr1_received)
                break;
            fail("nanosleep returned early: %s without signal", strerror(errno));
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec < last.tv_sec || (now.tv_sec == last.tv_sec && now.tv_nsec < last.tv_nsec))
            fail("CLOCK_MONOTONIC went backwards after tick %lu", count);
        last = now;
        count++;
        sum += count;
        say("tick %lu\n", count);
    }

    if (sum != count * (count + 1) / 2)
        fail("counter %lu does not match its running sum %lu", count, sum);
    finish();
}

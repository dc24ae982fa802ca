/*
 * threaded (refusal helper): a process with a second thread.  A dump that
 * refuses multi-threaded processes must leave it running untouched.
 *
 * The second thread ticks a counter every 10 ms with SIGUSR1 blocked, so the
 * signal always reaches the main thread.  On SIGUSR1 the main thread checks
 * that the second thread is still ticking, then passes.
 */
#include "common.h"

#include <pthread.h>
#include <time.h>

static volatile unsigned long ticks;

static void *ticker(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
        ticks++;
    }
    return NULL;
}

int main(void)
{
    pthread_t t;
    sigset_t usr1, old;
    workload_init("threaded", 0);

    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, &old); /* inherited by the new thread */
    if (pthread_create(&t, NULL, ticker, NULL) != 0) {
        fail("pthread_create failed");
        finish();
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    ready();
    wait_for_usr1();

    unsigned long before = ticks;
    for (int i = 0; i < 100 && ticks == before; i++) {
        struct timespec d = {0, 10 * 1000 * 1000};
        nanosleep(&d, NULL);
    }
    if (ticks == before)
        fail("the second thread stopped ticking (at %lu)", before);
    finish();
}

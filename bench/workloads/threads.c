/*
 * A process of N threads in all (the main one and N-1 workers).  Each worker records its
 * index in a thread-local variable and waits on a condition variable.  The main thread prints
 * READY and waits for SIGUSR1; it then wakes the workers, each checks its thread-local value,
 * and after joining them all it prints PASS or FAIL.  Built -m64 and -m32 by the Makefile.
 */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static volatile sig_atomic_t go;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static int released;
static __thread size_t mine;

static void on_usr1(int sig) { (void)sig; go = 1; }

static void *worker(void *arg)
{
    mine = (size_t)arg;
    pthread_mutex_lock(&lock);
    while (!released) pthread_cond_wait(&wake, &lock);
    pthread_mutex_unlock(&lock);
    return (void *)(uintptr_t)(mine == (size_t)arg ? 0 : 1);
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10;
    pthread_t *tids = calloc(n ? n : 1, sizeof(*tids));
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old); /* workers inherit the block: SIGUSR1 goes to main */
    signal(SIGUSR1, on_usr1);
    for (size_t i = 1; i < n; i++)
        if (pthread_create(&tids[i], NULL, worker, (void *)i)) {
            printf("FAIL threads: pthread_create\n");
            return 1;
        }
    printf("READY\n");
    fflush(stdout);
    while (!go) sigsuspend(&old);
    pthread_mutex_lock(&lock);
    released = 1;
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    int bad = 0;
    for (size_t i = 1; i < n; i++) {
        void *res;
        pthread_join(tids[i], &res);
        bad |= res != NULL;
    }
    printf(bad ? "FAIL threads: a worker lost its state\n" : "PASS threads\n");
    return bad;
}

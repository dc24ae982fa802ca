/*
 * A tree of N processes in all: the parent and N-1 children.  Each child keeps its index and
 * waits for SIGUSR1.  The parent prints READY and waits for SIGUSR1; it then signals every
 * child, each child exits 0 if its index is intact, and the parent prints PASS once all have
 * done so (FAIL otherwise).  Built -m64 and -m32 by the Makefile next to it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t go;

static void on_usr1(int sig) { (void)sig; go = 1; }

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10;
    pid_t *kids = calloc(n ? n : 1, sizeof(*kids));
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, &old);
    signal(SIGUSR1, on_usr1);
    for (size_t i = 1; i < n; i++) {
        kids[i] = fork();
        if (kids[i] < 0) { printf("FAIL procs: fork\n"); return 1; }
        if (kids[i] == 0) {
            volatile size_t mine = i * 7919;
            while (!go) sigsuspend(&old);
            _exit(mine == i * 7919 ? 0 : 1);
        }
    }
    printf("READY\n");
    fflush(stdout);
    while (!go) sigsuspend(&old);
    int bad = 0;
    for (size_t i = 1; i < n; i++) {
        int status;
        kill(kids[i], SIGUSR1);
        if (waitpid(kids[i], &status, 0) != kids[i] || !WIFEXITED(status) || WEXITSTATUS(status))
            bad = 1;
    }
    printf(bad ? "FAIL procs: a child lost its state\n" : "PASS procs\n");
    return bad;
}

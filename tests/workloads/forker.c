/*
 * forker (refusal helper): a process with a child.  A dump that refuses
 * process trees must leave both running untouched.
 *
 * The child just waits (and dies with its parent).  On SIGUSR1 the parent
 * checks that the child is still alive and not reaped by anyone else, kills
 * and reaps it, and passes.
 */
#include "common.h"

#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
    workload_init("forker", 0);
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) {
        FAIL_ERRNO("fork");
        finish();
    }
    if (child == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        for (;;)
            pause();
    }

    ready();
    wait_for_usr1();

    int status;
    pid_t r = waitpid(child, &status, WNOHANG);
    if (r != 0)
        fail("the child %d is gone (waitpid returned %d, status 0x%x)", child, r,
             r > 0 ? status : 0);
    else if (kill(child, 0) != 0)
        fail("the child %d cannot be signalled: %s", child, strerror(errno));
    kill(child, SIGKILL);
    if (r == 0 && waitpid(child, &status, 0) != child)
        FAIL_ERRNO("waitpid");
    finish();
}

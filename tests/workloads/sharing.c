/*
 * sharing: a process with a child made by clone(2) sharing, by MODE, its fd table
 * ("files", CLONE_FILES), its working directory and umask ("fs", CLONE_FS) or its memory
 * ("vm", CLONE_VM).  torpor refuses to dump such a tree (each process would come back with
 * a copy of its own); the refused dump must leave both running and still sharing: after
 * SIGUSR1 the parent makes a change the child can only see through what they share (fd 50
 * opened, umask 077, a word written) and the child, seeing it, exits 0.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int flags;
static volatile int word;
static char stack[1 << 16] __attribute__((aligned(16)));

static int child(void *arg)
{
    (void)arg;
    for (;;) {
        if (flags == CLONE_FILES && fcntl(50, F_GETFD) >= 0)
            _exit(0);
        if (flags == CLONE_FS) {
            mode_t old = umask(022);
            if (old == 077)
                _exit(0);
            umask(old);
        }
        if (flags == CLONE_VM && word)
            _exit(0);
        usleep(1000);
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "files";
    flags = strcmp(mode, "files") == 0 ? CLONE_FILES : strcmp(mode, "fs") == 0 ? CLONE_FS : CLONE_VM;
    workload_init("sharing", 0);
    umask(022);
    pid_t pid = clone(child, stack + sizeof(stack), flags | SIGCHLD, NULL);
    if (pid < 0)
        FAIL_ERRNO("clone");
    ready();
    wait_for_usr1();
    if (flags == CLONE_FILES)
        dup2(0, 50);
    else if (flags == CLONE_FS)
        umask(077);
    else
        word = 1;
    int status = -1;
    for (int i = 0; i < 1000 && waitpid(pid, &status, WNOHANG) == 0; i++)
        usleep(2000);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail("the child did not see the change through the shared %s", mode);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    finish();
}

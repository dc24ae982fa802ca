/*
 * sharing: a process with a child made by clone(2) sharing, by MODE, its fd table
 * ("files", CLONE_FILES), its working directory and umask ("fs", CLONE_FS) or its memory
 * ("vm", CLONE_VM); or ("fs-mixed") its fs with a child that then execs the other flavour
 * of this program (exec keeps the fs shared); or ("siblings") two children sharing their fd
 * table with each other but not with their parent (the first clones the second with
 * CLONE_FILES | CLONE_PARENT).
 * torpor restores the files and fs modes still sharing, and refuses to dump the others
 * (each process would come back with a copy of its own); a refused dump must leave them
 * running and still sharing.  After SIGUSR1 the parent (in "siblings" the first child,
 * told through a pipe) makes a change the child can only see through what they share (fd 50
 * opened, umask 077, a word written) and the child, seeing it, exits 0.  In "files" the
 * child then closes fd 51, opened before the checkpoint, and the parent must find it closed.
 */
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

static int flags;
static volatile int word;
static char stack[1 << 16] __attribute__((aligned(16)));
static char sibling_stack[1 << 16] __attribute__((aligned(16)));

static int child(void *arg)
{
    (void)arg;
    for (;;) {
        if (flags == CLONE_FILES && fcntl(50, F_GETFD) >= 0) {
            close(51);
            _exit(0);
        }
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

/* The child of "fs-mixed": exec the other flavour of this program as "fs-child". */
static int exec_other(void *arg)
{
    (void)arg;
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len < 3)
        _exit(5);
    exe[len] = 0;
    memcpy(exe + len - 2, exe[len - 2] == '6' ? "32" : "64", 2);
    char *args[] = {exe, "fs-child", NULL};
    execv(exe, args);
    _exit(6);
}

/* The first of two siblings: clones the second sharing its fd table, says so on `made`,
 * waits for the word of the parent on `from` and opens fd 50. */
static void first_sibling(int made, int from)
{
    if (clone(child, sibling_stack + sizeof(sibling_stack), CLONE_FILES | CLONE_PARENT | SIGCHLD,
              NULL) < 0)
        _exit(2);
    if (write(made, "x", 1) != 1)
        _exit(3);
    close(made);
    char c;
    if (read(from, &c, 1) != 1)
        _exit(4);
    dup2(0, 50);
    _exit(0);
}

/* Wait (bounded) for `n` children; whether every one exited 0. */
static int children_passed(int n)
{
    int passed = 1;
    for (int i = 0; i < 1000 && n > 0; i++) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid > 0) {
            n--;
            passed &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
        } else {
            usleep(2000);
        }
    }
    return passed && n == 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "files";
    int siblings = strcmp(mode, "siblings") == 0, mixed = strcmp(mode, "fs-mixed") == 0;
    flags = strcmp(mode, "files") == 0 || siblings    ? CLONE_FILES
            : strcmp(mode, "fs") == 0 || mixed        ? CLONE_FS
            : strcmp(mode, "fs-child") == 0           ? CLONE_FS
                                                      : CLONE_VM;
    if (strcmp(mode, "fs-child") == 0)
        return child(NULL);
    workload_init("sharing", 0);
    umask(022);
    if (flags == CLONE_FILES && !siblings && dup2(open("/dev/null", O_RDONLY), 51) != 51)
        FAIL_ERRNO("open /dev/null at fd 51");
    int word_pipe[2] = {-1, -1}, made_pipe[2] = {-1, -1};
    pid_t pid;
    if (siblings) {
        if (pipe(word_pipe) < 0 || pipe(made_pipe) < 0)
            FAIL_ERRNO("pipe");
        pid = fork();
        if (pid == 0) {
            close(word_pipe[1]);
            close(made_pipe[0]);
            first_sibling(made_pipe[1], word_pipe[0]);
        }
        close(word_pipe[0]);
        close(made_pipe[1]);
        char c;
        if (read(made_pipe[0], &c, 1) != 1) /* the second sibling exists */
            FAIL_ERRNO("read");
        close(made_pipe[0]);
    } else if (mixed) {
        int execd[2]; /* closed by the child's exec: read gives EOF once it is done */
        if (pipe2(execd, O_CLOEXEC) < 0)
            FAIL_ERRNO("pipe2");
        pid = clone(exec_other, stack + sizeof(stack), flags | SIGCHLD, NULL);
        close(execd[1]);
        char c;
        if (pid > 0 && read(execd[0], &c, 1) != 0)
            FAIL_ERRNO("read");
        close(execd[0]);
    } else {
        pid = clone(child, stack + sizeof(stack), flags | SIGCHLD, NULL);
    }
    if (pid < 0)
        FAIL_ERRNO("clone");
    ready();
    wait_for_usr1();
    if (siblings)
        write(word_pipe[1], "x", 1);
    else if (flags == CLONE_FILES)
        dup2(0, 50);
    else if (flags == CLONE_FS)
        umask(077);
    else
        word = 1;
    if (!children_passed(siblings ? 2 : 1)) {
        fail("the child did not see the change through the shared %s", mode);
        kill(pid, SIGKILL);
        while (wait(NULL) > 0)
            ;
    }
    if (flags == CLONE_FILES && !siblings && fcntl(51, F_GETFD) >= 0)
        fail("fd 51 the child closed in the shared fd table is still open");
    finish();
}

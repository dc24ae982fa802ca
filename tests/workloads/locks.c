/*
 * locks: file locks of every kind, checked after the restore by a new process that tries
 * to take conflicting ones.
 *
 * On locks.dat (in the working directory): through fd A a POSIX write lock on bytes 0-9
 * and a POSIX read lock from byte 100 to the end; through fd B (its own open) an OFD write
 * lock on bytes 20-29; through fd C (its own open, shared with a child process) a shared
 * flock lock.  After the restore a checker process finds: bytes 0-9 write-locked by this
 * process (F_GETLK), byte 100 not writable but readable, bytes 20-29 OFD-locked, the file
 * not exclusively flock-able but shareable, bytes 50-59 free.
 *
 * Mode "hold" only takes the POSIX write lock and waits, for the test in which another
 * process takes that lock between the dump and the restore.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

static int set_lock(int fd, int cmd, short type, off_t start, off_t len)
{
    struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
    return fcntl(fd, cmd, &fl);
}

/* Run in a new process: each failed expectation sets one bit of the exit status. */
static int check_from_outside(pid_t holder)
{
    int status = 0;
    int fd = open("locks.dat", O_RDWR);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    if (fcntl(fd, F_GETLK, &fl) != 0 || fl.l_type != F_WRLCK || fl.l_pid != holder)
        status |= 1;
    if (set_lock(fd, F_SETLK, F_WRLCK, 100, 1) == 0 || set_lock(fd, F_SETLK, F_RDLCK, 100, 1) != 0)
        status |= 2;
    int ofd = open("locks.dat", O_RDWR);
    if (set_lock(ofd, F_OFD_SETLK, F_RDLCK, 20, 10) == 0 || errno != EAGAIN)
        status |= 4;
    if (flock(ofd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK)
        status |= 8;
    if (flock(ofd, LOCK_SH | LOCK_NB) != 0)
        status |= 16;
    if (set_lock(fd, F_SETLK, F_WRLCK, 50, 10) != 0)
        status |= 32;
    return status;
}

int main(int argc, char **argv)
{
    workload_init("locks", 0);
    int a = open("locks.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (a < 0 || ftruncate(a, 4096) != 0)
        FAIL_ERRNO("locks.dat");
    if (set_lock(a, F_SETLK, F_WRLCK, 0, 10) != 0)
        FAIL_ERRNO("POSIX write lock");
    if (argc > 1 && strcmp(argv[1], "hold") == 0) {
        ready();
        wait_for_usr1();
        finish();
    }
    if (set_lock(a, F_SETLK, F_RDLCK, 100, 0) != 0)
        FAIL_ERRNO("POSIX read lock");
    int b = open("locks.dat", O_RDWR);
    if (set_lock(b, F_OFD_SETLK, F_WRLCK, 20, 10) != 0)
        FAIL_ERRNO("OFD lock");
    int c = open("locks.dat", O_RDONLY);
    if (flock(c, LOCK_SH) != 0)
        FAIL_ERRNO("flock");
    pid_t sharer = fork();
    if (sharer == 0) { /* holds fd C's description too, and waits to be killed */
        for (;;)
            pause();
    }
    ready();
    wait_for_usr1();

    pid_t checker = fork();
    if (checker == 0)
        _exit(check_from_outside(getppid()));
    int status = 0;
    waitpid(checker, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int bits = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        const char *what[] = {"POSIX write lock on 0-9", "POSIX read lock from 100",
                              "OFD lock on 20-29",       "flock shared (not exclusive)",
                              "flock shareable",         "bytes 50-59 free"};
        for (int i = 0; i < 6; i++)
            if (bits < 0 || bits & (1 << i))
                fail("from another process: %s is not as it was", what[i]);
    }
    kill(sharer, SIGKILL);
    waitpid(sharer, NULL, 0);
    finish();
}

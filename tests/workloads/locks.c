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
 * Leases, on files of their own (shared with the child process too): a read lease on
 * lease-r.dat (fd R, read-only, lease-break signal SIGIO) and a write lease on lease-w.dat
 * (fd W, read-write, F_SETSIG to SIGRTMIN+1), both signals blocked.  After the restore
 * F_GETLEASE shows both, and a new process finds lease-r.dat open to readers but neither
 * file open to writers (O_NONBLOCK: EWOULDBLOCK); each of these opens makes the kernel send
 * this process its lease-break signal (W's with si_fd = W), on which it gives the lease up,
 * and the new process's blocking open then succeeds.
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

/* Run in a new process, while the holder waits for each lease-break signal. */
static int break_leases(int r, int w)
{
    int status = 0;
    close(r);
    close(w);
    int fd = open("lease-r.dat", O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        status |= 1;
    close(fd);
    if (open("lease-w.dat", O_WRONLY | O_NONBLOCK) >= 0 || errno != EWOULDBLOCK)
        status |= 2;
    fd = open("lease-w.dat", O_WRONLY); /* until the holder gives the write lease up */
    if (fd < 0)
        status |= 4;
    close(fd);
    if (open("lease-r.dat", O_WRONLY | O_NONBLOCK) >= 0 || errno != EWOULDBLOCK)
        status |= 8;
    fd = open("lease-r.dat", O_WRONLY);
    if (fd < 0)
        status |= 16;
    close(fd);
    return status;
}

/* Wait (bounded) for the lease-break signal `sig` of fd `fd`, then give its lease up. */
static void lease_broken(int sig, int fd, const char *what)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    siginfo_t info;
    struct timespec bound = {.tv_sec = 10};
    int got = sigtimedwait(&set, &info, &bound);
    if (got != sig)
        fail("%s: no lease-break signal %d (%s)", what, sig, strerror(errno));
    else if (sig != SIGIO && info.si_fd != fd)
        fail("%s: lease-break signal for fd %d, not fd %d", what, info.si_fd, fd);
    if (fcntl(fd, F_SETLEASE, F_UNLCK) != 0)
        FAIL_ERRNO(what);
}

static void check_leases(int r, int w)
{
    CHECK_EQ("F_GETLEASE of the read-leased fd", fcntl(r, F_GETLEASE), F_RDLCK);
    CHECK_EQ("F_GETLEASE of the write-leased fd", fcntl(w, F_GETLEASE), F_WRLCK);
    CHECK_EQ("F_GETSIG of the write-leased fd", fcntl(w, F_GETSIG), SIGRTMIN + 1);
    pid_t breaker = fork();
    if (breaker == 0)
        _exit(break_leases(r, w));
    lease_broken(SIGRTMIN + 1, w, "write lease");
    lease_broken(SIGIO, r, "read lease");
    int status = 0;
    waitpid(breaker, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int bits = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        const char *what[] = {
            "lease-r.dat open to a reader", "lease-w.dat not open to a writer (EWOULDBLOCK)",
            "lease-w.dat open to a writer once the lease is given up",
            "lease-r.dat not open to a writer (EWOULDBLOCK)",
            "lease-r.dat open to a writer once the lease is given up",
        };
        for (int i = 0; i < 5; i++)
            if (bits < 0 || bits & (1 << i))
                fail("from another process: %s", what[i]);
    }
}

/* fd R with a read lease on lease-r.dat, fd W with a write lease on lease-w.dat. */
static void take_leases(int *r, int *w)
{
    close(open("lease-r.dat", O_WRONLY | O_CREAT | O_TRUNC, 0600));
    close(open("lease-w.dat", O_WRONLY | O_CREAT | O_TRUNC, 0600));
    *r = open("lease-r.dat", O_RDONLY);
    *w = open("lease-w.dat", O_RDWR);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGIO);
    sigaddset(&set, SIGRTMIN + 1);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (fcntl(*w, F_SETSIG, SIGRTMIN + 1) != 0)
        FAIL_ERRNO("F_SETSIG");
    if (fcntl(*r, F_SETLEASE, F_RDLCK) != 0)
        FAIL_ERRNO("read lease");
    if (fcntl(*w, F_SETLEASE, F_WRLCK) != 0)
        FAIL_ERRNO("write lease");
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
    int r, w;
    take_leases(&r, &w);
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
    check_leases(r, w);
    kill(sharer, SIGKILL);
    waitpid(sharer, NULL, 0);
    finish();
}

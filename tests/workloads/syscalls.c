/*
 * syscalls MODE: a checkpoint taken while blocked in a syscall must resume
 * that syscall exactly as if nothing had happened.
 *
 *   nanosleep  nanosleep(1000 s) must return EINTR only once SIGUSR1 arrived,
 *              with a sensible remaining time.
 *   pipe-read  read() on a pipe the process owns; the SIGUSR1 handler
 *              (SA_RESTART) writes one byte into it, and read() must return
 *              that byte (restarted, never EINTR).
 *   pause      pause() must return -1/EINTR only once SIGUSR1 arrived.
 *   poll       poll() on the pipe with no timeout; the handler writes a byte.
 *              poll() returns -1/EINTR for the handler (poll is never
 *              restarted) or 1; either way only after SIGUSR1, and then the
 *              pipe must poll as POLLIN and yield the handler's byte.
 *
 * In every mode the pipe must afterwards hold nothing unexpected and still
 * connect its two ends.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>

static int pipefd[2] = {-1, -1};
static const char token = 'T';

static void usr1_write_token(int sig)
{
    (void)sig;
    usr1_received = 1;
    if (pipefd[1] >= 0 && write(pipefd[1], &token, 1) != 1)
        usr1_received = 2; /* reported by the main flow */
}

static void install_usr1(int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = usr1_write_token;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) {
        FAIL_ERRNO("sigaction");
        finish();
    }
}

/* After the wait the pipe must hold nothing more (expect_token: exactly the handler's byte). */
static void check_pipe(int expect_token)
{
    char c = 0;
    ssize_t n;
    if (usr1_received == 2)
        fail("the SIGUSR1 handler could not write into the pipe");
    int fl = fcntl(pipefd[0], F_GETFL);
    if (fl < 0 || fcntl(pipefd[0], F_SETFL, fl | O_NONBLOCK) != 0) {
        FAIL_ERRNO("fcntl on the pipe");
        return;
    }
    if (expect_token) {
        n = read(pipefd[0], &c, 1);
        if (n != 1 || c != token)
            fail("pipe did not yield the handler's byte (read %zd, byte 0x%02x)", n, c);
    }
    n = read(pipefd[0], &c, 1);
    if (n != -1 || errno != EAGAIN)
        fail("pipe held more than the handler's byte");

    /* Both ends must still be the same pipe. */
    c = 'Z';
    if (write(pipefd[1], &c, 1) != 1)
        FAIL_ERRNO("write to the pipe after the wait");
    c = 0;
    if (read(pipefd[0], &c, 1) != 1 || c != 'Z')
        fail("a byte written to the pipe's write end did not come out of its read end");
}

static void mode_nanosleep(void)
{
    struct timespec req = {1000, 0}, rem = {-1, -1};
    ready();
    int r = nanosleep(&req, &rem);
    int err = errno;
    if (r == 0)
        fail("nanosleep(1000 s) returned 0 early");
    else if (err != EINTR)
        fail("nanosleep failed: %s", strerror(err));
    else if (!usr1_received)
        fail("nanosleep returned early: EINTR without signal");
    else if (rem.tv_sec < 0 || rem.tv_sec > 1000 || rem.tv_nsec < 0 || rem.tv_nsec >= 1000000000 ||
             (rem.tv_sec == 0 && rem.tv_nsec == 0))
        fail("nanosleep remaining time is %ld.%09ld s", (long)rem.tv_sec, (long)rem.tv_nsec);
}

static void mode_pause(void)
{
    ready();
    int r = pause();
    int err = errno;
    if (r != -1 || err != EINTR)
        fail("pause returned %d (%s), expected -1/EINTR", r, strerror(err));
    else if (!usr1_received)
        fail("pause returned early: EINTR without signal");
}

static void mode_pipe_read(void)
{
    char c = 0;
    ready();
    ssize_t n = read(pipefd[0], &c, 1);
    int err = errno;
    if (!usr1_received)
        fail("read returned before SIGUSR1 (%zd, %s)", n, n < 0 ? strerror(err) : "data");
    if (n != 1)
        fail("read returned %zd (%s), expected the handler's byte", n,
             n < 0 ? strerror(err) : "no data");
    else if (c != token)
        fail("read returned byte 0x%02x, expected 0x%02x", c, token);
}

static void mode_poll(void)
{
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    ready();
    int r = poll(&pfd, 1, -1);
    int err = errno;
    if (!usr1_received)
        fail("poll returned early: %d (%s) without signal", r, r < 0 ? strerror(err) : "ready");
    else if (r == -1 && err != EINTR)
        fail("poll failed: %s", strerror(err));
    else if (r == 1 && pfd.revents != POLLIN)
        fail("poll returned 1 with revents 0x%x, expected POLLIN", pfd.revents);
    else if (r != 1 && r != -1)
        fail("poll returned %d", r);

    pfd.revents = 0;
    r = poll(&pfd, 1, 0);
    if (r != 1 || pfd.revents != POLLIN)
        fail("after SIGUSR1, poll returned %d revents 0x%x, expected 1 with POLLIN", r,
             pfd.revents);
    check_pipe(1);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    workload_init("syscalls", 0);
    if (pipe(pipefd) != 0) {
        FAIL_ERRNO("pipe");
        finish();
    }

    if (strcmp(mode, "nanosleep") == 0) {
        mode_nanosleep();
        check_pipe(0);
    } else if (strcmp(mode, "pause") == 0) {
        mode_pause();
        check_pipe(0);
    } else if (strcmp(mode, "pipe-read") == 0) {
        install_usr1(SA_RESTART);
        mode_pipe_read();
        check_pipe(0);
    } else if (strcmp(mode, "poll") == 0) {
        install_usr1(0);
        mode_poll();
    } else {
        fail("unknown mode '%s' (nanosleep, pipe-read, pause, poll)", mode);
    }
    finish();
}

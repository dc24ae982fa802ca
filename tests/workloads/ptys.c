/*
 * ptys: pseudo-terminal pairs the program opened itself, checked by talking through them.
 *
 *   A  master in this process (P), window 33x77; a child (C) made the slave its controlling
 *      terminal (setsid, then open), put it in raw mode without echo, and waits reading it.
 *      After the restore P writes "ping"; C reads it and checks its window size, its raw mode,
 *      that /dev/tty is that slave and that its group is the terminal's foreground group, and
 *      answers "Y" (or "N" and what failed).
 *   B  master in packet mode and non-blocking, its slave held by P with echo off and ^X as
 *      VINTR. After the restore what P writes on the slave reads back on the master behind a
 *      TIOCPKT_DATA byte; the master has nothing more (EAGAIN); the settings are as they were.
 *   C  master whose slave was opened and closed again: reading it fails with EIO.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

static int open_master(char *name, size_t size)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0 || ptsname_r(m, name, size) != 0)
        FAIL_ERRNO("posix_openpt");
    return m;
}

static void child_a(const char *name)
{
    char buf[16], reply[128] = "Y";
    if (setsid() < 0)
        _exit(10);
    int s = open(name, O_RDWR); /* the session's controlling terminal from now on */
    if (s < 0)
        _exit(11);
    struct termios t;
    tcgetattr(s, &t);
    cfmakeraw(&t);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    tcsetattr(s, TCSANOW, &t);
    if (write(s, "R", 1) != 1)
        _exit(12);
    ssize_t n = read(s, buf, sizeof(buf));
    struct winsize ws = {0};
    ioctl(s, TIOCGWINSZ, &ws);
    struct termios now;
    tcgetattr(s, &now);
    pid_t sid = 0;
    int ctty = open("/dev/tty", O_RDWR); /* ENXIO without a controlling terminal */
    if (n != 4 || memcmp(buf, "ping", 4) != 0)
        snprintf(reply, sizeof(reply), "N read %zd", n);
    else if (ws.ws_row != 33 || ws.ws_col != 77)
        snprintf(reply, sizeof(reply), "N window %ux%u", ws.ws_row, ws.ws_col);
    else if (now.c_lflag & (ICANON | ECHO))
        snprintf(reply, sizeof(reply), "N not raw: lflag %#x", now.c_lflag);
    else if (ctty < 0 || ioctl(s, TIOCGSID, &sid) != 0 || sid != getsid(0))
        snprintf(reply, sizeof(reply), "N not its controlling terminal: %s", strerror(errno));
    else if (tcgetpgrp(s) != getpgrp())
        snprintf(reply, sizeof(reply), "N foreground %d, not %d", tcgetpgrp(s), getpgrp());
    strcat(reply, "\n");
    if (write(s, reply, strlen(reply)) != (ssize_t)strlen(reply))
        _exit(13);
    _exit(0);
}

int main(void)
{
    char name_a[64], name_b[64], name_c[64], buf[256];
    workload_init("ptys", 0);

    int ma = open_master(name_a, sizeof(name_a));
    struct winsize ws = {.ws_row = 33, .ws_col = 77};
    ioctl(ma, TIOCSWINSZ, &ws);
    pid_t child = fork();
    if (child == 0) {
        close(ma);
        child_a(name_a);
    }
    if (read(ma, buf, 1) != 1 || buf[0] != 'R')
        FAIL_ERRNO("the child's terminal");

    int mb = open_master(name_b, sizeof(name_b));
    int sb = open(name_b, O_RDWR | O_NOCTTY);
    int on = 1;
    struct termios tb;
    if (sb < 0 || ioctl(mb, TIOCPKT, &on) != 0 || tcgetattr(sb, &tb) != 0)
        FAIL_ERRNO("pair B");
    tb.c_lflag &= ~(tcflag_t)ECHO;
    tb.c_oflag &= ~(tcflag_t)OPOST;
    tb.c_cc[VINTR] = 030;
    tcsetattr(sb, TCSANOW, &tb);
    fcntl(mb, F_SETFL, O_NONBLOCK);
    while (read(mb, buf, sizeof(buf)) > 0) /* any status packet the settings left */
        ;

    int mc = open_master(name_c, sizeof(name_c));
    int sc = open(name_c, O_RDWR | O_NOCTTY);
    if (sc < 0)
        FAIL_ERRNO("pair C");
    close(sc);

    ready();
    wait_for_usr1();

    if (write(ma, "ping", 4) != 4)
        FAIL_ERRNO("ping");
    size_t got = 0;
    while (got < sizeof(buf) - 1 && (got == 0 || buf[got - 1] != '\n')) {
        ssize_t n = read(ma, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = 0;
    if (strcmp(buf, "Y\n") != 0)
        fail("pair A: the child answered %s", got ? buf : strerror(errno));
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_EQ("pair A: the child's exit", WIFEXITED(status) ? WEXITSTATUS(status) : 99, 0);

    if (write(sb, "data", 4) != 4)
        FAIL_ERRNO("pair B write");
    ssize_t n = read(mb, buf, sizeof(buf));
    if (n != 5 || buf[0] != TIOCPKT_DATA || memcmp(buf + 1, "data", 4) != 0)
        fail("pair B: the master read %zd bytes, not a data packet", n);
    errno = 0;
    CHECK_EQ("pair B: nothing more (non-blocking)", read(mb, buf, sizeof(buf)), -1);
    CHECK_EQ("pair B: EAGAIN", errno, EAGAIN);
    struct termios now;
    tcgetattr(sb, &now);
    CHECK_EQ("pair B: echo off", now.c_lflag & ECHO, 0);
    CHECK_EQ("pair B: VINTR", now.c_cc[VINTR], 030);
    CHECK_EQ("pair B: its name", strcmp(ttyname(sb) ? ttyname(sb) : "", name_b), 0);

    errno = 0;
    CHECK_EQ("pair C: the closed slave's master reads", read(mc, buf, 1), -1);
    CHECK_EQ("pair C: EIO", errno, EIO);
    finish();
}

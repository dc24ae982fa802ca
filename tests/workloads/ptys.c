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
 *      Before the dump each side holds data the other has not read: the master "out" that P
 *      wrote on the slave, the slave a line and half a line that P wrote on the master. After
 *      the restore the master reads "out" (behind a TIOCPKT_DATA byte), the slave the line,
 *      then the half line, ended only by what P writes after it.
 *   C  master whose slave was opened and closed again: reading it fails with EIO.
 *   D  a pair with the slave's default, cooked settings (echo, icrnl, onlcr), both held by P,
 *      with data queued both ways through the line discipline: what the slave wrote and the
 *      echoes of what the master wrote wait on the master; on the slave two lines (the first
 *      ended by a carriage return icrnl made a newline), a line ended by ^D, an end of file
 *      (^D on an empty line) and half a line. After the restore each reads exactly that,
 *      read by read, nothing processed twice.
 */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
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

/* Read what `fd` has now, without waiting (a master or a non-canonical side), into buf. */
static ssize_t read_now(int fd, char *buf, size_t size)
{
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    ssize_t n = read(fd, buf, size);
    fcntl(fd, F_SETFL, flags);
    return n;
}

/* One read(2) of the slave `fd` in canonical mode must return exactly `want` (len bytes). */
static void expect_read(const char *what, int fd, const char *want, size_t len)
{
    char buf[256];
    ssize_t n = read_now(fd, buf, sizeof(buf));
    if (n != (ssize_t)len || memcmp(buf, want, len) != 0)
        fail("%s: read %zd bytes (%.*s), not the %zu of %.*s", what, n, n > 0 ? (int)n : 0, buf,
             len, (int)len, want);
}

/* The slave `fd` in canonical mode has nothing to read yet (a line not ended is not). */
static void expect_nothing(const char *what, int fd)
{
    char buf[256];
    errno = 0;
    ssize_t n = read_now(fd, buf, sizeof(buf));
    if (n != -1 || errno != EAGAIN)
        fail("%s: read %zd bytes (%s)", what, n, n < 0 ? strerror(errno) : "data");
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

    /* B: "out" for the master, a line and half a line for the slave (no echo) */
    if (write(sb, "out", 3) != 3 || write(mb, "line\nhal", 8) != 8)
        FAIL_ERRNO("pair B: queueing");

    int mc = open_master(name_c, sizeof(name_c));
    int sc = open(name_c, O_RDWR | O_NOCTTY);
    if (sc < 0)
        FAIL_ERRNO("pair C");
    close(sc);

    char name_d[64];
    int md = open_master(name_d, sizeof(name_d));
    int sd = open(name_d, O_RDWR | O_NOCTTY);
    if (sd < 0)
        FAIL_ERRNO("pair D");
    static const char d_in[] = "ab\rcd\neof\004\004tail";
    static const char d_out[] = "x\r\nyab\r\ncd\r\neoftail"; /* onlcr, echo */
    if (write(sd, "x\ny", 3) != 3 || write(md, d_in, sizeof(d_in) - 1) != sizeof(d_in) - 1)
        FAIL_ERRNO("pair D: queueing");
    /* until the slave's line discipline has taken it all: the last echo is on the master */
    struct pollfd echoed = {.fd = md, .events = POLLIN};
    int d_queued = 0;
    for (int tries = 0; tries < 1000 && d_queued < (int)sizeof(d_out) - 1; tries++) {
        poll(&echoed, 1, 10);
        ioctl(md, FIONREAD, &d_queued);
    }
    CHECK_EQ("pair D: queued on the master before the dump", d_queued, (int)sizeof(d_out) - 1);

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

    ssize_t n = read(mb, buf, sizeof(buf));
    if (n != 4 || buf[0] != TIOCPKT_DATA || memcmp(buf + 1, "out", 3) != 0)
        fail("pair B: the master read %zd bytes, not the data packet queued (out)", n);
    expect_read("pair B: the slave's queued line", sb, "line\n", 5);
    expect_nothing("pair B: the half line waits for its end", sb);
    if (write(mb, "f\n", 2) != 2)
        FAIL_ERRNO("pair B: ending the line");
    n = read(sb, buf, sizeof(buf));
    if (n != 5 || memcmp(buf, "half\n", 5) != 0)
        fail("pair B: the slave read %zd bytes (%.*s), not half\\n", n, n > 0 ? (int)n : 0, buf);

    if (write(sb, "data", 4) != 4)
        FAIL_ERRNO("pair B write");
    n = read(mb, buf, sizeof(buf));
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

    n = read_now(md, buf, sizeof(buf));
    if (n != sizeof(d_out) - 1 || memcmp(buf, d_out, sizeof(d_out) - 1) != 0)
        fail("pair D: the master read %zd bytes (%.*s), not what was queued", n,
             n > 0 ? (int)n : 0, buf);
    expect_read("pair D: line 1", sd, "ab\n", 3);
    expect_read("pair D: line 2", sd, "cd\n", 3);
    expect_read("pair D: the line ended by ^D", sd, "eof", 3);
    expect_read("pair D: the end of file", sd, "", 0);
    expect_nothing("pair D: the half line waits for its end", sd);
    if (write(md, "\r", 1) != 1)
        FAIL_ERRNO("pair D: ending the line");
    n = read(sd, buf, sizeof(buf));
    if (n != 5 || memcmp(buf, "tail\n", 5) != 0)
        fail("pair D: the slave read %zd bytes (%.*s), not tail\\n", n, n > 0 ? (int)n : 0, buf);
    struct termios td;
    tcgetattr(sd, &td);
    CHECK_EQ("pair D: still canonical, echo, icrnl",
             (td.c_lflag & (ICANON | ECHO)) == (ICANON | ECHO) && (td.c_iflag & ICRNL), 1);
    finish();
}

/*
 * unixsk: Unix sockets of every shape, with unread data, checked by using them.
 *
 * Held by this process (P) and a forked child (C):
 *   pair    stream socketpair, P's end and C's end; 1000 bytes queued towards C, 700 towards P
 *   seq     seqpacket socketpair in P: three messages of 10, 200 and 3000 bytes queued
 *   dg      datagram socketpair in P, one end non-blocking: two datagrams queued
 *   srv     stream listener on the relative path "srv.sock" (backlog 5, mode 0640, owner
 *           1234:4321):
 *             an accepted connection, P's accepted end and C's client end, data both ways;
 *             a connection from P not yet accepted
 *   ab      seqpacket listener on an abstract name, with an accepted connection (both in P)
 *   rx      datagram socket on an abstract name, SO_PASSCRED and a 100000-byte receive
 *           buffer, 5 s receive timeout: two datagrams from tx1 (bound to an abstract name),
 *           one from tx2 (unbound, connected to rx)
 *   half    stream socketpair whose one end was shut down for writing, 5 bytes queued
 *   orphan  stream socket whose peer wrote 3 bytes and closed
 *   gone    datagram socket bound to "gone.sock", whose socket file was then deleted
 *   fly     stream socketpair carrying, in one message (SCM_RIGHTS), fds P then closed: a
 *           pipe's read end with 9 bytes in the pipe, and one end of a datagram
 *           socketpair with a datagram queued on it
 *
 * After the restore every socket is used: the queued data comes back in order with its
 * boundaries, sender addresses and credentials; names and peers are as they were; the
 * pending connection is accepted and answers; fresh data goes both ways everywhere; end of
 * file and EPIPE where a side was shut down or closed.
 */
#include "common.h"

#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

static socklen_t address(struct sockaddr_un *a, const char *name, int abstract)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1); /* '\0' and name, or name and '\0' */
}

static void fill(unsigned char *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)pattern32(seed, (uint32_t)i);
}

/* Receive exactly `n` bytes (one message for message sockets) matching `seed`. */
static void expect(int fd, size_t n, uint32_t seed, const char *what)
{
    static unsigned char want[4096], got[4096];
    fill(want, n, seed);
    ssize_t r = recv(fd, got, sizeof(got), MSG_DONTWAIT);
    if (r != (ssize_t)n)
        fail("%s: received %zd bytes, expected %zu (%s)", what, r, n, r < 0 ? strerror(errno) : "");
    else if (memcmp(got, want, n) != 0)
        fail("%s: the data differs", what);
}

static void exchange(int a, int b, const char *what)
{
    char buf[16] = {0};
    if (send(a, "ping", 4, MSG_NOSIGNAL) != 4 || recv(b, buf, sizeof(buf), MSG_DONTWAIT) != 4 ||
        memcmp(buf, "ping", 4) != 0)
        fail("%s: a fresh message did not go through one way", what);
    if (send(b, "pong", 4, MSG_NOSIGNAL) != 4 || recv(a, buf, sizeof(buf), MSG_DONTWAIT) != 4 ||
        memcmp(buf, "pong", 4) != 0)
        fail("%s: a fresh message did not go through the other way", what);
}

/* The child's side of a round trip: a "ping" comes, a "pong" goes. */
static void answer(int fd, const char *what)
{
    char buf[8] = {0};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (recv(fd, buf, 4, 0) != 4 || memcmp(buf, "ping", 4) != 0 || send(fd, "pong", 4, 0) != 4)
        fail("%s: no round trip with the parent", what);
}

static void ask(int fd, const char *what)
{
    char buf[8] = {0};
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (send(fd, "ping", 4, 0) != 4 || recv(fd, buf, 4, 0) != 4 || memcmp(buf, "pong", 4) != 0)
        fail("%s: no round trip with the child", what);
}

static void check_name(int fd, int peer, const char *name, int abstract, const char *what)
{
    struct sockaddr_un a, want;
    socklen_t len = sizeof(a), wlen = address(&want, name, abstract);
    int r = peer ? getpeername(fd, (struct sockaddr *)&a, &len) : getsockname(fd, (struct sockaddr *)&a, &len);
    if (r != 0 || len != wlen || memcmp(&a, &want, len) != 0)
        fail("%s: %s is not %s%s", what, peer ? "the peer's name" : "the name", abstract ? "@" : "", name);
}

static void send_to(int fd, const char *name, size_t n, uint32_t seed)
{
    unsigned char buf[4096];
    struct sockaddr_un a;
    socklen_t len = address(&a, name, 1);
    fill(buf, n, seed);
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&a, len) != (ssize_t)n)
        FAIL_ERRNO("sendto");
}

/* One datagram on rx: its size, sender and the sender's pid. */
static void expect_datagram(int rx, size_t n, uint32_t seed, const char *from, pid_t pid)
{
    unsigned char buf[4096], want[4096];
    char control[CMSG_SPACE(sizeof(struct ucred))];
    struct sockaddr_un a, wa;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m = {&a, sizeof(a), &iov, 1, control, sizeof(control), 0};
    ssize_t r = recvmsg(rx, &m, MSG_DONTWAIT);
    fill(want, n, seed);
    if (r != (ssize_t)n || memcmp(buf, want, n) != 0) {
        fail("rx: datagram of %zd bytes, expected %zu", r, n);
        return;
    }
    socklen_t wlen = from ? address(&wa, from, 1) : 0;
    if (m.msg_namelen != wlen || (from && memcmp(&a, &wa, wlen) != 0))
        fail("rx: datagram not from %s", from ? from : "an unbound socket");
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_CREDENTIALS)
        fail("rx: datagram without credentials");
    else {
        struct ucred u;
        memcpy(&u, CMSG_DATA(c), sizeof(u));
        CHECK_EQ("rx: sender pid", u.pid, pid);
    }
}

int main(void)
{
    static unsigned char buf[4096];
    char rx_name[64], tx1_name[64], ab_name[64];
    struct sockaddr_un a;
    socklen_t len;
    int pair[2], seq[2], dg[2], half[2], orphan[2], go[2], checked[2], fly[2], flown[2];
    workload_init("unixsk", 0);
    signal(SIGPIPE, SIG_IGN);
    snprintf(rx_name, sizeof(rx_name), "torpor-unixsk-rx-%d", getpid());
    snprintf(tx1_name, sizeof(tx1_name), "torpor-unixsk-tx1-%d", getpid());
    snprintf(ab_name, sizeof(ab_name), "torpor-unixsk-ab-%d", getpid());

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) || socketpair(AF_UNIX, SOCK_SEQPACKET, 0, seq) ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || socketpair(AF_UNIX, SOCK_STREAM, 0, half) ||
        socketpair(AF_UNIX, SOCK_STREAM, 0, orphan) || pipe(go) || pipe(checked))
        FAIL_ERRNO("socketpair");
    fill(buf, 1000, 1);
    if (send(pair[0], buf, 1000, 0) != 1000)
        FAIL_ERRNO("send pair");
    fill(buf, 700, 2);
    if (send(pair[1], buf, 700, 0) != 700)
        FAIL_ERRNO("send pair back");
    size_t seq_sizes[] = {10, 200, 3000};
    for (int i = 0; i < 3; i++) {
        fill(buf, seq_sizes[i], 10 + i);
        if (send(seq[0], buf, seq_sizes[i], 0) != (ssize_t)seq_sizes[i])
            FAIL_ERRNO("send seq");
    }
    fill(buf, 50, 20);
    send(dg[0], buf, 50, 0);
    fill(buf, 60, 21);
    send(dg[0], buf, 60, 0);
    fcntl(dg[1], F_SETFL, O_NONBLOCK);

    int srv = socket(AF_UNIX, SOCK_STREAM, 0);
    len = address(&a, "srv.sock", 0);
    if (bind(srv, (struct sockaddr *)&a, len) || listen(srv, 5) || chmod("srv.sock", 0640) ||
        chown("srv.sock", 1234, 4321))
        FAIL_ERRNO("srv");
    int client = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(client, (struct sockaddr *)&a, len))
        FAIL_ERRNO("connect srv");
    int accepted = accept(srv, NULL, NULL);
    int waiting = socket(AF_UNIX, SOCK_STREAM, 0);
    if (accepted < 0 || connect(waiting, (struct sockaddr *)&a, len))
        FAIL_ERRNO("accept srv");
    fill(buf, 300, 30);
    send(client, buf, 300, 0);
    fill(buf, 400, 31);
    send(accepted, buf, 400, 0);

    int ab = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    len = address(&a, ab_name, 1);
    if (bind(ab, (struct sockaddr *)&a, len) || listen(ab, 2))
        FAIL_ERRNO("ab");
    int ab_client = socket(AF_UNIX, SOCK_SEQPACKET, 0);
    if (connect(ab_client, (struct sockaddr *)&a, len))
        FAIL_ERRNO("connect ab");
    int ab_accepted = accept(ab, NULL, NULL);
    fill(buf, 77, 40);
    send(ab_client, buf, 77, 0);

    int rx = socket(AF_UNIX, SOCK_DGRAM, 0), tx1 = socket(AF_UNIX, SOCK_DGRAM, 0);
    int tx2 = socket(AF_UNIX, SOCK_DGRAM, 0), one = 1, rcvbuf = 100000;
    struct timeval timeout = {5, 0};
    setsockopt(rx, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one));
    setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    len = address(&a, rx_name, 1);
    if (bind(rx, (struct sockaddr *)&a, len) || connect(tx2, (struct sockaddr *)&a, len))
        FAIL_ERRNO("rx");
    len = address(&a, tx1_name, 1);
    if (bind(tx1, (struct sockaddr *)&a, len))
        FAIL_ERRNO("tx1");
    send_to(tx1, rx_name, 100, 50);
    send_to(tx1, rx_name, 101, 51);
    fill(buf, 102, 52);
    send(tx2, buf, 102, 0);

    fill(buf, 5, 60);
    send(half[1], buf, 5, 0);
    shutdown(half[1], SHUT_WR);
    send(orphan[1], "bye", 3, 0);
    close(orphan[1]);

    int gone = socket(AF_UNIX, SOCK_DGRAM, 0);
    len = address(&a, "gone.sock", 0);
    if (bind(gone, (struct sockaddr *)&a, len) || unlink("gone.sock"))
        FAIL_ERRNO("gone");

    int fly_pipe[2], fly_dg[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fly) || pipe(fly_pipe) ||
        socketpair(AF_UNIX, SOCK_DGRAM, 0, fly_dg))
        FAIL_ERRNO("fly");
    if (write(fly_pipe[1], "in flight", 9) != 9 || send(fly_dg[1], "queued", 6, 0) != 6)
        FAIL_ERRNO("fly data");
    send_fds(fly[0], (int[]){fly_pipe[0], fly_dg[0]}, 2);
    close(fly_pipe[0]);
    close(fly_dg[0]);

    pid_t child = fork();
    if (child == 0) { /* C: the other end of pair, the client end of srv's connection */
        char c;
        close(pair[0]);
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(2);
        expect(pair[1], 1000, 1, "child: pair");
        expect(client, 400, 31, "child: client");
        check_name(client, 1, "srv.sock", 0, "child: client");
        if (write(checked[1], "c", 1) != 1)
            _exit(3);
        answer(pair[1], "child: pair");
        answer(client, "child: client");
        _exit(workload_failures ? 1 : 0);
    }
    close(pair[1]);
    close(client);
    close(go[0]);
    ready();
    wait_for_usr1();

    if (write(go[1], "g", 1) != 1)
        FAIL_ERRNO("waking the child");
    expect(pair[0], 700, 2, "pair");
    expect(accepted, 300, 30, "accepted");
    check_name(accepted, 0, "srv.sock", 0, "accepted");
    char c;
    if (read(checked[0], &c, 1) != 1)
        fail("the child did not check its sockets");
    ask(pair[0], "pair");
    ask(accepted, "accepted");
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_EQ("the child's checks", WIFEXITED(status) ? WEXITSTATUS(status) : 99, 0);

    for (int i = 0; i < 3; i++)
        expect(seq[1], seq_sizes[i], 10 + i, "seq");
    exchange(seq[0], seq[1], "seq");
    CHECK_EQ("dg[1] non-blocking", fcntl(dg[1], F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    CHECK_EQ("dg[0] blocking", fcntl(dg[0], F_GETFL) & O_NONBLOCK, 0);
    expect(dg[1], 50, 20, "dg");
    expect(dg[1], 60, 21, "dg");
    exchange(dg[0], dg[1], "dg");

    check_name(srv, 0, "srv.sock", 0, "srv");
    struct stat sst;
    if (stat("srv.sock", &sst) != 0 || !S_ISSOCK(sst.st_mode))
        fail("srv.sock is not a socket file");
    CHECK_EQ("srv.sock mode", sst.st_mode & 07777, 0640);
    CHECK_EQ("srv.sock owner", sst.st_uid, 1234);
    CHECK_EQ("srv.sock group", sst.st_gid, 4321);
    int later = accept(srv, NULL, NULL);
    if (later < 0)
        fail("the connection not yet accepted is gone: %s", strerror(errno));
    else {
        exchange(waiting, later, "the connection accepted after the restore");
        check_name(waiting, 1, "srv.sock", 0, "waiting");
    }
    int fresh = socket(AF_UNIX, SOCK_STREAM, 0);
    len = address(&a, "srv.sock", 0);
    if (connect(fresh, (struct sockaddr *)&a, len) != 0)
        fail("a new client cannot connect to srv.sock: %s", strerror(errno));
    int fresh_accepted = accept(srv, NULL, NULL);
    exchange(fresh, fresh_accepted, "a connection made after the restore");

    check_name(ab, 0, ab_name, 1, "ab");
    check_name(ab_accepted, 0, ab_name, 1, "ab accepted");
    check_name(ab_client, 1, ab_name, 1, "ab client");
    expect(ab_accepted, 77, 40, "ab");
    exchange(ab_client, ab_accepted, "ab");

    int got = 0;
    socklen_t glen = sizeof(got);
    getsockopt(rx, SOL_SOCKET, SO_PASSCRED, &got, &glen);
    CHECK_EQ("rx SO_PASSCRED", got, 1);
    getsockopt(rx, SOL_SOCKET, SO_RCVBUF, &got, &glen);
    CHECK_EQ("rx SO_RCVBUF", got, 200000);
    struct timeval tv = {0, 0};
    glen = sizeof(tv);
    getsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &tv, &glen);
    CHECK_EQ("rx SO_RCVTIMEO", tv.tv_sec, 5);
    check_name(rx, 0, rx_name, 1, "rx");
    check_name(tx1, 0, tx1_name, 1, "tx1");
    check_name(tx2, 1, rx_name, 1, "tx2");
    expect_datagram(rx, 100, 50, tx1_name, getpid());
    expect_datagram(rx, 101, 51, tx1_name, getpid());
    expect_datagram(rx, 102, 52, NULL, getpid());
    fill(buf, 103, 53);
    send(tx2, buf, 103, 0);
    expect_datagram(rx, 103, 53, NULL, getpid());

    expect(half[0], 5, 60, "half");
    CHECK_EQ("half: end of file", recv(half[0], buf, 1, MSG_DONTWAIT), 0);
    CHECK_EQ("half: EPIPE writing the shut down side", send(half[1], "x", 1, MSG_NOSIGNAL), -1);
    if (send(half[0], "back", 4, 0) != 4 || recv(half[1], buf, 4, MSG_DONTWAIT) != 4)
        fail("half: the side not shut down does not carry data");

    if (recv(orphan[0], buf, 3, MSG_DONTWAIT) != 3 || memcmp(buf, "bye", 3) != 0)
        fail("orphan: the data its closed peer wrote is gone");
    CHECK_EQ("orphan: end of file", recv(orphan[0], buf, 1, MSG_DONTWAIT), 0);

    if (receive_fds(fly[1], flown, 2) != 2)
        fail("fly: the message with its two fds is gone");
    else {
        if (read(flown[0], buf, 9) != 9 || memcmp(buf, "in flight", 9) != 0)
            fail("fly: the pipe in flight lost its data");
        if (write(fly_pipe[1], "!", 1) != 1 || read(flown[0], buf, 1) != 1 || buf[0] != '!')
            fail("fly: the pipe in flight is not the pipe P writes to");
        if (recv(flown[1], buf, 100, MSG_DONTWAIT) != 6 || memcmp(buf, "queued", 6) != 0)
            fail("fly: the socket in flight lost its datagram");
        if (send(fly_dg[1], "more", 4, 0) != 4 || recv(flown[1], buf, 100, MSG_DONTWAIT) != 4)
            fail("fly: the socket in flight is not connected to its peer");
    }

    check_name(gone, 0, "gone.sock", 0, "gone");
    struct stat st;
    CHECK_EQ("gone.sock is still deleted", stat("gone.sock", &st), -1);
    finish();
}

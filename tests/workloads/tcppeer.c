/*
 * tcppeer: a TCP server whose client is outside the tree (the test process).
 *
 * It listens on argv[2] (127.0.0.1 by default, or an IPv6 address), prints "PORT <n>",
 * accepts one connection and waits until the client's first BEFORE bytes are in its
 * receive queue, unread; then READY.  The client's stream is pattern32(1, i) byte by byte.
 *
 *   keep    (argv[1], the default) on SIGUSR1: reads BEFORE + DURING bytes (the last ones
 *           sent while the tree was down) and checks every one, answers ANSWER bytes
 *           (pattern32(2, i)), then reads "ping" and answers "pong".
 *   closed  on SIGUSR1: the connection's fd is a TCP socket in state CLOSE whose poll shows
 *           POLLHUP, whose read sees the end of the stream and whose write fails with
 *           EPIPE; the listener accepts a new client, reads "hello", answers "world".
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#define BEFORE 3000
#define DURING 5000
#define ANSWER 20000

static int read_all(int fd, unsigned char *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = ENODATA;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int send_all(int fd, const unsigned char *buf, size_t n)
{
    size_t sent = 0;
    while (sent < n) {
        ssize_t r = send(fd, buf + sent, n - sent, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -1;
        sent += (size_t)r;
    }
    return 0;
}

static void keep(int conn)
{
    static unsigned char buf[ANSWER];
    if (read_all(conn, buf, BEFORE + DURING)) {
        fail("reading the client's %d bytes: %s", BEFORE + DURING, strerror(errno));
        return;
    }
    for (size_t i = 0; i < BEFORE + DURING; i++)
        if (buf[i] != (unsigned char)pattern32(1, (uint32_t)i)) {
            fail("byte %zu of the client's stream is %#x, expected %#x", i, buf[i],
                 (unsigned char)pattern32(1, (uint32_t)i));
            return;
        }
    for (size_t i = 0; i < ANSWER; i++)
        buf[i] = (unsigned char)pattern32(2, (uint32_t)i);
    if (send_all(conn, buf, ANSWER)) {
        fail("answering: %s", strerror(errno));
        return;
    }
    if (read_all(conn, buf, 4) || memcmp(buf, "ping", 4) != 0) {
        fail("no ping after the answer");
        return;
    }
    if (send_all(conn, (const unsigned char *)"pong", 4))
        fail("sending pong: %s", strerror(errno));
}

static void closed(int conn, int lst)
{
    struct tcp_info info;
    socklen_t len = sizeof(info);
    if (getsockopt(conn, IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
        FAIL_ERRNO("TCP_INFO");
    else if (info.tcpi_state != TCP_CLOSE)
        fail("the connection is in state %d, expected CLOSE (%d)", info.tcpi_state, TCP_CLOSE);
    struct pollfd p = {.fd = conn, .events = POLLIN | POLLOUT};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLHUP))
        fail("poll of the closed connection shows %#x, no POLLHUP", p.revents);
    char c;
    ssize_t r = read(conn, &c, 1);
    if (r != 0)
        fail("read of the closed connection gave %zd (%s), not the end of the stream", r,
             r < 0 ? strerror(errno) : "data");
    r = write(conn, "x", 1);
    if (r >= 0 || errno != EPIPE)
        fail("write to the closed connection gave %zd (%s), expected EPIPE", r,
             r < 0 ? strerror(errno) : "written");
    int again = accept(lst, NULL, NULL);
    unsigned char buf[5];
    if (again < 0) {
        FAIL_ERRNO("accept after the restore");
        return;
    }
    if (read_all(again, buf, 5) || memcmp(buf, "hello", 5) != 0)
        fail("the new client's hello did not arrive");
    else if (send_all(again, (const unsigned char *)"world", 5))
        fail("answering the new client: %s", strerror(errno));
    close(again);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "keep";
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    workload_init("tcppeer", 0);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage a;
    socklen_t len;
    memset(&a, 0, sizeof(a));
    int family = strchr(host, ':') ? AF_INET6 : AF_INET;
    if (family == AF_INET6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a;
        a6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, host, &a6->sin6_addr);
        len = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&a;
        a4->sin_family = AF_INET;
        inet_pton(AF_INET, host, &a4->sin_addr);
        len = sizeof(*a4);
    }
    int lst = socket(family, SOCK_STREAM, 0);
    if (lst < 0 || bind(lst, (struct sockaddr *)&a, len) || listen(lst, 4)) {
        FAIL_ERRNO("listen");
        finish();
    }
    getsockname(lst, (struct sockaddr *)&a, &len);
    say("PORT %d\n", ntohs(((struct sockaddr_in *)&a)->sin_port)); /* same place in v6 */

    int conn = accept(lst, NULL, NULL);
    static unsigned char first[BEFORE];
    if (conn < 0) {
        FAIL_ERRNO("accept");
        finish();
    }
    if (recv(conn, first, BEFORE, MSG_PEEK | MSG_WAITALL) != BEFORE)
        FAIL_ERRNO("waiting for the client's first bytes");
    ready();
    wait_for_usr1();

    if (strcmp(mode, "closed") == 0)
        closed(conn, lst);
    else
        keep(conn);
    finish();
}

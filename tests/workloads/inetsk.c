/*
 * inetsk: internet sockets (TCP listeners and unconnected TCP sockets, UDP and UDP-lite,
 * IPv4 and IPv6) with their options and unread datagrams, checked by using them.
 *
 *   lst4    TCP listener on 127.0.0.1, backlog 5, non-blocking, SO_REUSEADDR, TCP_NODELAY,
 *           SO_KEEPALIVE with TCP_KEEPIDLE 77, IP_TOS 0x10
 *   lst6    TCP listener on [::1], backlog 3, IPV6_V6ONLY, SO_REUSEPORT, TCP_MAXSEG 1200,
 *           TCP_CONGESTION reno
 *   fresh   TCP socket never used;  bound: TCP socket bound to 127.0.0.1, not listening
 *   rx      UDP on 127.0.0.1, IP_PKTINFO, IP_TTL 33, a 100000-byte receive buffer: four
 *           datagrams queued, two from tx1 (UDP on 127.0.0.1, connected to rx), one from an
 *           unbound socket since closed, one from the foreign address 198.51.100.7 (sent
 *           with IP_TRANSPARENT)
 *   rx6     UDP on [::] taking IPv4 too, IPV6_RECVPKTINFO, IPV6_UNICAST_HOPS 9: a datagram
 *           from tx6 (UDP on [::1]) and one from tx1 (an IPv4-mapped sender)
 *   lite    UDP-lite on 127.0.0.1, checksum coverage 20 both ways: a datagram to itself
 *   dev     UDP on 127.0.0.1 bound to the device lo (SO_BINDTODEVICE)
 *   hop     UDP on [::1] with sticky hop-by-hop and destination options headers
 *           (IPV6_HOPOPTS, IPV6_DSTOPTS) that every datagram it sends carries
 *   hoprx   UDP on [::1] receiving them: IPV6_RECVHOPOPTS, IPV6_RECVDSTOPTS,
 *           IPV6_2292PKTINFO, IPV6_ROUTER_ALERT_ISOLATE; rx also has IP_CHECKSUM
 *   ra      UDP on 127.0.0.1 sending with IP_OPTIONS (a router alert option), to rarx
 *           (UDP on 127.0.0.1, IP_RECVOPTS), which sees the option with the datagram
 *
 * After the restore every socket has its address and options; the listeners accept new
 * connections (from fresh, and from new clients) whose ends talk both ways and inherit the
 * listener's options; bound listens; every queued datagram is received in order, with its
 * sender's address; tx1 still sends to rx, its peer; a datagram from hop reaches hoprx with
 * both headers and an RFC 2292 packet info; one from ra reaches rarx with its IP option.
 */
#include "common.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>

#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11
#ifndef IP_CHECKSUM
#define IP_CHECKSUM 23
#endif
#ifndef IPV6_ROUTER_ALERT_ISOLATE
#define IPV6_ROUTER_ALERT_ISOLATE 30
#endif

static int one = 1;

static void fill(unsigned char *buf, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)pattern32(seed, (uint32_t)i);
}

static struct sockaddr_in in4(const char *host, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    return a;
}

static struct sockaddr_in6 in6(const char *host, int port)
{
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    inet_pton(AF_INET6, host, &a.sin6_addr);
    return a;
}

/* A socket of `family`/`type`/`proto` bound to `host` (port chosen by the kernel). */
static int bound_socket(int family, int type, int proto, const char *host)
{
    int fd = socket(family, type, proto);
    struct sockaddr_in a4 = in4(host, 0);
    struct sockaddr_in6 a6 = in6(host, 0);
    int r = family == AF_INET ? bind(fd, (struct sockaddr *)&a4, sizeof(a4))
                              : bind(fd, (struct sockaddr *)&a6, sizeof(a6));
    if (fd < 0 || r != 0)
        fail("socket on %s: %s", host, strerror(errno));
    return fd;
}

struct name {
    struct sockaddr_storage a;
    socklen_t len;
};

static struct name name_of(int fd)
{
    struct name n = {.len = sizeof(n.a)};
    getsockname(fd, (struct sockaddr *)&n.a, &n.len);
    return n;
}

static int port_of(const struct name *n)
{
    return ntohs(((struct sockaddr_in *)&n->a)->sin_port); /* same place in sockaddr_in6 */
}

static void check_name(int fd, const struct name *want, const char *what)
{
    struct name got = name_of(fd);
    if (got.len != want->len || memcmp(&got.a, &want->a, got.len) != 0)
        fail("%s: its address changed", what);
}

static void check_opt(int fd, int level, int option, int want, const char *what)
{
    int got = -1;
    socklen_t len = sizeof(got);
    if (getsockopt(fd, level, option, &got, &len) != 0)
        fail("%s: getsockopt: %s", what, strerror(errno));
    else if (got != want)
        fail("%s is %d, expected %d", what, got, want);
}

static int opt(int fd, int level, int option)
{
    int got = -1;
    socklen_t len = sizeof(got);
    getsockopt(fd, level, option, &got, &len);
    return got;
}

/* Connect `client` to the listener `lst`, accept, and talk both ways. */
static void use_listener(int lst, int client, const char *what)
{
    struct name n = name_of(lst);
    char buf[8] = {0};
    if (connect(client, (struct sockaddr *)&n.a, n.len) != 0) {
        fail("%s: connect: %s", what, strerror(errno));
        return;
    }
    struct pollfd p = {.fd = lst, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        fail("%s: no connection to accept", what);
        return;
    }
    int got = accept(lst, NULL, NULL);
    if (got < 0) {
        fail("%s: accept: %s", what, strerror(errno));
        return;
    }
    if (send(client, "ping", 4, 0) != 4 || recv(got, buf, 4, MSG_WAITALL) != 4 ||
        memcmp(buf, "ping", 4) != 0)
        fail("%s: the client's data did not arrive", what);
    if (send(got, "pong", 4, 0) != 4 || recv(client, buf, 4, MSG_WAITALL) != 4 ||
        memcmp(buf, "pong", 4) != 0)
        fail("%s: the answer did not arrive", what);
    check_opt(got, IPPROTO_TCP, TCP_NODELAY, opt(lst, IPPROTO_TCP, TCP_NODELAY), what);
    close(got);
    close(client);
}

/* One datagram on fd: `n` bytes of `seed`, from the address `from`. */
static void expect_datagram(int fd, size_t n, uint32_t seed, const struct name *from,
                            const char *what)
{
    unsigned char buf[2048], want[2048];
    char control[256];
    struct sockaddr_storage a;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m = {&a, sizeof(a), &iov, 1, control, sizeof(control), 0};
    ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT);
    fill(want, n, seed);
    if (r != (ssize_t)n || memcmp(buf, want, n) != 0) {
        fail("%s: a datagram of %zd bytes (%s), expected %zu", what, r,
             r < 0 ? strerror(errno) : "", n);
        return;
    }
    if (m.msg_namelen != from->len || memcmp(&a, &from->a, from->len) != 0) {
        char host[64] = "?";
        if (a.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&a)->sin_addr, host, sizeof(host));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a)->sin6_addr, host, sizeof(host));
        fail("%s: a datagram from %s port %d, not from its sender", what, host,
             ntohs(((struct sockaddr_in *)&a)->sin_port));
    }
}

/* A datagram from hop on hoprx, with its hop-by-hop and destination options (from their
 * length byte on, as hop set them) and an RFC 2292 packet info. */
static void expect_headers(int fd, const unsigned char *hbh, const unsigned char *dst)
{
    unsigned char buf[256];
    char control[512];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m = {NULL, 0, &iov, 1, control, sizeof(control), 0};
    int seen_hbh = 0, seen_dst = 0, seen_info = 0;
    if (recvmsg(fd, &m, MSG_DONTWAIT) < 0) {
        FAIL_ERRNO("hoprx recvmsg");
        return;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        const unsigned char *d = CMSG_DATA(c);
        size_t n = c->cmsg_len - CMSG_LEN(0);
        if (c->cmsg_level != IPPROTO_IPV6)
            continue;
        if (c->cmsg_type == IPV6_HOPOPTS)
            seen_hbh = n == 8 && memcmp(d + 1, hbh + 1, 7) == 0;
        else if (c->cmsg_type == IPV6_DSTOPTS)
            seen_dst = n == 8 && memcmp(d + 1, dst + 1, 7) == 0;
        else if (c->cmsg_type == IPV6_2292PKTINFO)
            seen_info = 1;
    }
    if (!seen_hbh)
        fail("hoprx: the datagram from hop has not its hop-by-hop options");
    if (!seen_dst)
        fail("hoprx: the datagram from hop has not its destination options");
    if (!seen_info)
        fail("hoprx: no IPV6_2292PKTINFO with the datagram");
}

/* A datagram on fd carrying the IP options `want` (n bytes). */
static void expect_ip_options(int fd, const unsigned char *want, size_t n)
{
    unsigned char buf[256];
    char control[256];
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr m = {NULL, 0, &iov, 1, control, sizeof(control), 0};
    if (recvmsg(fd, &m, MSG_DONTWAIT) < 0) {
        FAIL_ERRNO("rarx recvmsg");
        return;
    }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVOPTS &&
            c->cmsg_len - CMSG_LEN(0) == n && memcmp(CMSG_DATA(c), want, n) == 0)
            return;
    fail("rarx: the datagram from ra has not its IP options");
}

static void send_to(int fd, const struct name *to, size_t n, uint32_t seed)
{
    unsigned char buf[2048];
    fill(buf, n, seed);
    if (sendto(fd, buf, n, 0, (const struct sockaddr *)&to->a, to->len) != (ssize_t)n)
        FAIL_ERRNO("sendto");
}

int main(void)
{
    workload_init("inetsk", 0);
    signal(SIGPIPE, SIG_IGN);

    int lst4 = bound_socket(AF_INET, SOCK_STREAM, 0, "127.0.0.1");
    int idle = 77, tos = 0x10, mss = 1200, ttl = 33, rcvbuf = 100000, hops = 9, cscov = 20;
    setsockopt(lst4, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(lst4, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(lst4, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(lst4, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(lst4, IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    if (listen(lst4, 5) || fcntl(lst4, F_SETFL, O_NONBLOCK))
        FAIL_ERRNO("lst4");

    int lst6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a6 = in6("::1", 0);
    setsockopt(lst6, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    setsockopt(lst6, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(lst6, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof(mss));
    if (setsockopt(lst6, IPPROTO_TCP, TCP_CONGESTION, "reno", 4))
        FAIL_ERRNO("TCP_CONGESTION");
    if (bind(lst6, (struct sockaddr *)&a6, sizeof(a6)) || listen(lst6, 3))
        FAIL_ERRNO("lst6");

    int fresh = socket(AF_INET, SOCK_STREAM, 0);
    int bound = bound_socket(AF_INET, SOCK_STREAM, 0, "127.0.0.1");

    int rx = bound_socket(AF_INET, SOCK_DGRAM, 0, "127.0.0.1");
    setsockopt(rx, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    setsockopt(rx, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl));
    setsockopt(rx, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    int tx1 = bound_socket(AF_INET, SOCK_DGRAM, 0, "127.0.0.1");
    struct name rx_name = name_of(rx), tx1_name = name_of(tx1);
    if (connect(tx1, (struct sockaddr *)&rx_name.a, rx_name.len))
        FAIL_ERRNO("connect tx1");
    send_to(tx1, &rx_name, 100, 1);
    send_to(tx1, &rx_name, 101, 2);
    int tx2 = socket(AF_INET, SOCK_DGRAM, 0);
    send_to(tx2, &rx_name, 102, 3);
    struct name tx2_name = name_of(tx2); /* bound to any address: it sent from 127.0.0.1 */
    ((struct sockaddr_in *)&tx2_name.a)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    close(tx2);
    int foreign = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in fa = in4("198.51.100.7", 0);
    if (setsockopt(foreign, IPPROTO_IP, IP_TRANSPARENT, &one, sizeof(one)) ||
        bind(foreign, (struct sockaddr *)&fa, sizeof(fa)))
        FAIL_ERRNO("foreign sender");
    send_to(foreign, &rx_name, 103, 4);
    struct name foreign_name = name_of(foreign);
    close(foreign);

    int rx6 = bound_socket(AF_INET6, SOCK_DGRAM, 0, "::");
    setsockopt(rx6, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    setsockopt(rx6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops));
    int tx6 = bound_socket(AF_INET6, SOCK_DGRAM, 0, "::1");
    struct name rx6_name = name_of(rx6), tx6_name = name_of(tx6);
    struct name rx6_at6 = {.len = sizeof(struct sockaddr_in6)}, rx6_at4 = {.len = sizeof(fa)};
    *(struct sockaddr_in6 *)&rx6_at6.a = in6("::1", port_of(&rx6_name));
    *(struct sockaddr_in *)&rx6_at4.a = in4("127.0.0.1", port_of(&rx6_name));
    send_to(tx6, &rx6_at6, 200, 5);
    send_to(tx1, &rx6_at4, 201, 6);
    struct name tx1_mapped = {.len = sizeof(struct sockaddr_in6)};
    *(struct sockaddr_in6 *)&tx1_mapped.a = in6("::ffff:127.0.0.1", port_of(&tx1_name));

    int lite = bound_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE, "127.0.0.1");
    setsockopt(lite, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, &cscov, sizeof(cscov));
    setsockopt(lite, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, &cscov, sizeof(cscov));
    struct name lite_name = name_of(lite);
    send_to(lite, &lite_name, 50, 7);

    int dev = socket(AF_INET, SOCK_DGRAM, 0);
    if (setsockopt(dev, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))
        FAIL_ERRNO("SO_BINDTODEVICE");
    struct sockaddr_in da = in4("127.0.0.1", 0);
    if (bind(dev, (struct sockaddr *)&da, sizeof(da)))
        FAIL_ERRNO("bind dev");

    int hoprx = bound_socket(AF_INET6, SOCK_DGRAM, 0, "::1");
    int hop = bound_socket(AF_INET6, SOCK_DGRAM, 0, "::1");
    unsigned char hbh[8] = {0, 0, 0x1e, 4, 't', 'p', 'r', '!'}; /* an option to skip */
    unsigned char dst[8] = {0, 0, 0x1e, 4, 'd', 's', 't', '!'};
    if (setsockopt(hoprx, IPPROTO_IPV6, IPV6_RECVHOPOPTS, &one, sizeof(one)) ||
        setsockopt(hoprx, IPPROTO_IPV6, IPV6_RECVDSTOPTS, &one, sizeof(one)) ||
        setsockopt(hoprx, IPPROTO_IPV6, IPV6_2292PKTINFO, &one, sizeof(one)) ||
        setsockopt(hoprx, IPPROTO_IPV6, IPV6_ROUTER_ALERT_ISOLATE, &one, sizeof(one)) ||
        setsockopt(hop, IPPROTO_IPV6, IPV6_HOPOPTS, hbh, sizeof(hbh)) ||
        setsockopt(hop, IPPROTO_IPV6, IPV6_DSTOPTS, dst, sizeof(dst)) ||
        setsockopt(rx, IPPROTO_IP, IP_CHECKSUM, &one, sizeof(one)))
        FAIL_ERRNO("hop, hoprx and IP_CHECKSUM");
    struct name hoprx_name = name_of(hoprx);
    int ra = bound_socket(AF_INET, SOCK_DGRAM, 0, "127.0.0.1");
    int rarx = bound_socket(AF_INET, SOCK_DGRAM, 0, "127.0.0.1");
    unsigned char alert[4] = {0x94, 4, 0, 0}; /* IPOPT_RA */
    if (setsockopt(ra, IPPROTO_IP, IP_OPTIONS, alert, sizeof(alert)) ||
        setsockopt(rarx, IPPROTO_IP, IP_RECVOPTS, &one, sizeof(one)))
        FAIL_ERRNO("ra and rarx");
    struct name rarx_name = name_of(rarx);

    struct name lst4_name = name_of(lst4), lst6_name = name_of(lst6), bound_name = name_of(bound);
    struct name dev_name = name_of(dev);
    int rcvbuf_now = opt(rx, SOL_SOCKET, SO_RCVBUF);
    ready();
    wait_for_usr1();

    check_name(lst4, &lst4_name, "lst4");
    check_name(lst6, &lst6_name, "lst6");
    check_name(bound, &bound_name, "bound");
    check_name(rx, &rx_name, "rx");
    check_name(tx1, &tx1_name, "tx1");
    check_name(rx6, &rx6_name, "rx6");
    check_name(tx6, &tx6_name, "tx6");
    check_name(lite, &lite_name, "lite");
    check_name(dev, &dev_name, "dev");
    check_opt(lst4, SOL_SOCKET, SO_ACCEPTCONN, 1, "lst4 SO_ACCEPTCONN");
    check_opt(lst4, SOL_SOCKET, SO_REUSEADDR, 1, "lst4 SO_REUSEADDR");
    check_opt(lst4, IPPROTO_TCP, TCP_NODELAY, 1, "lst4 TCP_NODELAY");
    check_opt(lst4, SOL_SOCKET, SO_KEEPALIVE, 1, "lst4 SO_KEEPALIVE");
    check_opt(lst4, IPPROTO_TCP, TCP_KEEPIDLE, idle, "lst4 TCP_KEEPIDLE");
    check_opt(lst4, IPPROTO_IP, IP_TOS, tos, "lst4 IP_TOS");
    CHECK_EQ("lst4 O_NONBLOCK", fcntl(lst4, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    check_opt(lst6, IPPROTO_IPV6, IPV6_V6ONLY, 1, "lst6 IPV6_V6ONLY");
    check_opt(lst6, SOL_SOCKET, SO_REUSEPORT, 1, "lst6 SO_REUSEPORT");
    check_opt(lst6, SOL_SOCKET, SO_REUSEADDR, 0, "lst6 SO_REUSEADDR");
    check_opt(lst6, IPPROTO_TCP, TCP_MAXSEG, mss, "lst6 TCP_MAXSEG");
    char cc[16] = {0};
    socklen_t cclen = sizeof(cc);
    if (getsockopt(lst6, IPPROTO_TCP, TCP_CONGESTION, cc, &cclen) || strcmp(cc, "reno") != 0)
        fail("lst6 TCP_CONGESTION is %s, not reno", cc);
    check_opt(fresh, SOL_SOCKET, SO_ACCEPTCONN, 0, "fresh SO_ACCEPTCONN");
    check_opt(rx, IPPROTO_IP, IP_PKTINFO, 1, "rx IP_PKTINFO");
    check_opt(rx, IPPROTO_IP, IP_TTL, ttl, "rx IP_TTL");
    check_opt(rx, SOL_SOCKET, SO_RCVBUF, rcvbuf_now, "rx SO_RCVBUF");
    check_opt(rx6, IPPROTO_IPV6, IPV6_V6ONLY, 0, "rx6 IPV6_V6ONLY");
    check_opt(rx6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "rx6 IPV6_RECVPKTINFO");
    check_opt(rx6, IPPROTO_IPV6, IPV6_UNICAST_HOPS, hops, "rx6 IPV6_UNICAST_HOPS");
    check_opt(lite, IPPROTO_UDPLITE, UDPLITE_SEND_CSCOV, cscov, "lite UDPLITE_SEND_CSCOV");
    check_opt(lite, IPPROTO_UDPLITE, UDPLITE_RECV_CSCOV, cscov, "lite UDPLITE_RECV_CSCOV");
    char ifname[IFNAMSIZ] = {0};
    socklen_t iflen = sizeof(ifname);
    if (getsockopt(dev, SOL_SOCKET, SO_BINDTODEVICE, ifname, &iflen) || strcmp(ifname, "lo"))
        fail("dev is bound to the device '%s', not lo", ifname);

    expect_datagram(rx, 100, 1, &tx1_name, "rx from tx1");
    expect_datagram(rx, 101, 2, &tx1_name, "rx from tx1 again");
    expect_datagram(rx, 102, 3, &tx2_name, "rx from a closed socket");
    expect_datagram(rx, 103, 4, &foreign_name, "rx from 198.51.100.7");
    expect_datagram(rx6, 200, 5, &tx6_name, "rx6 from tx6");
    expect_datagram(rx6, 201, 6, &tx1_mapped, "rx6 from tx1");
    expect_datagram(lite, 50, 7, &lite_name, "lite from itself");
    unsigned char buf[128];
    fill(buf, 64, 8);
    if (send(tx1, buf, 64, 0) != 64)
        FAIL_ERRNO("tx1 sends to its peer");
    expect_datagram(rx, 64, 8, &tx1_name, "rx from tx1 after the restore");
    send_to(dev, &dev_name, 30, 9);
    expect_datagram(dev, 30, 9, &dev_name, "dev from itself");
    check_opt(rx, IPPROTO_IP, IP_CHECKSUM, 1, "rx IP_CHECKSUM");
    check_opt(hoprx, IPPROTO_IPV6, IPV6_ROUTER_ALERT_ISOLATE, 1, "hoprx ROUTER_ALERT_ISOLATE");
    send_to(hop, &hoprx_name, 40, 10);
    expect_headers(hoprx, hbh, dst);
    send_to(ra, &rarx_name, 20, 11);
    expect_ip_options(rarx, alert, sizeof(alert));

    use_listener(lst4, fresh, "lst4 and fresh");
    use_listener(lst4, socket(AF_INET, SOCK_STREAM, 0), "lst4");
    use_listener(lst6, socket(AF_INET6, SOCK_STREAM, 0), "lst6");
    if (listen(bound, 1))
        FAIL_ERRNO("listen on bound");
    use_listener(bound, socket(AF_INET, SOCK_STREAM, 0), "bound");
    finish();
}

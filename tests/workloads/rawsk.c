/*
 * rawsk: raw sockets, and with the mode "ping" ICMP echo (ping) sockets, IPv4 and IPv6,
 * checked by using them. Addresses are this process's own (127.X.Y.1 and .2, X and Y from
 * its PID) so that other raw sockets on the host see nothing of what it sends.
 *
 *   icmp    raw ICMP socket bound to A, ICMP_FILTER letting only type 17 through, IP_TTL 7
 *   hdr     raw socket of protocol 253 bound to A, IP_HDRINCL, IP_NODEFRAG
 *   conn    raw socket of protocol 252 connected to B (A's neighbour)
 *   raw6    raw IPv6 socket of protocol 253 bound to ::1, IPV6_CHECKSUM at offset 2
 *   icmp6   raw ICMPv6 socket bound to ::1, ICMPV6_FILTER letting only type 200 through
 *   ping    (mode ping) ping socket bound to 127.0.0.1, IP_TTL 42, IP_RECVERR; an echo
 *           answered before the checkpoint
 *   pingc   (mode ping) ping socket connected to 127.0.0.1
 *   ping6   (mode ping) ping socket bound to ::1
 *
 * After the restore: every socket has its address and options (read back equal); ICMP
 * messages of type 15 then 17 sent to A reach icmp as the 17 alone; a packet of protocol
 * 253 sent to B does not reach hdr, one it sends to A with its own IP header comes back to
 * it as sent; conn sends without an address; raw6 sends a packet to itself whose checksum
 * the kernel wrote at offset 2; ICMPv6 types 201 then 200 reach icmp6 as the 200 alone;
 * each ping socket sends an echo request and gets the reply, with its identifier.
 */
#include "common.h"

#include <arpa/inet.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>

#ifndef IP_NODEFRAG
#define IP_NODEFRAG 22
#endif
#ifndef ICMP_FILTER
#define ICMP_FILTER 1
#endif

static int one = 1;

static struct sockaddr_in in4(struct in_addr a)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_addr = a};
    return s;
}

static struct sockaddr_in6 loop6(void)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    return s;
}

static int must(int r, const char *what)
{
    if (r < 0)
        fail("%s: %s", what, strerror(errno));
    return r;
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

static void check_bytes(int fd, int level, int option, const void *want, socklen_t n,
                        const char *what)
{
    unsigned char got[64];
    socklen_t len = sizeof(got);
    if (getsockopt(fd, level, option, got, &len) != 0)
        fail("%s: getsockopt: %s", what, strerror(errno));
    else if (len != n || memcmp(got, want, n) != 0)
        fail("%s reads back different", what);
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

static void check_name(int fd, const struct name *want, const char *what)
{
    struct name got = name_of(fd);
    if (got.len != want->len || memcmp(&got.a, &want->a, got.len) != 0)
        fail("%s: its address changed", what);
}

/* The next packet on fd within 10 s, or -1. */
static ssize_t next_packet(int fd, void *buf, size_t n, const char *what)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        fail("%s: nothing arrived", what);
        return -1;
    }
    ssize_t r = recv(fd, buf, n, MSG_DONTWAIT);
    if (r < 0)
        fail("%s: recv: %s", what, strerror(errno));
    return r;
}

static void nothing_more(int fd, const char *what)
{
    char buf[256];
    if (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
        fail("%s: a packet the filter should have stopped", what);
}

/* The Internet checksum of n bytes (and `sum` so far), folded. */
static uint16_t fold(const unsigned char *p, size_t n, uint32_t sum)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        sum += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1)
        sum += (uint32_t)(p[n - 1] << 8);
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)sum;
}

static void icmp_send(int fd, struct in_addr to, int type)
{
    unsigned char m[8] = {(unsigned char)type};
    uint16_t c = (uint16_t)~fold(m, sizeof(m), 0);
    m[2] = (unsigned char)(c >> 8);
    m[3] = (unsigned char)c;
    struct sockaddr_in a = in4(to);
    if (sendto(fd, m, sizeof(m), 0, (struct sockaddr *)&a, sizeof(a)) != sizeof(m))
        FAIL_ERRNO("sendto (ICMP)");
}

static void icmp6_send(int fd, int type)
{
    unsigned char m[8] = {(unsigned char)type};
    struct sockaddr_in6 a = loop6();
    if (sendto(fd, m, sizeof(m), 0, (struct sockaddr *)&a, sizeof(a)) != sizeof(m))
        FAIL_ERRNO("sendto (ICMPv6)");
}

/* An echo request through the ping socket fd (to `to`, or its peer), and its reply. */
static void ping_once(int fd, const struct sockaddr *to, socklen_t tolen, int v6, int ident,
                      int seq, const char *what)
{
    unsigned char req[16] = {v6 ? 128 : 8}, rep[64];
    req[6] = (unsigned char)(seq >> 8);
    req[7] = (unsigned char)seq;
    memcpy(req + 8, "rawsk-pg", 8);
    ssize_t r = to ? sendto(fd, req, sizeof(req), 0, to, tolen) : send(fd, req, sizeof(req), 0);
    if (r != sizeof(req)) {
        fail("%s: the echo request was not sent: %s", what, strerror(errno));
        return;
    }
    r = next_packet(fd, rep, sizeof(rep), what);
    if (r < 0)
        return;
    int id = rep[4] << 8 | rep[5], got_seq = rep[6] << 8 | rep[7];
    if (r != sizeof(req) || rep[0] != (v6 ? 129 : 0) || got_seq != seq ||
        memcmp(rep + 8, "rawsk-pg", 8) != 0)
        fail("%s: not the reply to its echo request (%zd bytes, type %d)", what, r, rep[0]);
    if (id != ident)
        fail("%s: a reply with identifier %d, not %d", what, id, ident);
}

static int ident_of(int fd)
{
    struct name n = name_of(fd);
    return ntohs(((struct sockaddr_in *)&n.a)->sin_port); /* same place in sockaddr_in6 */
}

int main(int argc, char **argv)
{
    int pings = argc > 1 && strcmp(argv[1], "ping") == 0;
    workload_init("rawsk", 0);

    pid_t pid = getpid();
    struct in_addr A, B;
    A.s_addr = htonl(0x7f000001u | (uint32_t)(100 + pid % 100) << 16 |
                     (uint32_t)(pid / 100 % 250) << 8);
    B.s_addr = htonl(ntohl(A.s_addr) + 1);
    struct sockaddr_in a_addr = in4(A), b_addr = in4(B);
    struct sockaddr_in6 l6 = loop6();

    int icmp = must(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), "icmp");
    uint32_t filter = ~(1u << 17); /* struct icmp_filter: a bit set blocks a type */
    int ttl = 7;
    must(setsockopt(icmp, SOL_RAW, ICMP_FILTER, &filter, sizeof(filter)), "ICMP_FILTER");
    must(setsockopt(icmp, IPPROTO_IP, IP_TTL, &ttl, sizeof(ttl)), "IP_TTL");
    must(bind(icmp, (struct sockaddr *)&a_addr, sizeof(a_addr)), "bind icmp");

    int hdr = must(socket(AF_INET, SOCK_RAW, 253), "hdr");
    must(setsockopt(hdr, IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)), "IP_HDRINCL");
    must(setsockopt(hdr, IPPROTO_IP, IP_NODEFRAG, &one, sizeof(one)), "IP_NODEFRAG");
    must(bind(hdr, (struct sockaddr *)&a_addr, sizeof(a_addr)), "bind hdr");

    int conn = must(socket(AF_INET, SOCK_RAW, 252), "conn");
    must(connect(conn, (struct sockaddr *)&b_addr, sizeof(b_addr)), "connect conn");

    int raw6 = must(socket(AF_INET6, SOCK_RAW, 253), "raw6");
    int offset = 2;
    must(setsockopt(raw6, IPPROTO_IPV6, IPV6_CHECKSUM, &offset, sizeof(offset)), "IPV6_CHECKSUM");
    must(bind(raw6, (struct sockaddr *)&l6, sizeof(l6)), "bind raw6");

    int icmp6 = must(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6), "icmp6");
    struct icmp6_filter filter6;
    ICMP6_FILTER_SETBLOCKALL(&filter6);
    ICMP6_FILTER_SETPASS(200, &filter6);
    must(setsockopt(icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &filter6, sizeof(filter6)),
         "ICMP6_FILTER");
    must(bind(icmp6, (struct sockaddr *)&l6, sizeof(l6)), "bind icmp6");

    int ping = -1, pingc = -1, ping6 = -1, ping_ident = 0, ping6_ident = 0, pttl = 42;
    struct sockaddr_in lo4 = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct name ping_name, ping6_name;
    if (pings) {
        ping = must(socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), "ping");
        must(setsockopt(ping, IPPROTO_IP, IP_TTL, &pttl, sizeof(pttl)), "ping IP_TTL");
        must(setsockopt(ping, IPPROTO_IP, IP_RECVERR, &one, sizeof(one)), "ping IP_RECVERR");
        must(bind(ping, (struct sockaddr *)&lo4, sizeof(lo4)), "bind ping");
        ping_ident = ident_of(ping);
        ping_once(ping, (struct sockaddr *)&lo4, sizeof(lo4), 0, ping_ident, 1, "ping before");
        pingc = must(socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), "pingc");
        must(connect(pingc, (struct sockaddr *)&lo4, sizeof(lo4)), "connect pingc");
        ping6 = must(socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6), "ping6");
        must(bind(ping6, (struct sockaddr *)&l6, sizeof(l6)), "bind ping6");
        ping6_ident = ident_of(ping6);
        ping_name = name_of(ping);
        ping6_name = name_of(ping6);
    }
    struct name icmp_name = name_of(icmp), hdr_name = name_of(hdr), raw6_name = name_of(raw6);
    struct name icmp6_name = name_of(icmp6), conn_name = name_of(conn);
    int pingc_ident = pings ? ident_of(pingc) : 0;
    if (workload_failures)
        finish();
    ready();
    wait_for_usr1();

    check_name(icmp, &icmp_name, "icmp");
    check_name(hdr, &hdr_name, "hdr");
    check_name(conn, &conn_name, "conn");
    check_name(raw6, &raw6_name, "raw6");
    check_name(icmp6, &icmp6_name, "icmp6");
    check_opt(icmp, IPPROTO_IP, IP_TTL, ttl, "icmp IP_TTL");
    check_bytes(icmp, SOL_RAW, ICMP_FILTER, &filter, sizeof(filter), "icmp ICMP_FILTER");
    check_opt(hdr, IPPROTO_IP, IP_HDRINCL, 1, "hdr IP_HDRINCL");
    check_opt(hdr, IPPROTO_IP, IP_NODEFRAG, 1, "hdr IP_NODEFRAG");
    check_opt(raw6, IPPROTO_IPV6, IPV6_CHECKSUM, offset, "raw6 IPV6_CHECKSUM");
    check_bytes(icmp6, IPPROTO_ICMPV6, ICMP6_FILTER, &filter6, sizeof(filter6),
                "icmp6 ICMP6_FILTER");

    /* icmp: a type 15 then a type 17 to A; the filter lets the 17 alone through */
    unsigned char buf[256];
    int tx = must(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), "ICMP sender");
    icmp_send(tx, A, 15);
    icmp_send(tx, A, 17);
    ssize_t r = next_packet(icmp, buf, sizeof(buf), "icmp");
    if (r >= 0) {
        size_t ihl = (size_t)(buf[0] & 15) * 4;
        if ((size_t)r != ihl + 8 || buf[ihl] != 17)
            fail("icmp: received ICMP type %d (%zd bytes), not the 17", buf[ihl], r);
        nothing_more(icmp, "icmp");
    }
    close(tx);

    /* hdr: not what goes to B; what it sends to A with its own header comes back as sent */
    int tx253 = must(socket(AF_INET, SOCK_RAW, 253), "253 sender");
    if (sendto(tx253, "not-for-hdr", 11, 0, (struct sockaddr *)&b_addr, sizeof(b_addr)) != 11)
        FAIL_ERRNO("sendto B");
    unsigned char pkt[20 + 9] = {0x45};
    pkt[3] = sizeof(pkt);
    pkt[8] = 64;
    pkt[9] = 253;
    memcpy(pkt + 12, &A, 4);
    memcpy(pkt + 16, &A, 4);
    memcpy(pkt + 20, "rawsk-253", 9);
    if (sendto(hdr, pkt, sizeof(pkt), 0, (struct sockaddr *)&a_addr, sizeof(a_addr)) !=
        (ssize_t)sizeof(pkt))
        FAIL_ERRNO("hdr sends with its own header");
    r = next_packet(hdr, buf, sizeof(buf), "hdr");
    if (r >= 0 && (r != sizeof(pkt) || memcmp(buf + 20, "rawsk-253", 9) != 0 || buf[9] != 253))
        fail("hdr: received %zd bytes, not its own packet of %zu", r, sizeof(pkt));
    close(tx253);

    if (send(conn, "to-B", 4, 0) != 4)
        FAIL_ERRNO("conn sends to its peer");

    /* raw6: the kernel writes the checksum at offset 2 of what it sends */
    unsigned char p6[12] = {0xAB, 0xCD, 0, 0, 'r', 'a', 'w', 's', 'k', '-', '6', '!'};
    if (sendto(raw6, p6, sizeof(p6), 0, (struct sockaddr *)&l6, sizeof(l6)) != sizeof(p6))
        FAIL_ERRNO("raw6 sendto");
    r = next_packet(raw6, buf, sizeof(buf), "raw6");
    if (r >= 0) {
        /* pseudo header: source and destination ::1, length, next header 253 */
        unsigned char pseudo[40] = {0};
        pseudo[15] = 1;
        pseudo[31] = 1;
        pseudo[35] = sizeof(p6);
        pseudo[39] = 253;
        uint32_t sum = fold(pseudo, sizeof(pseudo), 0);
        if (r != sizeof(p6) || memcmp(buf + 4, p6 + 4, 8) != 0)
            fail("raw6: received %zd bytes, not its own packet", r);
        else if ((buf[2] | buf[3]) == 0 || fold(buf, (size_t)r, sum) != 0xffff)
            fail("raw6: no checksum written at offset 2 (%02x%02x)", buf[2], buf[3]);
    }

    /* icmp6: types 201 then 200 to ::1; the filter lets the 200 alone through */
    int tx6 = must(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6), "ICMPv6 sender");
    icmp6_send(tx6, 201);
    icmp6_send(tx6, 200);
    r = next_packet(icmp6, buf, sizeof(buf), "icmp6");
    if (r >= 0) {
        if (r != 8 || buf[0] != 200)
            fail("icmp6: received ICMPv6 type %d (%zd bytes), not the 200", buf[0], r);
        nothing_more(icmp6, "icmp6");
    }
    close(tx6);

    if (pings) {
        check_name(ping, &ping_name, "ping");
        check_name(ping6, &ping6_name, "ping6");
        check_opt(ping, IPPROTO_IP, IP_TTL, pttl, "ping IP_TTL");
        check_opt(ping, IPPROTO_IP, IP_RECVERR, 1, "ping IP_RECVERR");
        ping_once(ping, (struct sockaddr *)&lo4, sizeof(lo4), 0, ping_ident, 2, "ping");
        ping_once(pingc, NULL, 0, 0, pingc_ident, 3, "pingc");
        ping_once(ping6, (struct sockaddr *)&l6, sizeof(l6), 1, ping6_ident, 4, "ping6");
    }
    finish();
}

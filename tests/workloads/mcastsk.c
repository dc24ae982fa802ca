/*
 * mcastsk: multicast group memberships of UDP and raw sockets, with source filters,
 * checked by using them. Groups are 239.X.Y.n and ff15::X:Y:n (X and Y from the PID),
 * joined on lo.
 *
 *   any4    UDP on 0.0.0.0, group .3 (MCAST_JOIN_GROUP)
 *   inc4    UDP on 0.0.0.0, group .4 from 127.0.0.1 only (MCAST_JOIN_SOURCE_GROUP)
 *   exc4    UDP on 0.0.0.0, group .5 but from 127.0.0.2 (IP_ADD_MEMBERSHIP, IP_BLOCK_SOURCE)
 *   dual    UDP on [::]: the IPv4 group .6, the IPv6 group ff15::X:Y:2, and ff15::X:Y:3 from
 *           ::1 only
 *   raw     raw socket of protocol 253, group .7
 *
 * After the restore every membership reads back with its filter (MCAST_MSFILTER), and
 * datagrams sent to the IPv4 groups (out of lo, from 127.0.0.1 and from 127.0.0.2) reach
 * the sockets their filters let them reach. (IPv6 multicast is not delivered on lo here:
 * lo has no multicast route; those memberships are read back only.)
 */
#include "common.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

struct group {
    int family;
    unsigned char addr[16];
};

static int lo_index;

static struct sockaddr_storage storage(const struct group *g)
{
    struct sockaddr_storage s;
    memset(&s, 0, sizeof(s));
    s.ss_family = (sa_family_t)g->family;
    if (g->family == AF_INET)
        memcpy(&((struct sockaddr_in *)&s)->sin_addr, g->addr, 4);
    else
        memcpy(&((struct sockaddr_in6 *)&s)->sin6_addr, g->addr, 16);
    return s;
}

static struct group group4(uint32_t base, int n)
{
    struct group g = {AF_INET, {0}};
    uint32_t a = htonl(base | (uint32_t)n);
    memcpy(g.addr, &a, 4);
    return g;
}

static struct group group6(int x, int y, int n)
{
    struct group g = {AF_INET6, {0xff, 0x15}};
    g.addr[11] = (unsigned char)x;
    g.addr[13] = (unsigned char)y;
    g.addr[15] = (unsigned char)n;
    return g;
}

static struct group source(int family, const char *host)
{
    struct group g = {family, {0}};
    inet_pton(family, host, g.addr);
    return g;
}

static int level_of(int family)
{
    return family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
}

static void join(int fd, const struct group *g, const char *what)
{
    struct group_req r = {.gr_interface = (uint32_t)lo_index, .gr_group = storage(g)};
    if (setsockopt(fd, level_of(g->family), MCAST_JOIN_GROUP, &r, sizeof(r)))
        fail("%s: MCAST_JOIN_GROUP: %s", what, strerror(errno));
}

static void join_source(int fd, const struct group *g, const struct group *src, const char *what)
{
    struct group_source_req r = {.gsr_interface = (uint32_t)lo_index, .gsr_group = storage(g),
                                 .gsr_source = storage(src)};
    if (setsockopt(fd, level_of(g->family), MCAST_JOIN_SOURCE_GROUP, &r, sizeof(r)))
        fail("%s: MCAST_JOIN_SOURCE_GROUP: %s", what, strerror(errno));
}

/* The membership of fd in g on lo reads back with `mode` and the one source `src` (or
 * none). */
static void check_filter(int fd, const struct group *g, uint32_t mode, const struct group *src,
                         const char *what)
{
    union {
        struct group_filter f;
        char room[GROUP_FILTER_SIZE(4)];
    } u;
    memset(&u, 0, sizeof(u));
    u.f.gf_interface = (uint32_t)lo_index;
    u.f.gf_group = storage(g);
    u.f.gf_numsrc = 4;
    socklen_t len = sizeof(u);
    if (getsockopt(fd, level_of(g->family), MCAST_MSFILTER, &u, &len)) {
        fail("%s: no membership (MCAST_MSFILTER: %s)", what, strerror(errno));
        return;
    }
    if (u.f.gf_fmode != mode || u.f.gf_numsrc != (src ? 1u : 0u)) {
        fail("%s: filter mode %u with %u sources, expected %u with %d", what, u.f.gf_fmode,
             u.f.gf_numsrc, mode, src ? 1 : 0);
        return;
    }
    if (src) {
        struct sockaddr_storage want = storage(src);
        size_t n = src->family == AF_INET ? sizeof(struct sockaddr_in)
                                          : sizeof(struct sockaddr_in6);
        if (memcmp(&u.f.gf_slist[0], &want, n) != 0)
            fail("%s: its source is not the one joined", what);
    }
}

static int udp_on_any(int family)
{
    int fd = socket(family, SOCK_DGRAM, 0);
    struct sockaddr_storage a;
    memset(&a, 0, sizeof(a));
    a.ss_family = (sa_family_t)family;
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, len))
        fail("udp socket: %s", strerror(errno));
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    return ntohs(((struct sockaddr_in *)&a)->sin_port); /* same place in sockaddr_in6 */
}

/* A sender out of lo (IP_MULTICAST_IF 127.0.0.1), bound to `host`; raw of protocol 253
 * when `raw`. */
static int sender(const char *host, int raw)
{
    int fd = raw ? socket(AF_INET, SOCK_RAW, 253) : socket(AF_INET, SOCK_DGRAM, 0);
    struct in_addr lo;
    inet_pton(AF_INET, "127.0.0.1", &lo);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (fd < 0 || setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &lo, sizeof(lo)) ||
        bind(fd, (struct sockaddr *)&a, sizeof(a)))
        fail("sender on %s: %s", host, strerror(errno));
    return fd;
}

static void send_to(int fd, const struct group *g, int port, const char *text)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    memcpy(&a.sin_addr, g->addr, 4);
    if (sendto(fd, text, strlen(text), 0, (struct sockaddr *)&a, sizeof(a)) !=
        (ssize_t)strlen(text))
        fail("sendto the group: %s", strerror(errno));
}

/* The next datagram on fd, within 10 s: `text`, from `from` (an IPv4 host, also as an
 * IPv4-mapped address). `header` bytes (a raw socket's IP header) come first. */
static void expect(int fd, const char *text, const char *from, size_t header, const char *what)
{
    char buf[256];
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        fail("%s: no datagram arrived", what);
        return;
    }
    ssize_t r = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&a, &len);
    size_t n = strlen(text);
    if (r != (ssize_t)(header + n) || memcmp(buf + header, text, n) != 0) {
        fail("%s: received %zd bytes, not '%s'", what, r, text);
        return;
    }
    char host[64] = "?";
    if (a.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&a)->sin_addr, host, sizeof(host));
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a)->sin6_addr, host, sizeof(host));
    const char *plain = strncmp(host, "::ffff:", 7) == 0 ? host + 7 : host;
    if (strcmp(plain, from) != 0)
        fail("%s: '%s' came from %s, not %s", what, text, host, from);
}

int main(void)
{
    workload_init("mcastsk", 0);
    lo_index = (int)if_nametoindex("lo");
    pid_t pid = getpid();
    int x = 1 + pid % 250, y = pid / 250 % 250;
    uint32_t base = 0xef000000u | (uint32_t)x << 16 | (uint32_t)y << 8;
    struct group g3 = group4(base, 3), g4 = group4(base, 4), g5 = group4(base, 5);
    struct group g6 = group4(base, 6), g7 = group4(base, 7);
    struct group h2 = group6(x, y, 2), h3 = group6(x, y, 3);
    struct group lo1 = source(AF_INET, "127.0.0.1"), lo2 = source(AF_INET, "127.0.0.2");
    struct group lo6 = source(AF_INET6, "::1");

    int any4 = udp_on_any(AF_INET);
    join(any4, &g3, "any4");
    int inc4 = udp_on_any(AF_INET);
    join_source(inc4, &g4, &lo1, "inc4");
    int exc4 = udp_on_any(AF_INET);
    struct ip_mreqn m = {.imr_ifindex = lo_index};
    memcpy(&m.imr_multiaddr, g5.addr, 4);
    struct ip_mreq_source block = {.imr_interface.s_addr = htonl(INADDR_LOOPBACK)};
    memcpy(&block.imr_multiaddr, g5.addr, 4);
    memcpy(&block.imr_sourceaddr, lo2.addr, 4);
    if (setsockopt(exc4, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)) ||
        setsockopt(exc4, IPPROTO_IP, IP_BLOCK_SOURCE, &block, sizeof(block)))
        FAIL_ERRNO("exc4 joins and blocks");
    int dual = udp_on_any(AF_INET6);
    join(dual, &g6, "dual (IPv4)");
    join(dual, &h2, "dual (IPv6)");
    join_source(dual, &h3, &lo6, "dual (IPv6 from ::1)");
    int raw = socket(AF_INET, SOCK_RAW, 253);
    if (raw < 0)
        FAIL_ERRNO("raw socket");
    join(raw, &g7, "raw");

    check_filter(exc4, &g5, MCAST_EXCLUDE, &lo2, "exc4 before");
    if (workload_failures)
        finish();
    ready();
    wait_for_usr1();

    check_filter(any4, &g3, MCAST_EXCLUDE, NULL, "any4");
    check_filter(inc4, &g4, MCAST_INCLUDE, &lo1, "inc4");
    check_filter(exc4, &g5, MCAST_EXCLUDE, &lo2, "exc4");
    check_filter(dual, &g6, MCAST_EXCLUDE, NULL, "dual (IPv4)");
    check_filter(dual, &h2, MCAST_EXCLUDE, NULL, "dual (IPv6)");
    check_filter(dual, &h3, MCAST_INCLUDE, &lo6, "dual (IPv6 from ::1)");
    check_filter(raw, &g7, MCAST_EXCLUDE, NULL, "raw");

    int from1 = sender("127.0.0.1", 0), from2 = sender("127.0.0.2", 0);
    send_to(from1, &g3, port_of(any4), "to-any4");
    expect(any4, "to-any4", "127.0.0.1", 0, "any4");
    send_to(from2, &g4, port_of(inc4), "not-from-2");
    send_to(from1, &g4, port_of(inc4), "to-inc4");
    expect(inc4, "to-inc4", "127.0.0.1", 0, "inc4 (only from 127.0.0.1)");
    send_to(from2, &g5, port_of(exc4), "not-from-2");
    send_to(from1, &g5, port_of(exc4), "to-exc4");
    expect(exc4, "to-exc4", "127.0.0.1", 0, "exc4 (not from 127.0.0.2)");
    send_to(from2, &g6, port_of(dual), "to-dual");
    expect(dual, "to-dual", "127.0.0.2", 0, "dual");
    int raw_from = sender("127.0.0.1", 1);
    send_to(raw_from, &g7, 0, "to-raw");
    expect(raw, "to-raw", "127.0.0.1", 20, "raw");
    finish();
}

/*
 * netlinksk: netlink sockets, checked by using them.
 *
 *   route    NETLINK_ROUTE, bound by the kernel (autobind) when it first sent, member of
 *            groups 1 (RTNLGRP_LINK), 11 and 33 (the last beyond the 32 that bind can set),
 *            NETLINK_EXT_ACK on, a 100000-byte receive buffer
 *   fixed    NETLINK_ROUTE bound to a chosen port id, connected to the kernel (port 0)
 *   generic  NETLINK_GENERIC, never bound
 *
 * After the restore: the port ids, groups and options are as they were, and each route
 * socket answers a request (RTM_GETLINK dump: the loopback interface is listed).
 */
#include "common.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>

static uint32_t port_of(int fd)
{
    struct sockaddr_nl a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    return a.nl_pid;
}

static void memberships(int fd, uint32_t *words, size_t n)
{
    socklen_t len = (socklen_t)(n * sizeof(uint32_t));
    memset(words, 0, len);
    if (getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &len) != 0)
        FAIL_ERRNO("NETLINK_LIST_MEMBERSHIPS");
}

/* Ask for every link; 1 when the answer lists the loopback interface (index 1). */
static int lists_links(int fd, const char *what)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req;
    static char buf[1 << 16];
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = sizeof(req);
    req.h.nlmsg_type = RTM_GETLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.h.nlmsg_seq = 7;
    req.i.ifi_family = AF_UNSPEC;
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (sendto(fd, &req, sizeof(req), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        fail("%s: RTM_GETLINK: %s", what, strerror(errno));
        return 0;
    }
    int found = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1) {
            fail("%s: no answer", what);
            return 0;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            fail("%s: recv: %s", what, strerror(errno));
            return 0;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return found;
            if (h->nlmsg_type == RTM_NEWLINK && h->nlmsg_seq == 7 &&
                ((struct ifinfomsg *)NLMSG_DATA(h))->ifi_index == 1)
                found = 1;
        }
    }
}

int main(void)
{
    workload_init("netlinksk", 0);
    int route = socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
    int fixed = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK, NETLINK_ROUTE);
    int generic = socket(AF_NETLINK, SOCK_RAW, NETLINK_GENERIC);
    if (route < 0 || fixed < 0 || generic < 0)
        FAIL_ERRNO("socket");
    if (!lists_links(route, "route before"))
        fail("route: no loopback before the checkpoint");
    int groups[] = {RTNLGRP_LINK, 11, 33}, one = 1, rcvbuf = 100000;
    for (int i = 0; i < 3; i++)
        if (setsockopt(route, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i], sizeof(int)))
            FAIL_ERRNO("NETLINK_ADD_MEMBERSHIP");
    setsockopt(route, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    setsockopt(route, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    uint32_t chosen = 0x7f000000u | (uint32_t)getpid();
    struct sockaddr_nl a = {.nl_family = AF_NETLINK, .nl_pid = chosen};
    if (bind(fixed, (struct sockaddr *)&a, sizeof(a)))
        FAIL_ERRNO("bind");
    a.nl_pid = 0;
    if (connect(fixed, (struct sockaddr *)&a, sizeof(a)))
        FAIL_ERRNO("connect");
    uint32_t route_port = port_of(route), before[4];
    memberships(route, before, 4);

    ready();
    wait_for_usr1();

    uint32_t after[4];
    CHECK_EQ("route: port id", port_of(route), route_port);
    memberships(route, after, 4);
    for (int i = 0; i < 4; i++)
        CHECK_EQ("route: groups", after[i], before[i]);
    CHECK_EQ("route: group 33", after[1] >> 0 & 1, 1);
    int got = 0;
    socklen_t len = sizeof(got);
    getsockopt(route, SOL_NETLINK, NETLINK_EXT_ACK, &got, &len);
    CHECK_EQ("route: NETLINK_EXT_ACK", got, 1);
    getsockopt(route, SOL_SOCKET, SO_RCVBUF, &got, &len);
    CHECK_EQ("route: SO_RCVBUF", got, 200000);
    if (!lists_links(route, "route"))
        fail("route: the answer does not list the loopback interface");
    CHECK_EQ("fixed: port id", port_of(fixed), chosen);
    CHECK_EQ("fixed: non-blocking", fcntl(fixed, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    struct sockaddr_nl peer;
    len = sizeof(peer);
    memset(&peer, 0xff, sizeof(peer));
    if (getpeername(fixed, (struct sockaddr *)&peer, &len) || peer.nl_pid != 0)
        fail("fixed: not connected to the kernel");
    if (!lists_links(fixed, "fixed"))
        fail("fixed: the answer does not list the loopback interface");
    CHECK_EQ("generic: never bound", port_of(generic), 0);
    finish();
}

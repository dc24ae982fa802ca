/*
 * packetsk: packet sockets on the loopback interface, checked by using them.
 *
 *   ip    SOCK_DGRAM, ETH_P_IP, bound to lo, PACKET_AUXDATA on, promiscuous membership on lo,
 *         in fanout group (this PID, hash), non-blocking
 *   all   SOCK_RAW, ETH_P_ALL, bound to lo, PACKET_VERSION 2 (TPACKET_V2), PACKET_RESERVE 64
 *
 * After the restore the bindings and options are as they were, and a UDP datagram sent
 * over loopback reaches both sockets (the "all" one with its ethernet header).
 */
#include "common.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <netinet/in.h>

static int get(int fd, int option)
{
    int v = -1;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, SOL_PACKET, option, &v, &len) != 0)
        return -1;
    return v;
}

static void check_bound(int fd, int protocol, const char *what)
{
    struct sockaddr_ll a;
    socklen_t len = sizeof(a);
    memset(&a, 0, sizeof(a));
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        FAIL_ERRNO("getsockname");
    CHECK_EQ(what, a.sll_ifindex, if_nametoindex("lo"));
    CHECK_EQ(what, ntohs(a.sll_protocol), protocol);
}

/* Wait for a packet on fd holding `marker`; 1 when it came. */
static int sees(int fd, const char *marker)
{
    static char buf[65536];
    for (int tries = 0; tries < 1000; tries++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) != 1)
            return 0;
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0 && memmem(buf, (size_t)n, marker, strlen(marker)))
            return 1;
    }
    return 0;
}

int main(void)
{
    workload_init("packetsk", 0);
    int lo = (int)if_nametoindex("lo");
    int ip = socket(AF_PACKET, SOCK_DGRAM | SOCK_NONBLOCK, htons(ETH_P_IP));
    int all = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (ip < 0 || all < 0)
        FAIL_ERRNO("socket");
    int one = 1, v2 = TPACKET_V2, reserve = 64;
    setsockopt(ip, SOL_PACKET, PACKET_AUXDATA, &one, sizeof(one));
    setsockopt(all, SOL_PACKET, PACKET_VERSION, &v2, sizeof(v2));
    setsockopt(all, SOL_PACKET, PACKET_RESERVE, &reserve, sizeof(reserve));
    struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_ifindex = lo};
    if (bind(ip, (struct sockaddr *)&a, sizeof(a)))
        FAIL_ERRNO("bind ip");
    a.sll_protocol = htons(ETH_P_ALL);
    if (bind(all, (struct sockaddr *)&a, sizeof(a)))
        FAIL_ERRNO("bind all");
    struct packet_mreq mreq = {.mr_ifindex = lo, .mr_type = PACKET_MR_PROMISC};
    if (setsockopt(ip, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof(mreq)))
        FAIL_ERRNO("PACKET_ADD_MEMBERSHIP");
    int fanout = (getpid() & 0xffff) | (PACKET_FANOUT_HASH << 16);
    if (setsockopt(ip, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof(fanout)))
        FAIL_ERRNO("PACKET_FANOUT");

    ready();
    wait_for_usr1();

    check_bound(ip, ETH_P_IP, "ip: bound");
    check_bound(all, ETH_P_ALL, "all: bound");
    CHECK_EQ("ip: PACKET_AUXDATA", get(ip, PACKET_AUXDATA), 1);
    CHECK_EQ("ip: PACKET_FANOUT", get(ip, PACKET_FANOUT), fanout);
    CHECK_EQ("ip: non-blocking", fcntl(ip, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    CHECK_EQ("all: PACKET_VERSION", get(all, PACKET_VERSION), TPACKET_V2);
    CHECK_EQ("all: PACKET_RESERVE", get(all, PACKET_RESERVE), 64);
    char marker[64];
    snprintf(marker, sizeof(marker), "torpor-packetsk-%d", getpid());
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (sendto(udp, marker, strlen(marker), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
        FAIL_ERRNO("sendto");
    if (!sees(ip, marker))
        fail("ip: the datagram sent over loopback did not arrive");
    if (!sees(all, marker))
        fail("all: the datagram sent over loopback did not arrive");
    finish();
}

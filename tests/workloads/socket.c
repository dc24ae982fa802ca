/*
 * socket (refusal helper): a process holding a connected pair of Unix
 * sockets.  A dump that refuses sockets must leave it running untouched.
 *
 * On SIGUSR1 it checks that the fds are still sockets and still connected to
 * each other (a byte goes through), then passes.
 */
#include "common.h"

#include <sys/socket.h>
#include <sys/stat.h>

int main(void)
{
    int sv[2];
    workload_init("socket", 0);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
        FAIL_ERRNO("socketpair");
        finish();
    }

    ready();
    wait_for_usr1();

    struct stat st;
    if (fstat(sv[0], &st) != 0 || !S_ISSOCK(st.st_mode))
        fail("fd %d is no longer a socket", sv[0]);
    char c = 'S';
    if (send(sv[0], &c, 1, 0) != 1)
        FAIL_ERRNO("send");
    c = 0;
    if (recv(sv[1], &c, 1, MSG_DONTWAIT) != 1 || c != 'S')
        fail("the byte sent on one socket did not arrive on the other");
    finish();
}

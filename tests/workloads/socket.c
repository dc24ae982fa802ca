/*
 * socket (refusal helper): a process holding a Unix socket whose peer is a process outside
 * its tree.  A dump must refuse it (the connection cannot be taken along) and leave it
 * running untouched.
 *
 * On SIGUSR1 it checks that the socket still reaches its peer (a byte goes there and
 * comes back), then passes.
 */
#include "common.h"

#include <sys/stat.h>

int main(void)
{
    workload_init("socket", 0);
    int fd = outside_peer_socket();
    if (fd < 0) {
        FAIL_ERRNO("socketpair");
        finish();
    }

    ready();
    wait_for_usr1();

    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
        fail("fd %d is no longer a socket", fd);
    if (!outside_peer_echoes(fd))
        fail("the byte sent to the peer outside the tree did not come back");
    finish();
}

/*
 * fifo: a FIFO (named pipe) with unread data, opened several times.
 *
 * "f" in the working directory: read end R (non-blocking), a second read end R2 (blocking),
 * write end W, shared with a forked child; 1000 bytes written and not read.  After the
 * restore: R reads the 1000 bytes, is non-blocking while R2 is not; what W writes R2 reads;
 * what the child writes through its W, R reads; once every writer is closed (the child
 * exits, this process closes W) R reads end of file: nothing else holds the FIFO open.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

int main(void)
{
    static unsigned char data[1000], back[1000];
    workload_init("fifo", 0);
    for (int i = 0; i < 1000; i++)
        data[i] = (unsigned char)pattern32(9, (uint32_t)i);
    if (mkfifo("f", 0600) != 0)
        FAIL_ERRNO("mkfifo");
    int r = open("f", O_RDONLY | O_NONBLOCK);
    int w = open("f", O_WRONLY);
    int r2 = open("f", O_RDONLY);
    if (r < 0 || w < 0 || r2 < 0 || write(w, data, sizeof(data)) != sizeof(data))
        FAIL_ERRNO("setting up the FIFO");
    int go[2];
    if (pipe(go) != 0)
        FAIL_ERRNO("pipe");
    pid_t child = fork();
    if (child == 0) {
        char c;
        close(r);
        close(r2);
        close(go[1]);
        if (read(go[0], &c, 1) == 1 && write(w, "child", 5) != 5)
            _exit(1);
        _exit(0);
    }
    close(go[0]);
    ready();
    wait_for_usr1();

    CHECK_EQ("R non-blocking", fcntl(r, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    CHECK_EQ("R2 blocking", fcntl(r2, F_GETFL) & O_NONBLOCK, 0);
    if (read(r, back, sizeof(back)) != sizeof(back) || memcmp(back, data, sizeof(data)) != 0)
        fail("the unread data did not come back");
    if (write(w, "via W", 5) != 5 || read(r2, back, 5) != 5 || memcmp(back, "via W", 5) != 0)
        fail("what W writes, R2 does not read");
    if (write(go[1], "g", 1) != 1)
        FAIL_ERRNO("waking the child");
    int status = 0;
    waitpid(child, &status, 0);
    CHECK_EQ("child", WIFEXITED(status) && WEXITSTATUS(status) == 0, 1);
    memset(back, 0, 6);
    if (read(r, back, 5) != 5 || memcmp(back, "child", 5) != 0)
        fail("what the child writes, R does not read");
    close(w);
    CHECK_EQ("end of file once the writers are gone", read(r, back, 1), 0);
    finish();
}

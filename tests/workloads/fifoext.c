/*
 * fifoext: two FIFOs whose other side the test holds, outside the process tree.
 *
 * In the working directory, "in" is opened for reading (the test opens it for writing and
 * writes "before", left unread) and "out" for writing ("w-before" written into it, which
 * the test opens for reading once READY is out).  argv[1] says what the test does with its
 * sides across the dump and restore, and so what the restored ends give:
 *   kept    the test keeps both: "in" reads "before" (once, not twice) and what the test
 *           wrote after the restore, "after", then end of file; "out" takes "w-after";
 *   closed  the test closes both before the restore: "in" reads the saved "before", then
 *           end of file; writing "out" fails with EPIPE (nobody reads it any more);
 *   handed  the test hands in a pipe for each (--inherit-fd): "in" reads the saved
 *           "before", then "handed", which the test wrote into its pipe; "out" takes
 *           "w-after" (the test reads the saved "w-before" before it).
 */
#include "common.h"

#include <sys/stat.h>

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "kept";
    const char *expected = strcmp(mode, "kept") == 0     ? "beforeafter"
                           : strcmp(mode, "handed") == 0 ? "beforehanded"
                                                         : "before";
    workload_init("fifoext", 0);
    signal(SIGPIPE, SIG_IGN);
    if (mkfifo("in", 0600) != 0 || mkfifo("out", 0600) != 0)
        FAIL_ERRNO("mkfifo");
    int r = open("in", O_RDONLY | O_NONBLOCK);
    if (r < 0 || fcntl(r, F_SETFL, 0) != 0)
        FAIL_ERRNO("opening in");
    int reader = open("out", O_RDONLY | O_NONBLOCK); /* so that the write end opens */
    int w = open("out", O_WRONLY);
    if (reader < 0 || w < 0 || write(w, "w-before", 8) != 8)
        FAIL_ERRNO("opening out");
    close(reader);
    ready();
    wait_for_usr1();

    char got[64] = {0};
    size_t n = 0;
    for (;;) {
        ssize_t k = read(r, got + n, sizeof(got) - 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            FAIL_ERRNO("reading in");
            break;
        }
        if (k == 0 || (n += (size_t)k) == sizeof(got) - 1)
            break;
    }
    if (strcmp(got, expected) != 0)
        fail("in read \"%s\", expected \"%s\"", got, expected);
    ssize_t wrote = write(w, "w-after", 7);
    if (strcmp(mode, "closed") == 0) {
        if (wrote >= 0 || errno != EPIPE)
            fail("writing out with no reader: %zd (%s), expected EPIPE", wrote, strerror(errno));
    } else if (wrote != 7) {
        FAIL_ERRNO("writing out");
    }
    finish();
}

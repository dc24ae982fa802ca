/*
 * ghosts: files deleted while open or mapped come back deleted, with their contents.
 *
 * - "open.dat", 5000 bytes, opened twice (fd A read-write at offset 1234, fd B read-only)
 *   and then deleted: after the restore both fds are on one deleted file (same inode, no
 *   link, /proc/self/fd names the old path "(deleted)"), A is still at offset 1234, the
 *   contents are intact, and what A writes B reads;
 * - "shared.dat", 8192 bytes, mapped MAP_SHARED by this process and a forked child, then
 *   deleted (as a POSIX semaphore in /dev/shm is): after the restore the mapping holds its
 *   value and is still shared with the child (the child's write shows here).
 */
#include "common.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define OPEN_SIZE 5000

int main(void)
{
    static unsigned char data[OPEN_SIZE], back[OPEN_SIZE];
    workload_init("ghosts", 0);
    for (int i = 0; i < OPEN_SIZE; i++)
        data[i] = (unsigned char)pattern32(3, (uint32_t)i);
    int a = open("open.dat", O_RDWR | O_CREAT | O_TRUNC, 0640);
    if (a < 0 || write(a, data, OPEN_SIZE) != OPEN_SIZE)
        FAIL_ERRNO("open.dat");
    int b = open("open.dat", O_RDONLY);
    lseek(a, 1234, SEEK_SET);
    char cwd[4096], expected[4200];
    if (!getcwd(cwd, sizeof(cwd)))
        FAIL_ERRNO("getcwd");
    snprintf(expected, sizeof(expected), "%s/open.dat (deleted)", cwd);
    unlink("open.dat");

    int s = open("shared.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (s < 0 || ftruncate(s, 8192) != 0)
        FAIL_ERRNO("shared.dat");
    volatile uint32_t *shared = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
    close(s);
    unlink("shared.dat");
    shared[0] = 0x600d;
    int go[2];
    if (pipe(go) != 0)
        FAIL_ERRNO("pipe");
    pid_t child = fork();
    if (child == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) == 1)
            shared[1] = 0xc41d;
        _exit(0);
    }
    close(go[0]);
    ready();
    wait_for_usr1();

    struct stat sa, sb;
    fstat(a, &sa);
    fstat(b, &sb);
    CHECK_EQ("one inode for A and B", sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev, 1);
    CHECK_EQ("links of the deleted file", sa.st_nlink, 0);
    CHECK_EQ("size", sa.st_size, OPEN_SIZE);
    CHECK_EQ("mode", sa.st_mode & 07777, 0640);
    char link[4200] = {0}, path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", a);
    if (readlink(path, link, sizeof(link) - 1) < 0 || strcmp(link, expected) != 0)
        fail("fd A is %s, not %s", link, expected);
    CHECK_EQ("offset of A", lseek(a, 0, SEEK_CUR), 1234);
    if (pread(b, back, OPEN_SIZE, 0) != OPEN_SIZE || memcmp(back, data, OPEN_SIZE) != 0)
        fail("the deleted file's contents differ");
    if (write(a, "XY", 2) != 2 || pread(b, back, 2, 1234) != 2 || memcmp(back, "XY", 2) != 0)
        fail("what A writes, B does not read");

    CHECK_EQ("shared value", shared[0], 0x600d);
    if (write(go[1], "g", 1) != 1)
        FAIL_ERRNO("waking the child");
    waitpid(child, NULL, 0);
    CHECK_EQ("the child's write through the shared mapping", shared[1], 0xc41d);
    finish();
}

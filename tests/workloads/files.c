/*
 * files: open file descriptors come back with the same numbers, files,
 * flags, offsets and sharing.
 *
 *   3   rw.dat        O_RDWR, 10000 bytes, offset moved to 3000 by lseek
 *   4   append.log    O_WRONLY|O_APPEND, one line written
 *   6   ro.dat        O_RDONLY, read half-way (fd 5 is left free: a gap)
 *   9   dup of 3      shares the file description (and so the offset) with 3
 *   12  the cwd       O_RDONLY|O_DIRECTORY
 *   17  /dev/null     O_RDWR|O_NONBLOCK
 *   23  rw.dat again  O_RDONLY, its own offset 100, FD_CLOEXEC
 * plus 0, 1, 2 as the harness set them up (2 a dup of 1, both appending to the log).
 *
 * After restore, for each fd: the /proc/self/fd link, F_GETFL, F_GETFD, the
 * offset, and the inode are compared with the values recorded before; then
 * reading and writing must continue from the right place (and a read through
 * fd 3 must move fd 9's offset too), and /proc/self/fd must list no other fd.
 */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#define RW_SIZE 10000
#define RO_SIZE 4096

struct fdinfo {
    int fd;
    char path[4096];
    int flags, fdflags;
    off_t offset;
    dev_t dev;
    ino_t ino;
};

static const int fds[] = {0, 1, 2, 3, 4, 6, 9, 12, 17, 23};
#define NFDS (sizeof(fds) / sizeof(fds[0]))
static struct fdinfo recorded[NFDS];

static unsigned char rw_byte(size_t i)
{
    return (unsigned char)(i * 13 + (i >> 7));
}

static unsigned char ro_byte(size_t i)
{
    return (unsigned char)(i * 5 + 1);
}

/* Move fd to number `target`; keep FD_CLOEXEC if asked. */
static void place(int fd, int target, int cloexec)
{
    if (fd < 0) {
        FAIL_ERRNO("open");
        finish();
    }
    if (fd != target) {
        if (dup2(fd, target) != target) {
            FAIL_ERRNO("dup2");
            finish();
        }
        close(fd);
    }
    if (cloexec && fcntl(target, F_SETFD, FD_CLOEXEC) != 0)
        FAIL_ERRNO("F_SETFD");
}

static void write_file(const char *name, size_t size, unsigned char (*byte)(size_t))
{
    static unsigned char buf[RW_SIZE];
    for (size_t i = 0; i < size; i++)
        buf[i] = byte(i);
    int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, buf, size) != (ssize_t)size) {
        FAIL_ERRNO("creating a data file");
        finish();
    }
    close(fd);
}

static int describe(int fd, struct fdinfo *fi)
{
    char link[64];
    struct stat st;
    memset(fi, 0, sizeof(*fi));
    fi->fd = fd;
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    if (readlink(link, fi->path, sizeof(fi->path) - 1) < 0)
        return -1;
    fi->flags = fcntl(fd, F_GETFL);
    fi->fdflags = fcntl(fd, F_GETFD);
    fi->offset = lseek(fd, 0, SEEK_CUR); /* -1 for pipes and ttys, compared as is */
    if (fstat(fd, &st) == 0) {
        fi->dev = st.st_dev;
        fi->ino = st.st_ino;
    }
    return 0;
}

static void setup(void)
{
    write_file("rw.dat", RW_SIZE, rw_byte);
    write_file("ro.dat", RO_SIZE, ro_byte);
    place(open("rw.dat", O_RDWR), 3, 0);
    place(open("append.log", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644), 4, 0);
    place(open("ro.dat", O_RDONLY), 6, 0);
    place(dup(3), 9, 0);
    place(open(".", O_RDONLY | O_DIRECTORY), 12, 0);
    place(open("/dev/null", O_RDWR | O_NONBLOCK), 17, 0);
    place(open("rw.dat", O_RDONLY), 23, 1);

    if (lseek(3, 3000, SEEK_SET) != 3000)
        FAIL_ERRNO("lseek");
    if (write(4, "line1\n", 6) != 6)
        FAIL_ERRNO("write append.log");
    static unsigned char half[RO_SIZE / 2];
    if (read(6, half, sizeof(half)) != (ssize_t)sizeof(half))
        FAIL_ERRNO("read ro.dat");
    if (lseek(23, 100, SEEK_SET) != 100)
        FAIL_ERRNO("lseek");

    for (size_t i = 0; i < NFDS; i++)
        if (describe(fds[i], &recorded[i]) != 0)
            fail("fd %d is not open before the wait", fds[i]);
}

static void check_fd_table(void)
{
    for (size_t i = 0; i < NFDS; i++) {
        struct fdinfo now;
        const struct fdinfo *was = &recorded[i];
        int fd = fds[i];
        if (describe(fd, &now) != 0) {
            fail("fd %d (%s) is not open", fd, was->path);
            continue;
        }
        if (strcmp(now.path, was->path) != 0)
            fail("fd %d is '%s', was '%s'", fd, now.path, was->path);
        if (now.flags != was->flags)
            fail("fd %d: F_GETFL 0%o, was 0%o", fd, now.flags, was->flags);
        if (now.fdflags != was->fdflags)
            fail("fd %d: F_GETFD %d, was %d", fd, now.fdflags, was->fdflags);
        /* 1 and 2 are the log everybody appends to: their offset moves, check sharing below */
        if (fd > 2 && now.offset != was->offset)
            fail("fd %d: offset %lld, was %lld", fd, (long long)now.offset,
                 (long long)was->offset);
        if (now.dev != was->dev || now.ino != was->ino)
            fail("fd %d: now inode %llu on dev 0x%llx, was %llu on 0x%llx", fd,
                 (unsigned long long)now.ino, (unsigned long long)now.dev,
                 (unsigned long long)was->ino, (unsigned long long)was->dev);
    }

    /* The harness made fd 2 a dup of fd 1: one description, one offset. */
    if (lseek(1, 0, SEEK_CUR) != lseek(2, 0, SEEK_CUR))
        fail("fd 1 and fd 2 no longer share an offset (%lld vs %lld)",
             (long long)lseek(1, 0, SEEK_CUR), (long long)lseek(2, 0, SEEK_CUR));

    DIR *d = opendir("/proc/self/fd");
    if (!d) {
        FAIL_ERRNO("opendir /proc/self/fd");
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name), known = fd == dirfd(d);
        for (size_t i = 0; i < NFDS; i++)
            known |= fds[i] == fd;
        if (!known) {
            char link[64], path[4096] = "?";
            snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
            if (readlink(link, path, sizeof(path) - 1) < 0)
                strcpy(path, "?");
            fail("unexpected fd %d open (%s)", fd, path);
        }
    }
    closedir(d);
}

static void check_io(void)
{
    unsigned char buf[256];

    /* fd 3 continues at 3000; fd 9 shares its offset. */
    if (read(3, buf, 100) != 100)
        FAIL_ERRNO("read fd 3");
    else
        for (size_t i = 0; i < 100; i++)
            if (buf[i] != rw_byte(3000 + i)) {
                fail("fd 3 read wrong data at file offset %zu", 3000 + i);
                break;
            }
    CHECK_EQ("fd 9 offset after reading 100 bytes via fd 3 (shared description)",
             lseek(9, 0, SEEK_CUR), 3100);
    /* Writing through fd 9 lands at the shared offset. */
    if (write(9, "XY", 2) != 2)
        FAIL_ERRNO("write fd 9");
    if (pread(23, buf, 2, 3100) != 2 || buf[0] != 'X' || buf[1] != 'Y')
        fail("write through fd 9 did not land at offset 3100 of rw.dat");
    CHECK_EQ("fd 3 offset after writing via fd 9", lseek(3, 0, SEEK_CUR), 3102);

    /* fd 23 has its own description at offset 100. */
    if (read(23, buf, 10) != 10)
        FAIL_ERRNO("read fd 23");
    else if (buf[0] != rw_byte(100) || buf[9] != rw_byte(109))
        fail("fd 23 read wrong data at offset 100");

    /* fd 6 continues at the second half. */
    ssize_t n = read(6, buf, sizeof(buf));
    if (n != (ssize_t)sizeof(buf))
        fail("read fd 6 returned %zd", n);
    else if (buf[0] != ro_byte(RO_SIZE / 2) || buf[255] != ro_byte(RO_SIZE / 2 + 255))
        fail("fd 6 did not continue from the middle of ro.dat");

    /* fd 4 appends. */
    lseek(4, 0, SEEK_SET);
    if (write(4, "line2\n", 6) != 6)
        FAIL_ERRNO("write fd 4");
    char text[64] = {0};
    int fd = open("append.log", O_RDONLY);
    n = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n != 12 || strcmp(text, "line1\nline2\n") != 0)
        fail("append.log holds '%s' (%zd bytes), expected two lines", text, n);

    if (write(17, buf, 10) != 10)
        FAIL_ERRNO("write /dev/null");
    if (read(17, buf, 10) != 0)
        fail("/dev/null read did not return EOF");
    if (fchdir(12) != 0)
        FAIL_ERRNO("fchdir to fd 12");
}

int main(void)
{
    workload_init("files", 0);
    setup();
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    check_fd_table();
    check_io();
    finish();
}

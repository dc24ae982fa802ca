/*
 * inotify: an inotify instance whose watches come back with their masks and descriptors.
 *
 * Watches (non-blocking instance): the directory "watched" for IN_CREATE (descriptor 1), the
 * file "watched/g" for IN_MODIFY (descriptor 3; descriptor 2 watched "watched/f" and was
 * removed, a gap).  After the restore no event is queued; creating "watched/new" gives
 * IN_CREATE on descriptor 1 with that name; writing "watched/g" gives IN_MODIFY on
 * descriptor 3; a new watch gets descriptor 4.
 */
#include "common.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>

static void touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1)
        fail("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static int next_event(int fd, struct inotify_event *ev, size_t size)
{
    for (int i = 0; i < 200; i++) {
        ssize_t n = read(fd, ev, size);
        if (n > 0)
            return 1;
        usleep(10000);
    }
    return 0;
}

int main(void)
{
    workload_init("inotify", 0);
    mkdir("watched", 0700);
    touch("watched/f");
    touch("watched/g");
    int in = inotify_init1(IN_NONBLOCK);
    int dir = inotify_add_watch(in, "watched", IN_CREATE);
    int f = inotify_add_watch(in, "watched/f", IN_MODIFY);
    int g = inotify_add_watch(in, "watched/g", IN_MODIFY);
    CHECK_EQ("descriptors", dir == 1 && f == 2 && g == 3, 1);
    inotify_rm_watch(in, f);
    char buf[4096] __attribute__((aligned(8)));
    while (read(in, buf, sizeof(buf)) > 0) /* the IN_IGNORED of the removed watch */
        ;
    ready();
    wait_for_usr1();

    errno = 0;
    CHECK_EQ("no event queued", read(in, buf, sizeof(buf)) == -1 && errno == EAGAIN, 1);
    struct inotify_event *ev = (struct inotify_event *)buf;
    touch("watched/new");
    if (!next_event(in, ev, sizeof(buf)))
        fail("no event for a file created in the watched directory");
    else {
        CHECK_EQ("create: descriptor", ev->wd, 1);
        CHECK_EQ("create: mask", ev->mask & IN_CREATE, IN_CREATE);
        if (ev->len == 0 || strcmp(ev->name, "new") != 0)
            fail("create: name is not \"new\"");
    }
    touch("watched/g");
    if (!next_event(in, ev, sizeof(buf)))
        fail("no event for the watched file written");
    else {
        CHECK_EQ("modify: descriptor", ev->wd, 3);
        CHECK_EQ("modify: mask", ev->mask, IN_MODIFY);
    }
    CHECK_EQ("next descriptor", inotify_add_watch(in, "watched/f", IN_MODIFY), 4);
    finish();
}

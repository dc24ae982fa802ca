/*
 * fanotify: a fanotify instance whose marks come back with their masks and flags.
 *
 * Instance (FAN_CLASS_NOTIF, FAN_UNLIMITED_QUEUE, events opened O_RDONLY; made non-blocking
 * with F_SETFL, which fdinfo's flags do not show):
 * - inode mark on "marked/f" for FAN_MODIFY | FAN_CLOSE_WRITE;
 * - inode mark on "marked/g" for FAN_MODIFY | FAN_CLOSE_WRITE, FAN_MODIFY in its ignored mask
 *   (FAN_MARK_IGNORED_SURV_MODIFY);
 * - a mount mark and a filesystem mark on the working directory's mount, each ignoring what
 *   it asks for (FAN_OPEN, FAN_ACCESS: quiet, whatever the host does there).
 * A second instance reports file handles instead of fds (FAN_REPORT_FID), with an inode mark
 * on "marked/f" for FAN_MODIFY. A third, with an inode mark on "marked/f" for FAN_CLOSE_WRITE,
 * is in flight: sent on a Unix socketpair (SCM_RIGHTS) and closed; received after the
 * restore, it reports the write of f.
 * After the restore no event is queued; writing f gives FAN_MODIFY and FAN_CLOSE_WRITE with
 * an fd of f and this process's PID, read from the restored fd; writing g gives
 * FAN_CLOSE_WRITE only; the FID instance reports FAN_MODIFY of f with a file handle record
 * and no fd; both instances' flags and marks read back through fdinfo as they were.
 *
 * Mode "unread": an event is left queued, which refuses the dump; it is still there after.
 * Mode "permission": a second instance (FAN_CLASS_CONTENT) asks to allow each open of
 * "marked/p" (FAN_OPEN_PERM); a process outside the tree (a grandchild let go, its PID in
 * "opener.pid") opens it, the workload reads the event and, until signalled, does not
 * answer: the opener waits, and the dump is refused. Signalled, the workload allows it.
 */
#include "common.h"

#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

static void touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY | O_APPEND, 0600);
    if (fd < 0 || write(fd, "x", 1) != 1)
        fail("cannot write %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
}

static void mark(int fan, unsigned flags, uint64_t mask, const char *path)
{
    if (fanotify_mark(fan, FAN_MARK_ADD | flags, mask, AT_FDCWD, path) != 0)
        fail("fanotify_mark %s (%#x, %#llx): %s", path, flags, (unsigned long long)mask,
             strerror(errno));
}

/* The "fanotify ..." lines of the instance's fdinfo, sorted, in `out`. */
static void marks_shown(int fan, char *out, size_t size)
{
    char path[64], text[8192], *lines[64];
    int n = 0;
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fan);
    int fd = open(path, O_RDONLY);
    ssize_t len = fd >= 0 ? read(fd, text, sizeof(text) - 1) : -1;
    if (fd >= 0)
        close(fd);
    text[len > 0 ? len : 0] = 0;
    for (char *line = strtok(text, "\n"); line && n < 64; line = strtok(NULL, "\n"))
        if (strncmp(line, "fanotify ", 9) == 0)
            lines[n++] = line;
    for (int i = 0; i < n; i++) /* sorted: the kernel lists marks newest first */
        for (int j = i + 1; j < n; j++)
            if (strcmp(lines[j], lines[i]) < 0) {
                char *t = lines[i];
                lines[i] = lines[j];
                lines[j] = t;
            }
    out[0] = 0;
    for (int i = 0; i < n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s\n", lines[i]);
}

/* The events read until one has FAN_CLOSE_WRITE: their masks ORed; fds checked and closed. */
static uint64_t events_until_close(int fan, const char *name)
{
    uint64_t seen = 0;
    char buf[4096] __attribute__((aligned(8)));
    struct pollfd p = {.fd = fan, .events = POLLIN};
    while (!(seen & FAN_CLOSE_WRITE)) {
        if (poll(&p, 1, 10000) != 1) {
            fail("%s: no FAN_CLOSE_WRITE event (seen %#llx)", name, (unsigned long long)seen);
            break;
        }
        ssize_t n = read(fan, buf, sizeof(buf));
        if (n <= 0)
            continue;
        struct fanotify_event_metadata *m = (void *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            seen |= m->mask;
            char link[64], target[256] = "";
            snprintf(link, sizeof(link), "/proc/self/fd/%d", m->fd);
            ssize_t len = readlink(link, target, sizeof(target) - 1);
            target[len > 0 ? len : 0] = 0;
            size_t tl = strlen(target), nl = strlen(name);
            if (tl < nl || strcmp(target + tl - nl, name) != 0)
                fail("%s: event's fd is %s", name, target);
            CHECK_EQ("event's pid", m->pid, getpid());
            if (m->fd >= 0)
                close(m->fd);
        }
    }
    return seen;
}

int main(int argc, char **argv)
{
    int unread = argc > 1 && strcmp(argv[1], "unread") == 0;
    int permission = argc > 1 && strcmp(argv[1], "permission") == 0;
    workload_init("fanotify", 0);
    mkdir("marked", 0700);
    touch("marked/f");
    touch("marked/g");
    int fan = fanotify_init(FAN_CLASS_NOTIF | FAN_UNLIMITED_QUEUE, O_RDONLY | O_LARGEFILE);
    if (fan < 0) {
        FAIL_ERRNO("fanotify_init");
        finish();
    }
    if (fcntl(fan, F_SETFL, O_NONBLOCK) != 0) /* fdinfo keeps showing the init flags */
        FAIL_ERRNO("F_SETFL O_NONBLOCK");
    mark(fan, 0, FAN_MODIFY | FAN_CLOSE_WRITE, "marked/f");
    mark(fan, 0, FAN_MODIFY | FAN_CLOSE_WRITE, "marked/g");
    mark(fan, FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_MODIFY, "marked/g");
    mark(fan, FAN_MARK_MOUNT, FAN_OPEN, ".");
    mark(fan, FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_OPEN, ".");
    mark(fan, FAN_MARK_FILESYSTEM, FAN_ACCESS, ".");
    mark(fan, FAN_MARK_FILESYSTEM | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
         FAN_ACCESS, ".");
    int fid = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_FID | FAN_NONBLOCK, O_RDONLY);
    if (fid < 0)
        FAIL_ERRNO("fanotify_init(FAN_REPORT_FID)");
    mark(fid, 0, FAN_MODIFY, "marked/f");
    int sv[2], flying = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY);
    if (flying < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        FAIL_ERRNO("fanotify_init or socketpair");
    mark(flying, 0, FAN_CLOSE_WRITE, "marked/f");
    send_fds(sv[0], &flying, 1);
    close(flying);
    int queued = -1, perm = -1;
    if (unread)
        touch("marked/f");
    struct fanotify_event_metadata asked = {.fd = -1};
    if (permission) {
        touch("marked/p");
        perm = fanotify_init(FAN_CLASS_CONTENT, O_RDONLY | O_LARGEFILE);
        if (perm < 0)
            FAIL_ERRNO("fanotify_init(FAN_CLASS_CONTENT)");
        mark(perm, 0, FAN_OPEN_PERM, "marked/p");
        int pids[2];
        if (pipe(pids) != 0)
            FAIL_ERRNO("pipe");
        if (fork() == 0) {
            pid_t opener = fork();
            if (opener == 0) {
                int devnull = open("/dev/null", O_RDWR);
                dup2(devnull, 1);
                dup2(devnull, 2);
                _exit(open("marked/p", O_RDONLY) >= 0 ? 0 : 1);
            }
            _exit(write(pids[1], &opener, sizeof(opener)) == sizeof(opener) ? 0 : 1);
        }
        pid_t opener = -1;
        if (read(pids[0], &opener, sizeof(opener)) != sizeof(opener))
            FAIL_ERRNO("read the opener's PID");
        wait(NULL);
        close(pids[0]);
        close(pids[1]);
        char text[32];
        int f = open("opener.pid", O_CREAT | O_WRONLY | O_TRUNC, 0600);
        if (f < 0 || write(f, text, snprintf(text, sizeof(text), "%d\n", opener)) <= 0)
            FAIL_ERRNO("write opener.pid");
        close(f);
        if (read(perm, &asked, sizeof(asked)) != sizeof(asked) || !(asked.mask & FAN_OPEN_PERM))
            fail("no permission event to answer");
    }
    static char before[8192], after[8192], fid_before[1024], fid_after[1024];
    marks_shown(fan, before, sizeof(before));
    marks_shown(fid, fid_before, sizeof(fid_before));
    int flags = fcntl(fan, F_GETFL);
    ready();
    wait_for_usr1();

    if (ioctl(fan, FIONREAD, &queued) != 0)
        FAIL_ERRNO("FIONREAD");
    if (unread) {
        CHECK_EQ("the unread event is still queued", queued > 0, 1);
        finish();
    }
    if (permission) {
        struct fanotify_response answer = {.fd = asked.fd, .response = FAN_ALLOW};
        if (write(perm, &answer, sizeof(answer)) != sizeof(answer))
            FAIL_ERRNO("answer the permission event");
        close(asked.fd);
    }
    CHECK_EQ("no event queued", queued, 0);
    CHECK_EQ("flags", fcntl(fan, F_GETFL), flags);
    marks_shown(fan, after, sizeof(after));
    if (strcmp(before, after) != 0)
        fail("fdinfo shows\n%swhere it showed\n%s", after, before);
    marks_shown(fid, fid_after, sizeof(fid_after));
    if (strcmp(fid_before, fid_after) != 0)
        fail("fdinfo of the FID instance shows\n%swhere it showed\n%s", fid_after, fid_before);
    if (ioctl(fid, FIONREAD, &queued) != 0 || queued != 0)
        fail("the FID instance has %d bytes queued", queued);
    touch("marked/f");
    CHECK_EQ("f: events", events_until_close(fan, "/marked/f"), FAN_MODIFY | FAN_CLOSE_WRITE);
    flying = -1;
    receive_fds(sv[1], &flying, 1);
    if (flying < 0)
        fail("no fanotify instance received from the socketpair");
    else
        CHECK_EQ("f: events in flight", events_until_close(flying, "/marked/f"), FAN_CLOSE_WRITE);
    struct pollfd p = {.fd = fid, .events = POLLIN};
    char buf[4096] __attribute__((aligned(8)));
    ssize_t n = poll(&p, 1, 10000) == 1 ? read(fid, buf, sizeof(buf)) : -1;
    struct fanotify_event_metadata *m = (void *)buf;
    if (n < (ssize_t)sizeof(*m))
        fail("the FID instance reports no event for f");
    else {
        struct fanotify_event_info_header *h = (void *)(buf + m->metadata_len);
        CHECK_EQ("FID event: mask", m->mask, FAN_MODIFY);
        CHECK_EQ("FID event: no fd", m->fd, FAN_NOFD);
        CHECK_EQ("FID event: a file handle record",
                 m->event_len > m->metadata_len && h->info_type == FAN_EVENT_INFO_TYPE_FID, 1);
    }
    touch("marked/g");
    CHECK_EQ("g: events", events_until_close(fan, "/marked/g"), FAN_CLOSE_WRITE);
    finish();
}

/*
 * cgroups: a process that lives by the limits of its cgroups.
 *
 * Usage: cgroups MOUNT DESCENDANTS FORKS
 *   MOUNT        where cgroup v2 is mounted (the directory of the namespace's root cgroup)
 *   DESCENDANTS  how many child cgroups its cgroup lets it make (cgroup.max.descendants;
 *                -1: not tried)
 *   FORKS        how many children it may fork before pids.max says no (-1: not limited
 *                by a pids.max the test set; not tried)
 *
 * At start it records its cgroup (the "0::" line of /proc/self/cgroup).  On SIGUSR1 it
 * checks that it is still in that cgroup and prints "cgroup PATH"; then makes child
 * cgroups of its own until the kernel refuses, unless DESCENDANTS is -1: exactly DESCENDANTS
 * must succeed and the next fail with EAGAIN (they are removed again); and, unless FORKS is
 * -1, forks children until the kernel refuses: exactly FORKS must succeed and the next fail
 * with EAGAIN.
 */
#include "common.h"

#include <sys/stat.h>

static int own_cgroup(char *path, size_t size)
{
    char line[4096];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f)
        return -1;
    int found = -1;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "0::", 3) == 0) {
            line[strcspn(line, "\n")] = 0;
            snprintf(path, size, "%s", line + 3);
            found = 0;
        }
    }
    fclose(f);
    return found;
}

static void try_descendants(const char *mount, const char *cgroup, int allowed)
{
    char dir[8400];
    int made = 0, err = 0;
    for (int i = 0; i <= allowed; i++) {
        snprintf(dir, sizeof(dir), "%s%s/probe-%d", mount, strcmp(cgroup, "/") ? cgroup : "", i);
        if (mkdir(dir, 0755) != 0) {
            err = errno;
            break;
        }
        made++;
    }
    for (int i = made - 1; i >= 0; i--) {
        snprintf(dir, sizeof(dir), "%s%s/probe-%d", mount, strcmp(cgroup, "/") ? cgroup : "", i);
        if (rmdir(dir) != 0)
            FAIL_ERRNO("rmdir of a probe cgroup");
    }
    say("descendants %d (%s)\n", made, err ? strerror(err) : "no refusal");
    if (made != allowed || err != EAGAIN)
        fail("made %d child cgroups (refused with %s), expected %d then EAGAIN", made,
             err ? strerror(err) : "nothing", allowed);
}

static void try_forks(int allowed)
{
    int gate[2];
    if (pipe(gate) != 0) {
        FAIL_ERRNO("pipe");
        return;
    }
    int forked = 0, err = 0;
    for (int i = 0; i <= allowed; i++) {
        pid_t child = fork();
        if (child < 0) {
            err = errno;
            break;
        }
        if (child == 0) {
            char c;
            close(gate[1]);
            while (read(gate[0], &c, 1) < 0 && errno == EINTR)
                ;
            _exit(0);
        }
        forked++;
    }
    close(gate[1]);
    close(gate[0]);
    for (int i = 0; i < forked; i++)
        wait(NULL);
    say("forks %d (%s)\n", forked, err ? strerror(err) : "no refusal");
    if (forked != allowed || err != EAGAIN)
        fail("forked %d children (refused with %s), expected %d then EAGAIN", forked,
             err ? strerror(err) : "nothing", allowed);
}

int main(int argc, char **argv)
{
    char before[4096], after[4096];
    if (argc != 4) {
        say("usage: cgroups MOUNT DESCENDANTS FORKS\n");
        return 2;
    }
    workload_init("cgroups", 0);
    if (own_cgroup(before, sizeof(before)) != 0) {
        FAIL_ERRNO("reading /proc/self/cgroup");
        finish();
    }
    ready();
    wait_for_usr1();

    if (own_cgroup(after, sizeof(after)) != 0)
        FAIL_ERRNO("reading /proc/self/cgroup");
    say("cgroup %s\n", after);
    if (strcmp(before, after) != 0)
        fail("in cgroup %s, started in %s", after, before);
    if (atoi(argv[2]) >= 0)
        try_descendants(argv[1], after, atoi(argv[2]));
    if (atoi(argv[3]) >= 0)
        try_forks(atoi(argv[3]));
    finish();
}

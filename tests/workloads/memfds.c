/*
 * memfds: memfds holding data no mapping reaches.
 *
 * "partly mapped" is 5 pages and 100 bytes long: page 0 is mapped MAP_SHARED and written
 * through the mapping, page 2 and the 100 bytes past page 5 are written through the fd,
 * pages 1, 3 and 4 are holes; sealed against shrinking and growing.  "unmapped" is 3 pages
 * written through the fd only, never mapped, then sealed against writing, shrinking,
 * growing and further seals.  After the restore each has its size, its data where it was
 * and zeros in its holes, its seals (a write to "unmapped" is refused), and the mapping of
 * "partly mapped" still shows what its fd reads and writes.
 *
 * "sealed" (2 pages, written through its fd) is sealed against writing, then mapped shared
 * and read-only; "future" is mapped shared and writable, sealed against future writes, then
 * mapped read-only.  After the restore the read-only mappings show the data, are shared
 * ("sh") and may never become writable (no "mw": mprotect(PROT_WRITE) fails with EACCES),
 * as the kernel makes them on a sealed memfd; what the writable one writes, the read-only
 * one of "future" shows; a write(2) to either memfd is refused.
 *
 * Mode "mapped" (argv[1]): "only mapped" is 4 pages and 100 bytes long, page 0, page 3 and
 * the 100 bytes past page 4 written through its fd, pages 1 and 2 mapped MAP_SHARED and page
 * 1 written through the mapping, page 2 a hole; sealed against shrinking and growing, then
 * its fd is closed: only the mapping holds it.  After the restore the program reaches it
 * again through /proc/self/map_files and checks its size, seals, data where it was, zeros
 * in its hole, and that the mapping and the object still share their pages.
 */
#include "common.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define TAIL 100
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

static void fill(unsigned char *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)pattern32(seed, (uint32_t)i);
}

static int same_as(int fd, off_t at, size_t len, uint32_t seed, const char *what)
{
    static unsigned char want[3 * PAGE], got[3 * PAGE];
    fill(want, len, seed);
    if (pread(fd, got, len, at) != (ssize_t)len || memcmp(got, want, len) != 0) {
        fail("%s: not the data written", what);
        return 0;
    }
    return 1;
}

static void zeros(int fd, off_t at, size_t len, const char *what)
{
    static unsigned char got[PAGE];
    for (size_t done = 0; done < len; done += PAGE) {
        memset(got, 0xff, PAGE);
        if (pread(fd, got, PAGE, at + (off_t)done) != PAGE) {
            FAIL_ERRNO(what);
            return;
        }
        for (size_t i = 0; i < PAGE; i++)
            if (got[i]) {
                fail("%s: byte %zu is 0x%x, not 0", what, done + i, got[i]);
                return;
            }
    }
}

/* The VmFlags smaps shows for the mapping at `addr`, in `out` ("" if not found). */
static void vm_flags(const void *addr, char *out, size_t size)
{
    char line[512], start[32];
    snprintf(start, sizeof(start), "%lx-", (unsigned long)addr);
    FILE *f = fopen("/proc/self/smaps", "r");
    int in = 0;
    out[0] = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, start, strlen(start)) == 0)
            in = 1;
        else if (in && strncmp(line, "VmFlags:", 8) == 0) {
            snprintf(out, size, "%s", line + 8 + strspn(line + 8, " \t"));
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    if (f)
        fclose(f);
}

static int has_flag(const char *flags, const char *flag)
{
    char padded[512], want[8];
    snprintf(padded, sizeof(padded), " %s ", flags);
    snprintf(want, sizeof(want), " %s ", flag);
    return strstr(padded, want) != NULL;
}

/* A read-only shared mapping of a write-sealed memfd: shared, never writable. */
static void sealed_read_only(const char *what, const unsigned char *map)
{
    char flags[256];
    vm_flags(map, flags, sizeof(flags));
    if (!has_flag(flags, "sh") || has_flag(flags, "mw"))
        fail("%s: VmFlags %s, not shared without may-write", what, flags);
    errno = 0;
    if (mprotect((void *)map, PAGE, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
        fail("%s: mprotect(PROT_WRITE) gave %s, not EACCES", what, strerror(errno));
}

static __attribute__((noreturn)) void only_mapped(void)
{
    static unsigned char buf[PAGE];
    int fd = memfd_create("only mapped", MFD_ALLOW_SEALING);
    if (fd < 0)
        FAIL_ERRNO("memfd_create");
    if (ftruncate(fd, 4 * PAGE + TAIL) != 0)
        FAIL_ERRNO("ftruncate");
    unsigned char *map = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
    if (map == MAP_FAILED)
        FAIL_ERRNO("mmap");
    fill(map, PAGE, 5);
    fill(buf, PAGE, 6);
    if (pwrite(fd, buf, PAGE, 0) != PAGE)
        FAIL_ERRNO("writing page 0");
    fill(buf, PAGE, 7);
    if (pwrite(fd, buf, PAGE, 3 * PAGE) != PAGE)
        FAIL_ERRNO("writing page 3");
    fill(buf, TAIL, 8);
    if (pwrite(fd, buf, TAIL, 4 * PAGE) != TAIL)
        FAIL_ERRNO("writing the tail");
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
        FAIL_ERRNO("sealing only mapped");
    close(fd);
    ready();
    wait_for_usr1();

    char path[64];
    snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)map,
             (unsigned long)map + 2 * PAGE);
    fd = open(path, O_RDWR);
    if (fd < 0) {
        FAIL_ERRNO("opening the mapping's memfd again");
        finish();
    }
    struct stat st;
    CHECK_EQ("only mapped: size", fstat(fd, &st) == 0 ? st.st_size : -1, 4 * PAGE + TAIL);
    CHECK_EQ("only mapped: seals", fcntl(fd, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW);
    same_as(fd, 0, PAGE, 6, "only mapped: page 0 (unmapped)");
    same_as(fd, PAGE, PAGE, 5, "only mapped: page 1 (mapped)");
    zeros(fd, 2 * PAGE, PAGE, "only mapped: page 2 (a hole)");
    same_as(fd, 3 * PAGE, PAGE, 7, "only mapped: page 3 (unmapped)");
    same_as(fd, 4 * PAGE, TAIL, 8, "only mapped: the tail (unmapped)");
    if (pwrite(fd, "fd", 2, 2 * PAGE + 10) != 2 || memcmp(map + PAGE + 10, "fd", 2) != 0)
        fail("only mapped: what the object holds, the mapping does not show");
    memcpy(map + 20, "map", 3);
    if (pread(fd, buf, 3, PAGE + 20) != 3 || memcmp(buf, "map", 3) != 0)
        fail("only mapped: what the mapping writes, the object does not hold");
    finish();
}

int main(int argc, char **argv)
{
    static unsigned char buf[3 * PAGE];
    workload_init("memfds", 0);
    if (argc > 1 && strcmp(argv[1], "mapped") == 0)
        only_mapped();
    int part = memfd_create("partly mapped", MFD_ALLOW_SEALING);
    int whole = memfd_create("unmapped", MFD_ALLOW_SEALING);
    if (part < 0 || whole < 0)
        FAIL_ERRNO("memfd_create");
    if (ftruncate(part, 5 * PAGE + TAIL) != 0)
        FAIL_ERRNO("ftruncate");
    unsigned char *map = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, part, 0);
    if (map == MAP_FAILED)
        FAIL_ERRNO("mmap");
    fill(map, PAGE, 1);
    fill(buf, PAGE, 2);
    if (pwrite(part, buf, PAGE, 2 * PAGE) != PAGE)
        FAIL_ERRNO("writing page 2");
    fill(buf, TAIL, 3);
    if (pwrite(part, buf, TAIL, 5 * PAGE) != TAIL)
        FAIL_ERRNO("writing the tail");
    if (fcntl(part, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0)
        FAIL_ERRNO("sealing partly mapped");
    fill(buf, sizeof(buf), 4);
    if (write(whole, buf, sizeof(buf)) != sizeof(buf))
        FAIL_ERRNO("writing unmapped");
    int whole_seals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    if (fcntl(whole, F_ADD_SEALS, whole_seals) != 0)
        FAIL_ERRNO("sealing unmapped");

    int sealed = memfd_create("sealed", MFD_ALLOW_SEALING);
    int future = memfd_create("future", MFD_ALLOW_SEALING);
    if (sealed < 0 || future < 0)
        FAIL_ERRNO("memfd_create");
    fill(buf, 2 * PAGE, 9);
    if (write(sealed, buf, 2 * PAGE) != 2 * PAGE)
        FAIL_ERRNO("writing sealed");
    if (fcntl(sealed, F_ADD_SEALS, F_SEAL_WRITE) != 0)
        FAIL_ERRNO("sealing sealed");
    const unsigned char *sealed_ro = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, sealed, 0);
    if (ftruncate(future, PAGE) != 0)
        FAIL_ERRNO("ftruncate future");
    unsigned char *future_rw = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, future, 0);
    if (sealed_ro == MAP_FAILED || future_rw == MAP_FAILED)
        FAIL_ERRNO("mmap");
    fill(future_rw, PAGE, 10);
    if (fcntl(future, F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0)
        FAIL_ERRNO("sealing future");
    const unsigned char *future_ro = mmap(NULL, PAGE, PROT_READ, MAP_SHARED, future, 0);
    if (future_ro == MAP_FAILED)
        FAIL_ERRNO("mmap");
    ready();
    wait_for_usr1();

    struct stat st;
    CHECK_EQ("partly mapped: size", fstat(part, &st) == 0 ? st.st_size : -1, 5 * PAGE + TAIL);
    CHECK_EQ("partly mapped: seals", fcntl(part, F_GET_SEALS), F_SEAL_SHRINK | F_SEAL_GROW);
    same_as(part, 0, PAGE, 1, "partly mapped: page 0 (mapped)");
    zeros(part, PAGE, PAGE, "partly mapped: page 1 (a hole)");
    same_as(part, 2 * PAGE, PAGE, 2, "partly mapped: page 2 (unmapped)");
    zeros(part, 3 * PAGE, 2 * PAGE, "partly mapped: pages 3 and 4 (holes)");
    same_as(part, 5 * PAGE, TAIL, 3, "partly mapped: the tail (unmapped)");
    if (pwrite(part, "fd", 2, 10) != 2 || memcmp(map + 10, "fd", 2) != 0)
        fail("partly mapped: what the fd writes, the mapping does not show");
    memcpy(map + 20, "map", 3);
    if (pread(part, buf, 3, 20) != 3 || memcmp(buf, "map", 3) != 0)
        fail("partly mapped: what the mapping writes, the fd does not read");
    CHECK_EQ("unmapped: size", fstat(whole, &st) == 0 ? st.st_size : -1, 3 * PAGE);
    CHECK_EQ("unmapped: seals", fcntl(whole, F_GET_SEALS), whole_seals);
    same_as(whole, 0, 3 * PAGE, 4, "unmapped: its 3 pages");
    CHECK_EQ("unmapped: a write is refused", pwrite(whole, "x", 1, 0) < 0 && errno == EPERM, 1);

    CHECK_EQ("sealed: seals", fcntl(sealed, F_GET_SEALS), F_SEAL_WRITE);
    fill(buf, 2 * PAGE, 9);
    if (memcmp(sealed_ro, buf, 2 * PAGE) != 0)
        fail("sealed: the read-only mapping does not show the data");
    sealed_read_only("sealed: the read-only mapping", sealed_ro);
    CHECK_EQ("sealed: a write is refused", pwrite(sealed, "x", 1, 0) < 0 && errno == EPERM, 1);
    CHECK_EQ("future: seals", fcntl(future, F_GET_SEALS), F_SEAL_FUTURE_WRITE);
    fill(buf, PAGE, 10);
    if (memcmp(future_ro, buf, PAGE) != 0)
        fail("future: the read-only mapping does not show the data");
    sealed_read_only("future: the read-only mapping", future_ro);
    char flags[256];
    vm_flags(future_rw, flags, sizeof(flags));
    if (!has_flag(flags, "sh") || !has_flag(flags, "mw"))
        fail("future: the writable mapping has VmFlags %s", flags);
    memcpy(future_rw + 30, "rw", 2);
    if (memcmp(future_ro + 30, "rw", 2) != 0)
        fail("future: what the writable mapping writes, the read-only one does not show");
    CHECK_EQ("future: a write is refused", pwrite(future, "x", 1, 0) < 0 && errno == EPERM, 1);
    finish();
}

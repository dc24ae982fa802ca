/*
 * tls: thread-local storage and the segment bases behind it.
 *
 * x86_64: a __thread array holding a pattern (reached through %fs), the FS
 * base (ARCH_GET_FS), and a GS base set with arch_prctl(ARCH_SET_GS) to a
 * buffer holding a pattern: after restore %gs:0 must read the buffer,
 * ARCH_GET_GS must return it, and the __thread data must be intact.
 *
 * i386: a __thread array (glibc's %gs, GDT entry 12) plus an extra TLS
 * descriptor installed with set_thread_area(entry_number = -1) and loaded
 * into %fs: after restore the selectors must be unchanged, %fs:0 must read
 * the extra buffer, %gs-based __thread data must be intact, and
 * get_thread_area of both entries must equal what it was.
 */
#include "common.h"

#include <sys/syscall.h>

#ifdef __x86_64__
#include <asm/prctl.h>
#else
#include <asm/ldt.h>
#endif

#define NWORDS 16
static __thread uint32_t tls_words[NWORDS];
static uint32_t segbuf[NWORDS] __attribute__((aligned(64)));

static void fill(void)
{
    for (int i = 0; i < NWORDS; i++) {
        tls_words[i] = pattern32(0x7150, (uint32_t)i);
        segbuf[i] = pattern32(0x5e9b, (uint32_t)i);
    }
}

static void check_tls_words(void)
{
    for (int i = 0; i < NWORDS; i++)
        if (tls_words[i] != pattern32(0x7150, (uint32_t)i)) {
            fail("__thread data differs at word %d", i);
            return;
        }
}

#ifdef __x86_64__

static unsigned long fs_base, gs_base;
static uintptr_t tls_addr;

static unsigned long arch_get(int code)
{
    unsigned long v = 0;
    if (syscall(SYS_arch_prctl, code, &v) != 0)
        FAIL_ERRNO("arch_prctl get");
    return v;
}

static uint32_t gs_word(int i)
{
    uint32_t v;
    asm volatile("movl %%gs:(,%1,4), %0" : "=r"(v) : "r"((long)i));
    return v;
}

static void setup(void)
{
    fill();
    if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)segbuf) != 0)
        FAIL_ERRNO("ARCH_SET_GS");
    fs_base = arch_get(ARCH_GET_FS);
    gs_base = arch_get(ARCH_GET_GS);
    tls_addr = (uintptr_t)tls_words;
    CHECK_EQ("ARCH_GET_GS before the wait", gs_base, (uintptr_t)segbuf);
    CHECK_EQ("%gs:0 before the wait", gs_word(0), segbuf[0]);
}

static void check(void)
{
    CHECK_EQ("ARCH_GET_FS", arch_get(ARCH_GET_FS), fs_base);
    CHECK_EQ("ARCH_GET_GS", arch_get(ARCH_GET_GS), gs_base);
    CHECK_EQ("address of the __thread data", (uintptr_t)tls_words, tls_addr);
    check_tls_words();
    for (int i = 0; i < NWORDS; i++)
        if (gs_word(i) != pattern32(0x5e9b, (uint32_t)i)) {
            fail("%%gs:%d reads 0x%x, expected 0x%x", i * 4, gs_word(i),
                 pattern32(0x5e9b, (uint32_t)i));
            break;
        }
}

#else /* i386 */

static struct user_desc glibc_desc, extra_desc;
static unsigned short gs_sel, fs_sel;
static uintptr_t tls_addr;

static unsigned short get_gs(void)
{
    unsigned short v;
    asm volatile("movw %%gs, %0" : "=r"(v));
    return v;
}

static unsigned short get_fs(void)
{
    unsigned short v;
    asm volatile("movw %%fs, %0" : "=r"(v));
    return v;
}

static uint32_t fs_word(int i)
{
    uint32_t v;
    asm volatile("movl %%fs:(,%1,4), %0" : "=r"(v) : "r"(i));
    return v;
}

static int get_area(unsigned entry, struct user_desc *d)
{
    memset(d, 0, sizeof(*d));
    d->entry_number = entry;
    return (int)syscall(SYS_get_thread_area, d);
}

static void setup(void)
{
    fill();
    gs_sel = get_gs();
    if (get_area(gs_sel >> 3, &glibc_desc) != 0)
        FAIL_ERRNO("get_thread_area(glibc's entry)");

    struct user_desc d = {
        .entry_number = (unsigned)-1,
        .base_addr = (unsigned)(uintptr_t)segbuf,
        .limit = 0xfffff,
        .seg_32bit = 1,
        .limit_in_pages = 1,
        .useable = 1,
    };
    if (syscall(SYS_set_thread_area, &d) != 0) {
        FAIL_ERRNO("set_thread_area");
        finish();
    }
    fs_sel = (unsigned short)((d.entry_number << 3) | 3);
    asm volatile("movw %0, %%fs" : : "r"(fs_sel));
    if (get_area(d.entry_number, &extra_desc) != 0)
        FAIL_ERRNO("get_thread_area(extra entry)");
    tls_addr = (uintptr_t)tls_words;
    CHECK_EQ("%fs:0 before the wait", fs_word(0), segbuf[0]);
}

/* The descriptor's bit fields as one number, for messages. */
static unsigned desc_flags(const struct user_desc *d)
{
    return d->seg_32bit | d->contents << 1 | d->read_exec_only << 3 | d->limit_in_pages << 4 |
           d->seg_not_present << 5 | d->useable << 6;
}

static void compare_desc(const char *what, const struct user_desc *was)
{
    struct user_desc now;
    if (get_area(was->entry_number, &now) != 0) {
        fail("get_thread_area(%u) for %s failed: %s", was->entry_number, what, strerror(errno));
        return;
    }
    if (memcmp(&now, was, sizeof(now)) != 0)
        fail("%s (GDT entry %u): base 0x%x limit 0x%x flags 0x%x, was base 0x%x limit 0x%x "
             "flags 0x%x",
             what, was->entry_number, now.base_addr, now.limit, desc_flags(&now), was->base_addr,
             was->limit, desc_flags(was));
}

static void check(void)
{
    CHECK_EQ("%gs selector", get_gs(), gs_sel);
    CHECK_EQ("%fs selector", get_fs(), fs_sel);
    compare_desc("glibc's TLS descriptor", &glibc_desc);
    compare_desc("the extra TLS descriptor", &extra_desc);
    CHECK_EQ("address of the __thread data", (uintptr_t)tls_words, tls_addr);
    check_tls_words();
    for (int i = 0; i < NWORDS; i++)
        if (fs_word(i) != pattern32(0x5e9b, (uint32_t)i)) {
            fail("%%fs:%d reads 0x%x, expected 0x%x", i * 4, fs_word(i),
                 pattern32(0x5e9b, (uint32_t)i));
            break;
        }
}

#endif

int main(void)
{
    workload_init("tls", 0);
    setup();
    if (workload_failures)
        finish();

    ready();
    wait_for_usr1();

    check();
    finish();
}

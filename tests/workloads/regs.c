/*
 * regs: user registers survive a checkpoint exactly.
 *
 * regs_wait() (regs_asm.S) loads known patterns into the general registers
 * (the callee-saved ones and every argument register the syscall leaves
 * alone), the vector registers (ymm0-15 on x86_64 / ymm0-7 on i386 when the
 * CPU has AVX, xmm otherwise), four x87 stack slots with a non-default x87
 * control word, and a non-default MXCSR.  It then waits in a loop of raw
 * pause syscalls ("syscall" or "int $0x80") until the SIGUSR1 handler sets a
 * flag, and stores every register again.  The stack pointer and the segment
 * selectors must also be unchanged.  A checkpoint taken inside that loop must
 * give all of them back.
 */
#include "common.h"
#include "regs.h"

#include <stddef.h>

_Static_assert(offsetof(struct regs_state, sp) == RS_SP, "RS_SP");
_Static_assert(offsetof(struct regs_state, seg) == RS_SEG, "RS_SEG");
_Static_assert(offsetof(struct regs_state, fcw) == RS_FCW, "RS_FCW");
_Static_assert(offsetof(struct regs_state, mxcsr) == RS_MXCSR, "RS_MXCSR");
_Static_assert(offsetof(struct regs_state, x87) == RS_X87, "RS_X87");
_Static_assert(offsetof(struct regs_state, vec) == RS_VEC, "RS_VEC");
_Static_assert(sizeof(struct regs_state) == RS_SIZE, "RS_SIZE");

#ifdef __x86_64__
#define NGPR 12
#define NVEC 16
static const char *const gpr_names[NGPR] = {"rbx", "rbp", "rsi", "rdi", "rdx", "r8",
                                            "r9",  "r10", "r12", "r13", "r14", "r15"};
#else
#define NGPR 6
#define NVEC 8
static const char *const gpr_names[NGPR] = {"ebx", "ebp", "esi", "edi", "edx", "ecx"};
#endif
static const char *const seg_names[6] = {"cs", "ss", "ds", "es", "fs", "gs"};

#define X87_BYTES 10      /* an 80-bit extended value */
#define FCW_PATTERN 0x0e7f  /* all exceptions masked, 53-bit precision, round toward zero */
#define MXCSR_PATTERN 0xff80 /* all exceptions masked, round toward zero, flush to zero */

static struct regs_state in, before, after;

static void make_patterns(void)
{
    for (int i = 0; i < NGPR; i++) {
        uint64_t v = 0x0123456789abcdefULL ^ (0x1111111111111111ULL * (uint64_t)(i + 1));
        in.gpr[i] = sizeof(long) == 8 ? v : (v & 0xffffffffu);
    }
    for (int r = 0; r < NVEC; r++)
        for (int b = 0; b < 32; b++)
            in.vec[r][b] = (unsigned char)(r * 32 + b * 7 + 3);
    const long double x87[4] = {1.0L / 3.0L, -3.14159265358979323846264338327950288L,
                                1.0e300L * 1.0e300L, 0x1.23456789abcdefp-1000L};
    for (int i = 0; i < 4; i++)
        memcpy(in.x87[i], &x87[i], X87_BYTES);
    in.fcw = FCW_PATTERN;
    in.mxcsr = MXCSR_PATTERN;
}

static void check(int use_avx)
{
    for (int i = 0; i < NGPR; i++)
        CHECK_EQ(gpr_names[i], after.gpr[i], in.gpr[i]);
    CHECK_EQ("stack pointer", after.sp, before.sp);
    for (int i = 0; i < 6; i++)
        CHECK_EQ(seg_names[i], after.seg[i], before.seg[i]);

    int vec_bytes = use_avx ? 32 : 16;
    for (int r = 0; r < NVEC; r++) {
        for (int b = 0; b < vec_bytes; b++) {
            if (after.vec[r][b] != in.vec[r][b]) {
                fail("%s%d byte %d: got 0x%02x, expected 0x%02x", use_avx ? "ymm" : "xmm", r, b,
                     after.vec[r][b], in.vec[r][b]);
                break;
            }
        }
    }
    for (int i = 0; i < 4; i++)
        if (memcmp(after.x87[i], in.x87[i], X87_BYTES) != 0)
            fail("x87 st(%d) differs", i);
    CHECK_EQ("x87 control word", after.fcw, in.fcw);
    CHECK_EQ("mxcsr", after.mxcsr, in.mxcsr);
}

int main(void)
{
    workload_init("regs", 0);
    __builtin_cpu_init();
    int use_avx = __builtin_cpu_supports("avx");
    make_patterns();

    /* Nothing between here and the wait touches the registers regs_wait loads. */
    ready();
    regs_wait(&in, &before, &after, &usr1_received, use_avx);

    check(use_avx);
    finish();
}

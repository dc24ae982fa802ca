/*
 * The register snapshot shared by regs.c and regs_asm.S.  Offsets are fixed so
 * that the assembly can use them; regs.c checks them with _Static_assert.
 *
 * gpr slots, x86_64: rbx rbp rsi rdi rdx r8 r9 r10 r12 r13 r14 r15
 * gpr slots, i386:   ebx ebp esi edi edx ecx (low 4 bytes of each slot)
 * seg: cs ss ds es fs gs
 */
#ifndef TORPOR_WORKLOAD_REGS_H
#define TORPOR_WORKLOAD_REGS_H

#define RS_GPR 0     /* 16 slots of 8 bytes */
#define RS_SP 128    /* 8 bytes */
#define RS_SEG 136   /* 6 x 2 bytes */
#define RS_FCW 148   /* x87 control word, 2 bytes */
#define RS_MXCSR 152 /* 4 bytes */
#define RS_X87 160   /* 4 x 16-byte slots holding 80-bit values */
#define RS_VEC 224   /* 16 x 32 bytes: ymm (or xmm in the low 16 bytes) */
#define RS_SIZE 736

#ifndef __ASSEMBLER__
#include <stdint.h>

struct regs_state {
    uint64_t gpr[16];
    uint64_t sp;
    uint16_t seg[6];
    uint16_t fcw;
    uint16_t pad0;
    uint32_t mxcsr;
    uint32_t pad1;
    unsigned char x87[4][16];
    unsigned char vec[16][32];
};

/*
 * Load the registers from *in, record the stack pointer and segment selectors
 * in *before, then loop on the raw pause syscall until *flag is set, and store
 * the registers into *after.  use_avx selects ymm (AVX) over xmm loads.
 */
void regs_wait(const struct regs_state *in, struct regs_state *before, struct regs_state *after,
               volatile int *flag, int use_avx);
#endif

#endif

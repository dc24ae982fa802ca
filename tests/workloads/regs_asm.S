/*
 * regs_wait(): see regs.h.  Everything between loading the registers and
 * storing them again is this code alone: a loop of raw pause syscalls
 * (64-bit "syscall", 32-bit "int $0x80") that only uses registers the
 * syscall instruction itself clobbers (rax/rcx/r11, or eax).
 */
#include "regs.h"

#define NR_PAUSE_64 34
#define NR_PAUSE_32 29

        .text
        .globl  regs_wait
        .type   regs_wait, @function

#ifdef __x86_64__

/* Stack frame after the prologue: our locals, then 6 saved registers. */
#define L_AFTER 0
#define L_FLAG 8
#define L_AVX 16
#define L_MXCSR 24
#define L_FCW 28
#define L_SIZE 40

regs_wait:      /* rdi = in, rsi = before, rdx = after, rcx = flag, r8d = use_avx */
        push    %rbx
        push    %rbp
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        sub     $L_SIZE, %rsp
        mov     %rdx, L_AFTER(%rsp)
        mov     %rcx, L_FLAG(%rsp)
        mov     %r8, L_AVX(%rsp)
        stmxcsr L_MXCSR(%rsp)
        fnstcw  L_FCW(%rsp)

        test    %r8d, %r8d
        jz      1f
        vmovdqu RS_VEC+0*32(%rdi), %ymm0
        vmovdqu RS_VEC+1*32(%rdi), %ymm1
        vmovdqu RS_VEC+2*32(%rdi), %ymm2
        vmovdqu RS_VEC+3*32(%rdi), %ymm3
        vmovdqu RS_VEC+4*32(%rdi), %ymm4
        vmovdqu RS_VEC+5*32(%rdi), %ymm5
        vmovdqu RS_VEC+6*32(%rdi), %ymm6
        vmovdqu RS_VEC+7*32(%rdi), %ymm7
        vmovdqu RS_VEC+8*32(%rdi), %ymm8
        vmovdqu RS_VEC+9*32(%rdi), %ymm9
        vmovdqu RS_VEC+10*32(%rdi), %ymm10
        vmovdqu RS_VEC+11*32(%rdi), %ymm11
        vmovdqu RS_VEC+12*32(%rdi), %ymm12
        vmovdqu RS_VEC+13*32(%rdi), %ymm13
        vmovdqu RS_VEC+14*32(%rdi), %ymm14
        vmovdqu RS_VEC+15*32(%rdi), %ymm15
        jmp     2f
1:      movdqu  RS_VEC+0*32(%rdi), %xmm0
        movdqu  RS_VEC+1*32(%rdi), %xmm1
        movdqu  RS_VEC+2*32(%rdi), %xmm2
        movdqu  RS_VEC+3*32(%rdi), %xmm3
        movdqu  RS_VEC+4*32(%rdi), %xmm4
        movdqu  RS_VEC+5*32(%rdi), %xmm5
        movdqu  RS_VEC+6*32(%rdi), %xmm6
        movdqu  RS_VEC+7*32(%rdi), %xmm7
        movdqu  RS_VEC+8*32(%rdi), %xmm8
        movdqu  RS_VEC+9*32(%rdi), %xmm9
        movdqu  RS_VEC+10*32(%rdi), %xmm10
        movdqu  RS_VEC+11*32(%rdi), %xmm11
        movdqu  RS_VEC+12*32(%rdi), %xmm12
        movdqu  RS_VEC+13*32(%rdi), %xmm13
        movdqu  RS_VEC+14*32(%rdi), %xmm14
        movdqu  RS_VEC+15*32(%rdi), %xmm15
2:
        fninit
        fldcw   RS_FCW(%rdi)
        fldt    RS_X87+3*16(%rdi)       /* pushed first: ends up in st(3) */
        fldt    RS_X87+2*16(%rdi)
        fldt    RS_X87+1*16(%rdi)
        fldt    RS_X87+0*16(%rdi)       /* st(0) */
        ldmxcsr RS_MXCSR(%rdi)

        mov     %rsp, RS_SP(%rsi)
        movw    %cs, RS_SEG+0(%rsi)
        movw    %ss, RS_SEG+2(%rsi)
        movw    %ds, RS_SEG+4(%rsi)
        movw    %es, RS_SEG+6(%rsi)
        movw    %fs, RS_SEG+8(%rsi)
        movw    %gs, RS_SEG+10(%rsi)

        mov     RS_GPR+0*8(%rdi), %rbx
        mov     RS_GPR+1*8(%rdi), %rbp
        mov     RS_GPR+2*8(%rdi), %rsi
        mov     RS_GPR+4*8(%rdi), %rdx
        mov     RS_GPR+5*8(%rdi), %r8
        mov     RS_GPR+6*8(%rdi), %r9
        mov     RS_GPR+7*8(%rdi), %r10
        mov     RS_GPR+8*8(%rdi), %r12
        mov     RS_GPR+9*8(%rdi), %r13
        mov     RS_GPR+10*8(%rdi), %r14
        mov     RS_GPR+11*8(%rdi), %r15
        mov     RS_GPR+3*8(%rdi), %rdi  /* last: rdi held the pointer */

.Lwait64:
        mov     $NR_PAUSE_64, %eax
        syscall
        mov     L_FLAG(%rsp), %rcx
        cmpl    $0, (%rcx)
        je      .Lwait64

        mov     L_AFTER(%rsp), %rax
        mov     %rbx, RS_GPR+0*8(%rax)
        mov     %rbp, RS_GPR+1*8(%rax)
        mov     %rsi, RS_GPR+2*8(%rax)
        mov     %rdi, RS_GPR+3*8(%rax)
        mov     %rdx, RS_GPR+4*8(%rax)
        mov     %r8, RS_GPR+5*8(%rax)
        mov     %r9, RS_GPR+6*8(%rax)
        mov     %r10, RS_GPR+7*8(%rax)
        mov     %r12, RS_GPR+8*8(%rax)
        mov     %r13, RS_GPR+9*8(%rax)
        mov     %r14, RS_GPR+10*8(%rax)
        mov     %r15, RS_GPR+11*8(%rax)
        mov     %rsp, RS_SP(%rax)
        movw    %cs, RS_SEG+0(%rax)
        movw    %ss, RS_SEG+2(%rax)
        movw    %ds, RS_SEG+4(%rax)
        movw    %es, RS_SEG+6(%rax)
        movw    %fs, RS_SEG+8(%rax)
        movw    %gs, RS_SEG+10(%rax)

        cmpl    $0, L_AVX(%rsp)
        je      3f
        vmovdqu %ymm0, RS_VEC+0*32(%rax)
        vmovdqu %ymm1, RS_VEC+1*32(%rax)
        vmovdqu %ymm2, RS_VEC+2*32(%rax)
        vmovdqu %ymm3, RS_VEC+3*32(%rax)
        vmovdqu %ymm4, RS_VEC+4*32(%rax)
        vmovdqu %ymm5, RS_VEC+5*32(%rax)
        vmovdqu %ymm6, RS_VEC+6*32(%rax)
        vmovdqu %ymm7, RS_VEC+7*32(%rax)
        vmovdqu %ymm8, RS_VEC+8*32(%rax)
        vmovdqu %ymm9, RS_VEC+9*32(%rax)
        vmovdqu %ymm10, RS_VEC+10*32(%rax)
        vmovdqu %ymm11, RS_VEC+11*32(%rax)
        vmovdqu %ymm12, RS_VEC+12*32(%rax)
        vmovdqu %ymm13, RS_VEC+13*32(%rax)
        vmovdqu %ymm14, RS_VEC+14*32(%rax)
        vmovdqu %ymm15, RS_VEC+15*32(%rax)
        vzeroupper
        jmp     4f
3:      movdqu  %xmm0, RS_VEC+0*32(%rax)
        movdqu  %xmm1, RS_VEC+1*32(%rax)
        movdqu  %xmm2, RS_VEC+2*32(%rax)
        movdqu  %xmm3, RS_VEC+3*32(%rax)
        movdqu  %xmm4, RS_VEC+4*32(%rax)
        movdqu  %xmm5, RS_VEC+5*32(%rax)
        movdqu  %xmm6, RS_VEC+6*32(%rax)
        movdqu  %xmm7, RS_VEC+7*32(%rax)
        movdqu  %xmm8, RS_VEC+8*32(%rax)
        movdqu  %xmm9, RS_VEC+9*32(%rax)
        movdqu  %xmm10, RS_VEC+10*32(%rax)
        movdqu  %xmm11, RS_VEC+11*32(%rax)
        movdqu  %xmm12, RS_VEC+12*32(%rax)
        movdqu  %xmm13, RS_VEC+13*32(%rax)
        movdqu  %xmm14, RS_VEC+14*32(%rax)
        movdqu  %xmm15, RS_VEC+15*32(%rax)
4:
        fstpt   RS_X87+0*16(%rax)
        fstpt   RS_X87+1*16(%rax)
        fstpt   RS_X87+2*16(%rax)
        fstpt   RS_X87+3*16(%rax)
        fnstcw  RS_FCW(%rax)
        stmxcsr RS_MXCSR(%rax)

        /* The control words are callee-saved: give the caller its own back. */
        ldmxcsr L_MXCSR(%rsp)
        fldcw   L_FCW(%rsp)
        add     $L_SIZE, %rsp
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbp
        pop     %rbx
        ret

#else /* i386 */

/* Locals at 0(%esp); 4 saved registers and the return address above them. */
#define L_MXCSR 0
#define L_FCW 4
#define L_SIZE 16
#define ARG(n) (L_SIZE + 4 * 4 + 4 + 4 * (n))(%esp)
#define A_IN ARG(0)
#define A_BEFORE ARG(1)
#define A_AFTER ARG(2)
#define A_FLAG ARG(3)
#define A_AVX ARG(4)

regs_wait:
        push    %ebp
        push    %ebx
        push    %esi
        push    %edi
        sub     $L_SIZE, %esp
        stmxcsr L_MXCSR(%esp)
        fnstcw  L_FCW(%esp)
        mov     A_IN, %eax

        cmpl    $0, A_AVX
        je      1f
        vmovdqu RS_VEC+0*32(%eax), %ymm0
        vmovdqu RS_VEC+1*32(%eax), %ymm1
        vmovdqu RS_VEC+2*32(%eax), %ymm2
        vmovdqu RS_VEC+3*32(%eax), %ymm3
        vmovdqu RS_VEC+4*32(%eax), %ymm4
        vmovdqu RS_VEC+5*32(%eax), %ymm5
        vmovdqu RS_VEC+6*32(%eax), %ymm6
        vmovdqu RS_VEC+7*32(%eax), %ymm7
        jmp     2f
1:      movdqu  RS_VEC+0*32(%eax), %xmm0
        movdqu  RS_VEC+1*32(%eax), %xmm1
        movdqu  RS_VEC+2*32(%eax), %xmm2
        movdqu  RS_VEC+3*32(%eax), %xmm3
        movdqu  RS_VEC+4*32(%eax), %xmm4
        movdqu  RS_VEC+5*32(%eax), %xmm5
        movdqu  RS_VEC+6*32(%eax), %xmm6
        movdqu  RS_VEC+7*32(%eax), %xmm7
2:
        fninit
        fldcw   RS_FCW(%eax)
        fldt    RS_X87+3*16(%eax)
        fldt    RS_X87+2*16(%eax)
        fldt    RS_X87+1*16(%eax)
        fldt    RS_X87+0*16(%eax)
        ldmxcsr RS_MXCSR(%eax)

        mov     A_BEFORE, %ecx
        mov     %esp, RS_SP(%ecx)
        movw    %cs, RS_SEG+0(%ecx)
        movw    %ss, RS_SEG+2(%ecx)
        movw    %ds, RS_SEG+4(%ecx)
        movw    %es, RS_SEG+6(%ecx)
        movw    %fs, RS_SEG+8(%ecx)
        movw    %gs, RS_SEG+10(%ecx)

        mov     RS_GPR+0*8(%eax), %ebx
        mov     RS_GPR+1*8(%eax), %ebp
        mov     RS_GPR+2*8(%eax), %esi
        mov     RS_GPR+3*8(%eax), %edi
        mov     RS_GPR+4*8(%eax), %edx
        mov     RS_GPR+5*8(%eax), %ecx

.Lwait32:
        mov     $NR_PAUSE_32, %eax
        int     $0x80
        mov     A_FLAG, %eax
        cmpl    $0, (%eax)
        je      .Lwait32

        mov     A_AFTER, %eax
        mov     %ebx, RS_GPR+0*8(%eax)
        mov     %ebp, RS_GPR+1*8(%eax)
        mov     %esi, RS_GPR+2*8(%eax)
        mov     %edi, RS_GPR+3*8(%eax)
        mov     %edx, RS_GPR+4*8(%eax)
        mov     %ecx, RS_GPR+5*8(%eax)
        mov     %esp, RS_SP(%eax)
        movw    %cs, RS_SEG+0(%eax)
        movw    %ss, RS_SEG+2(%eax)
        movw    %ds, RS_SEG+4(%eax)
        movw    %es, RS_SEG+6(%eax)
        movw    %fs, RS_SEG+8(%eax)
        movw    %gs, RS_SEG+10(%eax)

        cmpl    $0, A_AVX
        je      3f
        vmovdqu %ymm0, RS_VEC+0*32(%eax)
        vmovdqu %ymm1, RS_VEC+1*32(%eax)
        vmovdqu %ymm2, RS_VEC+2*32(%eax)
        vmovdqu %ymm3, RS_VEC+3*32(%eax)
        vmovdqu %ymm4, RS_VEC+4*32(%eax)
        vmovdqu %ymm5, RS_VEC+5*32(%eax)
        vmovdqu %ymm6, RS_VEC+6*32(%eax)
        vmovdqu %ymm7, RS_VEC+7*32(%eax)
        vzeroupper
        jmp     4f
3:      movdqu  %xmm0, RS_VEC+0*32(%eax)
        movdqu  %xmm1, RS_VEC+1*32(%eax)
        movdqu  %xmm2, RS_VEC+2*32(%eax)
        movdqu  %xmm3, RS_VEC+3*32(%eax)
        movdqu  %xmm4, RS_VEC+4*32(%eax)
        movdqu  %xmm5, RS_VEC+5*32(%eax)
        movdqu  %xmm6, RS_VEC+6*32(%eax)
        movdqu  %xmm7, RS_VEC+7*32(%eax)
4:
        fstpt   RS_X87+0*16(%eax)
        fstpt   RS_X87+1*16(%eax)
        fstpt   RS_X87+2*16(%eax)
        fstpt   RS_X87+3*16(%eax)
        fnstcw  RS_FCW(%eax)
        stmxcsr RS_MXCSR(%eax)

        ldmxcsr L_MXCSR(%esp)
        fldcw   L_FCW(%esp)
        add     $L_SIZE, %esp
        pop     %edi
        pop     %esi
        pop     %ebx
        pop     %ebp
        ret

#endif

        .size   regs_wait, . - regs_wait
        .section .note.GNU-stack, "", @progbits

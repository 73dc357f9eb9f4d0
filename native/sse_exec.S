/*
 * vmmapi_sse_exec(ctx): run one guest SSE/MMX instruction natively with the guest's general
 * registers and x87/SSE state loaded (the instruction fallback's native path, see
 * native/sse_exec.cc and src/emulate/native-sse.ts).
 *
 * ctx (uint64 slots, struct kvm_regs order): 0 rax, 1 rbx, 2 rcx, 3 rdx, 4 rsi, 5 rdi,
 * 6 rsp (ignored: the host stack stays), 7 rbp, 8-15 r8-r15, 16 rip (ignored), 17 rflags
 * (arithmetic flags only), 18 target (the code page: instruction + ret), 19 guest FXSAVE
 * image, 20 host FXSAVE area.
 */
        .text
        .globl  vmmapi_sse_exec
        .hidden vmmapi_sse_exec
        .type   vmmapi_sse_exec, @function
vmmapi_sse_exec:
        push    %rbp
        push    %rbx
        push    %r12
        push    %r13
        push    %r14
        push    %r15
        sub     $8, %rsp
        mov     160(%rdi), %rax
        fxsave  (%rax)                 /* host x87/SSE state */
        mov     152(%rdi), %rax
        fxrstor64 (%rax)               /* guest x87/SSE state (64-bit FIP/FDP) */
        push    %rdi                   /* [rsp+8] = ctx after the next push */
        pushq   144(%rdi)              /* [rsp] = target */
        pushq   136(%rdi)
        popfq
        mov     0(%rdi), %rax
        mov     8(%rdi), %rbx
        mov     16(%rdi), %rcx
        mov     24(%rdi), %rdx
        mov     32(%rdi), %rsi
        mov     56(%rdi), %rbp
        mov     64(%rdi), %r8
        mov     72(%rdi), %r9
        mov     80(%rdi), %r10
        mov     88(%rdi), %r11
        mov     96(%rdi), %r12
        mov     104(%rdi), %r13
        mov     112(%rdi), %r14
        mov     120(%rdi), %r15
        mov     40(%rdi), %rdi
        call    *(%rsp)
        xchg    %rdi, 8(%rsp)          /* rdi = ctx; the slot keeps the guest rdi */
        mov     %rax, 0(%rdi)
        mov     %rbx, 8(%rdi)
        mov     %rcx, 16(%rdi)
        mov     %rdx, 24(%rdi)
        mov     %rsi, 32(%rdi)
        mov     %rbp, 56(%rdi)
        mov     %r8, 64(%rdi)
        mov     %r9, 72(%rdi)
        mov     %r10, 80(%rdi)
        mov     %r11, 88(%rdi)
        mov     %r12, 96(%rdi)
        mov     %r13, 104(%rdi)
        mov     %r14, 112(%rdi)
        mov     %r15, 120(%rdi)
        pushfq
        popq    136(%rdi)
        mov     8(%rsp), %rax
        mov     %rax, 40(%rdi)
        mov     152(%rdi), %rax
        fxsave64 (%rax)                /* guest state after the instruction */
        mov     160(%rdi), %rax
        fxrstor (%rax)                 /* host state back */
        add     $24, %rsp
        pop     %r15
        pop     %r14
        pop     %r13
        pop     %r12
        pop     %rbx
        pop     %rbp
        ret
        .size   vmmapi_sse_exec, .-vmmapi_sse_exec
        .section .note.GNU-stack,"",@progbits

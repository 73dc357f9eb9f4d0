# long-syscall: a 64-bit `syscall` from CPL 3 must arrive at MSR_LSTAR at CPL 0.
# Entered in long mode at 0x2000 (CPL 0, host-built identity tables). It builds its own
# page tables (0-2 MiB supervisor, 2-4 MiB user), GDT, TSS and IDT, enables SYSCALL, copies
# a user program to 0x200000 and IRETs to it. The user program makes syscall 1, then 2.
# Reports (32-bit OUTs):
#   0x80 ← ready (IDT in place; then 1000 more, a delay loop between, so the VMM can look)
#   0x81 ← RAX of each syscall, from the LSTAR handler      0x82 ← its CS (0x10 at CPL 0)
#   0x83 ← 0x600d after syscall 2 (the user program came back from sysret in between)
#   0x90 ← error code of a #PF, 0x91 ← its RIP, 0x92 ← its CS   (then hlt)
#   0x9d ← a #GP's RIP, 0x9e ← vector of any other exception     (then hlt)
        .code64
        .globl _start
        .set PML4, 0x10000
        .set PDPT, 0x11000
        .set PD,   0x12000
        .set IDT,  0x13000
        .set KSTACK, 0x9000
        .set USER, 0x200000
_start:
        mov     $KSTACK, %esp
        # page tables: PD[0] 0-2 MiB supervisor, PD[1] 2-4 MiB user (2 MiB pages)
        mov     $PML4, %edi
        mov     $(3 * 4096 / 8), %ecx
        xor     %eax, %eax
        rep stosq
        movq    $(PDPT | 7), PML4
        movq    $(PD | 7), PDPT
        movq    $0x83, PD
        movq    $(USER | 0x87), PD + 8
        mov     $PML4, %eax
        mov     %rax, %cr3
        # GDT, TSS (RSP0 = KSTACK) and segment reloads
        lea     tss(%rip), %rax
        mov     %ax, gdt_tss + 2
        shr     $16, %rax
        mov     %al, gdt_tss + 4
        mov     %ah, gdt_tss + 7
        shr     $16, %rax
        mov     %eax, gdt_tss + 8
        lgdt    gdtr(%rip)
        pushq   $0x10
        lea     1f(%rip), %rax
        pushq   %rax
        lretq
1:      mov     $0x18, %eax
        mov     %eax, %ds
        mov     %eax, %es
        mov     %eax, %ss
        mov     $0x38, %eax
        ltr     %ax
        mov     $KSTACK, %esp
        # IDT: every vector to `other`, #GP to `gp`, #PF to `pf`
        mov     $IDT, %edi
        xor     %ecx, %ecx
2:      lea     other(%rip), %rax
        cmp     $13, %ecx
        jne     3f
        lea     gp(%rip), %rax
3:      cmp     $14, %ecx
        jne     4f
        lea     pf(%rip), %rax
4:      mov     %ax, (%rdi)
        movw    $0x10, 2(%rdi)
        movw    $0x8e00, 4(%rdi)
        shr     $16, %rax
        mov     %ax, 6(%rdi)
        movq    $0, 8(%rdi)
        add     $16, %rdi
        inc     %ecx
        cmp     $32, %ecx
        jne     2b
        lidt    idtr(%rip)
        # SYSCALL: EFER.SCE, STAR (kernel CS 0x10, user base 0x20 → CS 0x33, SS 0x2b), LSTAR, SFMASK
        mov     $0xc0000080, %ecx
        rdmsr
        or      $1, %eax
        wrmsr
        mov     $0xc0000081, %ecx
        xor     %eax, %eax
        mov     $0x00200010, %edx
        wrmsr
        mov     $0xc0000082, %ecx
        lea     lstar(%rip), %rax
        xor     %edx, %edx
        wrmsr
        mov     $0xc0000084, %ecx
        mov     $0x47700, %eax
        xor     %edx, %edx
        wrmsr
        # the user program
        lea     user(%rip), %rsi
        mov     $USER, %edi
        mov     $(user_end - user), %ecx
        rep movsb
        # ready; give the VMM time (and exits: ~0.3 s, 1000 of them) to look at the IDT
        mov     $0x80, %dx
        out     %eax, %dx
        mov     $1000, %ebx
5:      mov     $100, %ecx
6:      dec     %ecx
        jnz     6b
        out     %eax, %dx
        dec     %ebx
        jnz     5b
        # to CPL 3
        pushq   $0x2b
        pushq   $(USER + 0x1ff000)
        pushq   $0x2
        pushq   $0x33
        pushq   $USER
        iretq

        # the SYSCALL entry, CPL 0
lstar:  mov     $0x81, %dx
        out     %eax, %dx
        mov     %eax, %ebx
        mov     %cs, %eax
        mov     $0x82, %dx
        out     %eax, %dx
        cmp     $2, %ebx
        je      done
        sysretq
done:   mov     $0x600d, %eax
        mov     $0x83, %dx
        out     %eax, %dx
        jmp     halt

pf:     endbr64
        mov     $0x90, %dx
        mov     (%rsp), %eax
        out     %eax, %dx
        mov     $0x91, %dx
        mov     8(%rsp), %eax
        out     %eax, %dx
        mov     $0x92, %dx
        mov     16(%rsp), %eax
        out     %eax, %dx
        jmp     halt
gp:     mov     $0x9d, %dx
        mov     8(%rsp), %eax
        out     %eax, %dx
        jmp     halt
other:  mov     $0x9e, %dx
        mov     $0xff, %eax
        out     %eax, %dx
halt:   cli
        hlt
        jmp     halt

        # position-independent user program, copied to USER
user:   mov     $1, %eax
        syscall
        mov     $2, %eax
        syscall
7:      jmp     7b
user_end:

        .balign 16
gdt:    .quad   0
        .quad   0
        .quad   0x00af9a000000ffff      # 0x10 kernel code64
        .quad   0x00cf92000000ffff      # 0x18 kernel data
        .quad   0x00cffa000000ffff      # 0x20 user code32
        .quad   0x00cff2000000ffff      # 0x28 user data
        .quad   0x00affa000000ffff      # 0x30 user code64
gdt_tss:
        .quad   0x0000890000000067      # 0x38 TSS (base filled in)
        .quad   0
gdt_end:
gdtr:   .word   gdt_end - gdt - 1
        .quad   gdt
idtr:   .word   32 * 16 - 1
        .quad   IDT
        .balign 16
tss:    .long   0
        .quad   KSTACK                  # RSP0
        .fill   88, 1, 0

# cpl0-sieve: a Multiboot (v1) kernel that computes in ring 0, 64-bit long mode: the CPL0
# compute benchmark of issue 15 (bench/engine.ts), runnable by vmmapi and by QEMU alike.
# @link 0x100000
# @format elf32
# @arch 32
#
# Entered in 32-bit protected mode (paging off), it identity-maps the first GiB with 2 MiB
# pages, enables long mode and runs, PASSES times, a sieve of Eratosthenes over the odd
# numbers below 2^17 in a 64 KiB byte table (clear with 64-bit stores, mark composites,
# count primes): 743,769 instructions a pass, integer arithmetic and byte/qword
# memory traffic. PASSES is the decimal number after the first '=' of the Multiboot
# command line, `passes=N` (default 1; 0: set-up only). It then prints "cpl0-sieve: primes 0x........ passes
# 0x........" on COM1, writes the prime count of the last pass (12251 for 2^17, 0 if no
# pass ran) to port 0x502 with a 32-bit OUT, and writes 0 to the isa-debug-exit port 0x501
# (VMM status 1).
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003           # page-align modules, memory information
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0x501
        .set RESULT_PORT, 0x502
        .set LIMIT, 0x20000                 # sieve the numbers below 2^17
        .set TABLE_BYTES, LIMIT / 2         # one byte per odd number

        .code32
        .text
        .globl _start
        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        cli
        cld
        mov     $stack_top, %esp
        mov     $1, %edi                    # passes
        cmp     $0x2badb002, %eax
        jne     3f
        testl   $4, (%ebx)                  # multiboot_info.flags: cmdline valid
        jz      3f
        mov     16(%ebx), %esi
1:      movzbl  (%esi), %eax                # skip past the first '=' (QEMU puts the
        inc     %esi                        # kernel's path before the arguments)
        test    %al, %al
        jz      3f
        cmp     $'=', %al
        jne     1b
2:      xor     %edi, %edi                  # accumulate the digits
4:      movzbl  (%esi), %eax
        sub     $'0', %al
        cmp     $9, %al
        ja      3f
        imul    $10, %edi, %edi
        add     %eax, %edi
        inc     %esi
        jmp     4b
3:      mov     %edi, passes

        # page tables: PML4[0] -> PDPT, PDPT[0] -> PD, PD[i] = i * 2 MiB (present, writable, PS)
        mov     $pml4, %edi
        xor     %eax, %eax
        mov     $(3 * 4096 / 4), %ecx
        rep stosl
        movl    $(pdpt + 3), pml4
        movl    $(pd + 3), pdpt
        mov     $pd, %edi
        mov     $0x83, %eax
        mov     $512, %ecx
5:      mov     %eax, (%edi)
        add     $0x200000, %eax
        add     $8, %edi
        loop    5b

        lgdt    gdt_desc
        mov     %cr4, %eax
        or      $0x20, %eax                 # PAE
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xc0000080, %ecx           # EFER.LME
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000001, %eax           # PG | PE
        mov     %eax, %cr0
        ljmp    $0x08, $long_mode

        .code64
long_mode:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     $stack_top, %esp            # zero-extends into %rsp
        xor     %r12d, %r12d                # primes of the last pass
        mov     passes(%rip), %r13d
        test    %r13d, %r13d
        jz      report
pass:
        # every odd number starts as a prime candidate: fill the table with 0x01 bytes
        lea     table(%rip), %rdi
        mov     $0x0101010101010101, %rax
        mov     $(TABLE_BYTES / 8), %ecx
6:      mov     %rax, (%rdi)
        add     $8, %rdi
        dec     %ecx
        jnz     6b
        # for each odd p with p*p < LIMIT still marked: clear p*p, p*p + 2p, ...
        lea     table(%rip), %rsi
        mov     $3, %ebx                    # p
7:      mov     %ebx, %eax
        imul    %eax, %eax                  # p*p
        cmp     $LIMIT, %eax
        jae     9f
        mov     %ebx, %edx
        shr     $1, %edx
        cmpb    $0, (%rsi,%rdx)
        je      8f
        shr     $1, %eax                    # index of p*p
        # the index step is p (2p in numbers)
10:     movb    $0, (%rsi,%rax)
        add     %ebx, %eax
        cmp     $TABLE_BYTES, %eax
        jb      10b
8:      add     $2, %ebx
        jmp     7b
9:      # count: index 0 stands for 1 (not a prime) and 2 is the even prime: they cancel
        xor     %eax, %eax
        xor     %ecx, %ecx
11:     movzbl  (%rsi,%rcx), %edx
        add     %edx, %eax
        inc     %ecx
        cmp     $TABLE_BYTES, %ecx
        jb      11b
        mov     %eax, %r12d
        dec     %r13d
        jnz     pass

report:
        mov     $msg_primes, %esi
        call    puts
        mov     %r12d, %eax
        call    puthex
        mov     $msg_passes, %esi
        call    puts
        mov     passes(%rip), %eax
        call    puthex
        mov     $msg_nl, %esi
        call    puts
        mov     %r12d, %eax
        mov     $RESULT_PORT, %dx
        out     %eax, %dx
        xor     %eax, %eax
        mov     $DEBUG_EXIT, %dx
        out     %eax, %dx
12:     cli
        hlt
        jmp     12b

        .include "com1.inc"

        .data
        .align 8
gdt:    .quad   0
        .quad   0x00af9b000000ffff          # 0x08: 64-bit code
        .quad   0x00cf93000000ffff          # 0x10: data
gdt_desc:
        .word   gdt_desc - gdt - 1
        .long   gdt
passes: .long   0
msg_primes: .asciz "cpl0-sieve: primes "
msg_passes: .asciz " passes "
msg_nl: .asciz "\n"

        .bss
        .align 4096
pml4:   .space  4096
pdpt:   .space  4096
pd:     .space  4096
table:  .space  TABLE_BYTES
        .align 16
        .space  8192
stack_top:

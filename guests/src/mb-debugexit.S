# mb-debugexit: a Multiboot (v1) kernel that ends the way test harnesses do.
# @link 0x100000
# @format elf32
# @arch 32
#
# It prints "mb-debugexit cmdline=<command line>" on COM1, takes the first decimal digit of
# its command line as the result (0 if there is none, or no command line), writes the result
# to the isa-debug-exit port at 0xf4 with a 32-bit OUT (QEMU's `-device
# isa-debug-exit,iobase=0xf4,iosize=4`), then halts with interrupts enabled. The VMM's exit
# status is (result << 1) | 1 if it has a debug-exit device at 0xf4; otherwise the guest
# halts forever.
        .code32
        .text
        .globl _start
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003           # page-align modules, memory information
        .set COM1, 0x3f8
        .set TEST_EXIT, 0xf4

        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        mov     $stack_top, %esp
        xor     %ecx, %ecx                  # result
        cmp     $0x2badb002, %eax
        jne     report
        testl   $4, (%ebx)                  # multiboot_info.flags: cmdline valid
        jz      report
        mov     16(%ebx), %edi              # cmdline
        mov     $msg, %esi
        call    puts
        mov     %edi, %esi
        call    puts
        mov     $nl, %esi
        call    puts
1:      movzbl  (%edi), %eax                # the first decimal digit
        test    %al, %al
        jz      report
        inc     %edi
        sub     $'0', %al
        cmp     $9, %al
        ja      1b
        mov     %eax, %ecx
report:
        mov     %ecx, %eax
        mov     $TEST_EXIT, %dx
        out     %eax, %dx
1:      sti
        hlt
        jmp     1b

        .include "com1.inc"

msg:    .asciz "mb-debugexit cmdline="
nl:     .asciz "\n"

        .bss
        .align 16
        .space  1024
stack_top:

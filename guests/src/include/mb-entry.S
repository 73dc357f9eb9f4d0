# mb-entry.S: the default entry stub of the C guest fixtures (guests/src/NAME.c; see guest.h).
#
# The Multiboot (v1) header goes in its own section, which guest.ld puts first in the image
# (the header must lie in the first 8 KiB of the file). A Multiboot loader enters _start in
# 32-bit protected mode, paging off, with EAX = 0x2BADB002 and EBX = the multiboot_info
# address. The stub clears IF and DF, sets up a 16 KiB stack in .bss, calls
#     int main(u32 magic, const struct multiboot_info *info)
# and writes its return value to the isa-debug-exit port 0x501 (32-bit OUT): the VMM's exit
# status is (value << 1) | 1. If nothing listens there it halts for good.
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003           # page-align modules, memory information
        .set DEBUG_EXIT, 0x501
        .set STACK_SIZE, 16384

        .section .multiboot, "a"
        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

        .code32
        .text
        .globl _start
_start:
        cli
        cld
        mov     $stack_top, %esp
        xor     %ebp, %ebp
        push    %ebx                        # main's second argument: multiboot_info
        push    %eax                        # first: the loader's magic
        call    main
        mov     $DEBUG_EXIT, %dx
        out     %eax, %dx
1:      cli
        hlt
        jmp     1b

        .bss
        .align 16
stack_bottom:
        .space  STACK_SIZE
stack_top:

        .section .note.GNU-stack, "", @progbits

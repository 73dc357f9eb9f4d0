# mb-low: a Multiboot (v1) kernel with one segment over [0x8000, 0xb86c), where loaders
# that put the multiboot info at 0x9000 cannot.
# @link 0x8000
# @format elf32
# @arch 32
# @ldflags -n --no-warn-rwx-segments
#
# Linked with `ld -n`: one PT_LOAD segment, from 0x8000 (no ELF headers loaded) through its
# bss. It checks the loader's magic; that the multiboot_info, its command line, memory map
# and module list all lie outside the segment; and that the word the image holds at 0x9000
# is intact. Then it prints "mb-low cmdline=<command line>" on COM1 and exits through the
# isa-debug-exit port 0x501 with value 0x10 (status 0x21 = 33). A failed check prints
# "mb-low: check failed" and exits with value 0 (status 1).
        .code32
        .text
        .globl _start
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003           # page-align modules, memory information
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0x501

seg_start:
        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        mov     $stack_top, %esp
        cmp     $0x2badb002, %eax
        jne     fail
        mov     %ebx, %eax                  # the multiboot_info itself
        call    outside
        jc      fail
        mov     (%ebx), %ecx                # flags: cmdline, mods and mmap must be valid
        and     $0x4c, %ecx
        cmp     $0x4c, %ecx
        jne     fail
        mov     16(%ebx), %eax              # cmdline
        call    outside
        jc      fail
        mov     24(%ebx), %eax              # mods_addr
        call    outside
        jc      fail
        mov     48(%ebx), %eax              # mmap_addr
        call    outside
        jc      fail
        cmpl    $0x5a5aa5a5, sentinel       # the image's own bytes at 0x9000
        jne     fail
        mov     $msg, %esi
        call    puts
        mov     16(%ebx), %esi
        call    puts
        mov     $nl, %esi
        call    puts
        mov     $0x10, %eax
        jmp     exit
fail:
        mov     $msg_fail, %esi
        call    puts
        xor     %eax, %eax
exit:
        mov     $DEBUG_EXIT, %dx
        out     %eax, %dx
1:      cli
        hlt
        jmp     1b

# CF set if %eax lies inside the segment [seg_start, seg_end).
outside:
        cmp     $seg_start, %eax
        jb      1f
        cmp     $seg_end, %eax
        jae     1f
        stc
        ret
1:      clc
        ret

        .include "com1.inc"

msg:      .asciz "mb-low cmdline="
nl:       .asciz "\n"
msg_fail: .asciz "mb-low: check failed\n"

        .org    0x1000                      # 0x9000
sentinel:
        .long   0x5a5aa5a5

        .bss
        .align  16
        .space  0x1800
stack_top:
        .space  0x5c
seg_end:

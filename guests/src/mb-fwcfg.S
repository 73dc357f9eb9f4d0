# mb-fwcfg: a Multiboot (v1) kernel that reports the machine the platform built.
# @link 0x100000
# @format elf32
# @arch 32
#
# Entered by a Multiboot loader in 32-bit protected mode (EAX = 0x2BADB002, EBX = the
# multiboot_info address). It checks the loader's magic and that the info carries memory
# sizes, checks the fw_cfg signature ("QEMU", item 0x0000), then reads the CPU count
# (item 0x0005, u16) and the RAM size (item 0x0003, u64) from fw_cfg: a 16-bit OUT of the
# selector to port 0x510, then single-byte INs from port 0x511.
#
# It prints "mb-fwcfg cpus=0x... ram=0x... MiB" on COM1 (port 0x3f8) and exits through the
# isa-debug-exit port 0x501 with a 32-bit OUT of
#     value = cpus | (ram_MiB << 4)        (cpus 1-15; ram_MiB = ram >> 20)
# so the VMM's exit status is (value << 1) | 1. Any failed check exits with value 0
# (status 1). A process exit code keeps only status & 0xff: cpus and the low 3 bits of
# ram_MiB (e.g. 2 vCPUs and 4 MiB: value 0x42, status 0x85 = 133).
        .code32
        .text
        .globl _start
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003           # page-align modules, memory information
        .set FW_CFG_CTL, 0x510
        .set FW_CFG_DATA, 0x511
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0x501

        .align 4
mb_header:
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        mov     $stack_top, %esp
        cmp     $0x2badb002, %eax
        jne     fail
        testl   $1, (%ebx)                  # multiboot_info.flags: mem_lower/mem_upper valid
        jz      fail

        xor     %eax, %eax                  # item 0x0000: signature
        call    read_item
        cmpl    $0x554d4551, buf            # "QEMU"
        jne     fail

        mov     $0x0005, %eax               # item 0x0005: CPU count (u16)
        call    read_item
        movzwl  buf, %eax
        mov     %eax, cpus

        mov     $0x0003, %eax               # item 0x0003: RAM size (u64)
        call    read_item
        mov     buf, %eax
        mov     buf + 4, %edx
        shrd    $20, %edx, %eax             # bytes -> MiB
        mov     %eax, ram_mib

        mov     $msg_cpus, %esi
        call    puts
        mov     cpus, %eax
        call    puthex
        mov     $msg_ram, %esi
        call    puts
        mov     ram_mib, %eax
        call    puthex
        mov     $msg_end, %esi
        call    puts

        mov     ram_mib, %eax
        shl     $4, %eax
        or      cpus, %eax
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

# Select fw_cfg item %ax and read its first 8 bytes (zeros past its end) into buf.
read_item:
        mov     $FW_CFG_CTL, %dx
        out     %ax, %dx
        mov     $FW_CFG_DATA, %dx
        mov     $buf, %edi
        mov     $8, %ecx
1:      inb     %dx, %al
        mov     %al, (%edi)
        inc     %edi
        loop    1b
        ret

        .include "com1.inc"

msg_cpus:  .asciz "mb-fwcfg cpus="
msg_ram:   .asciz " ram="
msg_end:   .asciz " MiB\n"
msg_fail:  .asciz "mb-fwcfg: check failed\n"

        .bss
        .align 16
buf:    .space  8
cpus:   .space  4
ram_mib: .space 4
        .space  4096
stack_top:

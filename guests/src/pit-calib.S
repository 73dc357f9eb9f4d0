# pit-calib: a Multiboot (v1) kernel that calibrates the TSC on PIT channel 2, the way
# Linux's pit_calibrate_tsc and firmware do.
# @link 0x100000
# @format elf32
# @arch 32
#
# Port 0x61 bit 0 gates channel 2 (on) and bit 1 keeps the speaker off; channel 2 is
# programmed in mode 0 (interrupt on terminal count) with LATCH = 11932 ticks of the
# 1.193182 MHz clock (10 ms). Its output (port 0x61 bit 5) must read low right after the
# count is written, then go high when the count expires; the TSC ticks in between, / 10,
# are the TSC rate in kHz. It prints "pit-calib tsc_khz=0x........" on COM1 and exits
# through the isa-debug-exit port 0x501 with value 1 (status 3). If bit 5 is high at the
# start, or stays low for 2^33 TSC ticks, it prints "pit-calib: OUT2 ..." and exits with
# value 0 (status 1).
        .code32
        .text
        .globl _start
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0x501
        .set LATCH, 11932                   # 1193182 Hz / 100
        .set MS, 10

        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        mov     $stack_top, %esp
        inb     $0x61, %al                  # gate on, speaker off
        and     $0xfc, %al
        or      $0x01, %al
        outb    %al, $0x61
        mov     $0xb0, %al                  # channel 2, lobyte/hibyte, mode 0, binary
        outb    %al, $0x43
        mov     $(LATCH & 0xff), %al
        outb    %al, $0x42
        mov     $(LATCH >> 8), %al
        outb    %al, $0x42
        rdtsc
        mov     %eax, %esi                  # %edi:%esi = start
        mov     %edx, %edi
        inb     $0x61, %al                  # OUT2 is low while the count runs
        test    $0x20, %al
        jnz     stuck_high
1:      inb     $0x61, %al
        test    $0x20, %al
        jnz     2f
        rdtsc
        sub     %esi, %eax
        sbb     %edi, %edx
        cmp     $2, %edx                    # give up after 2^33 TSC ticks
        jb      1b
        mov     $msg_low, %esi
        jmp     fail
2:      rdtsc
        sub     %esi, %eax
        sbb     %edi, %edx
        mov     $MS, %ecx                   # ticks / ms = kHz
        div     %ecx
        mov     %eax, %ebp
        mov     $msg, %esi
        call    puts
        mov     %ebp, %eax
        call    puthex
        mov     $nl, %esi
        call    puts
        mov     $1, %eax
        jmp     exit
stuck_high:
        mov     $msg_high, %esi
fail:
        call    puts
        xor     %eax, %eax
exit:
        mov     $DEBUG_EXIT, %dx
        out     %eax, %dx
1:      cli
        hlt
        jmp     1b

        .include "com1.inc"

msg:      .asciz "pit-calib tsc_khz="
nl:       .asciz "\n"
msg_high: .asciz "pit-calib: OUT2 high while counting\n"
msg_low:  .asciz "pit-calib: OUT2 never went high\n"

        .bss
        .align 16
        .space  1024
stack_top:

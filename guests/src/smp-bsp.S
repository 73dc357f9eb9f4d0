# smp-bsp: the boot processor of the 2-vCPU runner test. Entered in 32-bit protected mode
# with flat segments (set up by the host). Prints its APIC id (CPUID.1:EBX[31:24]) as a
# 32-bit OUT to port 0x500, starts vCPU 1 with INIT-SIPI-SIPI through its local APIC
# (trampoline at 0x8000), waits for the AP's flag at 0x600, then halts with IF = 0.
# @link 0x1000
        .code32
        .globl _start
        .set LAPIC, 0xfee00000
_start:
        movl    $0x1ff, LAPIC + 0xf0        # SVR: software-enable, spurious vector 0xff
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        mov     %ebx, %eax
        mov     $0x500, %dx
        out     %eax, %dx                   # print our APIC id
        movl    $0x01000000, LAPIC + 0x310  # ICR high: destination APIC id 1
        movl    $0x00004500, LAPIC + 0x300  # INIT, assert
        movl    $0x00004608, LAPIC + 0x300  # STARTUP, vector 0x08 -> 0x8000
        movl    $0x00004608, LAPIC + 0x300  # STARTUP again, as the MP spec says
1:      pause
        cmpl    $1, 0x600
        jne     1b
        cli
        hlt
        jmp     1b

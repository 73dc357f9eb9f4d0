# smp-ap: the application processor's start-up code, at 0x8000 (CS = 0x0800, IP = 0 after
# SIPI vector 0x08). Prints its APIC id to port 0x500, sets the flag at 0x600, halts.
# @link 0x0
        .code16
        .globl _start
_start:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        mov     %ebx, %eax
        mov     $0x500, %dx
        out     %eax, %dx                   # print our APIC id
        movl    $1, 0x600                   # tell the BSP we are up
        cli
1:      hlt                                 # a late SIPI can wake a halted AP: stay here
        jmp     1b

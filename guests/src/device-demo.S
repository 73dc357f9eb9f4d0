# device-demo: drives the two devices of examples/device.ts from real mode.
# Loaded at 0x1000, entered with CS = DS = 0, IP = 0x1000.
#  1. port-I/O: writes 1..5 to the "tally" at port 0x510, reads the sum back;
#  2. MMIO: rings the "doorbell" at 0xd0000 with that sum, then waits with interrupts on;
#     the doorbell raises ISA IRQ 5 (PIC vector 0x0d); the handler reads the value back
#     from offset 4, acknowledges at offset 8 (the device lowers the line) and sends EOI;
#  3. halts with interrupts off (the runner then ends the run as 'halted').
        .code16
        .globl _start
_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        mov     $0x8000, %sp
        movw    $irq5, 0x0d*4           # IVT[0x0d] = 0:irq5
        movw    $0, 0x0d*4+2
        mov     $0x11, %al              # PIC ICW1: edge, cascade, ICW4
        out     %al, $0x20
        mov     $0x08, %al              # ICW2: vectors 0x08-0x0f
        out     %al, $0x21
        mov     $0x04, %al              # ICW3: slave on IRQ 2
        out     %al, $0x21
        mov     $0x01, %al              # ICW4: 8086 mode
        out     %al, $0x21
        mov     $0xdf, %al              # OCW1: mask everything but IRQ 5
        out     %al, $0x21

        mov     $0x510, %dx             # 1. the tally: add 1..5, read the sum
        mov     $1, %ax
1:      out     %ax, %dx
        inc     %ax
        cmp     $6, %ax
        jne     1b
        in      %dx, %ax
        mov     %ax, %bx

        mov     $0xd000, %ax            # 2. the doorbell at 0xd0000
        mov     %ax, %es
        mov     %bx, %es:0              # ring it: IRQ 5 goes up
2:      cli
        cmpb    $0, done
        jne     3f
        sti                             # interrupts on from the next instruction:
        hlt                             # the IRQ can only arrive here, and wakes the HLT
        jmp     2b
3:      hlt                             # 3. interrupts off: the run ends
        jmp     3b

irq5:   push    %ax
        mov     %es:4, %ax              # read the value back
        movw    $1, %es:8               # acknowledge: the device lowers IRQ 5
        mov     $0x20, %al              # EOI to the PIC
        out     %al, $0x20
        movb    $1, done
        pop     %ax
        iret

done:   .byte   0

# hello: a real-mode guest that prints a greeting on the serial port and halts.
# Loaded at 0x1000, entered with CS = DS = 0, IP = 0x1000 (see examples/hello.ts).
        .code16
        .globl _start
_start:
        cld
        mov     $msg, %si
        mov     $0x3f8, %dx        # COM1 transmit register
1:      lodsb                      # al = *si++
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      hlt
        jmp     2b
msg:    .asciz  "Hello from the guest\n"

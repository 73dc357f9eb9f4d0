# steps: a tiny real-mode loop for single-step tests: 1 + 2*5 + 1 = 12 instructions to the OUT.
        .code16
        .globl _start
_start:
        mov     $5, %cx            # 1
1:      dec     %cx                # 5 times
        jnz     1b                 # 5 times
        out     %al, $0x20         # 1, then the OUT exit
        hlt

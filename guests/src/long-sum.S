# long-sum: 64-bit code, entered in long mode at 0x2000 with paging set up by the host.
# Sums 1..100 (5050) and writes the result to port 0x10 with a 32-bit OUT, then halts.
        .code64
        .globl _start
_start:
        xor     %eax, %eax
        mov     $100, %ecx
1:      add     %ecx, %eax
        loop    1b
        mov     $0x10, %dx
        out     %eax, %dx
2:      hlt
        jmp     2b

# spin: counts in a register forever (jmp $ with a side effect), for stop/pause tests.
        .code16
        .globl _start
_start:
        xor     %eax, %eax
1:      inc     %eax
        jmp     1b

# snap-count: a real-mode computation spread over many port-I/O exits, for snapshot/restore
# tests (test/native/vm-state.test.ts). Loaded at 0x1000, entered with CS = 0, IP = 0x1000.
#
# 600 rounds, i = 1..600: x = x * 31 + i (32 bits, kept in ESI), table[i & 63] ^= x (64
# dwords at 0x3000, so guest memory carries state too), through a call/ret on the stack; each
# round also reads the TSC and counts a step backwards in the dword at 0x2ff0. After each
# round, i goes out to port 0x10 (16-bit OUT). At the end: the table's 32-bit sum to port
# 0x11, the backwards-TSC count to port 0x12 (32-bit OUTs), then HLT.
        .code16
        .globl _start
_start:
        xor     %ax, %ax
        mov     %ax, %ds
        mov     %ax, %ss
        mov     $0x2f00, %sp
        mov     $0x3000, %di
        mov     $64, %cx
        xor     %eax, %eax
0:      mov     %eax, (%di)
        add     $4, %di
        loop    0b
        mov     %eax, (0x2ff0)
        rdtsc
        mov     %eax, (0x2ff8)
        mov     %edx, (0x2ffc)
        mov     $1, %esi
        mov     $1, %cx
1:      call    step
        mov     %cx, %ax
        mov     $0x10, %dx
        out     %ax, %dx
        inc     %cx
        cmp     $601, %cx
        jne     1b
        xor     %eax, %eax
        mov     $0x3000, %di
        mov     $64, %cx
2:      add     (%di), %eax
        add     $4, %di
        loop    2b
        mov     $0x11, %dx
        out     %eax, %dx
        mov     (0x2ff0), %eax
        mov     $0x12, %dx
        out     %eax, %dx
3:      hlt
        jmp     3b

# one round for i = CX: x = x * 31 + i; table[i & 63] ^= x; check the TSC went forwards
step:   imul    $31, %esi, %esi
        movzwl  %cx, %eax
        add     %eax, %esi
        mov     %cx, %bx
        and     $63, %bx
        shl     $2, %bx
        xor     %esi, 0x3000(%bx)
        push    %cx
        rdtsc
        cmp     (0x2ffc), %edx
        jb      4f
        ja      5f
        cmp     (0x2ff8), %eax
        jae     5f
4:      incl    (0x2ff0)
5:      mov     %eax, (0x2ff8)
        mov     %edx, (0x2ffc)
        pop     %cx
        ret

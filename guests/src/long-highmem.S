# Long mode, CPL 0, identity-mapped: a probe of guest RAM at any address (above 4 GiB).
# In:  rbx, rsi, rdi = guest-physical addresses.
# Does: [rsi] = [rbx] + 1 (64-bit); out 0x10 <- the 32-bit value at [rdi]; [rdi] = its complement; hlt.
.code64
.globl _start
_start:
    mov (%rbx), %rax
    add $1, %rax
    mov %rax, (%rsi)
    mov (%rdi), %eax
    out %eax, $0x10
    not %eax
    mov %eax, (%rdi)
    hlt

# mb-smp: a Multiboot (v1) kernel that starts every other CPU and counts them.
# @link 0x100000
# @format elf32
# @arch 32
#
# The boot CPU reads the CPU count from fw_cfg (item 0x0005), copies the real-mode AP
# start-up code below to 0x8000 and sends INIT, SIPI, SIPI (vector 0x08) to all other CPUs
# through its local APIC. Each AP records its APIC id (CPUID.1:EBX[31:24]) in a table at
# 0x7000 (one byte per CPU, set to 1), atomically increments the counter at 0x6ff0, and
# parks in `hlt` (looping, since a late SIPI or an interrupt can wake it). The BSP waits
# (bounded) for the counter to reach count - 1, prints one line per CPU on COM1 and exits
# through the debug-exit port 0x501 with value = the number of CPUs that checked in
# (status = (value << 1) | 1: 5 for 2 CPUs).
        .code32
        .text
        .globl _start
        .set MB_MAGIC, 0x1badb002
        .set MB_FLAGS, 0x00000003
        .set LAPIC, 0xfee00000
        .set TRAMPOLINE, 0x8000
        .set COUNTER, 0x6ff0
        .set TABLE, 0x7000
        .set COM1, 0x3f8

        .align 4
        .long   MB_MAGIC
        .long   MB_FLAGS
        .long   -(MB_MAGIC + MB_FLAGS)

_start:
        mov     $stack_top, %esp
        cld
        movl    $0, COUNTER
        mov     $TABLE, %edi                # clear the table (256 bytes)
        mov     $256, %ecx
        xor     %eax, %eax
        rep stosb

        mov     $0x510, %dx                 # fw_cfg: select item 0x0005 (CPU count)
        mov     $0x0005, %ax
        out     %ax, %dx
        mov     $0x511, %dx
        inb     %dx, %al
        movzbl  %al, %ebx
        inb     %dx, %al
        movzbl  %al, %eax
        shl     $8, %eax
        or      %eax, %ebx
        mov     %ebx, cpus

        mov     $1, %eax                    # mark ourselves
        cpuid
        shr     $24, %ebx
        movb    $1, TABLE(%ebx)

        mov     $ap_start, %esi             # copy the AP code to 0x8000
        mov     $TRAMPOLINE, %edi
        mov     $(ap_end - ap_start), %ecx
        rep movsb

        cmpl    $1, cpus
        jbe     report
        movl    $0x1ff, LAPIC + 0xf0        # SVR: software-enable the local APIC
        movl    $0x000c4500, LAPIC + 0x300  # INIT to all excluding self
        movl    $0x000c4608, LAPIC + 0x300  # STARTUP, vector 0x08 -> 0x8000
        movl    $0x000c4608, LAPIC + 0x300  # STARTUP again, as the MP spec says

        mov     cpus, %ebx
        dec     %ebx
        mov     $20000000, %ecx             # bounded wait for the APs
1:      cmp     %ebx, COUNTER
        jae     report
        pause
        loop    1b

report:
        xor     %ebx, %ebx                  # APIC id
        xor     %edi, %edi                  # CPUs seen
2:      cmpb    $0, TABLE(%ebx)
        je      3f
        inc     %edi
        mov     $msg_cpu, %esi
        call    puts
        mov     %ebx, %eax
        call    putdec
        mov     $msg_up, %esi
        call    puts
3:      inc     %ebx
        cmp     $256, %ebx
        jb      2b
        mov     %edi, %eax
        mov     $0x501, %dx
        out     %eax, %dx
4:      cli
        hlt
        jmp     4b

# Print the NUL-terminated string at %esi on COM1.
puts:
        push    %edx
        mov     $COM1, %dx
1:      lodsb
        test    %al, %al
        jz      2f
        out     %al, %dx
        jmp     1b
2:      pop     %edx
        ret

# Print %eax (0-255) in decimal on COM1.
putdec:
        push    %ebx
        mov     $10, %ebx
        xor     %ecx, %ecx
1:      xor     %edx, %edx
        div     %ebx
        push    %edx
        inc     %ecx
        test    %eax, %eax
        jnz     1b
        mov     $COM1, %dx
2:      pop     %eax
        add     $'0', %al
        out     %al, %dx
        loop    2b
        pop     %ebx
        ret

msg_cpu: .asciz "mb-smp: CPU with APIC id "
msg_up:  .asciz " is up\n"

# AP start-up code, copied to 0x8000: real mode, CS = 0x0800, IP = 0.
        .code16
ap_start:
        cli
        xor     %ax, %ax
        mov     %ax, %ds
        mov     $1, %eax
        cpuid
        shr     $24, %ebx
        movb    $1, TABLE(%bx)
        lock incl COUNTER
1:      hlt
        jmp     1b                          # relative: works at 0x8000
ap_end:
        .code32

        .data
        .align 4
cpus:   .long   1

        .bss
        .align 16
        .space  4096
stack_top:

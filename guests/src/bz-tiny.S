# bz-tiny: the smallest image of the Linux x86 boot protocol (2.15): a bzImage setup header
# and a 64-bit entry point, with syssize rounded up as the kernel's build tools do.
# @link 0
# @arch 64
#
# 0x400 bytes of setup (setup_sects 1) and 0x1008 bytes of protected-mode code, so syssize
# (16-byte paragraphs, rounded up) is 0x101: 8 bytes more than the file holds. The 64-bit
# entry (protected-mode code + 0x200, RSI = the zero page) prints
# "bz-tiny cmdline=<command line>" on COM1 and exits through the isa-debug-exit port 0x501
# with value 0x2a (status 0x55 = 85). Position independent: the loader may relocate it.
        .code64
        .text
        .globl _start
        .set COM1, 0x3f8
        .set DEBUG_EXIT, 0x501
        .set PM_SIZE, 0x1008
_start:
        .org    0x1f1
        .byte   1                           # setup_sects
        .word   0                           # root_flags
        .long   (PM_SIZE + 15) / 16         # syssize
        .word   0, 0, 0                     # ram_size, vid_mode, root_dev
        .word   0xaa55                      # boot_flag
        .byte   0xeb, 0x66                  # jump past the header (to 0x268)
        .ascii  "HdrS"
        .word   0x020f                      # boot protocol 2.15
        .long   0                           # realmode_swtch
        .word   0, 0                        # start_sys_seg, kernel_version
        .byte   0, 1                        # type_of_loader, loadflags: LOADED_HIGH
        .word   0                           # setup_move_size
        .long   0x100000                    # code32_start
        .long   0, 0, 0                     # ramdisk_image, ramdisk_size, bootsect_kludge
        .word   0                           # heap_end_ptr
        .byte   0, 0                        # ext_loader_ver, ext_loader_type
        .long   0                           # cmd_line_ptr
        .long   0x7fffffff                  # initrd_addr_max
        .long   0x200000                    # kernel_alignment
        .byte   1                           # relocatable_kernel
        .byte   21                          # min_alignment (2 MiB)
        .word   1                           # xloadflags: XLF_KERNEL_64
        .long   255                         # cmdline_size
        .long   0                           # hardware_subarch
        .quad   0                           # hardware_subarch_data
        .long   0, 0                        # payload_offset, payload_length
        .quad   0                           # setup_data
        .quad   0x1000000                   # pref_address
        .long   0x2000                      # init_size
        .long   0                           # handover_offset
        .long   0                           # kernel_info_offset

        .org    0x400                       # protected-mode code
        .org    0x600                       # startup_64
        mov     %rsi, %rbx                  # the zero page
        lea     msg(%rip), %rsi
        call    puts
        mov     0x228(%rbx), %esi           # hdr.cmd_line_ptr
        call    puts
        lea     nl(%rip), %rsi
        call    puts
        mov     $0x2a, %eax
        mov     $DEBUG_EXIT, %dx
        out     %eax, %dx
1:      cli
        hlt
        jmp     1b

        .include "com1.inc"

msg:    .asciz  "bz-tiny cmdline="
nl:     .asciz  "\n"

        .org    0x400 + PM_SIZE - 1
        .byte   0

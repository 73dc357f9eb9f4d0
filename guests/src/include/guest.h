/*
 * guest.h: the freestanding runtime of the C guest fixtures (guests/src/NAME.c).
 *
 * A C fixture is a Multiboot (v1) kernel: the shared entry stub (mb-entry.S) carries the
 * Multiboot header, sets up a stack, calls
 *
 *     int main(u32 magic, const struct multiboot_info *info);
 *
 * in 32-bit protected mode with paging off and interrupts disabled, and hands main's return
 * value to the isa-debug-exit port (0x501): the VMM's exit status is (value << 1) | 1.
 *
 * What is here: fixed-width types, port I/O, volatile MMIO accessors, compiler barriers,
 * console output on COM1 (strings, hex, decimal; no LSR polling, like com1.inc), memcpy /
 * memset / memcmp (gcc may emit calls to the first two even with -fno-builtin), PCI
 * configuration space through mechanism #1 (0xCF8 / 0xCFC), the TSC and the debug exit.
 *
 * The build (scripts/build-guests.mjs) compiles with gcc -m32 -ffreestanding -nostdlib
 * -mgeneral-regs-only: no libc, no libgcc (so no 64-bit division), no SSE or x87 (on PVM
 * hosts kernel-mode code runs in KVM's emulator, ~1.5 us an instruction: keep loops short).
 */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;
typedef unsigned int uptr;
typedef unsigned int usize;

#define NULL ((void *)0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define ALIGNED(n) __attribute__((aligned(n)))
#define NORETURN __attribute__((noreturn))

/* Ports of the platform devices the fixtures use. */
#define COM1_PORT 0x3f8
#define DEBUG_EXIT_PORT 0x501
#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA 0xcfc

/* The multiboot_info fields a fixture may look at (Multiboot 0.6.96 §3.3). */
#define MULTIBOOT_BOOTLOADER_MAGIC 0x2badb002
struct multiboot_info {
	u32 flags;
	u32 mem_lower;
	u32 mem_upper;
	u32 boot_device;
	u32 cmdline;
};

/* ---- barriers ---- */

/* Keep the compiler from moving memory accesses across this point. On x86 (TSO) this is
 * enough between a driver and a device that only sees guest memory through the host: stores
 * become visible in program order and loads are not reordered with older loads. */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* A full fence (store-load ordering too): a locked no-op on the stack, no SSE2 needed. */
static inline void mb(void) { __asm__ volatile("lock; orl $0, (%%esp)" ::: "memory", "cc"); }

/* ---- port I/O ---- */

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(u16 port, u16 v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(u16 port, u32 v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) { u8 v; __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u16 inw(u16 port) { u16 v; __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port)); return v; }
static inline u32 inl(u16 port) { u32 v; __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port)); return v; }

/* ---- MMIO (physical = linear: paging is off) ---- */

static inline u8 mmio_read8(uptr a) { return *(volatile u8 *)a; }
static inline u16 mmio_read16(uptr a) { return *(volatile u16 *)a; }
static inline u32 mmio_read32(uptr a) { return *(volatile u32 *)a; }
static inline void mmio_write8(uptr a, u8 v) { *(volatile u8 *)a = v; }
static inline void mmio_write16(uptr a, u16 v) { *(volatile u16 *)a = v; }
static inline void mmio_write32(uptr a, u32 v) { *(volatile u32 *)a = v; }
/* A 64-bit register as two 32-bit accesses, low dword first. */
static inline void mmio_write64(uptr a, u64 v)
{
	mmio_write32(a, (u32)v);
	mmio_write32(a + 4, (u32)(v >> 32));
}
static inline u64 mmio_read64(uptr a)
{
	u32 lo = mmio_read32(a);
	u32 hi = mmio_read32(a + 4);
	return ((u64)hi << 32) | lo;
}

/* ---- time ---- */

static inline u64 rdtsc(void)
{
	u32 lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((u64)hi << 32) | lo;
}

/* ---- console (COM1) ---- */

void putch(char c);
void print(const char *s);           /* no newline added */
void print_hex(u32 v, int digits);   /* "0x" and `digits` hex digits (1-8) */
void print_hex8(u8 v);               /* two hex digits, no prefix */
void print_hex64(u64 v);             /* "0x" and 16 hex digits */
void print_dec(u32 v);
void print_bytes(const void *p, usize n); /* two hex digits a byte, separated by spaces */

/* ---- memory ---- */

void *memcpy(void *dst, const void *src, usize n);
void *memset(void *dst, int c, usize n);
int memcmp(const void *a, const void *b, usize n);
usize strlen(const char *s);
/* The next space-separated word of the string at *p (a Multiboot command line): its start in
 * *word, *p moved past it; returns its length, 0 at the end. */
usize next_word(const char **p, const char **word);

/* ---- PCI configuration space, mechanism #1 (bus 0-255, device 0-31, function 0-7) ---- */

static inline u32 pci_address(u32 bus, u32 dev, u32 fn, u32 reg)
{
	return 0x80000000u | (bus << 16) | (dev << 11) | (fn << 8) | (reg & 0xfc);
}
u32 pci_read32(u32 bus, u32 dev, u32 fn, u32 reg);
u16 pci_read16(u32 bus, u32 dev, u32 fn, u32 reg);
u8 pci_read8(u32 bus, u32 dev, u32 fn, u32 reg);
void pci_write32(u32 bus, u32 dev, u32 fn, u32 reg, u32 v);
void pci_write16(u32 bus, u32 dev, u32 fn, u32 reg, u16 v);
void pci_write8(u32 bus, u32 dev, u32 fn, u32 reg, u8 v);
/* True if CONFIG_ADDRESS holds what is written to it (a host bridge decodes 0xCF8). */
int pci_mechanism1_present(void);

/* ---- exit ---- */

/* Write `value` to the isa-debug-exit port (status (value << 1) | 1) and halt for good. */
NORETURN void guest_exit(u32 value);

#endif

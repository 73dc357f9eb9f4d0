/*
 * runtime.c: the out-of-line part of the C fixtures' runtime (see guest.h). Linked into
 * every guests/src/NAME.c fixture together with the entry stub.
 */
#include "guest.h"

void putch(char c) { outb(COM1_PORT, (u8)c); }

void print(const char *s)
{
	while (*s)
		outb(COM1_PORT, (u8)*s++);
}

static const char hexdigits[] = "0123456789abcdef";

void print_hex(u32 v, int digits)
{
	if (digits < 1)
		digits = 1;
	if (digits > 8)
		digits = 8;
	putch('0');
	putch('x');
	for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
		putch(hexdigits[(v >> shift) & 0xf]);
}

void print_hex8(u8 v)
{
	putch(hexdigits[v >> 4]);
	putch(hexdigits[v & 0xf]);
}

void print_hex64(u64 v)
{
	u32 hi = (u32)(v >> 32), lo = (u32)v;
	print_hex(hi, 8);
	for (int shift = 28; shift >= 0; shift -= 4)
		putch(hexdigits[(lo >> shift) & 0xf]);
}

void print_dec(u32 v)
{
	char buf[11];
	int i = 0;
	do {
		buf[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i)
		putch(buf[--i]);
}

void print_bytes(const void *p, usize n)
{
	const u8 *b = p;
	for (usize i = 0; i < n; i++) {
		if (i)
			putch(' ');
		print_hex8(b[i]);
	}
}

/* Byte loops: short buffers only, and nothing gcc could turn back into a call to itself
 * (the build passes -fno-tree-loop-distribute-patterns). */
void *memcpy(void *dst, const void *src, usize n)
{
	u8 *d = dst;
	const u8 *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, usize n)
{
	u8 *d = dst;
	while (n--)
		*d++ = (u8)c;
	return dst;
}

int memcmp(const void *a, const void *b, usize n)
{
	const u8 *x = a, *y = b;
	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x < *y ? -1 : 1;
	return 0;
}

usize strlen(const char *s)
{
	usize n = 0;
	while (s[n])
		n++;
	return n;
}

usize next_word(const char **p, const char **word)
{
	const char *q = *p;
	while (*q == ' ')
		q++;
	*word = q;
	while (*q && *q != ' ')
		q++;
	*p = q;
	return (usize)(q - *word);
}

u32 pci_read32(u32 bus, u32 dev, u32 fn, u32 reg)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	return inl(PCI_CONFIG_DATA);
}

u16 pci_read16(u32 bus, u32 dev, u32 fn, u32 reg)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	return inw(PCI_CONFIG_DATA + (reg & 2));
}

u8 pci_read8(u32 bus, u32 dev, u32 fn, u32 reg)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	return inb(PCI_CONFIG_DATA + (reg & 3));
}

void pci_write32(u32 bus, u32 dev, u32 fn, u32 reg, u32 v)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	outl(PCI_CONFIG_DATA, v);
}

void pci_write16(u32 bus, u32 dev, u32 fn, u32 reg, u16 v)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	outw(PCI_CONFIG_DATA + (reg & 2), v);
}

void pci_write8(u32 bus, u32 dev, u32 fn, u32 reg, u8 v)
{
	outl(PCI_CONFIG_ADDRESS, pci_address(bus, dev, fn, reg));
	outb(PCI_CONFIG_DATA + (reg & 3), v);
}

int pci_mechanism1_present(void)
{
	outl(PCI_CONFIG_ADDRESS, 0x80000000u);
	int ok = inl(PCI_CONFIG_ADDRESS) == 0x80000000u;
	outl(PCI_CONFIG_ADDRESS, 0);
	return ok;
}

void guest_exit(u32 value)
{
	outl(DEBUG_EXIT_PORT, value);
	for (;;)
		__asm__ volatile("cli; hlt");
}

/*
 * virtio-console: a Multiboot (v1) kernel in C that drives a virtio-console (1af4:1043,
 * virtio 1.2 §5.3) over modern virtio-pci — single port, no MULTIPORT — and reports on COM1.
 * 32-bit protected mode, paging off, no interrupts; the PCI scan, BAR placement, device
 * initialisation and the polled split queues are the shared driver in
 * guests/src/include/virtio.c (the same as the virtio-blk fixture's).
 *
 * 1. The Multiboot command line (`--append` / loadMultiboot's cmdline) may hold, separated
 *    by spaces:
 *      wait=S          wait up to S seconds (0-3600, default 10) for input
 *      input=required  no input within the wait is a failure (default: input=optional, a
 *                      transmit-only run that passes without input)
 *    Anything else is reported and ignored. S seconds are counted on the TSC, calibrated
 *    against PIT channel 2 over 10 ms (port 0x61 bit 5, as Linux's pit_calibrate_tsc does);
 *    should that fail a 2.5 GHz TSC is assumed.
 * 2. PCI bus 0 is scanned; the first 1af4:1043 is initialised accepting VERSION_1 only, with
 *    receiveq0 (queue 0) and transmitq0 (queue 1) of min(queue_size, 8) entries each.
 * 3. A 64-byte device-writable receive buffer is posted on queue 0, then "hello from hvc0\n"
 *    is transmitted on queue 1 (and its completion awaited).
 * 4. Input is awaited on queue 0: each receive completion's bytes are collected (the buffer
 *    posted again) until a newline, 64 bytes, or the end of the wait. If any arrived,
 *    "echo: <bytes>\n" is transmitted on queue 1 — the bytes up to the first newline, a
 *    carriage return before it dropped.
 *
 * The last line is "virtio-console: PASS" (debug-exit value 0, VMM status 1) or
 * "virtio-console: FAIL <reason>" (value 1, status 3).
 */
// @uses virtio.c
#include "virtio.h"

#define QUEUE_ENTRIES 8
#define RX_BYTES 64
#define LINE_MAX 64
#define WAIT_DEFAULT_S 10
#define WAIT_MAX_S 3600
#define TSC_10MS_FALLBACK 25000000u /* 2.5 GHz */

static struct vq_pages queues[2] ALIGNED(4096);
static volatile u8 rx_buf[RX_BYTES] ALIGNED(64);
static u8 tx_buf[6 + LINE_MAX + 1] ALIGNED(64);
static u8 line[LINE_MAX];
static const char greeting[] = "hello from hvc0\n";

static u32 wait_s = WAIT_DEFAULT_S;
static int input_required;

/* ---- the command line ---- */

static int word_is(const char *w, usize n, const char *s) { return strlen(s) == n && memcmp(w, s, n) == 0; }

/* A decimal number in w[0..n), or -1. */
static s32 parse_dec(const char *w, usize n)
{
	if (n == 0 || n > 9)
		return -1;
	s32 v = 0;
	for (usize i = 0; i < n; i++) {
		if (w[i] < '0' || w[i] > '9')
			return -1;
		v = v * 10 + (w[i] - '0');
	}
	return v;
}

static void print_n(const char *s, usize n)
{
	for (usize i = 0; i < n; i++)
		putch(s[i]);
}

static void parse_cmdline(const struct multiboot_info *info)
{
	if (!(info->flags & 4) || !info->cmdline)
		return;
	const char *p = (const char *)info->cmdline;
	const char *w;
	for (usize n; (n = next_word(&p, &w)) != 0;) {
		if (n > 5 && memcmp(w, "wait=", 5) == 0) {
			s32 s = parse_dec(w + 5, n - 5);
			if (s >= 0 && s <= WAIT_MAX_S) {
				wait_s = (u32)s;
				continue;
			}
		} else if (word_is(w, n, "input=required")) {
			input_required = 1;
			continue;
		} else if (word_is(w, n, "input=optional")) {
			input_required = 0;
			continue;
		}
		print("virtio-console: ignoring command-line word '");
		print_n(w, n);
		print("'\n");
	}
}

/* ---- time ---- */

/* TSC ticks in 10 ms, measured on PIT channel 2 in mode 0 (0 if OUT2 misbehaves). */
static u32 tsc_per_10ms(void)
{
	outb(0x61, (u8)((inb(0x61) & 0xfc) | 0x01)); /* gate on, speaker off */
	outb(0x43, 0xb0);                            /* channel 2, lobyte/hibyte, mode 0, binary */
	outb(0x42, 11932 & 0xff);                    /* 1193182 Hz / 100 */
	outb(0x42, 11932 >> 8);
	u64 start = rdtsc();
	if (inb(0x61) & 0x20)
		return 0; /* OUT2 must be low while the count runs */
	while (!(inb(0x61) & 0x20))
		if (rdtsc() - start > (1ull << 33))
			return 0;
	u64 t = rdtsc() - start;
	return t >> 32 ? 0 : (u32)t;
}

/* ---- the console ---- */

static void print_escaped(const u8 *b, u32 n)
{
	putch('"');
	for (u32 i = 0; i < n; i++) {
		u8 c = b[i];
		if (c == '\n') {
			print("\\n");
		} else if (c == '\r') {
			print("\\r");
		} else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			print("\\x");
			print_hex8(c);
		} else {
			putch((char)c);
		}
	}
	putch('"');
}

/* Offer rx_buf to the device on receiveq0. */
static void post_receive(struct vq *rx)
{
	struct seg s = { (uptr)rx_buf, RX_BYTES, 1 };
	vq_post(rx, 0, &s, 1);
	vq_kick(rx);
}

static int transmit(struct vdev *v, const u8 *bytes, u32 n)
{
	struct seg s = { (uptr)bytes, n, 0 };
	u32 len;
	if (virtq_run(&v->q[1], &s, 1, &len))
		return -1;
	if (len != 0)
		return virtio_fail(v, "a transmit buffer came back with a non-zero used length");
	return 0;
}

/* Collect input until a newline, LINE_MAX bytes or `ticks`; returns the bytes kept in `line`
 * (the line without its newline), -1 on an error. */
static s32 receive_line(struct vdev *v, u64 ticks, u32 *total)
{
	struct vq *rx = &v->q[0];
	u32 have = 0, chunks = 0;
	int eol = 0;
	*total = 0;
	u64 start = rdtsc();
	while (!eol && have < LINE_MAX) {
		u64 spent = rdtsc() - start;
		if (spent >= ticks)
			break;
		u32 id, len;
		if (vq_wait(rx, ticks - spent, 0, &id, &len))
			break;
		if (id != 0)
			return virtio_fail(v, "the used ring names a descriptor that is not the receive buffer");
		if (len > RX_BYTES)
			return virtio_fail(v, "a receive buffer came back with more bytes than it holds");
		chunks++;
		*total += len;
		print("virtio-console: received ");
		print_dec(len);
		print(" bytes: ");
		u8 got[RX_BYTES];
		for (u32 i = 0; i < len; i++)
			got[i] = rx_buf[i];
		print_escaped(got, len);
		putch('\n');
		for (u32 i = 0; i < len && !eol && have < LINE_MAX; i++) {
			if (got[i] == '\n')
				eol = 1;
			else
				line[have++] = got[i];
		}
		if (!eol && have < LINE_MAX)
			post_receive(rx);
	}
	if (eol && have > 0 && line[have - 1] == '\r')
		have--;
	if (*total == 0)
		return 0;
	print("virtio-console: input line ");
	print_escaped(line, have);
	print(eol ? " (newline)" : have == LINE_MAX ? " (64 bytes, no newline)" : " (no newline before the wait ended)");
	print(", ");
	print_dec(chunks);
	print(chunks == 1 ? " receive buffer\n" : " receive buffers\n");
	return (s32)have;
}

static int run_console(struct vdev *v, u32 tsc10)
{
	if (virtio_attach(v))
		return -1;
	if (virtio_init(v, 0, 2, QUEUE_ENTRIES, queues))
		return -1;
	post_receive(&v->q[0]);
	print("virtio-console: receive buffer of ");
	print_dec(RX_BYTES);
	print(" bytes posted on queue 0\n");
	if (transmit(v, (const u8 *)greeting, sizeof(greeting) - 1))
		return -1;
	print("virtio-console: greeting sent on queue 1 (");
	print_dec(sizeof(greeting) - 1);
	print(" bytes)\n");

	if (wait_s == 0) {
		print("virtio-console: not waiting for input (wait=0)\n");
		return input_required ? virtio_fail(v, "input required, but wait=0") : 0;
	}
	print("virtio-console: waiting up to ");
	print_dec(wait_s);
	print(" s for input\n");
	u32 total;
	s32 n = receive_line(v, (u64)tsc10 * 100u * wait_s, &total);
	if (n < 0)
		return -1;
	if (total == 0) {
		print("virtio-console: no input within ");
		print_dec(wait_s);
		print(" s\n");
		return input_required ? virtio_fail(v, "no input (input=required)") : 0;
	}
	memcpy(tx_buf, "echo: ", 6);
	memcpy(tx_buf + 6, line, (usize)n);
	tx_buf[6 + n] = '\n';
	if (transmit(v, tx_buf, 6 + (u32)n + 1))
		return -1;
	print("virtio-console: echo sent on queue 1 (");
	print_dec(6 + (u32)n + 1);
	print(" bytes)\n");
	return 0;
}

int main(u32 magic, const struct multiboot_info *info)
{
	print("virtio-console: start\n");
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		print("virtio-console: FAIL not entered by a Multiboot loader\n");
		return 1;
	}
	parse_cmdline(info);
	print("virtio-console: wait=");
	print_dec(wait_s);
	print(input_required ? " input=required\n" : " input=optional\n");
	u32 tsc10 = 0;
	if (wait_s) {
		tsc10 = tsc_per_10ms();
		if (tsc10) {
			print("virtio-console: TSC ");
			print_dec(tsc10 / 10000u);
			print(" MHz (PIT channel 2)\n");
		} else {
			tsc10 = TSC_10MS_FALLBACK;
			print("virtio-console: PIT calibration failed; assuming a 2500 MHz TSC\n");
		}
	}
	if (!pci_mechanism1_present())
		print("pci: no host bridge (CONFIG_ADDRESS at 0xcf8 does not read back)\n");
	pci_scan_bus0();
	if (pci_nfns == 0)
		print("pci: no devices on bus 0\n");

	static struct vdev con = { .name = "virtio-console" };
	con.fn = pci_find(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_CONSOLE);
	if (!con.fn) {
		print("virtio-console: FAIL no virtio-console device\n");
		return 1;
	}
	run_console(&con, tsc10);
	if (virtio_fail_reason) {
		print("virtio-console: FAIL ");
		print(virtio_fail_reason);
		putch('\n');
		return 1;
	}
	print("virtio-console: PASS\n");
	return 0;
}

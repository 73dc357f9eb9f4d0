/*
 * virtio-net: a Multiboot (v1) kernel in C that drives a virtio-net device (1af4:1041,
 * virtio 1.2 §5.1) over modern virtio-pci — one queue pair, no control queue, no offloads —
 * and reports on COM1. 32-bit protected mode, paging off, no interrupts; the PCI scan, BAR
 * placement, initialisation and the polled split queues are the shared driver in
 * guests/src/include/virtio.c.
 *
 * 1. The Multiboot command line may hold `wait=S`: wait up to S seconds (1-3600, default 5)
 *    for the pong. Anything else is reported and ignored. Seconds are counted on the TSC,
 *    calibrated against PIT channel 2 over 10 ms; should that fail a 2.5 GHz TSC is assumed.
 * 2. The first 1af4:1041 is initialised accepting VERSION_1, MAC (required), STATUS and
 *    MRG_RXBUF when offered, with receiveq0 (queue 0) and transmitq0 (queue 1) of
 *    min(queue_size, 8) entries. MRG_RXBUF is accepted so that num_buffers is exercised:
 *    every receive buffer holds 12 + 1514 bytes, so a frame of at most 1514 bytes must come
 *    in one buffer and num_buffers must read 1 (which is also what a device must write
 *    without MRG_RXBUF, §5.1.6.3.2) — anything else is a failure.
 * 3. The MAC (and, with STATUS, the status field) is read from the device configuration
 *    under config_generation and printed.
 * 4. Four device-writable receive buffers of 1526 bytes (descriptors 0-3) are posted on
 *    queue 0, then one frame is transmitted on queue 1 (a 12-byte zero virtio_net_hdr and
 *    the frame, one chain, awaited): destination ff:ff:ff:ff:ff:ff, source the MAC,
 *    ethertype 0x88b5 (IEEE local experimental), payload "vmmapi virtio-net ping" (36 bytes,
 *    not padded to 60: virtio-net does not need it).
 * 5. Received frames are polled for up to `wait` seconds. A frame of ethertype 0x88b5 whose
 *    payload starts with "pong" ends the wait: its source MAC and payload (up to the first
 *    NUL, so padding is not printed) are printed and "ping 2" is transmitted unicast to that
 *    source. Any other frame is reported, and its buffer posted again.
 *
 * The last line is "virtio-net: PASS" (debug-exit value 0, VMM status 1) or
 * "virtio-net: FAIL <reason>" (value 1, status 3); no pong within the wait is
 * "virtio-net: FAIL no pong".
 */
// @uses virtio.c
#include "virtio.h"

#define VIRTIO_PCI_DEVICE_NET 0x1041
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_MRG_RXBUF 15
#define VIRTIO_NET_F_STATUS 16
#define VIRTIO_NET_S_LINK_UP 1
#define NET_HDR_BYTES 12
#define NET_HDR_NUM_BUFFERS 10
#define ETH_HDR_BYTES 14
#define ETH_MAX_FRAME 1514
#define ETHERTYPE_EXPERIMENTAL 0x88b5

#define QUEUE_ENTRIES 8
#define RX_BUFFERS 4
#define RX_BUF_BYTES (NET_HDR_BYTES + ETH_MAX_FRAME)
#define WAIT_DEFAULT_S 5
#define WAIT_MAX_S 3600
#define TSC_10MS_FALLBACK 25000000u /* 2.5 GHz */
#define CONFIG_GEN_TRIES 10

static struct vq_pages queues[2] ALIGNED(4096);
/* Written by the device: read only after vq_wait (a call into virtio.c) returned its element. */
static u8 rx_bufs[RX_BUFFERS][RX_BUF_BYTES] ALIGNED(64);
static u8 tx_hdr[NET_HDR_BYTES] ALIGNED(16);
static u8 tx_frame[ETH_HDR_BYTES + 64] ALIGNED(64);
static u8 mac[6];
static const u8 broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const char ping_text[] = "vmmapi virtio-net ping";
static const char ping2_text[] = "ping 2";

static u32 wait_s = WAIT_DEFAULT_S;

/* ---- helpers ---- */

static void print_n(const char *s, usize n)
{
	for (usize i = 0; i < n; i++)
		putch(s[i]);
}

static void print_mac(const u8 *m)
{
	for (int i = 0; i < 6; i++) {
		if (i)
			putch(':');
		print_hex8(m[i]);
	}
}

static void print_escaped(const u8 *b, u32 n)
{
	putch('"');
	for (u32 i = 0; i < n; i++) {
		u8 c = b[i];
		if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
			print("\\x");
			print_hex8(c);
		} else {
			putch((char)c);
		}
	}
	putch('"');
}

static void parse_cmdline(const struct multiboot_info *info)
{
	if (!(info->flags & 4) || !info->cmdline)
		return;
	const char *p = (const char *)info->cmdline;
	const char *w;
	for (usize n; (n = next_word(&p, &w)) != 0;) {
		if (n > 5 && n <= 9 && memcmp(w, "wait=", 5) == 0) {
			u32 s = 0;
			usize i = 5;
			for (; i < n && w[i] >= '0' && w[i] <= '9'; i++)
				s = s * 10 + (u32)(w[i] - '0');
			if (i == n && s >= 1 && s <= WAIT_MAX_S) {
				wait_s = s;
				continue;
			}
		}
		print("virtio-net: ignoring command-line word '");
		print_n(w, n);
		print("'\n");
	}
}

/* TSC ticks in 10 ms, measured on PIT channel 2 in mode 0 (0 if OUT2 misbehaves). */
static u32 tsc_per_10ms(void)
{
	outb(0x61, (u8)((inb(0x61) & 0xfc) | 0x01)); /* gate on, speaker off */
	outb(0x43, 0xb0);                            /* channel 2, lobyte/hibyte, mode 0 */
	outb(0x42, 11932 & 0xff);                    /* 1193182 Hz / 100 */
	outb(0x42, 11932 >> 8);
	u64 start = rdtsc();
	if (inb(0x61) & 0x20)
		return 0;
	while (!(inb(0x61) & 0x20))
		if (rdtsc() - start > (1ull << 33))
			return 0;
	u64 t = rdtsc() - start;
	return t >> 32 ? 0 : (u32)t;
}

/* ---- the device ---- */

/* MAC and status from the device configuration, read until config_generation holds still. */
static int read_config(struct vdev *v, u16 *status)
{
	if (!v->device || v->cap[VIRTIO_PCI_CAP_DEVICE_CFG].length < 8)
		return virtio_fail(v, "no device configuration (mac, status)");
	for (int tries = 0; tries < CONFIG_GEN_TRIES; tries++) {
		u8 gen = mmio_read8(v->common + CC_CONFIG_GENERATION);
		for (int i = 0; i < 6; i++)
			mac[i] = mmio_read8(v->device + (uptr)i);
		*status = mmio_read16(v->device + 6);
		if (mmio_read8(v->common + CC_CONFIG_GENERATION) == gen)
			return 0;
	}
	return virtio_fail(v, "config_generation keeps changing");
}

/* Transmit tx_frame[0..n) behind a zero header, one chain at descriptor 0, and await it. */
static int transmit(struct vdev *v, u32 n)
{
	struct seg segs[2] = { { (uptr)tx_hdr, NET_HDR_BYTES, 0 }, { (uptr)tx_frame, n, 0 } };
	u32 len;
	if (virtq_run(&v->q[1], segs, 2, &len))
		return -1;
	if (len != 0)
		return virtio_fail(v, "a transmit chain came back with a non-zero used length");
	return 0;
}

/* Build a frame of ethertype 0x88b5 to `dst` carrying `text`, transmit it, and say so. */
static int send_text(struct vdev *v, const u8 *dst, const char *what, const char *text)
{
	u32 n = (u32)strlen(text);
	memcpy(tx_frame, dst, 6);
	memcpy(tx_frame + 6, mac, 6);
	tx_frame[12] = ETHERTYPE_EXPERIMENTAL >> 8;
	tx_frame[13] = ETHERTYPE_EXPERIMENTAL & 0xff;
	memcpy(tx_frame + ETH_HDR_BYTES, text, n);
	if (transmit(v, ETH_HDR_BYTES + n))
		return -1;
	print("virtio-net: sent ");
	print(what);
	print(" to ");
	print_mac(dst);
	print(" (");
	print_dec(ETH_HDR_BYTES + n);
	print(" bytes)\n");
	return 0;
}

/* Wait up to `ticks` for a pong, posting every other frame's buffer again. Returns 1 with
 * the pong's source in `from`, 0 if none came, -1 on an error. */
static int await_pong(struct vdev *v, u64 ticks, u8 *from)
{
	struct vq *rx = &v->q[0];
	u64 start = rdtsc();
	for (;;) {
		u64 spent = rdtsc() - start;
		if (spent >= ticks)
			return 0;
		u32 id, len;
		if (vq_wait(rx, ticks - spent, 0, &id, &len))
			return 0;
		if (id >= RX_BUFFERS)
			return virtio_fail(v, "the used ring names a descriptor that is not a receive buffer");
		if (len > RX_BUF_BYTES)
			return virtio_fail(v, "a receive buffer came back with more bytes than it holds");
		if (len < NET_HDR_BYTES + ETH_HDR_BYTES)
			return virtio_fail(v, "a receive buffer came back shorter than a header and an Ethernet header");
		const u8 *b = rx_bufs[id];
		u16 num_buffers = (u16)(b[NET_HDR_NUM_BUFFERS] | (b[NET_HDR_NUM_BUFFERS + 1] << 8));
		const u8 *f = b + NET_HDR_BYTES;
		u32 flen = len - NET_HDR_BYTES;
		u16 type = (u16)((f[12] << 8) | f[13]);
		const u8 *payload = f + ETH_HDR_BYTES;
		u32 plen = flen - ETH_HDR_BYTES;
		if (num_buffers != 1)
			return virtio_fail(v, "num_buffers is not 1 for a frame that fits one receive buffer");
		if (type == ETHERTYPE_EXPERIMENTAL && plen >= 4 && memcmp(payload, "pong", 4) == 0) {
			u32 shown = 0;
			while (shown < plen && payload[shown])
				shown++;
			memcpy(from, f + 6, 6);
			print("virtio-net: pong from ");
			print_mac(from);
			print(" to ");
			print_mac(f);
			print(" (");
			print_dec(flen);
			print(" bytes, buffer ");
			print_dec(id);
			print(", num_buffers ");
			print_dec(num_buffers);
			print("): ");
			print_escaped(payload, shown);
			putch('\n');
			return 1;
		}
		print("virtio-net: ignoring a frame from ");
		print_mac(f + 6);
		print(" (");
		print_dec(flen);
		print(" bytes, ethertype ");
		print_hex(type, 4);
		print(")\n");
		vq_post_head(rx, (u16)id);
		vq_kick(rx);
	}
}

static int run_net(struct vdev *v, u32 tsc10)
{
	if (virtio_attach(v))
		return -1;
	u32 wanted = (1u << VIRTIO_NET_F_MAC) | (1u << VIRTIO_NET_F_STATUS) | (1u << VIRTIO_NET_F_MRG_RXBUF);
	if (virtio_init(v, wanted, 2, QUEUE_ENTRIES, queues))
		return -1;
	if (!(v->accepted_lo & (1u << VIRTIO_NET_F_MAC)))
		return virtio_fail(v, "device does not offer VIRTIO_NET_F_MAC");
	u16 status = 0;
	if (read_config(v, &status))
		return -1;
	print("virtio-net: mac ");
	print_mac(mac);
	if (v->accepted_lo & (1u << VIRTIO_NET_F_STATUS)) {
		print(status & VIRTIO_NET_S_LINK_UP ? ", link up (status " : ", link down (status ");
		print_hex(status, 4);
		putch(')');
	} else {
		print(", no status field");
	}
	print(v->accepted_lo & (1u << VIRTIO_NET_F_MRG_RXBUF) ? ", MRG_RXBUF\n" : ", no MRG_RXBUF\n");

	struct vq *rx = &v->q[0];
	for (u16 i = 0; i < RX_BUFFERS; i++) {
		struct seg s = { (uptr)rx_bufs[i], RX_BUF_BYTES, 1 };
		vq_post(rx, i, &s, 1);
	}
	vq_kick(rx);
	print("virtio-net: ");
	print_dec(RX_BUFFERS);
	print(" receive buffers of ");
	print_dec(RX_BUF_BYTES);
	print(" bytes posted on queue 0\n");

	if (send_text(v, broadcast, "ping", ping_text))
		return -1;
	print("virtio-net: waiting up to ");
	print_dec(wait_s);
	print(" s for a pong\n");
	u8 peer[6];
	int got = await_pong(v, (u64)tsc10 * 100u * wait_s, peer);
	if (got < 0)
		return -1;
	if (got == 0) {
		print("virtio-net: no pong within ");
		print_dec(wait_s);
		print(" s\n");
		if (!virtio_fail_reason)
			virtio_fail_reason = "no pong";
		return -1;
	}
	return send_text(v, peer, "ping 2", ping2_text);
}

int main(u32 magic, const struct multiboot_info *info)
{
	print("virtio-net: start\n");
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		print("virtio-net: FAIL not entered by a Multiboot loader\n");
		return 1;
	}
	parse_cmdline(info);
	u32 tsc10 = tsc_per_10ms();
	if (tsc10) {
		print("virtio-net: TSC ");
		print_dec(tsc10 / 10000u);
		print(" MHz (PIT channel 2)\n");
	} else {
		tsc10 = TSC_10MS_FALLBACK;
		print("virtio-net: PIT calibration failed; assuming a 2500 MHz TSC\n");
	}
	if (!pci_mechanism1_present())
		print("pci: no host bridge (CONFIG_ADDRESS at 0xcf8 does not read back)\n");
	pci_scan_bus0();
	if (pci_nfns == 0)
		print("pci: no devices on bus 0\n");

	static struct vdev net = { .name = "virtio-net" };
	net.fn = pci_find(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_NET);
	if (!net.fn) {
		print("virtio-net: FAIL no virtio-net device\n");
		return 1;
	}
	run_net(&net, tsc10);
	if (virtio_fail_reason) {
		print("virtio-net: FAIL ");
		print(virtio_fail_reason);
		putch('\n');
		return 1;
	}
	print("virtio-net: PASS\n");
	return 0;
}

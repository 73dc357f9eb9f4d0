/*
 * virtio-blk-bench: a Multiboot (v1) kernel in C for `npm run bench` (bench/run.ts): N reads
 * of 4 KiB from a virtio-blk disk (1af4:1042), sequential or at random, with up to QD
 * requests in flight, over the shared polled virtio-pci driver (guests/src/include/virtio.c).
 * It does not time anything itself: the host timestamps the "go" and "done" lines on COM1.
 *
 * The Multiboot command line (words separated by spaces; defaults in brackets):
 *   pattern=seq|rand  [seq] block i (mod the disk's blocks), or the LCG below
 *   n=N               [1000] reads, 1-10000000
 *   qd=Q              [1] requests in flight, 1-8
 *   seed=S            [1] the LCG's first state
 *   device=self       the guest completes its own requests (tag, status, used ring) instead
 *                     of notifying: the cost of the driver loop alone, with no VMM in it —
 *                     an upper bound, as playing the device adds a few instructions
 * 4 KiB block k of the image must start with k as a little-endian u32 (the bench writes its
 * image so): every read is checked against it.
 *
 * Random blocks: x = x * 1664525 + 1013904223 (mod 2^32) before each read, block =
 * (x * blocks) >> 32 (the high bits, so a power-of-two disk gets all its blocks), where
 * blocks = capacity / 8 (capacity in 512-byte sectors, at most 2^32 blocks are used).
 *
 * Requests: slot s (0 ≤ s < QD) owns descriptors 3s (16-byte header), 3s+1 (4 KiB
 * device-writable data) and 3s+2 (status byte), set up once; a read writes the slot's header
 * sector and publishes head 3s. The queue has min(queue_size, 32) entries. The driver skips
 * the notification while the device sets VIRTQ_USED_F_NO_NOTIFY, and polls the used ring.
 *
 * COM1: the options, the scan and the device set-up lines, then "virtio-blk-bench: go", then
 * "virtio-blk-bench: done n=N sum=0x........ bad=B" (sum: the u32 sum of the tags read; bad:
 * reads whose status was not OK or whose tag was wrong) and "virtio-blk-bench: PASS"
 * (debug-exit value 0) or "virtio-blk-bench: FAIL <reason>" (value 1).
 */
// @uses virtio.c
#include "virtio.h"

#define BLOCK_BYTES 4096u
#define SECTORS_PER_BLOCK 8u
#define QD_MAX 8
#define QUEUE_ENTRIES 32
#define N_MAX 10000000u
#define VIRTQ_USED_F_NO_NOTIFY 1

static struct vq_pages queue ALIGNED(4096);
static u8 data[QD_MAX][BLOCK_BYTES] ALIGNED(4096);
static struct virtio_blk_req_hdr hdr[QD_MAX] ALIGNED(16);
static volatile u8 status[QD_MAX] ALIGNED(16);
static u32 slot_block[QD_MAX];

static int random_pattern;
static int self_device;
static u32 n_reads = 1000, qd = 1, seed = 1;

/* ---- the command line ---- */

static int word_is(const char *w, usize n, const char *s) { return strlen(s) == n && memcmp(w, s, n) == 0; }

/* `key=` followed by a decimal number in [lo, hi] in w[0..n): 1 and *out, else 0. */
static int word_num(const char *w, usize n, const char *key, u32 lo, u32 hi, u32 *out)
{
	usize k = strlen(key);
	if (n <= k || n - k > 10 || memcmp(w, key, k) != 0)
		return 0;
	u64 v = 0;
	for (usize i = k; i < n; i++) {
		if (w[i] < '0' || w[i] > '9')
			return 0;
		v = v * 10 + (u32)(w[i] - '0');
	}
	if (v < lo || v > hi)
		return 0;
	*out = (u32)v;
	return 1;
}

static void parse_cmdline(const struct multiboot_info *info)
{
	if (!(info->flags & 4) || !info->cmdline)
		return;
	const char *p = (const char *)info->cmdline;
	const char *w;
	for (usize n; (n = next_word(&p, &w)) != 0;) {
		if (word_is(w, n, "pattern=seq"))
			random_pattern = 0;
		else if (word_is(w, n, "pattern=rand"))
			random_pattern = 1;
		else if (word_is(w, n, "device=self"))
			self_device = 1;
		else if (!word_num(w, n, "n=", 1, N_MAX, &n_reads) && !word_num(w, n, "qd=", 1, QD_MAX, &qd) &&
			 !word_num(w, n, "seed=", 0, 0xffffffffu, &seed)) {
			print("virtio-blk-bench: ignoring command-line word '");
			for (usize i = 0; i < n; i++)
				putch(w[i]);
			print("'\n");
		}
	}
}

/* ---- the reads ---- */

static u32 lcg;
static u32 blocks;
static u32 next_seq;

static u32 next_block(void)
{
	if (random_pattern) {
		lcg = lcg * 1664525u + 1013904223u;
		return (u32)(((u64)lcg * blocks) >> 32);
	}
	u32 b = next_seq;
	if (++next_seq == blocks)
		next_seq = 0;
	return b;
}

/* Issue the next read in slot `s` (published, not notified). */
static void submit(struct vq *q, u32 s)
{
	u32 b = next_block();
	slot_block[s] = b;
	hdr[s].sector = (u64)b * SECTORS_PER_BLOCK;
	status[s] = 0xff;
	vq_post_head(q, (u16)(3 * s));
}

/* device=self: complete what was published since the last call, as the device would. */
static u16 self_avail;
static void self_complete(struct vq *q)
{
	while (self_avail != q->avail_idx) {
		u16 head = q->avail->ring[self_avail % q->size];
		u32 s = head / 3u;
		*(volatile u32 *)data[s] = slot_block[s];
		status[s] = VIRTIO_BLK_S_OK;
		volatile struct virtq_used_elem *e = &q->used->ring[q->used->idx % q->size];
		e->id = head;
		e->len = BLOCK_BYTES + 1;
		barrier();
		q->used->idx = (u16)(q->used->idx + 1);
		self_avail++;
	}
}

static void kick(struct vq *q)
{
	if (self_device) {
		self_complete(q);
		return;
	}
	mb(); /* the published index before reading the device's flags */
	if (!(q->used->flags & VIRTQ_USED_F_NO_NOTIFY))
		mmio_write16(q->notify_addr, q->index);
}

static int bench(struct vdev *v)
{
	if (!v->device || v->cap[VIRTIO_PCI_CAP_DEVICE_CFG].length < 8)
		return virtio_fail(v, "no device configuration (capacity)");
	u64 capacity = 0;
	for (int tries = 0; tries < 4; tries++) {
		u8 gen = mmio_read8(v->common + CC_CONFIG_GENERATION);
		capacity = mmio_read64(v->device);
		if (mmio_read8(v->common + CC_CONFIG_GENERATION) == gen)
			break;
	}
	u64 nb = capacity / SECTORS_PER_BLOCK; /* a shift: no 64-bit division */
	blocks = nb >> 32 ? 0xffffffffu : (u32)nb;
	print(v->name);
	print(": capacity ");
	print_hex64(capacity);
	print(" sectors, ");
	print_dec(blocks);
	print(" blocks of 4 KiB\n");
	if (blocks == 0)
		return virtio_fail(v, "disk smaller than one 4 KiB block");

	struct vq *q = &v->q[0];
	if (q->size < 3 * qd)
		return virtio_fail(v, "queue too small for the queue depth");
	for (u32 s = 0; s < qd; s++) {
		hdr[s].type = VIRTIO_BLK_T_IN;
		hdr[s].reserved = 0;
		struct seg segs[3] = {
			{ (uptr)&hdr[s], sizeof(hdr[s]), 0 },
			{ (uptr)data[s], BLOCK_BYTES, 1 },
			{ (uptr)&status[s], 1, 1 },
		};
		/* the descriptors only: vq_post would publish them */
		for (int i = 0; i < 3; i++) {
			struct virtq_desc *d = &q->desc[3 * s + (u32)i];
			d->addr = segs[i].addr;
			d->len = segs[i].len;
			d->flags = (u16)((segs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (i < 2 ? VIRTQ_DESC_F_NEXT : 0));
			d->next = (u16)(i < 2 ? 3 * s + (u32)i + 1 : 0);
		}
	}
	lcg = seed;
	next_seq = 0;

	print("virtio-blk-bench: go\n");
	u32 issued = 0, done = 0, bad = 0, sum = 0;
	for (u32 s = 0; s < qd && issued < n_reads; s++, issued++)
		submit(q, s);
	kick(q);
	while (done < n_reads) {
		u32 id, len;
		if (vq_wait(q, POLL_TSC_TICKS, 0, &id, &len)) {
			print("virtio-blk-bench: timeout: no used buffer after ");
			print_dec(done);
			print(" reads (used idx ");
			print_dec(q->used->idx);
			print(")\n");
			virtio_fail_reason = "timeout waiting for the used ring";
			return -1;
		}
		u32 s = id / 3;
		if (id % 3 != 0 || s >= qd)
			return virtio_fail(v, "the used ring names a descriptor that is not a request's head");
		u32 tag = *(volatile u32 *)data[s];
		if (status[s] != VIRTIO_BLK_S_OK || tag != slot_block[s] || len != BLOCK_BYTES + 1) {
			if (bad == 0) {
				print("virtio-blk-bench: read of block ");
				print_dec(slot_block[s]);
				print(": status ");
				print_dec(status[s]);
				print(", used len ");
				print_dec(len);
				print(", tag ");
				print_hex(tag, 8);
				putch('\n');
			}
			bad++;
		}
		sum += tag;
		done++;
		if (issued < n_reads) {
			submit(q, s);
			issued++;
			kick(q);
		}
	}
	print("virtio-blk-bench: done n=");
	print_dec(done);
	print(" sum=");
	print_hex(sum, 8);
	print(" bad=");
	print_dec(bad);
	putch('\n');
	if (bad)
		return virtio_fail(v, "reads failed or returned the wrong block");
	return 0;
}

int main(u32 magic, const struct multiboot_info *info)
{
	print("virtio-blk-bench: start\n");
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		print("virtio-blk-bench: FAIL not entered by a Multiboot loader\n");
		return 1;
	}
	parse_cmdline(info);
	print("virtio-blk-bench: pattern=");
	print(random_pattern ? "rand" : "seq");
	print(" n=");
	print_dec(n_reads);
	print(" qd=");
	print_dec(qd);
	print(" seed=");
	print_dec(seed);
	print(self_device ? " device=self\n" : "\n");
	pci_scan_bus0();
	static struct vdev blk = { .name = "virtio-blk" };
	blk.fn = pci_find(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BLK);
	if (!blk.fn) {
		print("virtio-blk-bench: FAIL no virtio-blk device\n");
		return 1;
	}
	if (virtio_attach(&blk) == 0 && virtio_init(&blk, 0, 1, QUEUE_ENTRIES, &queue) == 0)
		bench(&blk);
	if (virtio_fail_reason) {
		print("virtio-blk-bench: FAIL ");
		print(virtio_fail_reason);
		putch('\n');
		return 1;
	}
	print("virtio-blk-bench: PASS\n");
	return 0;
}

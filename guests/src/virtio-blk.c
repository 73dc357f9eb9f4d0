/*
 * virtio-blk: a Multiboot (v1) kernel in C that drives modern virtio-pci devices the way a
 * minimal firmware + driver would, and reports on COM1. 32-bit protected mode, paging off,
 * no interrupts (every queue is polled). Built by scripts/build-guests.mjs into
 * guests/out/virtio-blk.elf with the runtime in guests/src/include (guest.h).
 *
 * 1. PCI (mechanism #1, 0xCF8/0xCFC): checks that CONFIG_ADDRESS reads back, scans bus 0
 *    devices 0-31 function 0 and prints "pci 00:DD.0 VVVV:DDDD" for each function found.
 *    The memory BARs of every type-0 function are sized (decode off, all-ones, restore) and
 *    those already programmed below 4 GiB are recorded as busy.
 * 2. For 1af4:1042 (virtio-blk) and 1af4:1044 (virtio-rng), the first of each modern
 *    virtio-pci vendor capability (cap id 0x09; cfg_type 1 common, 2 notify, 3 ISR, 4
 *    device) is located through the capability list. A BAR they name that is not programmed,
 *    or is a 64-bit BAR programmed above 4 GiB (out of reach with paging off), is placed at
 *    a free naturally aligned address in [0xC000_0000, 0xE000_0000) — low dword first, then
 *    the high dword — and memory decode and bus mastering are enabled.
 * 3. Driver initialisation (virtio 1.2 §3.1.1): reset (status 0, wait for 0), ACKNOWLEDGE,
 *    DRIVER, read the 64 device feature bits, accept VERSION_1 (bit 32) — and, for the block
 *    device, FLUSH (bit 9) when offered, so that the flush request below is one the device
 *    agreed to — FEATURES_OK (read back), queue 0 of min(queue_size, 8) entries in static
 *    4 KiB-aligned rings with MSI-X vectors set to NO_VECTOR (0xffff), queue_enable,
 *    DRIVER_OK. Every request is one descriptor chain, published through the available ring,
 *    notified, and awaited by polling the used ring's idx for at most 2^32 TSC ticks.
 * 4. virtio-blk: capacity from the device configuration (read under config_generation),
 *    then (a) read sector 0, printing its first 16 bytes; (b) write sector 1 with
 *    "vmmapi virtio-blk write test" followed by bytes i & 0xff (i = 28..511); (c) flush, if
 *    offered; (d) read sector 1 back and compare; (e) read sector `capacity` (one past the
 *    end), which must complete with status IOERR (1). virtio-rng: one 64-byte device-writable
 *    buffer; the used length must be 1-64 and the bytes not all zero.
 *
 * The last line is "virtio-fixture: PASS" (debug-exit value 0, VMM status 1) when at least
 * one device was found and every device found passed, else "virtio-fixture: FAIL <reason>"
 * (value 1, status 3).
 */
#include "guest.h"

/* ---- PCI ---- */

#define PCI_VENDOR_ID 0x00
#define PCI_COMMAND 0x04
#define PCI_STATUS 0x06
#define PCI_HEADER_TYPE 0x0e
#define PCI_BAR0 0x10
#define PCI_CAP_PTR 0x34
#define PCI_COMMAND_MEMORY 0x0002
#define PCI_COMMAND_MASTER 0x0004
#define PCI_STATUS_CAP_LIST 0x0010
#define PCI_CAP_ID_VNDR 0x09

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BLK 0x1042
#define VIRTIO_PCI_DEVICE_RNG 0x1044

/* Where relocated BARs go: above RAM below 4 GiB (RAM ends at 3 GiB at most on the PC). */
#define BAR_WINDOW_BASE 0xc0000000u
#define BAR_WINDOW_END 0xe0000000u
#define FOUR_GIB 0x100000000ull

/* ---- virtio over PCI (virtio 1.2 §4.1.4) ---- */

#define VIRTIO_PCI_CAP_COMMON_CFG 1
#define VIRTIO_PCI_CAP_NOTIFY_CFG 2
#define VIRTIO_PCI_CAP_ISR_CFG 3
#define VIRTIO_PCI_CAP_DEVICE_CFG 4

/* Offsets in the common configuration structure. */
#define CC_DEVICE_FEATURE_SELECT 0x00
#define CC_DEVICE_FEATURE 0x04
#define CC_DRIVER_FEATURE_SELECT 0x08
#define CC_DRIVER_FEATURE 0x0c
#define CC_CONFIG_MSIX_VECTOR 0x10
#define CC_NUM_QUEUES 0x12
#define CC_DEVICE_STATUS 0x14
#define CC_CONFIG_GENERATION 0x15
#define CC_QUEUE_SELECT 0x16
#define CC_QUEUE_SIZE 0x18
#define CC_QUEUE_MSIX_VECTOR 0x1a
#define CC_QUEUE_ENABLE 0x1c
#define CC_QUEUE_NOTIFY_OFF 0x1e
#define CC_QUEUE_DESC 0x20
#define CC_QUEUE_DRIVER 0x28
#define CC_QUEUE_DEVICE 0x30
#define CC_MIN_LENGTH 0x38

#define STATUS_ACKNOWLEDGE 0x01
#define STATUS_DRIVER 0x02
#define STATUS_DRIVER_OK 0x04
#define STATUS_FEATURES_OK 0x08
#define STATUS_NEEDS_RESET 0x40
#define STATUS_FAILED 0x80

#define VIRTIO_MSI_NO_VECTOR 0xffff
#define VIRTIO_F_VERSION_1_HI 0x1 /* bit 32: bit 0 of the high feature dword */

/* ---- split virtqueues (virtio 1.2 §2.7) ---- */

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define QUEUE_MAX 8

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[QUEUE_MAX];
	u16 used_event;
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[QUEUE_MAX];
	u16 avail_event;
};

/* One page for each area of each device's queue 0. */
struct queue_pages {
	u8 desc[4096];
	u8 avail[4096];
	u8 used[4096];
};

/* ---- virtio-blk (§5.2) ---- */

#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define SECTOR_SIZE 512

struct virtio_blk_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

static const char write_text[] = "vmmapi virtio-blk write test";

/* ---- polling ---- */

#define POLL_TSC_TICKS (1ull << 32) /* ~1.7 s at 2.5 GHz: requests take microseconds to milliseconds */
#define POLL_MAX_ITERATIONS 2000000u /* a backstop should the TSC stand still */
#define RESET_MAX_READS 1000

/* ---- state ---- */

struct bar_info {
	u64 addr;
	u64 size; /* 0: not implemented (or an I/O BAR, or the upper half of a 64-bit BAR) */
	u8 is64;
	u8 io;
};

struct pci_fn {
	u8 slot;
	u16 vendor;
	u16 device;
	u8 header_type;
	struct bar_info bar[6];
};

struct vcap {
	u8 present;
	u8 bar;
	u32 offset;
	u32 length;
};

struct vdev {
	const char *name;
	struct pci_fn *fn;
	struct vcap cap[5]; /* by cfg_type, 1-4 */
	u32 notify_multiplier;
	uptr common, notify, isr, device;
	u32 features_lo, features_hi;
	u32 accepted_lo;
	u16 qsize;
	uptr notify_addr;
	struct queue_pages *q;
	u16 avail_idx;
	u16 used_idx;
};

struct range {
	u32 base;
	u32 size;
};

static struct pci_fn fns[32];
static int nfns;
static struct range busy[6 * 32 + 8];
static int nbusy;

static struct queue_pages queues[2] ALIGNED(4096);
static struct virtio_blk_req_hdr blk_hdr ALIGNED(16);
static u8 blk_data[SECTOR_SIZE] ALIGNED(512);
static u8 blk_pattern[SECTOR_SIZE];
static volatile u8 blk_status ALIGNED(4);
static volatile u8 rng_buf[64] ALIGNED(64);

static const char *fail_reason;

/* Remember the first failure: it is the reason the last line gives. */
static int fail(struct vdev *v, const char *why)
{
	if (v) {
		print(v->name);
		print(": ");
	}
	print("error: ");
	print(why);
	putch('\n');
	if (!fail_reason)
		fail_reason = why;
	return -1;
}

static void print_hex16_bare(u16 v)
{
	print_hex8((u8)(v >> 8));
	print_hex8((u8)v);
}

static void print_slot(u8 slot)
{
	print("00:");
	print_hex8(slot);
	print(".0");
}

/* ---- PCI: scan, BAR sizing and placement ---- */

/* Size BAR `i` of `f` (memory decode must be off) and restore its value. Returns the number
 * of BAR registers it occupies (2 for a 64-bit BAR). */
static int bar_probe(struct pci_fn *f, int i)
{
	u32 reg = PCI_BAR0 + 4 * (u32)i;
	u32 lo = pci_read32(0, f->slot, 0, reg);
	struct bar_info *b = &f->bar[i];
	b->addr = 0;
	b->size = 0;
	b->is64 = 0;
	b->io = lo & 1;
	if (b->io)
		return 1; /* the fixture has no use for I/O BARs */
	b->is64 = ((lo >> 1) & 3) == 2 && i < 5;
	u32 hi = b->is64 ? pci_read32(0, f->slot, 0, reg + 4) : 0;
	pci_write32(0, f->slot, 0, reg, 0xffffffffu);
	u32 mlo = pci_read32(0, f->slot, 0, reg) & ~0xfu;
	pci_write32(0, f->slot, 0, reg, lo);
	u32 mhi = 0xffffffffu;
	if (b->is64) {
		pci_write32(0, f->slot, 0, reg + 4, 0xffffffffu);
		mhi = pci_read32(0, f->slot, 0, reg + 4);
		pci_write32(0, f->slot, 0, reg + 4, hi);
	}
	b->addr = ((u64)hi << 32) | (lo & ~0xfu);
	if (mlo == 0 && (!b->is64 || mhi == 0))
		b->size = 0;
	else
		b->size = ~(((u64)mhi << 32) | mlo) + 1;
	return b->is64 ? 2 : 1;
}

/* Size all memory BARs of a type-0 function; those programmed below 4 GiB become busy. */
static void probe_bars(struct pci_fn *f)
{
	u16 cmd = pci_read16(0, f->slot, 0, PCI_COMMAND);
	pci_write16(0, f->slot, 0, PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER));
	for (int i = 0; i < 6;) {
		int n = bar_probe(f, i);
		struct bar_info *b = &f->bar[i];
		if (b->size && b->addr && b->addr + b->size <= FOUR_GIB && nbusy < (int)ARRAY_SIZE(busy)) {
			busy[nbusy].base = (u32)b->addr;
			busy[nbusy].size = (u32)b->size;
			nbusy++;
		}
		if (n == 2)
			f->bar[i + 1].size = 0;
		i += n;
	}
	pci_write16(0, f->slot, 0, PCI_COMMAND, cmd);
}

static void scan_bus0(void)
{
	for (u32 d = 0; d < 32; d++) {
		u32 id = pci_read32(0, d, 0, PCI_VENDOR_ID);
		u16 vendor = (u16)id;
		if (vendor == 0xffff || vendor == 0)
			continue;
		struct pci_fn *f = &fns[nfns++];
		f->slot = (u8)d;
		f->vendor = vendor;
		f->device = (u16)(id >> 16);
		f->header_type = pci_read8(0, d, 0, PCI_HEADER_TYPE) & 0x7f;
		print("pci ");
		print_slot(f->slot);
		putch(' ');
		print_hex16_bare(f->vendor);
		putch(':');
		print_hex16_bare(f->device);
		putch('\n');
	}
	for (int i = 0; i < nfns; i++)
		if (fns[i].header_type == 0)
			probe_bars(&fns[i]);
}

static u32 align_up(u32 v, u32 a) { return (v + a - 1) & ~(a - 1); }

/* The lowest address in the window, aligned to `align`, where `size` bytes overlap nothing
 * busy; 0 if there is none. */
static u32 find_free(u32 size, u32 align)
{
	u32 at = align_up(BAR_WINDOW_BASE, align);
	for (int guard = 0; guard <= nbusy; guard++) {
		if (at < BAR_WINDOW_BASE || (u64)at + size > BAR_WINDOW_END)
			return 0;
		int clash = -1;
		for (int i = 0; i < nbusy; i++)
			if (at < busy[i].base + (u64)busy[i].size && busy[i].base < (u64)at + size)
				clash = i;
		if (clash < 0)
			return at;
		u64 next = (u64)busy[clash].base + busy[clash].size;
		if (next >= BAR_WINDOW_END)
			return 0;
		at = align_up((u32)next, align);
	}
	return 0;
}

/* Make BAR `i` of the device reachable below 4 GiB (placing it if it is not). */
static int bar_place(struct vdev *v, int i)
{
	struct pci_fn *f = v->fn;
	struct bar_info *b = &f->bar[i];
	if (b->io)
		return fail(v, "a virtio capability names an I/O BAR");
	if (b->size == 0)
		return fail(v, "a virtio capability names a BAR that is not implemented");
	if (b->addr != 0 && b->addr + b->size <= FOUR_GIB)
		return 0;
	if (b->size > BAR_WINDOW_END - BAR_WINDOW_BASE)
		return fail(v, "BAR too large for the 32-bit window");
	u32 size = (u32)b->size;
	u32 at = find_free(size, size < 4096 ? 4096 : size);
	if (!at)
		return fail(v, "no room for the BAR below 4 GiB");
	print(v->name);
	print(": BAR");
	print_dec((u32)i);
	print(b->is64 ? " (64-bit, " : " (32-bit, ");
	print_hex(size, 8);
	print(" bytes) ");
	if (b->addr) {
		print("moved from ");
		print_hex64(b->addr);
	} else {
		print("was unassigned,");
	}
	print(" to ");
	print_hex(at, 8);
	putch('\n');
	u32 reg = PCI_BAR0 + 4 * (u32)i;
	u16 cmd = pci_read16(0, f->slot, 0, PCI_COMMAND);
	pci_write16(0, f->slot, 0, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
	pci_write32(0, f->slot, 0, reg, at);
	if (b->is64)
		pci_write32(0, f->slot, 0, reg + 4, 0);
	pci_write16(0, f->slot, 0, PCI_COMMAND, cmd);
	b->addr = at;
	busy[nbusy].base = at;
	busy[nbusy].size = size;
	nbusy++;
	return 0;
}

/* ---- virtio-pci: capabilities ---- */

static int find_caps(struct vdev *v)
{
	u8 slot = v->fn->slot;
	if (!(pci_read16(0, slot, 0, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return fail(v, "no capability list");
	u8 ptr = pci_read8(0, slot, 0, PCI_CAP_PTR) & 0xfc;
	for (int guard = 0; ptr && guard < 48; guard++) {
		if (ptr < 0x40)
			return fail(v, "capability pointer into the header");
		u32 head = pci_read32(0, slot, 0, ptr);
		u8 id = (u8)head, next = (u8)(head >> 8) & 0xfc, len = (u8)(head >> 16), type = (u8)(head >> 24);
		if (id == PCI_CAP_ID_VNDR && len >= 16 && type >= 1 && type <= 4 && !v->cap[type].present) {
			struct vcap *c = &v->cap[type];
			c->bar = pci_read8(0, slot, 0, ptr + 4u);
			c->offset = pci_read32(0, slot, 0, ptr + 8u);
			c->length = pci_read32(0, slot, 0, ptr + 12u);
			if (c->bar <= 5) { /* other values are reserved: skip the capability */
				if (type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
					if (len < 20)
						return fail(v, "notify capability too short");
					v->notify_multiplier = pci_read32(0, slot, 0, ptr + 16u);
				}
				c->present = 1;
			}
		}
		ptr = next;
	}
	if (!v->cap[VIRTIO_PCI_CAP_COMMON_CFG].present)
		return fail(v, "no common configuration capability");
	if (!v->cap[VIRTIO_PCI_CAP_NOTIFY_CFG].present)
		return fail(v, "no notification capability");
	if (!v->cap[VIRTIO_PCI_CAP_ISR_CFG].present)
		return fail(v, "no ISR capability");
	if (v->cap[VIRTIO_PCI_CAP_COMMON_CFG].length < CC_MIN_LENGTH)
		return fail(v, "common configuration capability too short");
	return 0;
}

/* Place the BARs the capabilities name, enable decoding, and compute the structures' addresses. */
static int map_caps(struct vdev *v)
{
	struct pci_fn *f = v->fn;
	uptr *where[5] = { NULL, &v->common, &v->notify, &v->isr, &v->device };
	for (int t = 1; t <= 4; t++) {
		struct vcap *c = &v->cap[t];
		if (!c->present)
			continue;
		if (bar_place(v, c->bar))
			return -1;
		struct bar_info *b = &f->bar[c->bar];
		if ((u64)c->offset + c->length > b->size)
			return fail(v, "a virtio structure extends past its BAR");
		*where[t] = (uptr)b->addr + c->offset;
	}
	u16 cmd = pci_read16(0, f->slot, 0, PCI_COMMAND);
	pci_write16(0, f->slot, 0, PCI_COMMAND, cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	print(v->name);
	print(": common ");
	print_hex(v->common, 8);
	print(" notify ");
	print_hex(v->notify, 8);
	print(" x");
	print_dec(v->notify_multiplier);
	print(" isr ");
	print_hex(v->isr, 8);
	print(" device ");
	print_hex(v->device, 8);
	putch('\n');
	return 0;
}

/* ---- virtio: initialisation and one queue ---- */

static u8 get_status(struct vdev *v) { return mmio_read8(v->common + CC_DEVICE_STATUS); }
static void set_status(struct vdev *v, u8 s) { mmio_write8(v->common + CC_DEVICE_STATUS, s); }

/* §3.1.1 up to DRIVER_OK, with queue 0 set up. `wanted_lo` are the low feature bits the
 * driver accepts when offered (VERSION_1 is always accepted). */
static int virtio_init(struct vdev *v, u32 wanted_lo, struct queue_pages *q)
{
	uptr c = v->common;
	set_status(v, 0);
	int reads = 0;
	while (get_status(v) != 0)
		if (++reads >= RESET_MAX_READS)
			return fail(v, "reset did not complete (device_status stays non-zero)");
	u8 s = STATUS_ACKNOWLEDGE;
	set_status(v, s);
	s |= STATUS_DRIVER;
	set_status(v, s);

	mmio_write32(c + CC_DEVICE_FEATURE_SELECT, 0);
	v->features_lo = mmio_read32(c + CC_DEVICE_FEATURE);
	mmio_write32(c + CC_DEVICE_FEATURE_SELECT, 1);
	v->features_hi = mmio_read32(c + CC_DEVICE_FEATURE);
	print(v->name);
	print(": device features ");
	print_hex64(((u64)v->features_hi << 32) | v->features_lo);
	putch('\n');
	if (!(v->features_hi & VIRTIO_F_VERSION_1_HI)) {
		set_status(v, s | STATUS_FAILED);
		return fail(v, "device does not offer VIRTIO_F_VERSION_1");
	}
	v->accepted_lo = v->features_lo & wanted_lo;
	mmio_write32(c + CC_DRIVER_FEATURE_SELECT, 0);
	mmio_write32(c + CC_DRIVER_FEATURE, v->accepted_lo);
	mmio_write32(c + CC_DRIVER_FEATURE_SELECT, 1);
	mmio_write32(c + CC_DRIVER_FEATURE, VIRTIO_F_VERSION_1_HI);
	s |= STATUS_FEATURES_OK;
	set_status(v, s);
	if (!(get_status(v) & STATUS_FEATURES_OK)) {
		set_status(v, s | STATUS_FAILED);
		return fail(v, "device did not accept the features (FEATURES_OK reads clear)");
	}

	if (mmio_read16(c + CC_NUM_QUEUES) == 0)
		return fail(v, "device has no queues");
	mmio_write16(c + CC_CONFIG_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
	mmio_write16(c + CC_QUEUE_SELECT, 0);
	u16 max = mmio_read16(c + CC_QUEUE_SIZE);
	if (max == 0)
		return fail(v, "queue 0 is not available (queue_size 0)");
	v->qsize = max < QUEUE_MAX ? max : QUEUE_MAX;
	mmio_write16(c + CC_QUEUE_SIZE, v->qsize);
	mmio_write16(c + CC_QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);

	v->q = q;
	memset(q->desc, 0, sizeof(struct virtq_desc) * QUEUE_MAX);
	memset(q->avail, 0, sizeof(struct virtq_avail));
	memset(q->used, 0, sizeof(struct virtq_used));
	((struct virtq_avail *)q->avail)->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	v->avail_idx = 0;
	v->used_idx = 0;
	mmio_write64(c + CC_QUEUE_DESC, (uptr)q->desc);
	mmio_write64(c + CC_QUEUE_DRIVER, (uptr)q->avail);
	mmio_write64(c + CC_QUEUE_DEVICE, (uptr)q->used);
	u16 off = mmio_read16(c + CC_QUEUE_NOTIFY_OFF);
	u32 at = (u32)off * v->notify_multiplier;
	if ((u64)at + 2 > v->cap[VIRTIO_PCI_CAP_NOTIFY_CFG].length)
		return fail(v, "queue 0's notification address is outside the notify structure");
	v->notify_addr = v->notify + at;
	mmio_write16(c + CC_QUEUE_ENABLE, 1);

	s |= STATUS_DRIVER_OK;
	set_status(v, s);
	u8 now = get_status(v);
	print(v->name);
	print(": driver features ");
	print_hex64(((u64)VIRTIO_F_VERSION_1_HI << 32) | v->accepted_lo);
	print(", queue 0 size ");
	print_dec(v->qsize);
	print(" (max ");
	print_dec(max);
	print("), status ");
	print_hex(now, 2);
	putch('\n');
	if (now & (STATUS_NEEDS_RESET | STATUS_FAILED))
		return fail(v, "device reports DEVICE_NEEDS_RESET or FAILED after DRIVER_OK");
	if ((now & s) != s)
		return fail(v, "device_status lost bits after DRIVER_OK");
	return 0;
}

struct seg {
	uptr addr;
	u32 len;
	int device_writes;
};

/* Post one chain of `n` buffers on queue 0, notify, and poll for its completion. */
static int virtq_run(struct vdev *v, const struct seg *segs, int n, u32 *used_len)
{
	struct virtq_desc *desc = (struct virtq_desc *)v->q->desc;
	volatile struct virtq_avail *avail = (volatile struct virtq_avail *)v->q->avail;
	volatile struct virtq_used *used = (volatile struct virtq_used *)v->q->used;
	for (int i = 0; i < n; i++) {
		desc[i].addr = segs[i].addr;
		desc[i].len = segs[i].len;
		desc[i].flags = (u16)((segs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		desc[i].next = (u16)(i + 1 < n ? i + 1 : 0);
	}
	avail->ring[v->avail_idx % v->qsize] = 0; /* the chain's head: descriptor 0 */
	barrier(); /* descriptors and ring entry before the index that publishes them */
	avail->idx = ++v->avail_idx;
	mb(); /* the index before the notification */
	mmio_write16(v->notify_addr, 0);

	u64 start = rdtsc();
	u32 spins = 0;
	while (used->idx == v->used_idx) {
		if (rdtsc() - start > POLL_TSC_TICKS || ++spins > POLL_MAX_ITERATIONS) {
			print(v->name);
			print(": timeout: no used buffer (used idx ");
			print_dec(used->idx);
			print(", device status ");
			print_hex(get_status(v), 2);
			print(")\n");
			if (!fail_reason)
				fail_reason = "timeout waiting for the used ring";
			return -1;
		}
	}
	barrier(); /* the used entry after the index that published it */
	u32 id = used->ring[v->used_idx % v->qsize].id;
	*used_len = used->ring[v->used_idx % v->qsize].len;
	v->used_idx++;
	if (id != 0)
		return fail(v, "the used ring names a descriptor that is not the chain's head");
	return 0;
}

/* ---- virtio-blk ---- */

static void print_blk_status(u8 s)
{
	print_dec(s);
	print(s == VIRTIO_BLK_S_OK ? " (OK)" : s == VIRTIO_BLK_S_IOERR ? " (IOERR)" : s == VIRTIO_BLK_S_UNSUPP ? " (UNSUPP)" : " (?)");
}

/* One request: header, optional 512-byte data buffer (device_writes: a read), status. */
static int blk_request(struct vdev *v, u32 type, u64 sector, int with_data, int device_writes, u8 *status, u32 *len)
{
	struct seg segs[3];
	int n = 0;
	blk_hdr.type = type;
	blk_hdr.reserved = 0;
	blk_hdr.sector = sector;
	blk_status = 0xff;
	segs[n++] = (struct seg){ (uptr)&blk_hdr, sizeof(blk_hdr), 0 };
	if (with_data)
		segs[n++] = (struct seg){ (uptr)blk_data, SECTOR_SIZE, device_writes };
	segs[n++] = (struct seg){ (uptr)&blk_status, 1, 1 };
	if (virtq_run(v, segs, n, len))
		return -1;
	*status = blk_status;
	return 0;
}

static int blk_test(struct vdev *v)
{
	if (!v->device || v->cap[VIRTIO_PCI_CAP_DEVICE_CFG].length < 8)
		return fail(v, "no device configuration (capacity)");
	u64 capacity = 0;
	for (int tries = 0; tries < 4; tries++) {
		u8 gen = mmio_read8(v->common + CC_CONFIG_GENERATION);
		capacity = mmio_read64(v->device);
		if (mmio_read8(v->common + CC_CONFIG_GENERATION) == gen)
			break;
	}
	print(v->name);
	print(": capacity ");
	print_hex64(capacity);
	print(" sectors\n");
	if (capacity < 2)
		return fail(v, "disk too small (fewer than 2 sectors)");

	u8 st;
	u32 len;
	int ok = 1;

	/* (a) read sector 0 */
	memset(blk_data, 0, SECTOR_SIZE);
	if (blk_request(v, VIRTIO_BLK_T_IN, 0, 1, 1, &st, &len))
		return -1;
	print(v->name);
	print(": read sector 0: status ");
	print_blk_status(st);
	print(", used len ");
	print_dec(len);
	print(", data ");
	print_bytes(blk_data, 16);
	putch('\n');
	if (st != VIRTIO_BLK_S_OK) {
		fail(v, "read of sector 0 failed");
		ok = 0;
	}

	/* (b) write sector 1 */
	for (u32 i = 0; i < SECTOR_SIZE; i++)
		blk_pattern[i] = i < sizeof(write_text) - 1 ? (u8)write_text[i] : (u8)i;
	memcpy(blk_data, blk_pattern, SECTOR_SIZE);
	if (blk_request(v, VIRTIO_BLK_T_OUT, 1, 1, 0, &st, &len))
		return -1;
	print(v->name);
	print(": write sector 1: status ");
	print_blk_status(st);
	print(", used len ");
	print_dec(len);
	putch('\n');
	if (st != VIRTIO_BLK_S_OK) {
		fail(v, "write of sector 1 failed");
		ok = 0;
	}

	/* (c) flush */
	if (v->accepted_lo & (1u << VIRTIO_BLK_F_FLUSH)) {
		if (blk_request(v, VIRTIO_BLK_T_FLUSH, 0, 0, 0, &st, &len))
			return -1;
		print(v->name);
		print(": flush: status ");
		print_blk_status(st);
		putch('\n');
		if (st != VIRTIO_BLK_S_OK) {
			fail(v, "flush failed");
			ok = 0;
		}
	} else {
		print(v->name);
		print(": flush: not offered\n");
	}

	/* (d) read sector 1 back */
	memset(blk_data, 0, SECTOR_SIZE);
	if (blk_request(v, VIRTIO_BLK_T_IN, 1, 1, 1, &st, &len))
		return -1;
	print(v->name);
	print(": read sector 1: status ");
	print_blk_status(st);
	print(", used len ");
	print_dec(len);
	if (st == VIRTIO_BLK_S_OK) {
		u32 at = 0;
		while (at < SECTOR_SIZE && blk_data[at] == blk_pattern[at])
			at++;
		if (at == SECTOR_SIZE) {
			print(", matches what was written\n");
		} else {
			print(", MISMATCH at byte ");
			print_dec(at);
			putch('\n');
			fail(v, "sector 1 does not read back what was written");
			ok = 0;
		}
	} else {
		putch('\n');
		fail(v, "read of sector 1 failed");
		ok = 0;
	}

	/* (e) one sector past the end */
	if (blk_request(v, VIRTIO_BLK_T_IN, capacity, 1, 1, &st, &len))
		return -1;
	print(v->name);
	print(": read sector ");
	print_hex64(capacity);
	print(" (past the end): status ");
	print_blk_status(st);
	putch('\n');
	if (st != VIRTIO_BLK_S_IOERR) {
		fail(v, "a read past the capacity did not fail with IOERR");
		ok = 0;
	}
	return ok ? 0 : -1;
}

/* ---- virtio-rng ---- */

static int rng_test(struct vdev *v)
{
	for (u32 i = 0; i < sizeof(rng_buf); i++)
		rng_buf[i] = 0;
	struct seg seg = { (uptr)rng_buf, sizeof(rng_buf), 1 };
	u32 len;
	if (virtq_run(v, &seg, 1, &len))
		return -1;
	u32 nonzero = 0;
	for (u32 i = 0; i < len && i < sizeof(rng_buf); i++)
		nonzero += rng_buf[i] != 0;
	print(v->name);
	print(": used len ");
	print_dec(len);
	print(", ");
	print_dec(nonzero);
	print(" non-zero bytes\n");
	if (len == 0 || len > sizeof(rng_buf))
		return fail(v, "entropy request used length not in 1-64");
	if (nonzero == 0)
		return fail(v, "entropy bytes are all zero");
	return 0;
}

/* ---- main ---- */

static int run_device(struct vdev *v, int is_blk)
{
	print(v->name);
	print(" at ");
	print_slot(v->fn->slot);
	putch('\n');
	if (find_caps(v) || map_caps(v))
		return -1;
	if (virtio_init(v, is_blk ? 1u << VIRTIO_BLK_F_FLUSH : 0, &queues[is_blk ? 0 : 1]))
		return -1;
	int r = is_blk ? blk_test(v) : rng_test(v);
	print(v->name);
	print(r ? ": FAIL\n" : ": ok\n");
	return r;
}

int main(u32 magic, const struct multiboot_info *info)
{
	(void)info;
	print("virtio-fixture: start\n");
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
		print("virtio-fixture: FAIL not entered by a Multiboot loader\n");
		return 1;
	}
	if (!pci_mechanism1_present())
		print("pci: no host bridge (CONFIG_ADDRESS at 0xcf8 does not read back)\n");
	scan_bus0();
	if (nfns == 0)
		print("pci: no devices on bus 0\n");

	static struct vdev blk = { .name = "virtio-blk" }, rng = { .name = "virtio-rng" };
	for (int i = 0; i < nfns; i++) {
		if (fns[i].vendor != VIRTIO_PCI_VENDOR || fns[i].header_type != 0)
			continue;
		if (fns[i].device == VIRTIO_PCI_DEVICE_BLK && !blk.fn)
			blk.fn = &fns[i];
		if (fns[i].device == VIRTIO_PCI_DEVICE_RNG && !rng.fn)
			rng.fn = &fns[i];
	}
	print("virtio-fixture: found blk=");
	print_dec(blk.fn != NULL);
	print(" rng=");
	print_dec(rng.fn != NULL);
	putch('\n');
	if (!blk.fn && !rng.fn) {
		print("virtio-fixture: FAIL no virtio devices\n");
		return 1;
	}
	if (blk.fn)
		run_device(&blk, 1);
	if (rng.fn)
		run_device(&rng, 0);
	if (fail_reason) {
		print("virtio-fixture: FAIL ");
		print(fail_reason);
		putch('\n');
		return 1;
	}
	print("virtio-fixture: PASS\n");
	return 0;
}

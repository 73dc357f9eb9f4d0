/*
 * virtio.c: the modern virtio-pci driver of the C virtio fixtures (declared in virtio.h).
 * Linked into a fixture that says `// @uses virtio.c` (scripts/build-guests.mjs).
 */
#include "virtio.h"

#define RESET_MAX_READS 1000

struct range {
	u32 base;
	u32 size;
};

struct pci_fn pci_fns[32];
int pci_nfns;
static struct range busy[6 * 32 + 8];
static int nbusy;

const char *virtio_fail_reason;

int virtio_fail(struct vdev *v, const char *why)
{
	if (v) {
		print(v->name);
		print(": ");
	}
	print("error: ");
	print(why);
	putch('\n');
	if (!virtio_fail_reason)
		virtio_fail_reason = why;
	return -1;
}

void print_hex16_bare(u16 v)
{
	print_hex8((u8)(v >> 8));
	print_hex8((u8)v);
}

void print_slot(u8 slot)
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
		return 1; /* the fixtures have no use for I/O BARs */
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

void pci_scan_bus0(void)
{
	for (u32 d = 0; d < 32; d++) {
		u32 id = pci_read32(0, d, 0, PCI_VENDOR_ID);
		u16 vendor = (u16)id;
		if (vendor == 0xffff || vendor == 0)
			continue;
		struct pci_fn *f = &pci_fns[pci_nfns++];
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
	for (int i = 0; i < pci_nfns; i++)
		if (pci_fns[i].header_type == 0)
			probe_bars(&pci_fns[i]);
}

struct pci_fn *pci_find(u16 vendor, u16 device)
{
	for (int i = 0; i < pci_nfns; i++)
		if (pci_fns[i].vendor == vendor && pci_fns[i].device == device && pci_fns[i].header_type == 0)
			return &pci_fns[i];
	return NULL;
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
		return virtio_fail(v, "a virtio capability names an I/O BAR");
	if (b->size == 0)
		return virtio_fail(v, "a virtio capability names a BAR that is not implemented");
	if (b->addr != 0 && b->addr + b->size <= FOUR_GIB)
		return 0;
	if (b->size > BAR_WINDOW_END - BAR_WINDOW_BASE)
		return virtio_fail(v, "BAR too large for the 32-bit window");
	u32 size = (u32)b->size;
	u32 at = find_free(size, size < 4096 ? 4096 : size);
	if (!at)
		return virtio_fail(v, "no room for the BAR below 4 GiB");
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
		return virtio_fail(v, "no capability list");
	u8 ptr = pci_read8(0, slot, 0, PCI_CAP_PTR) & 0xfc;
	for (int guard = 0; ptr && guard < 48; guard++) {
		if (ptr < 0x40)
			return virtio_fail(v, "capability pointer into the header");
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
						return virtio_fail(v, "notify capability too short");
					v->notify_multiplier = pci_read32(0, slot, 0, ptr + 16u);
				}
				c->present = 1;
			}
		}
		ptr = next;
	}
	if (!v->cap[VIRTIO_PCI_CAP_COMMON_CFG].present)
		return virtio_fail(v, "no common configuration capability");
	if (!v->cap[VIRTIO_PCI_CAP_NOTIFY_CFG].present)
		return virtio_fail(v, "no notification capability");
	if (!v->cap[VIRTIO_PCI_CAP_ISR_CFG].present)
		return virtio_fail(v, "no ISR capability");
	if (v->cap[VIRTIO_PCI_CAP_COMMON_CFG].length < CC_MIN_LENGTH)
		return virtio_fail(v, "common configuration capability too short");
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
			return virtio_fail(v, "a virtio structure extends past its BAR");
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

int virtio_attach(struct vdev *v)
{
	print(v->name);
	print(" at ");
	print_slot(v->fn->slot);
	putch('\n');
	if (find_caps(v) || map_caps(v))
		return -1;
	return 0;
}

/* ---- virtio: initialisation ---- */

u8 virtio_get_status(struct vdev *v) { return mmio_read8(v->common + CC_DEVICE_STATUS); }
static void set_status(struct vdev *v, u8 s) { mmio_write8(v->common + CC_DEVICE_STATUS, s); }

/* Set up queue `i` (selected) in `pg`; returns the device's maximum size, 0 on failure. */
static u16 queue_setup(struct vdev *v, int i, u16 max_entries, struct vq_pages *pg)
{
	uptr c = v->common;
	mmio_write16(c + CC_QUEUE_SELECT, (u16)i);
	u16 max = mmio_read16(c + CC_QUEUE_SIZE);
	if (max == 0) {
		virtio_fail(v, i == 0 ? "queue 0 is not available (queue_size 0)" : "a queue is not available (queue_size 0)");
		return 0;
	}
	struct vq *q = &v->q[i];
	q->dev = v;
	q->index = (u16)i;
	q->size = max < max_entries ? max : max_entries;
	mmio_write16(c + CC_QUEUE_SIZE, q->size);
	mmio_write16(c + CC_QUEUE_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);

	q->desc = (struct virtq_desc *)pg->desc;
	q->avail = (volatile struct virtq_avail *)pg->avail;
	q->used = (volatile struct virtq_used *)pg->used;
	/* only what a queue of `size` entries uses (.bss starts zeroed; this is for a re-init) */
	memset(pg->desc, 0, sizeof(struct virtq_desc) * q->size);
	memset(pg->avail, 0, 6 + 2 * (usize)q->size);
	memset(pg->used, 0, 6 + 8 * (usize)q->size);
	q->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
	q->avail_idx = 0;
	q->used_idx = 0;
	mmio_write64(c + CC_QUEUE_DESC, (uptr)pg->desc);
	mmio_write64(c + CC_QUEUE_DRIVER, (uptr)pg->avail);
	mmio_write64(c + CC_QUEUE_DEVICE, (uptr)pg->used);
	u16 off = mmio_read16(c + CC_QUEUE_NOTIFY_OFF);
	u32 at = (u32)off * v->notify_multiplier;
	if ((u64)at + 2 > v->cap[VIRTIO_PCI_CAP_NOTIFY_CFG].length) {
		virtio_fail(v, i == 0 ? "queue 0's notification address is outside the notify structure"
				      : "a queue's notification address is outside the notify structure");
		return 0;
	}
	q->notify_addr = v->notify + at;
	mmio_write16(c + CC_QUEUE_ENABLE, 1);
	return max;
}

int virtio_init(struct vdev *v, u32 wanted_lo, int nqueues, u16 max_entries, struct vq_pages *pages)
{
	uptr c = v->common;
	if (nqueues < 1 || nqueues > VDEV_MAX_QUEUES || max_entries < 1 || max_entries > VQ_MAX_ENTRIES)
		return virtio_fail(v, "virtio_init: bad queue count or size");
	set_status(v, 0);
	int reads = 0;
	while (virtio_get_status(v) != 0)
		if (++reads >= RESET_MAX_READS)
			return virtio_fail(v, "reset did not complete (device_status stays non-zero)");
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
		return virtio_fail(v, "device does not offer VIRTIO_F_VERSION_1");
	}
	v->accepted_lo = v->features_lo & wanted_lo;
	mmio_write32(c + CC_DRIVER_FEATURE_SELECT, 0);
	mmio_write32(c + CC_DRIVER_FEATURE, v->accepted_lo);
	mmio_write32(c + CC_DRIVER_FEATURE_SELECT, 1);
	mmio_write32(c + CC_DRIVER_FEATURE, VIRTIO_F_VERSION_1_HI);
	s |= STATUS_FEATURES_OK;
	set_status(v, s);
	if (!(virtio_get_status(v) & STATUS_FEATURES_OK)) {
		set_status(v, s | STATUS_FAILED);
		return virtio_fail(v, "device did not accept the features (FEATURES_OK reads clear)");
	}

	u16 have = mmio_read16(c + CC_NUM_QUEUES);
	if (have == 0)
		return virtio_fail(v, "device has no queues");
	if (have < nqueues)
		return virtio_fail(v, "device has fewer queues than the driver needs");
	mmio_write16(c + CC_CONFIG_MSIX_VECTOR, VIRTIO_MSI_NO_VECTOR);
	u16 max[VDEV_MAX_QUEUES];
	for (int i = 0; i < nqueues; i++)
		if ((max[i] = queue_setup(v, i, max_entries, &pages[i])) == 0)
			return -1;
	v->nqueues = nqueues;

	s |= STATUS_DRIVER_OK;
	set_status(v, s);
	u8 now = virtio_get_status(v);
	print(v->name);
	print(": driver features ");
	print_hex64(((u64)VIRTIO_F_VERSION_1_HI << 32) | v->accepted_lo);
	for (int i = 0; i < nqueues; i++) {
		print(", queue ");
		print_dec((u32)i);
		print(" size ");
		print_dec(v->q[i].size);
		print(" (max ");
		print_dec(max[i]);
		putch(')');
	}
	print(", status ");
	print_hex(now, 2);
	putch('\n');
	if (now & (STATUS_NEEDS_RESET | STATUS_FAILED))
		return virtio_fail(v, "device reports DEVICE_NEEDS_RESET or FAILED after DRIVER_OK");
	if ((now & s) != s)
		return virtio_fail(v, "device_status lost bits after DRIVER_OK");
	return 0;
}

/* ---- one split queue ---- */

void vq_post_head(struct vq *q, u16 head)
{
	q->avail->ring[q->avail_idx % q->size] = head;
	barrier(); /* descriptors and ring entry before the index that publishes them */
	q->avail->idx = ++q->avail_idx;
}

void vq_post(struct vq *q, u16 head, const struct seg *segs, int n)
{
	for (int i = 0; i < n; i++) {
		struct virtq_desc *d = &q->desc[head + i];
		d->addr = segs[i].addr;
		d->len = segs[i].len;
		d->flags = (u16)((segs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0));
		d->next = (u16)(i + 1 < n ? head + i + 1 : 0);
	}
	vq_post_head(q, head);
}

void vq_kick(struct vq *q)
{
	mb(); /* the index before the notification */
	mmio_write16(q->notify_addr, q->index);
}

int vq_wait(struct vq *q, u64 ticks, u32 max_spins, u32 *id, u32 *len)
{
	u64 start = rdtsc(), last = start;
	u32 spins = 0;
	while (q->used->idx == q->used_idx) {
		u64 now = rdtsc();
		if (now - start > ticks)
			return 1;
		if (max_spins) {
			if (++spins > max_spins)
				return 1;
		} else if (now != last) {
			last = now;
			spins = 0;
		} else if (++spins > STALL_SPINS) {
			return 1;
		}
	}
	barrier(); /* the used entry after the index that published it */
	volatile struct virtq_used_elem *e = &q->used->ring[q->used_idx % q->size];
	*id = e->id;
	*len = e->len;
	q->used_idx++;
	return 0;
}

int virtq_run(struct vq *q, const struct seg *segs, int n, u32 *used_len)
{
	struct vdev *v = q->dev;
	vq_post(q, 0, segs, n);
	vq_kick(q);
	u32 id;
	if (vq_wait(q, POLL_TSC_TICKS, POLL_MAX_ITERATIONS, &id, used_len)) {
		print(v->name);
		print(": timeout: no used buffer (");
		if (q->index) {
			print("queue ");
			print_dec(q->index);
			print(", ");
		}
		print("used idx ");
		print_dec(q->used->idx);
		print(", device status ");
		print_hex(virtio_get_status(v), 2);
		print(")\n");
		if (!virtio_fail_reason)
			virtio_fail_reason = "timeout waiting for the used ring";
		return -1;
	}
	if (id != 0)
		return virtio_fail(v, "the used ring names a descriptor that is not the chain's head");
	return 0;
}

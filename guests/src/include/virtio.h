/*
 * virtio.h: the modern virtio-pci driver shared by the C virtio fixtures
 * (guests/src/virtio-*.c, which name virtio.c with `// @uses virtio.c`; see virtio.c).
 *
 * 32-bit protected mode, paging off, no interrupts: every queue is polled. What is here:
 *
 * - PCI bus 0 (mechanism #1): pci_scan_bus0() lists the functions of devices 0-31 (printing
 *   "pci 00:DD.0 VVVV:DDDD" for each) and sizes their memory BARs; pci_find() picks one.
 * - virtio_attach(): walks the capability list for the first vendor capability of each
 *   cfg_type (1 common, 2 notify, 3 ISR, 4 device), places the BARs they name below 4 GiB
 *   when they are not (in [0xC000_0000, 0xE000_0000)) and enables memory decode and bus
 *   mastering.
 * - virtio_init(): virtio 1.2 §3.1.1 up to DRIVER_OK with queues 0..n-1 set up, each in
 *   three static 4 KiB pages (struct vq_pages) with NO_VECTOR and VIRTQ_AVAIL_F_NO_INTERRUPT.
 * - one split virtqueue per struct vq: vq_post() publishes a chain, vq_kick() notifies,
 *   vq_wait() polls the used ring for one element (bounded by TSC ticks), virtq_run() does
 *   all three for a chain at descriptor 0.
 *
 * Errors print "<device>: error: <why>" and the first one is kept in virtio_fail_reason,
 * which the fixture's last line names.
 */
#ifndef VIRTIO_H
#define VIRTIO_H

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
#define VIRTIO_PCI_DEVICE_CONSOLE 0x1043
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
/* The most entries a queue gets here: its descriptor table fills one 4 KiB page. */
#define VQ_MAX_ENTRIES 256
/* The most queues virtio_init sets up. */
#define VDEV_MAX_QUEUES 2

struct virtq_desc {
	u64 addr;
	u32 len;
	u16 flags;
	u16 next;
};

struct virtq_avail {
	u16 flags;
	u16 idx;
	u16 ring[VQ_MAX_ENTRIES]; /* the first `size` are used; used_event (unused here) follows them */
};

struct virtq_used_elem {
	u32 id;
	u32 len;
};

struct virtq_used {
	u16 flags;
	u16 idx;
	struct virtq_used_elem ring[VQ_MAX_ENTRIES];
};

/* One page for each area of one queue. */
struct vq_pages {
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
#define VIRTIO_BLK_SECTOR_SIZE 512

struct virtio_blk_req_hdr {
	u32 type;
	u32 reserved;
	u64 sector;
};

/* ---- polling ---- */

#define POLL_TSC_TICKS (1ull << 32) /* ~1.7 s at 2.5 GHz: requests take microseconds to milliseconds */
#define POLL_MAX_ITERATIONS 2000000u /* a backstop should the TSC stand still */
#define STALL_SPINS 100000u

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

struct vdev;

struct vq {
	struct vdev *dev;
	u16 index;
	u16 size;
	uptr notify_addr;
	struct virtq_desc *desc;
	volatile struct virtq_avail *avail;
	volatile struct virtq_used *used;
	u16 avail_idx;
	u16 used_idx;
};

struct vdev {
	const char *name;
	struct pci_fn *fn;
	struct vcap cap[5]; /* by cfg_type, 1-4 */
	u32 notify_multiplier;
	uptr common, notify, isr, device;
	u32 features_lo, features_hi;
	u32 accepted_lo;
	int nqueues;
	struct vq q[VDEV_MAX_QUEUES];
};

/* One buffer of a chain: `device_writes` for a device-writable one. */
struct seg {
	uptr addr;
	u32 len;
	int device_writes;
};

/* The functions pci_scan_bus0 found. */
extern struct pci_fn pci_fns[32];
extern int pci_nfns;
/* The first failure (NULL while there is none). */
extern const char *virtio_fail_reason;

/* Print "<name>: error: <why>" (without a name: "error: <why>"), keep the first reason; returns -1. */
int virtio_fail(struct vdev *v, const char *why);

void print_hex16_bare(u16 v);
void print_slot(u8 slot); /* "00:DD.0" */

/* Scan bus 0 function 0 of devices 0-31 and size the memory BARs of type-0 functions. */
void pci_scan_bus0(void);
/* The first type-0 function vendor:device found by pci_scan_bus0, or NULL. */
struct pci_fn *pci_find(u16 vendor, u16 device);

/* Print "<name> at 00:DD.0", find the capabilities and map their BARs. */
int virtio_attach(struct vdev *v);

/*
 * §3.1.1 up to DRIVER_OK. Accepts VERSION_1 and those of the low feature bits `wanted_lo`
 * the device offers; sets up queues 0..nqueues-1 (nqueues ≤ VDEV_MAX_QUEUES), each of
 * min(queue_size, max_entries) entries (max_entries ≤ VQ_MAX_ENTRIES) in pages[i].
 */
int virtio_init(struct vdev *v, u32 wanted_lo, int nqueues, u16 max_entries, struct vq_pages *pages);

/* Write the chain of `n` buffers at descriptors head..head+n-1 and publish it (no notification). */
void vq_post(struct vq *q, u16 head, const struct seg *segs, int n);
/* Notify the device of queue `q`'s new buffers. */
void vq_kick(struct vq *q);
/* Publish only the available-ring entry for a chain whose descriptors are already in place. */
void vq_post_head(struct vq *q, u16 head);
/*
 * Wait for the next used element: 0 with its id and len; 1 after `ticks` TSC ticks without
 * one — nothing is printed or recorded then. A backstop should the TSC stand still: at most
 * `max_spins` polls, or with max_spins 0 (for long waits on fast hosts) until the TSC reads
 * the same STALL_SPINS times in a row.
 */
int vq_wait(struct vq *q, u64 ticks, u32 max_spins, u32 *id, u32 *len);
/* True if the used ring holds an element not yet taken. */
static inline int vq_has_used(struct vq *q) { return q->used->idx != q->used_idx; }

/* Post one chain at descriptor 0, notify, and poll for its completion (POLL_TSC_TICKS). */
int virtq_run(struct vq *q, const struct seg *segs, int n, u32 *used_len);

/* The device_status register. */
u8 virtio_get_status(struct vdev *v);

#endif

/*
 * virtio-blk: a Multiboot (v1) kernel in C that drives modern virtio-pci devices the way a
 * minimal firmware + driver would, and reports on COM1. 32-bit protected mode, paging off,
 * no interrupts (every queue is polled). Built by scripts/build-guests.mjs into
 * guests/out/virtio-blk.elf with the runtime in guests/src/include (guest.h) and the shared
 * virtio-pci driver there (virtio.c, virtio.h: steps 1-3 below).
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
// @uses virtio.c
#include "virtio.h"

static const char write_text[] = "vmmapi virtio-blk write test";

static struct vq_pages queues[2] ALIGNED(4096);
static struct virtio_blk_req_hdr blk_hdr ALIGNED(16);
static u8 blk_data[VIRTIO_BLK_SECTOR_SIZE] ALIGNED(512);
static u8 blk_pattern[VIRTIO_BLK_SECTOR_SIZE];
static volatile u8 blk_status ALIGNED(4);
static volatile u8 rng_buf[64] ALIGNED(64);

#define QUEUE_ENTRIES 8 /* queue 0 of min(queue_size, 8) entries */

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
		segs[n++] = (struct seg){ (uptr)blk_data, VIRTIO_BLK_SECTOR_SIZE, device_writes };
	segs[n++] = (struct seg){ (uptr)&blk_status, 1, 1 };
	if (virtq_run(&v->q[0], segs, n, len))
		return -1;
	*status = blk_status;
	return 0;
}

static int blk_test(struct vdev *v)
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
	print(v->name);
	print(": capacity ");
	print_hex64(capacity);
	print(" sectors\n");
	if (capacity < 2)
		return virtio_fail(v, "disk too small (fewer than 2 sectors)");

	u8 st;
	u32 len;
	int ok = 1;

	/* (a) read sector 0 */
	memset(blk_data, 0, VIRTIO_BLK_SECTOR_SIZE);
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
		virtio_fail(v, "read of sector 0 failed");
		ok = 0;
	}

	/* (b) write sector 1 */
	for (u32 i = 0; i < VIRTIO_BLK_SECTOR_SIZE; i++)
		blk_pattern[i] = i < sizeof(write_text) - 1 ? (u8)write_text[i] : (u8)i;
	memcpy(blk_data, blk_pattern, VIRTIO_BLK_SECTOR_SIZE);
	if (blk_request(v, VIRTIO_BLK_T_OUT, 1, 1, 0, &st, &len))
		return -1;
	print(v->name);
	print(": write sector 1: status ");
	print_blk_status(st);
	print(", used len ");
	print_dec(len);
	putch('\n');
	if (st != VIRTIO_BLK_S_OK) {
		virtio_fail(v, "write of sector 1 failed");
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
			virtio_fail(v, "flush failed");
			ok = 0;
		}
	} else {
		print(v->name);
		print(": flush: not offered\n");
	}

	/* (d) read sector 1 back */
	memset(blk_data, 0, VIRTIO_BLK_SECTOR_SIZE);
	if (blk_request(v, VIRTIO_BLK_T_IN, 1, 1, 1, &st, &len))
		return -1;
	print(v->name);
	print(": read sector 1: status ");
	print_blk_status(st);
	print(", used len ");
	print_dec(len);
	if (st == VIRTIO_BLK_S_OK) {
		u32 at = 0;
		while (at < VIRTIO_BLK_SECTOR_SIZE && blk_data[at] == blk_pattern[at])
			at++;
		if (at == VIRTIO_BLK_SECTOR_SIZE) {
			print(", matches what was written\n");
		} else {
			print(", MISMATCH at byte ");
			print_dec(at);
			putch('\n');
			virtio_fail(v, "sector 1 does not read back what was written");
			ok = 0;
		}
	} else {
		putch('\n');
		virtio_fail(v, "read of sector 1 failed");
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
		virtio_fail(v, "a read past the capacity did not fail with IOERR");
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
	if (virtq_run(&v->q[0], &seg, 1, &len))
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
		return virtio_fail(v, "entropy request used length not in 1-64");
	if (nonzero == 0)
		return virtio_fail(v, "entropy bytes are all zero");
	return 0;
}

/* ---- main ---- */

static int run_device(struct vdev *v, int is_blk)
{
	if (virtio_attach(v))
		return -1;
	if (virtio_init(v, is_blk ? 1u << VIRTIO_BLK_F_FLUSH : 0, 1, QUEUE_ENTRIES, &queues[is_blk ? 0 : 1]))
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
	pci_scan_bus0();
	if (pci_nfns == 0)
		print("pci: no devices on bus 0\n");

	static struct vdev blk = { .name = "virtio-blk" }, rng = { .name = "virtio-rng" };
	blk.fn = pci_find(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_BLK);
	rng.fn = pci_find(VIRTIO_PCI_VENDOR, VIRTIO_PCI_DEVICE_RNG);
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
	if (virtio_fail_reason) {
		print("virtio-fixture: FAIL ");
		print(virtio_fail_reason);
		putch('\n');
		return 1;
	}
	print("virtio-fixture: PASS\n");
	return 0;
}

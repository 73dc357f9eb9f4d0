/** VirtioBlock over a real SplitQueue and a temporary image file. */
import { open } from 'node:fs/promises';
import { readFileSync, statSync, truncateSync } from 'node:fs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { VIRTIO_DEVICE_TYPE } from '../../../../src/virtio/index.js';
import {
  ImageError, VIRTIO_BLK_F, VIRTIO_BLK_S, VIRTIO_BLK_T, VirtioBlock, featureBits, type VirtioBlockOptions,
} from '../../../../src/virtio/devices/index.js';
import type { GuestDriver } from '../driver.js';
import { TempImage, blkHeader, blkRange, pattern, postBlk } from './blk-util.js';
import { activate, driversFor, turn, type FakeContext } from './harness.js';

const { IN, OUT, FLUSH, GET_ID, DISCARD, WRITE_ZEROES } = VIRTIO_BLK_T;
const { OK, IOERR, UNSUPP } = VIRTIO_BLK_S;
const F = VIRTIO_BLK_F;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** A device over a fresh image of `bytes` (content `content`), its driver and context. */
async function setup(
  bytes: number, opts: Partial<VirtioBlockOptions> = {}, content?: Uint8Array, features?: bigint,
): Promise<{ img: TempImage; blk: VirtioBlock; d: GuestDriver; ctx: FakeContext }> {
  const img = new TempImage(bytes, content);
  cleanup.push(() => img.remove());
  const blk = await VirtioBlock.open({ path: img.path, ...opts });
  cleanup.push(() => blk.close());
  const [d] = driversFor(blk, { size: 64 });
  const ctx = activate(blk, [d], features ?? blk.features);
  return { img, blk, d, ctx };
}

/** FileHandle.prototype, to spy on datasync. */
async function fileHandleProto(path: string): Promise<{ datasync(): Promise<void> }> {
  const fh = await open(path);
  await fh.close();
  return Object.getPrototypeOf(fh) as { datasync(): Promise<void> };
}

/** Notify, then wait for every file operation (and the serving it triggers) to finish. */
async function run(blk: VirtioBlock): Promise<void> {
  blk.notify(0);
  await blk.whenIdle();
}

describe('VirtioBlock: device description', () => {
  it('exposes capacity (rounded down), seg/size limits, blk_size and the discard/write-zeroes limits', async () => {
    const { blk } = await setup(1024 * 1024 + 100, { queueSize: 64 });
    expect(blk.deviceType).toBe(VIRTIO_DEVICE_TYPE.BLOCK);
    expect(blk.features).toBe(featureBits(F.SIZE_MAX, F.SEG_MAX, F.BLK_SIZE, F.FLUSH, F.DISCARD, F.WRITE_ZEROES));
    expect(blk.queueSizes).toEqual([64]);
    expect(blk.configSize).toBe(60);
    expect(blk.capacity).toBe(2048);
    expect(blk.readConfig(0, 4)).toBe(2048);
    expect(blk.readConfig(4, 4)).toBe(0);
    expect(blk.readConfig(8, 4)).toBe(4096); // size_max
    expect(blk.readConfig(12, 4)).toBe(62); // seg_max = queueSize - 2
    expect(blk.readConfig(20, 4)).toBe(512); // blk_size
    expect(blk.readConfig(34, 2)).toBe(1); // num_queues
    expect([36, 40, 44, 48, 52].map((o) => blk.readConfig(o, 4))).toEqual([0x400000, 16, 8, 0x10000, 1]);
    expect(blk.readConfig(56, 1)).toBe(0); // write_zeroes_may_unmap
    expect(blk.maxRequestBytes).toBe(62 * 4096);
    blk.writeConfig(0, 4, 7); // read-only: ignored
    expect(blk.readConfig(0, 4)).toBe(2048);
    expect(() => blk.readConfig(58, 4)).toThrow(RangeError);
    expect(() => blk.writeConfig(0, 2, 0x10000)).toThrow(/value/);
  });

  it('offers RO and no DISCARD / WRITE_ZEROES for a read-only image', async () => {
    const { blk } = await setup(8192, { readonly: true });
    expect(blk.features).toBe(featureBits(F.SIZE_MAX, F.SEG_MAX, F.BLK_SIZE, F.FLUSH, F.RO));
    expect(blk.readConfig(36, 4)).toBe(0);
  });

  it('checks its options and the image', async () => {
    const img = new TempImage(4096);
    cleanup.push(() => img.remove());
    await expect(VirtioBlock.open({} as never)).rejects.toThrow(/options.path/);
    await expect(VirtioBlock.open({ path: img.path, serial: 'x'.repeat(21) })).rejects.toThrow(/options.serial/);
    await expect(VirtioBlock.open({ path: img.path, serial: 'caf\u00e9' })).rejects.toThrow(RangeError);
    await expect(VirtioBlock.open({ path: img.path, queueSize: 2 })).rejects.toThrow(/options.queueSize/);
    await expect(VirtioBlock.open({ path: img.path, segMax: 255, queueSize: 256 })).rejects.toThrow(/options.segMax/);
    await expect(VirtioBlock.open({ path: img.path, sizeMax: 5000 })).rejects.toThrow(/options.sizeMax/);
    await expect(VirtioBlock.open({ path: img.path, maxInFlight: 0 })).rejects.toThrow(/options.maxInFlight/);
    await expect(VirtioBlock.open({ path: img.path, readonly: 1 as never })).rejects.toThrow(/options.readonly/);
    await expect(VirtioBlock.open({ path: `${img.path}.missing` })).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(VirtioBlock.open({ path: img.dir })).rejects.toMatchObject({ code: 'EISDIR' });
    await expect(VirtioBlock.open({ path: img.dir, readonly: true })).rejects.toBeInstanceOf(ImageError);
    const blk = await VirtioBlock.open({ path: img.path });
    expect(() => blk.notify(1)).toThrow(/index/);
    expect(() => blk.activate({} as never)).toThrow(/ctx.features/);
    await blk.close();
    await blk.close(); // idempotent
    expect(blk.closed).toBe(true);
  });
});

describe('VirtioBlock: requests', () => {
  it('reads sectors into split data buffers, with used length data + status, and interrupts', async () => {
    const content = pattern(16 * 512);
    const { blk, d, ctx } = await setup(16 * 512, {}, content);
    const r = postBlk(d, IN, 2, [], [512, 1024]);
    expect(blk.inFlight).toBe(0);
    blk.notify(0);
    expect(blk.inFlight).toBe(1);
    expect(d.used()).toEqual([]); // asynchronous
    await blk.whenIdle();
    expect(d.used()).toEqual([{ id: r.head, len: 1537 }]);
    expect(r.status()).toBe(OK);
    expect(r.data()).toEqual(content.subarray(1024, 2560));
    expect(ctx.interrupts).toEqual([0]);
    expect(blk.stats).toMatchObject({ reads: 1, ok: 1, bytesRead: 1536, peakInFlight: 1 });
    expect(d.ram.guardsIntact()).toBe(true);
  });

  it('writes reach the file, and a flush calls datasync on it', async () => {
    const { img, blk, d } = await setup(64 * 512);
    const proto = await fileHandleProto(img.path);
    const datasync = vi.spyOn(proto, 'datasync');
    const data = pattern(1024, 9);
    const w = postBlk(d, OUT, 10, [data.subarray(0, 100), data.subarray(100)]);
    await run(blk);
    expect(w.status()).toBe(OK);
    expect(d.used()).toEqual([{ id: w.head, len: 1 }]);
    expect(datasync).not.toHaveBeenCalled(); // FLUSH negotiated: writeback
    const f = postBlk(d, FLUSH, 0);
    await run(blk);
    expect(f.status()).toBe(OK);
    expect(datasync).toHaveBeenCalledTimes(1);
    expect(readFileSync(img.path).subarray(10 * 512, 10 * 512 + 1024)).toEqual(Buffer.from(data));
    expect(blk.stats).toMatchObject({ writes: 1, flushes: 1, bytesWritten: 1024 });
  });

  it('is writethrough when the driver did not negotiate FLUSH', async () => {
    const { img, blk, d } = await setup(64 * 512, {}, undefined, featureBits(F.SEG_MAX, F.BLK_SIZE));
    const proto = await fileHandleProto(img.path);
    const datasync = vi.spyOn(proto, 'datasync');
    postBlk(d, OUT, 0, [pattern(512)]);
    postBlk(d, OUT, 1, [pattern(512)]);
    await run(blk);
    expect(datasync).toHaveBeenCalledTimes(2);
  });

  it('answers GET_ID with the NUL-padded serial (20 bytes, no terminator at 20)', async () => {
    const short = await setup(4096, { serial: 'vmmapi-0' });
    const a = postBlk(short.d, GET_ID, 0, [], [20]);
    short.blk.notify(0); // answered at once
    expect(short.d.used()).toEqual([{ id: a.head, len: 21 }]);
    expect(a.status()).toBe(OK);
    expect(a.data()).toEqual(new Uint8Array([...Buffer.from('vmmapi-0'), ...new Uint8Array(12)]));
    const full = await setup(4096, { serial: '0123456789abcdefghij' });
    const b = postBlk(full.d, GET_ID, 0, [], [20]);
    const c = postBlk(full.d, GET_ID, 0, [], [8]); // a short buffer gets what fits
    full.blk.notify(0);
    expect(Buffer.from(b.data()).toString()).toBe('0123456789abcdefghij');
    expect(Buffer.from(c.data()).toString()).toBe('01234567');
    const none = await setup(4096);
    const e = postBlk(none.d, GET_ID, 0, [], [20]);
    none.blk.notify(0);
    expect([e.status(), e.data().every((x) => x === 0)]).toEqual([OK, true]);
  });

  it('answers IOERR for ranges beyond capacity, partial sectors and oversized requests', async () => {
    const { blk, d } = await setup(32 * 512, { segMax: 2, sizeMax: 4096 });
    const posted = [
      postBlk(d, IN, 32, [], [512]), // starts at capacity
      postBlk(d, IN, 31, [], [1024]), // runs past it
      postBlk(d, OUT, 31, [pattern(1024)]),
      postBlk(d, IN, 0xffff_ffff_ffff_ffffn, [], [512]), // would wrap a u64
      postBlk(d, IN, 0x7f_ffff_ffff_ffffn, [], [512]),
      postBlk(d, IN, 0, [], [100]), // not a multiple of 512
      postBlk(d, OUT, 0, [pattern(513)]),
      postBlk(d, IN, 0, [], [8192 + 512]), // over segMax * sizeMax
    ];
    await run(blk);
    expect(posted.map((p) => p.status())).toEqual(posted.map(() => IOERR));
    // an error leaves the data unwritten, so only a status-only request reports length 1
    expect(d.used().map((u) => u.len)).toEqual([0, 0, 1, 0, 0, 0, 1, 0]);
    expect(blk.stats.ioErrors).toBe(8);
    expect(blk.stats.bytesRead + blk.stats.bytesWritten).toBe(0);
    const edge = [postBlk(d, IN, 31, [], [512]), postBlk(d, IN, 32, [], [])]; // last sector; empty at the end
    await run(blk);
    expect(edge.map((p) => p.status())).toEqual([OK, OK]);
  });

  it('refuses writes on a read-only image without touching the file', async () => {
    const content = pattern(8 * 512);
    const { img, blk, d } = await setup(8 * 512, { readonly: true }, content);
    const w = postBlk(d, OUT, 0, [new Uint8Array(512)]);
    const z = postBlk(d, WRITE_ZEROES, 0, [blkRange(0, 1)]);
    const r = postBlk(d, IN, 0, [], [512]);
    const f = postBlk(d, FLUSH, 0);
    await run(blk);
    expect([w.status(), z.status(), r.status(), f.status()]).toEqual([IOERR, UNSUPP, OK, OK]);
    expect(r.data()).toEqual(content.subarray(0, 512));
    expect(readFileSync(img.path)).toEqual(Buffer.from(content));
  });

  it('drops requests without a full header or a status byte, and answers unknown types UNSUPP', async () => {
    const { blk, d } = await setup(8 * 512);
    const short = d.add([new Uint8Array(15)], [1]);
    d.mem.writeU8(short.inBufs[0].gpa, 0xff);
    const noStatus = d.add([blkHeader(IN, 0)]);
    const types = [2, 3, 5, 10, 14, 16, 0x8000_0000, 0xffff_ffff].map((t) => postBlk(d, t, 0, [], [512]));
    blk.notify(0);
    const used = d.used();
    expect(used.slice(0, 2)).toEqual([{ id: short.head, len: 0 }, { id: noStatus.head, len: 0 }]);
    expect(d.mem.readU8(short.inBufs[0].gpa)).toBe(0xff); // nothing written
    expect(types.map((p) => p.status())).toEqual(types.map(() => UNSUPP));
    expect(blk.stats).toMatchObject({ dropped: 2, shortHeader: 1, noStatus: 1, unsupported: 8 });
  });

  it('takes the header and data from any framing, direct or indirect', async () => {
    const content = pattern(8 * 512, 3);
    const img = new TempImage(8 * 512, content);
    cleanup.push(() => img.remove());
    const blk = await VirtioBlock.open({ path: img.path });
    cleanup.push(() => blk.close());
    const [d] = driversFor(blk, { size: 16, indirectDesc: true });
    activate(blk, [d]);
    const h = blkHeader(IN, 1);
    // the header split 5 + 11, the data and the status in one writable buffer
    const p = d.add([h.subarray(0, 5), h.subarray(5)], [512 + 1], true);
    await run(blk);
    expect(d.used()).toEqual([{ id: p.head, len: 513 }]);
    expect(d.mem.readBytes(p.inBufs[0].gpa, 512)).toEqual(content.subarray(512, 1024));
    expect(d.mem.readU8(p.inBufs[0].gpa + 512)).toBe(OK);
  });

  it('answers IOERR when the file operation fails (the image shrank under it)', async () => {
    const { img, blk, d } = await setup(8 * 512);
    truncateSync(img.path, 512);
    const r = postBlk(d, IN, 4, [], [512]);
    await run(blk);
    expect(r.status()).toBe(IOERR);
    expect(blk.stats.hostErrors).toBe(1);
    expect((blk.lastHostError as Error).name).toBe('ShortReadError');
  });

  it('answers IOERR for file requests after close(), GET_ID still works', async () => {
    const { blk, d } = await setup(8 * 512);
    await blk.close();
    const r = postBlk(d, IN, 0, [], [512]);
    const w = postBlk(d, OUT, 0, [new Uint8Array(512)]);
    const f = postBlk(d, FLUSH, 0);
    const g = postBlk(d, GET_ID, 0, [], [20]);
    blk.notify(0);
    expect([r.status(), w.status(), f.status(), g.status()]).toEqual([IOERR, IOERR, IOERR, OK]);
  });
});

describe('VirtioBlock: discard and write zeroes', () => {
  it('validates DISCARD and completes it as a no-op', async () => {
    const content = pattern(64 * 512);
    const { img, blk, d } = await setup(64 * 512, {}, content);
    const ok = postBlk(d, DISCARD, 0, [blkRange(0, 8), blkRange(32, 32)]);
    const unmap = postBlk(d, DISCARD, 0, [blkRange(0, 8, 1)]);
    const unknown = postBlk(d, DISCARD, 0, [blkRange(0, 8, 4)]);
    const beyond = postBlk(d, DISCARD, 0, [blkRange(60, 8)]);
    const partial = postBlk(d, DISCARD, 0, [new Uint8Array(20)]);
    const none = postBlk(d, DISCARD, 0);
    const many = postBlk(d, DISCARD, 0, [new Uint8Array(17 * 16)]);
    blk.notify(0); // no file operation: answered at once
    expect([ok, unmap, unknown, beyond, partial, none, many].map((p) => p.status())).toEqual([OK, UNSUPP, UNSUPP, IOERR, IOERR, IOERR, IOERR]);
    expect(readFileSync(img.path)).toEqual(Buffer.from(content));
  });

  it('writes zeros for WRITE_ZEROES (unmap allowed), bounded by max_write_zeroes_sectors', async () => {
    const content = new Uint8Array(0x20000 * 512 / 64).fill(0xee); // 1 MiB of 0xee
    const { img, blk, d } = await setup(content.length, {}, content);
    const z = postBlk(d, WRITE_ZEROES, 0, [blkRange(100, 1000, 1)]);
    await run(blk);
    expect(z.status()).toBe(OK);
    const file = readFileSync(img.path);
    expect(file.subarray(100 * 512, 1100 * 512).every((x) => x === 0)).toBe(true);
    expect(file[100 * 512 - 1]).toBe(0xee);
    expect(file[1100 * 512]).toBe(0xee);
    const big = postBlk(d, WRITE_ZEROES, 0, [blkRange(0, 0x10001)]);
    const two = postBlk(d, WRITE_ZEROES, 0, [blkRange(0, 1), blkRange(2, 1)]); // max_write_zeroes_seg is 1
    const flag = postBlk(d, WRITE_ZEROES, 0, [blkRange(0, 1, 2)]);
    await run(blk);
    expect([big.status(), two.status(), flag.status()]).toEqual([IOERR, IOERR, UNSUPP]);
  });

  it('answers UNSUPP when the feature was not negotiated', async () => {
    const { blk, d } = await setup(8 * 512, {}, undefined, featureBits(F.FLUSH));
    const a = postBlk(d, DISCARD, 0, [blkRange(0, 1)]);
    const b = postBlk(d, WRITE_ZEROES, 0, [blkRange(0, 1)]);
    blk.notify(0);
    expect([a.status(), b.status()]).toEqual([UNSUPP, UNSUPP]);
  });
});

describe('VirtioBlock: concurrency, reset, sparse images', () => {
  it('keeps at most maxInFlight file operations running and the rest in the ring, with notifications off', async () => {
    const content = pattern(64 * 512, 5);
    const { blk, d, ctx } = await setup(64 * 512, { maxInFlight: 3 }, content);
    const reads = Array.from({ length: 8 }, (_, i) => postBlk(d, IN, i * 4, [], [2048]));
    blk.notify(0);
    expect(blk.inFlight).toBe(3);
    expect(d.queue.inFlight).toBe(3);
    expect(d.queue.nextAvail).toBe(3);
    expect(d.usedFlags()).toBe(1); // VIRTQ_USED_F_NO_NOTIFY while full
    await blk.whenIdle();
    expect(d.used().length).toBe(8);
    reads.forEach((r, i) => {
      expect(r.status()).toBe(OK);
      expect(r.data()).toEqual(content.subarray(i * 2048, (i + 1) * 2048));
    });
    expect(blk.stats.peakInFlight).toBe(3);
    expect(d.usedFlags()).toBe(0);
    expect(ctx.interrupts.length).toBeGreaterThanOrEqual(1);
    expect(blk.inFlight).toBe(0);
  });

  it('completes concurrent writes and reads of different sectors in any order, all reaching the file', async () => {
    const { img, blk, d } = await setup(64 * 512, { maxInFlight: 4 });
    const writes = Array.from({ length: 6 }, (_, i) => postBlk(d, OUT, i * 8, [pattern(4096, i + 1)]));
    await run(blk);
    expect(writes.map((w) => w.status())).toEqual(writes.map(() => OK));
    const file = readFileSync(img.path);
    for (let i = 0; i < 6; i++) expect(file.subarray(i * 4096, (i + 1) * 4096)).toEqual(Buffer.from(pattern(4096, i + 1)));
  });

  it('drops completions of requests in flight at reset: no guest write, no used entry, no interrupt', async () => {
    const { blk, d, ctx } = await setup(64 * 512, {}, pattern(64 * 512));
    const reads = Array.from({ length: 4 }, (_, i) => postBlk(d, IN, i, [], [512]));
    for (const r of reads) d.mem.fill(r.inBufs[0].gpa, 512, 0xee);
    blk.notify(0);
    expect(blk.inFlight).toBe(4);
    const chainsBefore = d.queue.inFlight;
    blk.reset(); // the device forgets first; the transport then resets its queues
    d.queue.reset();
    await blk.whenIdle();
    expect(chainsBefore).toBe(4);
    expect(d.usedIdx()).toBe(0);
    expect(ctx.interrupts).toEqual([]);
    for (const r of reads) {
      expect(r.data().every((x) => x === 0xee)).toBe(true);
      expect(r.status()).toBe(0xff);
    }
    expect(blk.stats.stale).toBe(4);
    expect(blk.inFlight).toBe(0);
  });

  it('ignores old completions even if the transport did not reset the queue, and serves a new activation', async () => {
    const { blk, d } = await setup(64 * 512, { maxInFlight: 2 }, pattern(64 * 512));
    postBlk(d, IN, 0, [], [512]);
    postBlk(d, IN, 1, [], [512]);
    blk.notify(0);
    blk.reset();
    // a chain popped before a queue reset cannot be returned afterwards
    const d2 = driversFor(blk, { size: 8 })[0];
    const q2 = d2.enable();
    postBlk(d2, IN, 0, [], [512]);
    const stale = q2.pop()!;
    q2.reset();
    expect(q2.pushUsed(stale, 0)).toBe(false);
    // the old I/O still counts against maxInFlight, and frees its slot for the new activation
    const d3 = driversFor(blk, { size: 8 })[0];
    const ctx3 = activate(blk, [d3]);
    const fresh = postBlk(d3, IN, 5, [], [512]);
    blk.notify(0);
    await blk.whenIdle();
    expect(d.usedIdx()).toBe(0);
    expect(fresh.status()).toBe(OK);
    expect(d3.used().length).toBe(1);
    expect(ctx3.interrupts.length).toBeGreaterThan(0);
    expect(blk.stats.stale).toBe(2);
  });

  it('works on a sparse image: holes read as zeros, and it stays sparse', async () => {
    const size = 256 * 1024 * 1024;
    const { img, blk, d } = await setup(size);
    const blocksBefore = statSync(img.path).blocks;
    const w = postBlk(d, OUT, 100_000, [pattern(4096, 7)]);
    await run(blk);
    expect(w.status()).toBe(OK);
    const hole = postBlk(d, IN, 300_000, [], [4096]);
    const back = postBlk(d, IN, 100_000, [], [4096]);
    const last = postBlk(d, IN, size / 512 - 1, [], [512]);
    await run(blk);
    expect([hole.status(), back.status(), last.status()]).toEqual([OK, OK, OK]);
    expect(hole.data().every((x) => x === 0)).toBe(true);
    expect(back.data()).toEqual(pattern(4096, 7));
    expect(last.data().every((x) => x === 0)).toBe(true);
    expect(statSync(img.path).size).toBe(size);
    expect((statSync(img.path).blocks - blocksBefore) * 512).toBeLessThan(1024 * 1024);
  });

  it('defers serving past its turn budget so a busy driver cannot hold the thread', async () => {
    const { blk, d } = await setup(8 * 512, { queueSize: 128 });
    const big = driversFor(blk, { size: 128, indirectDesc: true })[0];
    activate(blk, [big]);
    for (let i = 0; i < 100; i++) postBlk(big, GET_ID, 0, [], [20], true);
    blk.notify(0);
    expect(big.used().length).toBe(64);
    await turn();
    expect(big.used().length).toBe(36);
    expect(d.usedIdx()).toBe(0);
  });

  it('reports a broken ring through needsReset and keeps the file intact', async () => {
    const content = pattern(8 * 512);
    const { img, blk, d, ctx } = await setup(8 * 512, {}, content);
    d.setAvailIdx(100);
    blk.notify(0);
    await blk.whenIdle();
    expect(ctx.resets.length).toBe(1);
    expect(ctx.resets[0]).toMatch(/^avail-idx/);
    expect(readFileSync(img.path)).toEqual(Buffer.from(content));
  });
});

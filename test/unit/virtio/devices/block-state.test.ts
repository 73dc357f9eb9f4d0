/** VirtioBlock quiesce/snapshot/restore: in-flight requests drained, restore onto another image of the same size. */
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { VIRTIO_BLK_S, VIRTIO_BLK_T, VirtioBlock, type VirtioBlockState } from '../../../../src/virtio/devices/index.js';
import { restoreDevice, snapshotDevice } from '../state-helpers.js';
import { TempImage, pattern, postBlk, type BlkPosted } from './blk-util.js';
import { activate, driversFor, turn } from './harness.js';

const { IN, OUT } = VIRTIO_BLK_T;
const SECTORS = 64;

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function openOn(path: string, readonly = false): Promise<VirtioBlock> {
  const blk = await VirtioBlock.open({ path, readonly, maxInFlight: 2, queueSize: 64 });
  cleanup.push(() => blk.close());
  return blk;
}

async function setup() {
  const img = new TempImage(SECTORS * 512);
  cleanup.push(() => img.remove());
  const blk = await openOn(img.path);
  const [d] = driversFor(blk, { size: 64 });
  const ctx = activate(blk, [d]);
  return { img, blk, d, ctx };
}

/** Write sector i with pattern i, for i in [from, to), all posted before one notification. */
function writes(d: ReturnType<typeof driversFor>[0], from: number, to: number): BlkPosted[] {
  const out: BlkPosted[] = [];
  for (let i = from; i < to; i++) out.push(postBlk(d, OUT, i, [pattern(512, i)]));
  return out;
}

describe('VirtioBlock state', () => {
  it('quiesce drains the requests in flight, holds new ones until resume, and the device goes on', async () => {
    const { blk, d, ctx } = await setup();
    const first = writes(d, 0, 6); // 6 requests, at most 2 in flight
    blk.notify(0);
    expect(blk.inFlight).toBe(2);
    expect(() => blk.snapshot()).toThrow(/in flight: quiesce/);
    await blk.quiesce();
    expect(blk.inFlight).toBe(0);
    const answered = first.filter((p) => p.status() === VIRTIO_BLK_S.OK).length;
    expect(answered).toBe(2); // the two in flight completed; the rest wait in the ring
    expect(ctx.interrupts.length).toBeGreaterThan(0);
    blk.notify(0);
    await turn();
    expect(blk.inFlight).toBe(0);
    const state = blk.snapshot();
    expect(state).toEqual({ failed: false, capacity: SECTORS, readonly: false, segMax: 62, sizeMax: 4096 });
    blk.resume();
    await blk.whenIdle();
    await turn();
    await blk.whenIdle();
    expect(first.map((p) => p.status())).toEqual(new Array(6).fill(VIRTIO_BLK_S.OK));
  });

  it('restored mid-stream onto a copy of the image, it ends like an uninterrupted run', async () => {
    const run = async (snapshotAfter: boolean) => {
      const { img, blk, d } = await setup();
      writes(d, 0, 5);
      blk.notify(0);
      let dev = blk;
      if (snapshotAfter) {
        const snap = await snapshotDevice(blk, [d]);
        const clonePath = join(img.dir, 'clone.img');
        copyFileSync(img.path, clonePath); // the clone's own image, as a restorer would make it
        dev = await openOn(clonePath);
        restoreDevice(dev, [d], snap, blk.features);
        dev.notify(0);
      }
      for (let round = 0; round < 3; round++) {
        await dev.whenIdle();
        await turn();
      }
      writes(d, 5, 8);
      const reads = [0, 3, 7].map((i) => postBlk(d, IN, i, [], [512]));
      dev.notify(0);
      for (let round = 0; round < 4; round++) {
        await dev.whenIdle();
        await turn();
      }
      return { used: d.used().length, reads: reads.map((r) => [r.status(), Buffer.from(r.data()).toString('hex')]), image: readFileSync(dev.path).toString('hex') };
    };
    const straight = await run(false);
    expect(straight.reads[2][1]).toBe(Buffer.from(pattern(512, 7)).toString('hex'));
    expect(await run(true)).toEqual(straight);
  });

  it('refuses an image of another size, another read-only flag or limits, and hostile fields', async () => {
    const { blk, d } = await setup();
    const snap = await snapshotDevice(blk, [d]);
    const good = snap.device as VirtioBlockState;
    const other = new TempImage(2 * SECTORS * 512);
    cleanup.push(() => other.remove());
    const bigger = await openOn(other.path);
    expect(() => bigger.prepareRestore(good, undefined)).toThrow(/state.capacity is 64, this device's is 128/);
    const ro = await openOn(other.path, true);
    expect(() => ro.prepareRestore({ ...good, capacity: 128 }, undefined)).toThrow(/state.readonly/);
    const fresh = await openOn(blk.path);
    for (const [state, msg] of [
      [{ ...good, segMax: 3 }, /state.segMax/],
      [{ ...good, sizeMax: 'x' }, /state.sizeMax must be an integer/],
      [{ ...good, failed: 0 }, /state.failed must be a boolean/],
      [{ ...good, capacity: -1 }, /state.capacity/],
      [[], /state must be an object/],
    ] as const) expect(() => fresh.prepareRestore(state as never, undefined), msg.source).toThrow(msg);
  });

  it('refuses a queue state with requests in flight (a state taken without quiesce)', async () => {
    const { blk, d } = await setup();
    writes(d, 0, 2);
    blk.notify(0);
    const queue = d.queue.snapshot();
    const device = { failed: false, capacity: SECTORS, readonly: false, segMax: 62, sizeMax: 4096 };
    await blk.whenIdle();
    const fresh = await openOn(blk.path);
    expect(() => restoreDevice(fresh, [d], { queues: [queue], device }, blk.features)).toThrow(/queue 0 has chains in flight .* without quiesce/);
  });
});

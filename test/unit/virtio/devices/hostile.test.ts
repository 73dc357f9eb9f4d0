/**
 * Hostile drivers: random descriptor chains (random framing, lengths, flags, addresses,
 * loops, bad heads, indirect tables) and random request contents, against each device. The
 * device must never throw, never write outside guest RAM or past the image's capacity,
 * answer or drop every chain it pops, and report only QueueErrors through needsReset.
 */
import { readFileSync, statSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import {
  VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, type VirtioDevice,
} from '../../../../src/virtio/index.js';
import { VIRTIO_BLK_T, VirtioBlock, VirtioConsole, VirtioRng } from '../../../../src/virtio/devices/index.js';
import type { GuestDriver } from '../driver.js';
import { TempImage, blkHeader, blkRange } from './blk-util.js';
import { activate, driversFor, prng, turn, type FakeContext } from './harness.js';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

type Rnd = () => number;
const pick = <T>(rnd: Rnd, xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
const int = (rnd: Rnd, n: number): number => Math.floor(rnd() * n);

/** Contents for a readable buffer: `first` is true for the chain's first readable buffer. */
type Filler = (rnd: Rnd, len: number, first: boolean) => Uint8Array;

const randomBytes: Filler = (rnd, len) => Uint8Array.from({ length: len }, () => int(rnd, 256));

/** The buffers of one chain, in order: device-writable or not, and their lengths. */
type Plan = { write: boolean; len: number }[];

const LENS = [0, 1, 2, 15, 16, 17, 20, 32, 511, 512, 513, 1024, 4096, 8192];

/** A random framing: 1 to 5 buffers, readable ones mostly first, lengths from LENS or anything up to 9000. */
function randomPlan(rnd: Rnd): Plan {
  const n = 1 + int(rnd, 5);
  const writableFrom = rnd() < 0.15 ? int(rnd, n + 1) : Math.max(1, int(rnd, n + 1));
  return Array.from({ length: n }, (_, k) => ({
    write: rnd() < 0.05 ? rnd() < 0.5 : k >= writableFrom,
    len: rnd() < 0.1 ? int(rnd, 9000) : pick(rnd, LENS),
  }));
}

/**
 * Write up to `maxChains` chains framed by `plan` into `d`'s descriptor table (through an
 * indirect table now and then), with buffers mostly in RAM but sometimes straddling its end,
 * far outside it or absurdly long, and the odd loop, bad `next`, stray NEXT or INDIRECT
 * flag; publish their heads, plus the odd head that is out of range or repeated.
 */
function postRandomRound(d: GuestDriver, rnd: Rnd, maxChains: number, fill: Filler, plan: (rnd: Rnd) => Plan = randomPlan): void {
  let next = 0;
  const chains = 1 + int(rnd, maxChains);
  for (let c = 0; c < chains && next < d.size; c++) {
    const bufs = plan(rnd).slice(0, d.size - next);
    const n = bufs.length;
    const ids = Array.from({ length: n }, (_, i) => next + i);
    next += n;
    let firstReadable = true;
    const useIndirect = rnd() < 0.1;
    const table = useIndirect ? d.alloc(16 * n) : d.descAddr;
    for (let k = 0; k < n; k++) {
      const { write } = bufs[k];
      let { len } = bufs[k];
      let addr: number | bigint;
      const where = rnd();
      if (where < 0.9) {
        addr = d.alloc(Math.max(len, 1));
        if (!write && len > 0) {
          d.mem.writeBytes(addr, fill(rnd, len, firstReadable));
          firstReadable = false;
        }
      } else if (where < 0.93) addr = d.dataEnd - 8; // straddles the end of RAM
      else if (where < 0.96) addr = BigInt(int(rnd, 2 ** 32)) << 20n; // far outside
      else if (where < 0.98) addr = 0xffff_ffff_ffff_f000n;
      else {
        addr = d.alloc(16);
        len = pick(rnd, [0xffff_ffff, 0x8000_0000, 0x1000_0000]);
      }
      let flags = (write ? VIRTQ_DESC_F_WRITE : 0) | (k < n - 1 ? VIRTQ_DESC_F_NEXT : 0);
      let nextIdx = useIndirect ? k + 1 : ids[k + 1] ?? 0;
      const r = rnd();
      if (r < 0.02) nextIdx = int(rnd, 2 * d.size); // out of range, or into another chain
      else if (r < 0.03) nextIdx = useIndirect ? 0 : ids[0]; // a loop
      else if (r < 0.04) flags |= VIRTQ_DESC_F_NEXT;
      else if (r < 0.05) flags |= VIRTQ_DESC_F_INDIRECT;
      d.writeDesc(useIndirect ? k : ids[k], { addr, len, flags, next: nextIdx }, table);
    }
    if (useIndirect) {
      // the chain's first slot becomes the direct descriptor naming the table
      d.writeDesc(ids[0], { addr: table, len: rnd() < 0.9 ? 16 * n : 16 * n + 8, flags: VIRTQ_DESC_F_INDIRECT });
    }
    d.publish(ids[0]);
    if (rnd() < 0.04) d.publish(int(rnd, 3 * d.size) & 0xffff); // a bad or repeated head
  }
}

/** Mostly virtio-blk-shaped framing (header, sector-sized data either way, a status byte), else random. */
function blkPlan(rnd: Rnd): Plan {
  if (rnd() < 0.3) return randomPlan(rnd);
  const header = rnd() < 0.8 ? [{ write: false, len: 16 }] : [{ write: false, len: 8 }, { write: false, len: 8 }];
  const dataLen = (): number => (rnd() < 0.85 ? 512 * int(rnd, 5) : pick(rnd, LENS));
  const data = Array.from({ length: int(rnd, 3) }, () => ({ write: rnd() < 0.5, len: dataLen() }));
  data.sort((a, b) => Number(a.write) - Number(b.write));
  return [...header, ...data, { write: true, len: rnd() < 0.9 ? 1 : pick(rnd, [0, 2, 21]) }];
}

/** Reset the device and the queue as a transport would, and start a fresh activation. */
function restart(device: VirtioDevice, drivers: GuestDriver[], features: bigint): FakeContext {
  device.reset();
  for (const d of drivers) {
    d.queue.reset();
    d.setAvailIdx(0);
    d.lastUsed = 0;
  }
  return activate(device, drivers, features);
}

/** Common invariants after a round has settled. */
function checkRound(ctx: FakeContext, drivers: GuestDriver[]): void {
  for (const d of drivers) {
    expect(d.ram.guardsIntact()).toBe(true);
    expect(d.queue.inFlight).toBe(0);
  }
  for (const r of ctx.resets) expect(r).not.toMatch(/^device error/);
}

describe('hostile drivers', () => {
  it('virtio-blk: random chains and requests never escape the image, the RAM or the status protocol', async () => {
    const bytes = 64 * 1024 + 300; // a tail past the last whole sector, which must stay untouched
    const content = new Uint8Array(bytes).fill(0x5a);
    const img = new TempImage(bytes, content);
    cleanup.push(() => img.remove());
    const blk = await VirtioBlock.open({ path: img.path, serial: 'hostile', maxInFlight: 4, segMax: 6, sizeMax: 4096 });
    cleanup.push(() => blk.close());
    const capacity = blk.capacity;
    const T = VIRTIO_BLK_T;
    const fill: Filler = (rnd, len, first) => {
      if (!first || len < 16 || rnd() < 0.1) return randomBytes(rnd, len, first);
      const type = rnd() < 0.85 ? pick(rnd, [T.IN, T.OUT, T.FLUSH, T.GET_ID, T.DISCARD, T.WRITE_ZEROES]) : int(rnd, 2 ** 32);
      const sector = pick(rnd, [0n, 1n, BigInt(capacity - 1), BigInt(capacity), BigInt(capacity + 1), 2n ** 63n, 2n ** 64n - 1n, BigInt(int(rnd, capacity))]);
      const out = new Uint8Array(len);
      out.set(blkHeader(type, sector));
      for (let at = 16; at + 16 <= len; at += 16) {
        out.set(blkRange(pick(rnd, [0n, BigInt(capacity - 2), 2n ** 64n - 1n, BigInt(int(rnd, capacity))]), pick(rnd, [0, 1, 2, 0x10001, int(rnd, 64)]), pick(rnd, [0, 0, 1, 2, 0x8000_0000])), at);
      }
      return out;
    };
    for (const eventIdx of [false, true]) {
      const drivers = driversFor(blk, { size: 32, eventIdx, indirectDesc: true });
      const [d] = drivers;
      let ctx = activate(blk, drivers);
      const rnd = prng(eventIdx ? 7 : 3);
      for (let round = 0; round < 150; round++) {
        if (round % 37 === 36) d.setAvailIdx(d.availIdx + 1000); // a broken ring now and then
        else postRandomRound(d, rnd, 10, fill, blkPlan);
        blk.notify(0);
        if (round % 11 === 5) {
          ctx = restart(blk, drivers, blk.features); // a reset with requests in flight
        }
        await blk.whenIdle();
        checkRound(ctx, drivers);
        if (ctx.resets.length > 0) ctx = restart(blk, drivers, blk.features);
        else d.used();
      }
    }
    const s = blk.stats;
    expect(s.requests).toBeGreaterThan(300);
    expect(s.ok).toBeGreaterThan(20);
    expect(s.ioErrors).toBeGreaterThan(20);
    expect(s.unsupported).toBeGreaterThan(5);
    expect(s.dropped).toBeGreaterThan(5);
    expect(s.reads + s.writes).toBeGreaterThan(20);
    // every served request was answered or dropped, except the ones a reset overtook
    expect(s.ok + s.ioErrors + s.unsupported + s.dropped + s.stale).toBe(s.requests);
    expect(statSync(img.path).size).toBe(bytes);
    const file = readFileSync(img.path);
    expect(file.subarray(capacity * 512).every((x) => x === 0x5a)).toBe(true);
  });

  it('virtio-rng: random chains get at most their writable bytes and the cap', async () => {
    const rng = new VirtioRng({ queueSize: 32, maxBytesPerRequest: 1000 });
    const drivers = driversFor(rng, { indirectDesc: true });
    const [d] = drivers;
    let ctx = activate(rng, drivers);
    const rnd = prng(11);
    for (let round = 0; round < 200; round++) {
      if (round % 53 === 52) d.setAvailIdx(d.availIdx + 999);
      else postRandomRound(d, rnd, 10, randomBytes);
      rng.notify(0);
      await turn();
      checkRound(ctx, drivers);
      for (const u of d.used()) expect(u.len).toBeLessThanOrEqual(1000);
      if (ctx.resets.length > 0) ctx = restart(rng, drivers, rng.features);
    }
    expect(rng.stats.requests).toBeGreaterThan(200);
    expect(rng.stats.bytes).toBeGreaterThan(0);
  });

  it('virtio-console: random chains on both queues and random input stay within their bounds', async () => {
    let output = 0;
    const con = new VirtioConsole({ output: (b) => { output += b.length; }, inputLimit: 512, maxTxBytes: 2048, queueSize: 32 });
    const drivers = driversFor(con, { indirectDesc: true });
    const [rx, tx] = drivers;
    let ctx = activate(con, drivers);
    const rnd = prng(5);
    for (let round = 0; round < 200; round++) {
      const d = rnd() < 0.5 ? rx : tx;
      if (round % 61 === 60) d.setAvailIdx(d.availIdx + 777);
      else postRandomRound(d, rnd, 8, randomBytes);
      if (rnd() < 0.6) con.input(randomBytes(rnd, int(rnd, 1500), false));
      con.notify(d === rx ? 0 : 1);
      if (rnd() < 0.2) con.writeConfig(pick(rnd, [0, 4, 8]), 4, int(rnd, 2 ** 32)); // emerg_wr among read-only fields
      await turn();
      checkRound(ctx, drivers);
      expect(con.buffered).toBeLessThanOrEqual(512);
      for (const u of tx.used()) expect(u.len).toBe(0);
      rx.used();
      if (ctx.resets.length > 0) ctx = restart(con, drivers, con.features);
    }
    const s = con.stats;
    expect(s.txChains).toBeGreaterThan(50);
    expect(s.rxChains).toBeGreaterThan(20);
    expect(s.inputDropped).toBeGreaterThan(0);
    expect(s.delivered).toBeLessThanOrEqual(s.inputBytes);
    expect(s.emergWrites).toBeGreaterThan(0);
    expect(output).toBe(s.outputBytes);
  });
});

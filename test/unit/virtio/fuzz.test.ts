/**
 * Random rings: descriptor tables, available rings and indirect tables filled with random
 * (and randomly plausible) bytes, a random device driving the queue, and a racing "guest"
 * rewriting ring bytes between operations. Deterministic (seeded per iteration).
 *
 * Asserted for every iteration: the only exception is QueueError; every call returns
 * (nothing loops); every segment of a popped chain lies in guest memory (writable ones in
 * RAM, not ROM); and no byte outside the RAM changed (guard areas and the ROM).
 */
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  DROP_REASONS, QueueError, SplitQueue, VIRTQ_DESC_F_INDIRECT, type DescriptorChain, type QueueErrorKind,
} from '../../../src/virtio/index.js';
import { accessorOnly } from './driver.js';

const ITERATIONS = 10_000;
const SEED = 0x5eed_f00d;
const BASE = 0x10000;
const RAM = 0x3000;
const ROM = 0x100;
const GUARD = 256;
const GUARD_BYTE = 0x5a;
const ROM_BYTE = 0xc3;

/** mulberry32: a small, fast, seeded 32-bit PRNG. */
function rng(seed: number): { u32(): number; below(n: number): number; chance(p: number): boolean } {
  let a = seed >>> 0;
  const u32 = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return { u32, below: (n) => Math.floor((u32() / 2 ** 32) * n), chance: (p) => u32() / 2 ** 32 < p };
}

interface Stats {
  iterations: number;
  popped: number;
  pushed: number;
  indirect: number;
  notifications: number;
  queueErrors: Record<QueueErrorKind, number>;
  drops: Record<string, number>;
}

function runIteration(iter: number, stats: Stats): string | undefined {
  const r = rng(SEED ^ Math.imul(iter, 0x9e3779b1));
  const sab = new SharedArrayBuffer(GUARD + RAM + ROM + GUARD);
  const all = new Uint8Array(sab);
  all.fill(GUARD_BYTE);
  const ram = new Uint8Array(sab, GUARD, RAM);
  const rom = new Uint8Array(sab, GUARD + RAM, ROM).fill(ROM_BYTE);
  const words = new Uint32Array(sab, GUARD, RAM / 4);
  for (let i = 0; i < words.length; i++) words[i] = r.u32();
  // The guest's own stores go straight to the RAM bytes (they do not care about the VMM's memory map).
  const guest = new DataView(sab, GUARD, RAM);
  const inRam = (at: number, n: number) => at >= BASE && at + n <= BASE + RAM;
  const w16 = (at: number, v: number) => inRam(at, 2) && guest.setUint16(at - BASE, v, true);
  const w32 = (at: number, v: number) => inRam(at, 4) && guest.setUint32(at - BASE, v, true);
  const w64 = (at: number, v: number) => inRam(at, 8) && guest.setBigUint64(at - BASE, BigInt(v), true);
  const r16 = (at: number) => guest.getUint16(at - BASE, true);
  const mem = new GuestMemory();
  mem.addSegment(BASE, ram);
  mem.addSegment(BASE + RAM, rom, true);

  const size = 2 ** r.below(7); // 1 .. 64
  const gpaNear = () => BASE - 64 + r.below(RAM + ROM + 128);
  const aligned = (align: number, bytes: number) => BASE + align * r.below(Math.floor((RAM - bytes) / align));
  const pick = (align: number, bytes: number) =>
    r.chance(0.97) ? aligned(align, bytes) : r.chance(0.5) ? gpaNear() : r.u32() * (r.chance(0.2) ? 2 ** 20 : 1);
  const desc = pick(16, 16 * size);
  const avail = pick(2, 6 + 2 * size);
  const used = pick(4, 6 + 8 * size);
  const start = r.chance(0.3) ? 0xffff - r.below(4) : r.below(0x10000);

  const plausible = (at: number, n: number, depth: number) => {
    // overwrite n descriptors at `at` (if in RAM) with values that pass some checks
    for (let i = 0; i < n; i++) {
      const d = at + 16 * i;
      if (d < BASE || d + 16 > BASE + RAM || !r.chance(0.85)) continue;
      const lenKind = r.below(10);
      const len = lenKind < 4 ? r.below(32) : lenKind < 7 ? r.below(0x800) : lenKind < 9 ? 16 * (1 + r.below(6)) : r.u32();
      let flags = r.chance(0.9) ? r.below(4) : r.below(8);
      let addr = r.chance(0.8) ? BASE + r.below(RAM - 0x100) : gpaNear();
      if (depth === 0 && r.chance(0.15)) {
        // a plausible indirect table
        flags = VIRTQ_DESC_F_INDIRECT | (r.chance(0.1) ? 1 : 0);
        const entries = 1 + r.below(8);
        addr = aligned(16, 16 * entries);
        w32(d + 8, r.chance(0.9) ? 16 * entries : r.below(200));
        plausible(addr, entries, depth + 1);
      } else {
        w32(d + 8, len);
      }
      w64(d, addr);
      w16(d + 12, flags);
      w16(d + 14, r.below(depth === 0 ? size + 2 : 10));
    }
  };
  if (r.chance(0.9)) plausible(desc, size, 0);
  const availBacked = inRam(avail, 6 + 2 * size);
  if (availBacked && r.chance(0.9)) {
    w16(avail + 2, (start + (r.chance(0.9) ? r.below(size + 1) : r.below(0x10000))) & 0xffff);
    for (let i = 0; i < size; i++) if (r.chance(0.9)) w16(avail + 4 + 2 * i, r.below(size + 1));
  }

  const qmem = r.chance(0.25) ? accessorOnly(mem) : mem;
  const q = new SplitQueue(qmem, {
    maxSize: r.chance(0.95) ? 64 : 16,
    maxChainBytes: r.chance(0.2) ? r.below(0x1000) : undefined,
    maxIndirectEntries: r.chance(0.2) ? 1 + r.below(8) : undefined,
  });
  const features = { eventIdx: r.chance(0.5), indirectDesc: r.chance(0.7) };
  const program = () => {
    q.size = r.chance(0.98) ? size : r.below(0x10000);
    q.descAddr = desc;
    q.availAddr = avail;
    q.usedAddr = used;
    q.enable(features, { availIdx: start, usedIdx: start });
  };
  let held: { c: DescriptorChain; life: number }[] = [];
  let life = 0;
  let staleUsed = false;
  let unplugged = false;
  const step = (op: number) => {
    if (op < 5) {
      const c = q.pop();
      if (!c) return;
      stats.popped++;
      if (c.indirect) stats.indirect++;
      for (const s of c.readable) {
        if (!(s.gpa >= BASE && s.gpa + s.len <= BASE + RAM + ROM && s.len > 0)) throw new Error(`readable segment out of memory: ${JSON.stringify(s)}`);
      }
      for (const s of c.writable) {
        if (!(s.gpa >= BASE && s.gpa + s.len <= BASE + RAM && s.len > 0)) throw new Error(`writable segment outside RAM: ${JSON.stringify(s)}`);
      }
      if (c.readableBytes + c.writableBytes > q.maxChainBytes) throw new Error('chain over the byte cap');
      const got = c.readBytes(r.below(0x400), r.below(16));
      if (got.length > 0x400) throw new Error('readBytes over max');
      const src = new Uint8Array(r.below(0x200)).map(() => r.below(256));
      const n = c.writeBytes(src, r.below(16));
      if (n > src.length || n > c.writableBytes) throw new Error('writeBytes wrote too much');
      held.push({ c, life });
    } else if (op === 5) {
      if (held.length === 0) return;
      const h = held.splice(r.below(held.length), 1)[0];
      const c = h.c;
      staleUsed = h.life !== life; // a chain from before a reset: its errors do not stop the new queue
      if (r.chance(0.3)) c.writeBytes(Uint8Array.of(1, 2, 3), r.below(8)); // a late completion writes its answer
      if (q.pushUsed(c, r.below(c.writableBytes + 1))) stats.pushed++;
    } else if (op === 6) {
      if (q.needsNotification()) stats.notifications++;
    } else if (op === 7) {
      if (r.chance(0.5)) q.enableNotifications();
      else q.disableNotifications();
    } else if (op === 8) {
      // the guest races: random 16-bit writes into the rings and the descriptor table
      for (let k = r.below(4); k >= 0; k--) {
        const area = [desc, avail, used][r.below(3)];
        const at = area + 2 * r.below(8 * size + 4);
        w16(at, r.below(0x10000));
      }
      if (availBacked && r.chance(0.5)) w16(avail + 2, (r16(avail + 2) + (r.chance(0.8) ? 1 + r.below(2) : r.below(size + 1))) & 0xffff);
    } else if (r.chance(0.3)) {
      q.descAddr = r.chance(0.7) ? desc : desc + 16; // a ring moved (or rewritten unchanged)
    } else if (r.chance(0.3)) {
      // a memory-map change: unplug the RAM (the VMM has not called remap yet), or plug it back and remap
      if (unplugged) mem.addSegment(BASE, ram);
      else mem.removeSegment(BASE);
      unplugged = !unplugged;
      if (!unplugged) q.remap();
    } else {
      q.reset();
      life++;
      if (r.chance(0.5)) held = [];
      if (unplugged) {
        mem.addSegment(BASE, ram);
        unplugged = false;
      }
      program();
    }
  };

  const ops = 10 + r.below(40);
  for (let i = -1; i < ops; i++) {
    try {
      staleUsed = false;
      if (i < 0) program();
      else step(r.below(10));
    } catch (e) {
      if (!(e instanceof QueueError)) return `iteration ${iter} op ${i}: ${e instanceof Error ? e.stack : String(e)}`;
      stats.queueErrors[e.kind]++;
      // `memory` is the safety net for host errors under guest memory: with all memory
      // plugged in, it would hide a bug in the queue (an out-of-bounds view access).
      if (e.kind === 'memory' && !unplugged) return `iteration ${iter} op ${i}: memory QueueError with memory present: ${String(e.cause)}`;
      if (q.error === undefined && !staleUsed) return `iteration ${iter} op ${i}: QueueError ${e.kind} thrown but the queue not stopped`;
    }
  }
  for (const reason of DROP_REASONS) stats.drops[reason] += q.errors[reason];
  for (let i = 0; i < GUARD; i++) if (all[i] !== GUARD_BYTE) return `iteration ${iter}: guard byte ${i} below RAM changed`;
  for (let i = GUARD + RAM + ROM; i < all.length; i++) if (all[i] !== GUARD_BYTE) return `iteration ${iter}: guard byte above RAM changed`;
  if (!rom.every((b) => b === ROM_BYTE)) return `iteration ${iter}: ROM changed`;
  stats.iterations++;
  return undefined;
}

describe('SplitQueue fuzz', () => {
  it(`${ITERATIONS} seeded iterations of random rings: only QueueErrors, bounded, nothing outside RAM written`, () => {
    const stats: Stats = {
      iterations: 0, popped: 0, pushed: 0, indirect: 0, notifications: 0,
      queueErrors: { 'bad-config': 0, 'ring-unmapped': 0, 'ring-moved': 0, 'avail-idx': 0, memory: 0 },
      drops: Object.fromEntries(DROP_REASONS.map((d) => [d, 0])),
    };
    const failures: string[] = [];
    for (let iter = 0; iter < ITERATIONS && failures.length < 5; iter++) {
      const f = runIteration(iter, stats);
      if (f) failures.push(f);
    }
    if (process.env.FUZZ_STATS) console.log(JSON.stringify(stats));
    expect(failures).toEqual([]);
    expect(stats.iterations).toBe(ITERATIONS);
    // the fuzz reaches every outcome, and real work too
    for (const [reason, n] of Object.entries(stats.drops)) expect(n, `drops for ${reason}`).toBeGreaterThan(0);
    for (const [kind, n] of Object.entries(stats.queueErrors)) expect(n, `QueueErrors of kind ${kind}`).toBeGreaterThan(0);
    expect(stats.popped).toBeGreaterThan(ITERATIONS);
    expect(stats.indirect).toBeGreaterThan(100);
    expect(stats.pushed).toBeGreaterThan(1000);
    expect(stats.notifications).toBeGreaterThan(100);
  });
});

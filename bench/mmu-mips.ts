/**
 * SoftMmu TLB-hit throughput: accesses per second for reads and writes of each size through
 * the EngineMmu methods (compiled code reaches RAM through the TLB's int32 cells instead),
 * on high-half kernel addresses (4-level paging, 4 KiB pages, 16 pages cycled so every
 * access hits the TLB). Run: `npm run build:ts && node dist/bench/mmu-mips.js`.
 */
import { SoftMmu } from '../src/engine/mmu.js';
import type { EngineIo } from '../src/engine/types.js';
import { GuestMemory } from '../src/memory/guest-memory.js';

const P = 1n;
const W = 2n;
const io: EngineIo = {
  pioRead: () => 0xffffffff,
  pioWrite: () => {},
  mmioRead: () => 0n,
  mmioWrite: () => {},
};

const mem = new GuestMemory();
mem.addSegment(0, new SharedArrayBuffer(0x400000));
// 4-level tables: PML4 at 0x100000, mapping 0xffff_8880_0000_0000 + i * 4 KiB → 0x200000 + i * 4 KiB.
let next = 0x100000;
const alloc = (): number => {
  const a = next;
  next += 0x1000;
  return a;
};
const root = alloc();
const BASE = 0xffff_8880_0000_0000n;
function map(la: bigint, pa: bigint): void {
  let table = root;
  for (let level = 4; level > 1; level--) {
    const ea = table + Number((la >> BigInt(12 + 9 * (level - 1))) & 511n) * 8;
    let e = mem.readU64(ea);
    if ((e & P) === 0n) {
      e = BigInt(alloc()) | P | W;
      mem.writeU64(ea, e);
    }
    table = Number(e & 0xffffffffff000n);
  }
  mem.writeU64(table + Number((la >> 12n) & 511n) * 8, pa | P | W);
}
const PAGES = 16;
for (let i = 0; i < PAGES; i++) map(BASE + BigInt(i) * 0x1000n, 0x200000n + BigInt(i) * 0x1000n);

const mmu = new SoftMmu(mem, io);
mmu.setControl({ cr0: 1n | (1n << 16n) | (1n << 31n), cr3: BigInt(root), cr4: 1n << 5n, efer: (1n << 8n) | (1n << 10n) | (1n << 11n), cpl: 0, ac: false });

const N = 4096; // addresses cycled: 16 pages × 256 slots of 16 bytes
const bigAddrs: bigint[] = [];
for (let k = 0; k < N; k++) {
  const la = BASE + BigInt((k % PAGES) * 0x1000 + (k >> 4) * 16);
  bigAddrs.push(la);
}
// Warm the TLB (reads and writes).
for (let k = 0; k < N; k++) mmu.write64(bigAddrs[k], 0n);

type Case = [name: string, run: (iters: number) => number];
const cases: Case[] = [
  ['read8   bigint', (it) => { let s = 0; for (let j = 0; j < it; j++) s += mmu.read8(bigAddrs[j & (N - 1)]); return s; }],
  ['read32  bigint', (it) => { let s = 0; for (let j = 0; j < it; j++) s += mmu.read32(bigAddrs[j & (N - 1)]); return s; }],
  ['read64  bigint', (it) => { let s = 0n; for (let j = 0; j < it; j++) s ^= mmu.read64(bigAddrs[j & (N - 1)]); return Number(s & 1n); }],
  ['write32 bigint', (it) => { for (let j = 0; j < it; j++) mmu.write32(bigAddrs[j & (N - 1)], j); return 0; }],
  ['write64 bigint', (it) => { const v = 0x1234n; for (let j = 0; j < it; j++) mmu.write64(bigAddrs[j & (N - 1)], v); return 0; }],
  ['cmpxchg32 bint', (it) => { for (let j = 0; j < it; j++) mmu.cmpxchg(bigAddrs[j & (N - 1)], 4, 0, 0); return 0; }],
];

let sink = 0;
for (const [name, run] of cases) {
  sink += run(200_000); // warm up / optimize
  let iters = 1_000_000;
  let best = 0;
  for (let rep = 0; rep < 5; rep++) {
    const t0 = process.hrtime.bigint();
    sink += run(iters);
    const ns = Number(process.hrtime.bigint() - t0);
    best = Math.max(best, (iters / ns) * 1e9);
    if (ns < 50e6) iters *= 2;
  }
  console.log(`${name}: ${(best / 1e6).toFixed(1)} M accesses/s`);
}
if (sink === 0.5) console.log(sink);

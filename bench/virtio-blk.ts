/**
 * The virtio-blk rows of `npm run bench`: a guest's 4 KiB reads through vmmapi's virtio-blk
 * next to the host's own pread of the same blocks of the same file, in the same run.
 *
 * The guest is guests/src/virtio-blk-bench.c (a Multiboot kernel over the fixtures' polled
 * virtio-pci driver): N reads, sequential or at LCG-random blocks, QD in flight. The host
 * times it from the moment the guest's "go" line is complete to the first byte of its "done"
 * line (so boot, the PCI scan and device set-up are not counted), and checks its sum of the
 * block tags against its own. The host side is a loop of fs.readSync (pread) through one
 * 4 KiB buffer over the same blocks, repeated until it has run 250 ms.
 *
 * The image (64 MiB, block k starting with k as a u32) lives in the page cache on both
 * sides: this measures the VMM's request path, not the disk. On PVM hosts the guest's own
 * driver code is emulated (~1.5 µs an instruction), which is part of every guest row.
 *
 * The last row has the guest complete its own requests (device=self: no notification, no
 * VMM): the floor its emulated driver loop sets, to subtract from the qd-1 rows.
 *
 * BENCH_VIRTIO_READS sets N (default 6000); BENCH_ROUNDS the interleaved rounds.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPc, VirtioBlock, type VirtioNotifyPath } from '../src/index.js';
import { fixturePath } from '../src/fixtures.js';

const BLOCK = 4096;
const BLOCKS = 16384; // 64 MiB
const HOST_MIN_SECONDS = 0.25;

/** One row: what the guest does and how its notifications travel. */
export interface BlkRow {
  name: string;
  pattern: 'seq' | 'rand';
  qd: number;
  notify: VirtioNotifyPath;
  /** The guest completes its own requests (device=self): its driver loop alone, no notifications. */
  self?: boolean;
}

/** The rows, in the order they are printed. */
export const BLK_ROWS: readonly BlkRow[] = [
  { name: 'virtio-blk 4 KiB sequential read (guest)', pattern: 'seq', qd: 1, notify: 'ioeventfd' },
  { name: 'virtio-blk 4 KiB random read (guest)', pattern: 'rand', qd: 1, notify: 'ioeventfd' },
  { name: 'virtio-blk 4 KiB sequential read (guest), qd 8', pattern: 'seq', qd: 8, notify: 'ioeventfd' },
  { name: 'virtio-blk 4 KiB random read (guest), qd 8', pattern: 'rand', qd: 8, notify: 'ioeventfd' },
  { name: 'virtio-blk 4 KiB sequential read (guest), notify posted', pattern: 'seq', qd: 1, notify: 'posted' },
  { name: 'virtio-blk 4 KiB sequential read (guest), notify exit', pattern: 'seq', qd: 1, notify: 'exit' },
  { name: 'virtio-blk 4 KiB sequential read: guest driver alone', pattern: 'seq', qd: 1, notify: 'ioeventfd', self: true },
];

/** The blocks the guest reads (the fixture's sequence: seed 1). */
export function blockSequence(pattern: 'seq' | 'rand', n: number, blocks = BLOCKS, seed = 1): Uint32Array {
  const out = new Uint32Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    if (pattern === 'seq') out[i] = i % blocks;
    else {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      out[i] = Math.floor((x * blocks) / 2 ** 32); // x * blocks < 2^53: exact
    }
  }
  return out;
}

function tagSum(blocks: Uint32Array): number {
  let s = 0;
  for (const b of blocks) s = (s + b) >>> 0;
  return s;
}

/** A 64 MiB image whose 4 KiB block k starts with k (u32, little-endian). */
function makeImage(dir: string): string {
  const img = join(dir, 'bench.img');
  const bytes = new Uint8Array(BLOCKS * BLOCK);
  const v = new DataView(bytes.buffer);
  for (let k = 0; k < BLOCKS; k++) v.setUint32(k * BLOCK, k, true);
  writeFileSync(img, bytes);
  return img;
}

/** The guest's N reads: seconds between its "go" and "done" lines. */
async function guestReads(img: string, row: BlkRow, n: number, elf: Uint8Array): Promise<number> {
  const blk = await VirtioBlock.open({ path: img, readonly: true });
  let line = '';
  let lineStart = 0n;
  let go: bigint | undefined;
  let done: bigint | undefined;
  let doneLine = '';
  let text = '';
  let errors: readonly string[] = [];
  const pc = createPc({
    memory: 32 * 2 ** 20,
    serial: {
      onOutput: (b) => {
        const now = process.hrtime.bigint();
        if (line === '') lineStart = now;
        if (b !== 10) {
          line += String.fromCharCode(b);
          return;
        }
        if (line === 'virtio-blk-bench: go') go = now;
        else if (line.startsWith('virtio-blk-bench: done')) {
          done = lineStart;
          doneLine = line;
        }
        text += `${line}\n`;
        line = '';
      },
    },
  });
  try {
    const dev = pc.addVirtioDevice(blk, { notify: row.notify });
    errors = dev.errors;
    pc.loadMultiboot(elf, { cmdline: `pattern=${row.pattern} n=${n} qd=${row.qd}${row.self ? ' device=self' : ''}` });
    const r = await pc.run({ timeoutMs: 300_000 });
    if (r.reason !== 'debug-exit' || r.status !== 1 || go === undefined || done === undefined || errors.length > 0) {
      throw new Error(`${row.name}: the bench guest did not pass (${JSON.stringify(r)}, device errors ${JSON.stringify(errors)}):\n${text}${line}`);
    }
  } finally {
    pc.destroy();
    await blk.close();
  }
  const want = `virtio-blk-bench: done n=${n} sum=0x${tagSum(blockSequence(row.pattern, n)).toString(16).padStart(8, '0')} bad=0`;
  if (doneLine !== want) throw new Error(`${row.name}: the guest says '${doneLine}', expected '${want}'`);
  return Number(done - go) / 1e9;
}

/** The host's pread of the same blocks: reads per second (repeating the pass to 250 ms). */
function hostReads(img: string, blocks: Uint32Array): number {
  const fd = openSync(img, 'r');
  const buf = new Uint8Array(BLOCK);
  const tag = new DataView(buf.buffer);
  let reads = 0;
  let sum = 0;
  const t0 = process.hrtime.bigint();
  let seconds = 0;
  try {
    do {
      for (const b of blocks) {
        if (readSync(fd, buf, 0, BLOCK, b * BLOCK) !== BLOCK) throw new Error(`short host read of block ${b}`);
        sum = (sum + tag.getUint32(0, true)) >>> 0;
      }
      reads += blocks.length;
      seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    } while (seconds < HOST_MIN_SECONDS);
  } finally {
    closeSync(fd);
  }
  const passes = reads / blocks.length;
  if (sum !== Math.imul(tagSum(blocks), passes) >>> 0) throw new Error('host reads returned the wrong blocks');
  return reads / seconds;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Run the rows `only` keeps (all without it), `rounds` interleaved rounds, and print the table. */
export async function virtioBlkBench(rounds: number, only?: RegExp): Promise<void> {
  const rows = BLK_ROWS.filter((r) => !only || only.test(r.name));
  if (rows.length === 0) return;
  const n = Number(process.env.BENCH_VIRTIO_READS ?? 6000);
  if (!Number.isInteger(n) || n < 1 || n > 10_000_000) throw new RangeError(`BENCH_VIRTIO_READS must be an integer in [1, 10000000], got ${process.env.BENCH_VIRTIO_READS}`);
  const dir = mkdtempSync(join(tmpdir(), 'vmmapi-bench-blk-'));
  try {
    const img = makeImage(dir);
    const elf = readFileSync(fixturePath('virtio-blk-bench.elf'));
    const guest = rows.map(() => [] as number[]);
    const host = rows.map(() => [] as number[]);
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < rows.length; i++) {
        guest[i].push(n / (await guestReads(img, rows[i], n, elf)));
        host[i].push(hostReads(img, blockSequence(rows[i].pattern, n)));
      }
    }
    console.log(`\nvirtio-blk: ${n} reads of 4 KiB per run (64 MiB image in the page cache), ${rounds} interleaved round(s), medians;`);
    console.log('each row next to the host\'s own pread (fs.readSync, one 4 KiB buffer) of the same blocks in the same run.');
    const w = Math.max(...rows.map((r) => r.name.length));
    console.log(
      `${'scenario'.padEnd(w)}  ${'notify'.padEnd(9)}  ${'IOPS'.padStart(7)}  ${'MB/s'.padStart(6)}  ${'µs/read'.padStart(7)}  ${'host IOPS'.padStart(9)}  ${'host MB/s'.padStart(9)}  ${'ratio'.padStart(6)}  ${'spread'.padStart(11)}`,
    );
    rows.forEach((r, i) => {
      const g = median(guest[i]);
      const h = median(host[i]);
      const ratios = guest[i].map((x, k) => x / host[i][k]);
      const mb = (iops: number) => ((iops * BLOCK) / 1e6).toFixed(1);
      console.log(
        `${r.name.padEnd(w)}  ${(r.self ? 'none' : r.notify).padEnd(9)}  ${Math.round(g).toString().padStart(7)}  ${mb(g).padStart(6)}  ${(1e6 / g).toFixed(0).padStart(7)}  ${Math.round(h).toString().padStart(9)}  ${mb(h).padStart(9)}  ${(g / h).toFixed(3).padStart(6)}  ${`${Math.min(...ratios).toFixed(3)}–${Math.max(...ratios).toFixed(3)}`.padStart(11)}`,
      );
    });
    // what each notification path adds to a qd-1 sequential read over the guest's own loop
    const floor = rows.findIndex((r) => r.self);
    const paths = rows.map((r, i) => ({ r, i })).filter(({ r }) => !r.self && r.qd === 1 && r.pattern === 'seq');
    if (floor >= 0 && paths.length > 0) {
      const us = (i: number) => 1e6 / median(guest[i]);
      const parts = paths.map(({ r, i }) => `${r.notify} ${(us(i) - us(floor)).toFixed(0)} µs`);
      console.log(`Per read over the guest driver alone (${us(floor).toFixed(0)} µs): ${parts.join(', ')} (host pread: ${(1e6 / median(host[paths[0].i])).toFixed(1)} µs).`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

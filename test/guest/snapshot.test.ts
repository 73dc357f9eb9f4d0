/**
 * Snapshot and restore of a whole PC (Pc.pause/snapshot, restorePc) with the snap-compute
 * fixture (guests/src/snap-compute.c: a computation over a 64 KiB table, one line per round on
 * COM1) and a VirtioRng on the PCI bus: a run paused in the middle, snapshotted and resumed ends
 * as an uninterrupted run does; a machine restored from the snapshot prints the rest of the
 * same output and the same result; two restored at once do so independently; the snapshot's
 * files do not change; truncated, corrupt and mismatched snapshots are refused before anything
 * runs. Real KVM throughout.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { SnapshotError, VirtioRng, readStateFile, restorePc, snapshotDeviceTypes, verifyMemoryFile, type Pc } from '../../src/index.js';
import { writeStateFile } from '../../src/snapshot/format.js';
import { fixture } from '../helpers.js';
import { capturedPc } from './guests.js';

const ROUNDS = 40;
const pcs: Pc[] = [];
const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-snap-'));
afterEach(() => {
  for (const pc of pcs.splice(0)) pc.destroy();
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function computePc(): Pc & { out: { text: string } } {
  const pc = capturedPc(pcs, { virtio: [new VirtioRng()] });
  pc.loadMultiboot(fixture('snap-compute.elf'), { cmdline: `rounds=${ROUNDS}` });
  return pc;
}

/** Resolves once `pc`'s COM1 output contains `text` (polled; bounded by the run itself). */
async function outputContains(pc: Pc & { out: { text: string } }, text: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pc.out.text.includes(text)) {
    if (Date.now() > end || pc.result) throw new Error(`no "${text}" in the output: ${pc.out.text.slice(-300)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function fileDigests(dir: string): Record<string, string> {
  return Object.fromEntries(readdirSync(dir).sort().map((f) => [f, createHash('sha256').update(readFileSync(join(dir, f))).digest('hex')]));
}

const resultLine = (text: string): string | undefined => /^snap-compute: result 0x[0-9a-f]{8}$/m.exec(text)?.[0];

let reference: string; // an uninterrupted run's output
let snapDir: string;
let atSnapshot: string; // the snapshotted machine's output up to its snapshot

describe('PC snapshot and restore (snap-compute fixture, VirtioRng)', () => {
  it('an uninterrupted run, and a run paused mid-computation for a snapshot, end the same', async () => {
    const plain = computePc();
    expect(await plain.run({ timeoutMs: 120_000 })).toEqual({ reason: 'debug-exit', status: 1 });
    reference = plain.out.text;
    expect(reference).toMatch(/snap-compute: PASS\n$/);

    const pc = computePc();
    const running = pc.run({ timeoutMs: 120_000 });
    await outputContains(pc, 'round 12 ');
    await pc.pause();
    expect(pc.paused).toBe(true);
    snapDir = join(tmp, 'snap');
    const info = await pc.snapshot(snapDir, { meta: { test: 'snapshot.test.ts' } });
    atSnapshot = pc.out.text;
    pc.resume();
    expect(await running).toEqual({ reason: 'debug-exit', status: 1 });
    expect(pc.out.text).toBe(reference);
    // the pause fell somewhere after round 12 and before the end
    expect(atSnapshot).toMatch(/round 12 /);
    expect(atSnapshot).not.toContain('snap-compute: result');
    // sparse: 16 MiB of RAM, little of it written
    expect(info.memoryBytes).toBe(16 * 2 ** 20);
    expect(info.writtenBytes).toBeLessThan(info.memoryBytes / 4);
    expect(statSync(join(snapDir, 'memory.bin')).blocks * 512).toBeLessThan(info.memoryBytes / 4);
    expect(readStateFile(snapDir).meta).toEqual({ test: 'snapshot.test.ts' });
    expect(snapshotDeviceTypes(snapDir)).toEqual([4]);
    console.log(`snapshot: ${(info.writtenBytes / 2 ** 20).toFixed(2)} MiB of ${info.memoryBytes / 2 ** 20} MiB written in ${info.ms.toFixed(1)} ms`);
  }, 180_000);

  it('a restored machine prints the rest of the same output and the same result', async () => {
    const before = fileDigests(snapDir);
    let text = '';
    const t0 = performance.now();
    const pc = await restorePc(snapDir, { virtio: [new VirtioRng()], serial: { onOutput: (b) => (text += String.fromCharCode(b)) } });
    const restoreMs = performance.now() - t0;
    pcs.push(pc);
    expect(await pc.run({ timeoutMs: 120_000 })).toEqual({ reason: 'debug-exit', status: 1 });
    expect(atSnapshot + text).toBe(reference);
    expect(resultLine(text)).toBe(resultLine(reference));
    expect(fileDigests(snapDir)).toEqual(before);
    console.log(`restorePc: ${restoreMs.toFixed(1)} ms to a machine ready to run`);
  }, 180_000);

  it('two machines restored at once run independently to the same end; the snapshot is unchanged', async () => {
    const before = fileDigests(snapDir);
    const outs = ['', ''];
    const clones = await Promise.all(
      [0, 1].map((i) => restorePc(snapDir, { virtio: [new VirtioRng()], serial: { onOutput: (b) => (outs[i] += String.fromCharCode(b)) } })),
    );
    pcs.push(...clones);
    const results = await Promise.all(clones.map((c) => c.run({ timeoutMs: 120_000 })));
    expect(results).toEqual([{ reason: 'debug-exit', status: 1 }, { reason: 'debug-exit', status: 1 }]);
    for (const o of outs) expect(atSnapshot + o).toBe(reference);
    expect(fileDigests(snapDir)).toEqual(before);
  }, 180_000);

  it('another device set, another vCPU count or CPUID, a corrupt or truncated snapshot: SnapshotError before anything runs', async () => {
    await expect(restorePc(snapDir)).rejects.toThrow(/virtio devices of types \[4\]; opts.virtio has \[none\]/);
    await expect(restorePc(snapDir, { virtio: [new VirtioRng(), new VirtioRng()] })).rejects.toThrow(SnapshotError);

    const body = readStateFile(snapDir);
    /** A copy of the snapshot whose state went through `edit` (and was checksummed again). */
    const edited = (name: string, edit: (b: typeof body) => void): string => {
      const d = join(tmp, name);
      mkdirSync(d, { recursive: true });
      const b = structuredClone(body);
      edit(b);
      writeFileSync(join(d, 'memory.bin'), readFileSync(join(snapDir, 'memory.bin')));
      writeStateFile(d, b);
      return d;
    };
    await expect(restorePc(edited('cpus', (b) => (b.machine.cpus = 2)), { virtio: [new VirtioRng()] })).rejects.toThrow(/1 vCPU states for 2 vCPUs/);
    await expect(restorePc(edited('cpuid', (b) => (b.machine.cpuid = '0'.repeat(64))), { virtio: [new VirtioRng()] })).rejects.toThrow(/another CPUID table/);
    await expect(restorePc(edited('rip', (b) => ((b.vcpus[0] as { regs: { rip: unknown } }).regs.rip = 'nope')), { virtio: [new VirtioRng()] })).rejects.toThrow(
      /vcpus\[0\]/,
    );

    const corrupt = edited('corrupt', () => {});
    const state = readFileSync(join(corrupt, 'snapshot.json'));
    state[state.length - 10] ^= 0x20;
    writeFileSync(join(corrupt, 'snapshot.json'), state);
    await expect(restorePc(corrupt, { virtio: [new VirtioRng()] })).rejects.toThrow(/corrupt: the state does not match its SHA-256 checksum/);

    // guest memory is hashed only on request: a flipped byte in memory.bin is found then
    const flipped = edited('flipped', () => {});
    const mem = readFileSync(join(flipped, 'memory.bin'));
    const data = mem.findIndex((b) => b !== 0);
    mem[data] ^= 1;
    writeFileSync(join(flipped, 'memory.bin'), mem);
    expect(() => verifyMemoryFile(snapDir, body)).not.toThrow();
    await expect(restorePc(flipped, { virtio: [new VirtioRng()], verifyMemory: true })).rejects.toThrow(/corrupt: guest memory does not match/);

    const truncated = edited('truncated', () => {});
    truncateSync(join(truncated, 'memory.bin'), 4096);
    await expect(restorePc(truncated, { virtio: [new VirtioRng()] })).rejects.toThrow(/memory.bin: truncated or foreign/);

    const cut = edited('cut', () => {});
    truncateSync(join(cut, 'snapshot.json'), readFileSync(join(cut, 'snapshot.json')).indexOf(0x0a) + 50);
    await expect(restorePc(cut, { virtio: [new VirtioRng()] })).rejects.toThrow(/truncated: the header announces/);
  }, 120_000);
});

/**
 * The snapshot directory format (src/snapshot/format.ts, memory-file.ts) without KVM: the
 * state file round-trips; foreign, truncated, corrupt or ill-shaped state files and memory
 * files of the wrong length are SnapshotErrors naming the file and the problem; memory.bin is
 * sparse and its checksum survives holes.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SnapshotError, readStateFile, writeStateFile, type SnapshotBody } from '../../../src/snapshot/format.js';
import { forEachDataRun, verifyMemoryFile, writeMemoryFile } from '../../../src/snapshot/memory-file.js';

const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-format-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let seq = 0;

/** A snapshot directory with 3 MiB of "RAM" (a few data pages) and a body around it. */
function snapshotDir(edit: (b: SnapshotBody) => void = () => {}): { dir: string; body: SnapshotBody } {
  const dir = join(tmp, `s${seq++}`);
  mkdirSync(dir);
  const buffer = new SharedArrayBuffer(3 << 20);
  const ram = new Uint8Array(buffer);
  ram.set([1, 2, 3], 0x1000);
  ram.fill(0xaa, 0x200000, 0x203000);
  ram[buffer.byteLength - 1] = 7;
  const memory = writeMemoryFile(dir, [{ gpa: 0, length: buffer.byteLength, buffer, readonly: false }]);
  const body: SnapshotBody = {
    vmmapi: 'test',
    createdAt: new Date(0).toISOString(),
    machine: { kind: 'pc', memory: buffer.byteLength, cpus: 1, cpuid: 'x', options: {} },
    memory,
    vcpus: [{}],
    vm: {},
    devices: {},
    meta: { note: 'unit' },
  };
  edit(body);
  writeStateFile(dir, body);
  return { dir, body };
}

describe('snapshot state file', () => {
  it('round-trips; memory.bin is sparse, its checksum verifies', () => {
    const { dir, body } = snapshotDir();
    expect(readStateFile(dir)).toEqual(body);
    expect(body.memory.written).toBe(0x1000 + 0x3000 + 0x1000); // three runs of data pages
    expect(statSync(join(dir, 'memory.bin')).size).toBe(16 << 20); // one 16 MiB chunk, holes included
    expect(statSync(join(dir, 'memory.bin')).blocks * 512).toBeLessThan(1 << 20);
    expect(() => verifyMemoryFile(dir, body)).not.toThrow();
    const mem = readFileSync(join(dir, 'memory.bin'));
    expect([...mem.subarray(0x1000, 0x1003)]).toEqual([1, 2, 3]);
    mem[0x200100] ^= 1;
    writeFileSync(join(dir, 'memory.bin'), mem);
    expect(() => verifyMemoryFile(dir, body)).toThrow(/corrupt: guest memory/);
  });

  it('data runs: whole pages, zero chunks skipped, split at the range given', () => {
    const buffer = new SharedArrayBuffer(4 << 20);
    const b = new Uint8Array(buffer);
    b[5] = 1;
    b[(2 << 20) + 4096 * 3] = 1;
    b[(2 << 20) + 4096 * 4] = 1;
    const runs: [number, number][] = [];
    forEachDataRun(buffer, 0, buffer.byteLength, (at, n) => runs.push([at, n]));
    expect(runs).toEqual([[0, 4096], [(2 << 20) + 4096 * 3, 8192]]);
  });

  const refused: [string, (dir: string) => void, RegExp][] = [
    ['a missing state file', (d) => rmSync(join(d, 'snapshot.json')), /cannot read the snapshot's state file/],
    ['a foreign file', (d) => writeFileSync(join(d, 'snapshot.json'), '{"format":"other"}\n{}'), /not a vmmapi snapshot/],
    ['no header line', (d) => writeFileSync(join(d, 'snapshot.json'), 'garbage'), /no header line/],
    ['another version', (d) => rewriteHeader(d, (h) => (h.version = 99)), /format version 99; this vmmapi reads version 1/],
    ['a truncated body', (d) => truncateSync(join(d, 'snapshot.json'), readFileSync(join(d, 'snapshot.json')).indexOf(10) + 20), /truncated: the header announces/],
    ['a flipped bit', (d) => flip(join(d, 'snapshot.json')), /corrupt: the state does not match/],
    ['a short memory.bin', (d) => truncateSync(join(d, 'memory.bin'), 4096), /memory.bin: truncated or foreign/],
    ['a missing memory.bin', (d) => rmSync(join(d, 'memory.bin')), /cannot open the snapshot's memory file/],
  ];
  it.each(refused)('refuses %s', (_, spoil, message) => {
    const { dir } = snapshotDir();
    spoil(dir);
    expect(() => readStateFile(dir)).toThrow(SnapshotError);
    expect(() => readStateFile(dir)).toThrow(message);
  });

  const shapes: [string, (b: SnapshotBody) => void, RegExp][] = [
    ['vCPU states of another count', (b) => (b.machine.cpus = 2), /holds 1 vCPU states for 2 vCPUs/],
    ['a segment outside memory.bin', (b) => (b.memory.segments[0].length = 64 << 20), /outside memory.bin/],
    ['an unaligned segment', (b) => (b.memory.segments[0].gpa = 5), /not page-aligned/],
    ['no machine', (b) => delete (b as Partial<SnapshotBody>).machine, /"machine" is not/],
    ['a segment without readonly', (b) => delete (b.memory.segments[0] as Partial<(typeof b.memory.segments)[0]>).readonly, /is not \{ gpa, length, offset, readonly \}/],
  ];
  it.each(shapes)('refuses a state with %s', (_, edit, message) => {
    const { dir } = snapshotDir(edit);
    expect(() => readStateFile(dir)).toThrow(message);
  });
});

function flip(file: string): void {
  const b = readFileSync(file);
  b[b.length - 5] ^= 1;
  writeFileSync(file, b);
}

function rewriteHeader(dir: string, edit: (h: Record<string, unknown>) => void): void {
  const file = join(dir, 'snapshot.json');
  const text = readFileSync(file, 'utf8');
  const nl = text.indexOf('\n');
  const h = JSON.parse(text.slice(0, nl)) as Record<string, unknown>;
  edit(h);
  writeFileSync(file, `${JSON.stringify(h)}${text.slice(nl)}`);
}

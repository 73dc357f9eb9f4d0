/**
 * memory.bin of a snapshot (see ./format.ts): guest RAM written sparse — runs of non-zero pages
 * at their offsets, pages of zeros left as holes — with a SHA-256 over all of it.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MEMORY_FILE, SnapshotError, VERIFY_CHUNK, type SnapshotBody, type SnapshotSegment } from './format.js';

const PAGE = 4096;
/** Zero detection looks at this much at once first. */
const SCAN_CHUNK = 1 << 20;
const ZERO_CHUNK = Buffer.alloc(SCAN_CHUNK);

/** A RAM segment to save: its address and its memory. */
export interface MemorySource {
  gpa: number;
  length: number;
  buffer: SharedArrayBuffer;
  readonly: boolean;
  /** `[start, end)` offsets that may hold data (Vm.memoryDataRanges); default: all of it. */
  data?: readonly (readonly [number, number])[];
}

/** What {@link writeMemoryFile} wrote. */
export interface MemoryFileSummary {
  bytes: number;
  written: number;
  sha256: string;
  segments: SnapshotSegment[];
}

/**
 * Write `segments` to `dir`/memory.bin, each at the next offset that is a multiple of
 * VERIFY_CHUNK (16 MiB; the gaps are holes and cost nothing), skipping pages of
 * zeros (the file is truncated to its full length first, so they read back as zeros). The file
 * is written under a temporary name and renamed over memory.bin: VMs restored from an earlier
 * snapshot in `dir` map the old file privately, and keep seeing it unchanged.
 */
export function writeMemoryFile(dir: string, segments: readonly MemorySource[]): MemoryFileSummary {
  const out: SnapshotSegment[] = [];
  let offset = 0;
  for (const s of segments) {
    out.push({ gpa: s.gpa, length: s.length, offset, readonly: s.readonly });
    offset += Math.ceil(s.length / VERIFY_CHUNK) * VERIFY_CHUNK;
  }
  const tmp = join(dir, `.${MEMORY_FILE}.tmp`);
  const fd = openSync(tmp, 'w');
  const hash = createHash('sha256');
  let written = 0;
  try {
    ftruncateSync(fd, offset);
    segments.forEach((s, i) => {
      const base = out[i].offset;
      // only where there may be data; runs split where verifyMemoryFile's reads do (segments
      // start on such a boundary)
      for (const [start, end] of s.data ?? [[0, s.length]]) {
        for (let from = start; from < end; ) {
          const to = Math.min(end, (Math.floor(from / VERIFY_CHUNK) + 1) * VERIFY_CHUNK);
          forEachDataRun(s.buffer, from, to, (at, n) => {
            hashRun(hash, base + at, s.buffer, at, n);
            writeAll(fd, Buffer.from(s.buffer, at, n), base + at);
            written += n;
          });
          from = to;
        }
      }
    });
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, MEMORY_FILE));
  return { bytes: offset, written, sha256: hash.digest('hex'), segments: out };
}

/**
 * Call `fn(offset, length)` for each run of pages of `buffer[start, end)` that are not all
 * zeros (offsets in `buffer`). A whole chunk of zeros is recognised with one comparison (memcmp), so memory the
 * guest never wrote costs little to scan.
 */
export function forEachDataRun(buffer: SharedArrayBuffer, start: number, end: number, fn: (offset: number, length: number) => void): void {
  let runStart = -1;
  const flush = (at: number): void => {
    if (runStart >= 0) fn(runStart, at - runStart);
    runStart = -1;
  };
  for (let chunk = start; chunk < end; chunk += SCAN_CHUNK) {
    const n = Math.min(SCAN_CHUNK, end - chunk);
    if (Buffer.from(buffer, chunk, n).equals(ZERO_CHUNK.subarray(0, n))) {
      flush(chunk);
      continue;
    }
    for (let at = chunk; at < chunk + n; at += PAGE) {
      const len = Math.min(PAGE, chunk + n - at);
      if (Buffer.from(buffer, at, len).equals(ZERO_CHUNK.subarray(0, len))) flush(at);
      else if (runStart < 0) runStart = at;
    }
  }
  flush(end);
}

/**
 * The memory checksum's input for one run of data pages: its file offset (8 bytes,
 * little-endian), its length, then its bytes — so pages of zeros (holes) need not be hashed,
 * and the same file always gives the same digest ({@link verifyMemoryFile} reads it back the
 * same way).
 */
export function hashRun(hash: Hash, fileOffset: number, buffer: ArrayBufferLike, at: number, n: number): void {
  const head = Buffer.alloc(16);
  head.writeBigUInt64LE(BigInt(fileOffset), 0);
  head.writeBigUInt64LE(BigInt(n), 8);
  hash.update(head);
  hash.update(Buffer.from(buffer, at, n));
}

function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

/**
 * Hash memory.bin's data pages and compare with the state's `memory.sha256` (reads the whole
 * file: seconds for gigabytes). SnapshotError if they differ.
 */
export function verifyMemoryFile(dir: string, body: SnapshotBody): void {
  const file = join(dir, MEMORY_FILE);
  const fd = openSync(file, 'r');
  try {
    const h = createHash('sha256');
    const buf = new SharedArrayBuffer(VERIFY_CHUNK);
    const view = Buffer.from(buf);
    for (let pos = 0; pos < body.memory.bytes; pos += VERIFY_CHUNK) {
      const want = Math.min(VERIFY_CHUNK, body.memory.bytes - pos);
      let got = 0;
      while (got < want) {
        const n = readSync(fd, view, got, want - got, pos + got);
        if (n <= 0) throw new SnapshotError(`${file}: truncated at byte ${pos + got}`);
        got += n;
      }
      // a run across a chunk boundary hashes as two: memory-file.ts splits runs the same way
      forEachDataRun(buf, 0, want, (at, n) => hashRun(h, pos + at, buf, at, n));
    }
    if (h.digest('hex') !== body.memory.sha256) throw new SnapshotError(`${file}: corrupt: guest memory does not match its SHA-256 checksum`);
  } finally {
    closeSync(fd);
  }
}

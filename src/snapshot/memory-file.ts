/**
 * memory.bin of a snapshot (see ./format.ts): guest RAM written sparse — runs of non-zero pages
 * at their offsets, pages of zeros left as holes — with a SHA-256 over all of it.
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { MEMORY_FILE, type SnapshotSegment } from './format.js';

const PAGE = 4096;
/** The longest run written by one write(2). */
const MAX_RUN = 64 << 20;
const ZERO_PAGE = Buffer.alloc(PAGE);

/** A RAM segment to save: its address and its memory. */
export interface MemorySource {
  gpa: number;
  length: number;
  buffer: SharedArrayBuffer;
  readonly: boolean;
}

/** What {@link writeMemoryFile} wrote. */
export interface MemoryFileSummary {
  bytes: number;
  written: number;
  sha256: string;
  segments: SnapshotSegment[];
}

/**
 * Write `segments` to `dir`/memory.bin, each at the next page-aligned offset, skipping pages of
 * zeros (the file is truncated to its full length first, so they read back as zeros). The file
 * is written under a temporary name and renamed over memory.bin: VMs restored from an earlier
 * snapshot in `dir` map the old file privately, and keep seeing it unchanged.
 */
export function writeMemoryFile(dir: string, segments: readonly MemorySource[]): MemoryFileSummary {
  const out: SnapshotSegment[] = [];
  let offset = 0;
  for (const s of segments) {
    out.push({ gpa: s.gpa, length: s.length, offset, readonly: s.readonly });
    offset += Math.ceil(s.length / PAGE) * PAGE;
  }
  const tmp = join(dir, `.${MEMORY_FILE}.tmp`);
  const fd = openSync(tmp, 'w');
  const hash = createHash('sha256');
  let written = 0;
  try {
    ftruncateSync(fd, offset);
    segments.forEach((s, i) => {
      const base = out[i].offset;
      let runStart = -1;
      const flush = (end: number): void => {
        if (runStart < 0) return;
        for (let at = runStart; at < end; at += MAX_RUN) {
          const n = Math.min(MAX_RUN, end - at);
          writeAll(fd, Buffer.from(s.buffer, at, n), base + at);
          written += n;
        }
        runStart = -1;
      };
      for (let at = 0; at < s.length; at += PAGE) {
        const page = Buffer.from(s.buffer, at, Math.min(PAGE, s.length - at));
        hash.update(page);
        if (page.equals(ZERO_PAGE.subarray(0, page.length))) flush(at);
        else if (runStart < 0) runStart = at;
      }
      flush(s.length);
    });
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, MEMORY_FILE));
  return { bytes: offset, written, sha256: hash.digest('hex'), segments: out };
}

function writeAll(fd: number, data: Buffer, position: number): void {
  for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done, position + done);
}

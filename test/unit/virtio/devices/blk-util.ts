/** virtio-blk test helpers: temporary images and requests posted as a Linux driver would. */
import { mkdtempSync, rmSync, writeFileSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { GuestDriver, Posted } from '../driver.js';

/** A temporary directory with an image file `bytes` long (sparse unless `content` is given). */
export class TempImage {
  readonly dir: string;
  readonly path: string;
  constructor(bytes: number, content?: Uint8Array) {
    this.dir = mkdtempSync(join(tmpdir(), 'vmmapi-blk-'));
    this.path = join(this.dir, 'disk.img');
    writeFileSync(this.path, content ?? new Uint8Array(0));
    truncateSync(this.path, bytes);
  }
  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The 16-byte request header. */
export function blkHeader(type: number, sector: number | bigint): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setBigUint64(8, BigInt(sector), true);
  return h;
}

/** One discard / write-zeroes segment. */
export function blkRange(sector: number | bigint, sectors: number, flags = 0): Uint8Array {
  const r = new Uint8Array(16);
  const v = new DataView(r.buffer);
  v.setBigUint64(0, BigInt(sector), true);
  v.setUint32(8, sectors, true);
  v.setUint32(12, flags, true);
  return r;
}

/** A posted request and how to read the device's answer. */
export interface BlkPosted extends Posted {
  /** The status byte (the last writable byte). */
  status(): number;
  /** The writable data buffers (all but the status buffer), concatenated. */
  data(): Uint8Array;
}

/**
 * Post header(type, sector), then readable buffers `out`, then writable data buffers of
 * `inLens` and a 1-byte status buffer (pre-filled with 0xff so an unwritten status shows).
 */
export function postBlk(
  d: GuestDriver, type: number, sector: number | bigint, out: Uint8Array[] = [], inLens: number[] = [], indirect = false,
): BlkPosted {
  const p = d.add([blkHeader(type, sector), ...out], [...inLens, 1], indirect);
  const st = p.inBufs[p.inBufs.length - 1];
  d.mem.writeU8(st.gpa, 0xff);
  return {
    ...p,
    status: () => d.mem.readU8(st.gpa),
    data: () => {
      const parts = p.inBufs.slice(0, -1).map((b) => d.mem.readBytes(b.gpa, b.len));
      const all = new Uint8Array(parts.reduce((n, b) => n + b.length, 0));
      let at = 0;
      for (const b of parts) {
        all.set(b, at);
        at += b.length;
      }
      return all;
    },
  };
}

/** `n` bytes of a recognisable pattern starting from `seed`. */
export function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

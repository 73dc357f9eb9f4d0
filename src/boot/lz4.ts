/**
 * A decoder for the LZ4 "legacy" frame format — the one Linux's `CONFIG_KERNEL_LZ4` bzImages
 * carry (magic 0x184C2102, then independent blocks of at most 8 MiB, each prefixed by its
 * compressed size; the kernel build appends the uncompressed size as a 4-byte trailer).
 *
 * Input is hostile: every literal run, match offset and length is checked against the input
 * and output bounds; a malformed stream throws {@link BootImageError}, never reads or writes
 * out of bounds.
 */
import { BootImageError } from './errors.js';

/** The legacy-frame magic number (little-endian at offset 0). */
export const LZ4_LEGACY_MAGIC = 0x184c2102;
/** The largest block a legacy frame holds once decompressed. */
export const LZ4_LEGACY_BLOCK_MAX = 8 * 1024 * 1024;

const MIN_MATCH = 4;

function u32(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/**
 * Decode one LZ4 block (`src[start, end)`) into `dst` from offset 0; returns the output
 * length. Matches may reach back only within this block's output (legacy blocks are
 * independent).
 */
function decodeBlock(src: Uint8Array, start: number, end: number, dst: Uint8Array, name: string): number {
  let i = start;
  let o = 0;
  const fail = (why: string): never => {
    throw new BootImageError(name, `corrupt LZ4 block at input offset ${start}: ${why}`);
  };
  while (i < end) {
    const token = src[i++];
    let lit = token >>> 4;
    if (lit === 15) {
      for (;;) {
        if (i >= end) fail('literal length runs past the block');
        const b = src[i++];
        lit += b;
        if (b !== 255) break;
      }
    }
    if (i + lit > end) fail(`${lit} literals run past the block`);
    if (o + lit > dst.length) fail('output exceeds the block size limit');
    dst.set(src.subarray(i, i + lit), o);
    i += lit;
    o += lit;
    if (i === end) break; // the last sequence carries literals only
    if (i + 2 > end) fail('match offset runs past the block');
    const offset = src[i] | (src[i + 1] << 8);
    i += 2;
    if (offset === 0 || offset > o) fail(`match offset ${offset} points before the block's output`);
    let len = (token & 15) + MIN_MATCH;
    if ((token & 15) === 15) {
      for (;;) {
        if (i >= end) fail('match length runs past the block');
        const b = src[i++];
        len += b;
        if (b !== 255) break;
      }
    }
    if (o + len > dst.length) fail('output exceeds the block size limit');
    let from = o - offset;
    if (offset >= len) {
      dst.copyWithin(o, from, from + len);
      o += len;
    } else {
      for (let k = 0; k < len; k++) dst[o++] = dst[from++]; // overlapping copy repeats the pattern
    }
  }
  return o;
}

/**
 * Decompress an LZ4 legacy frame (or several concatenated ones).
 *
 * @param data The compressed bytes, starting with the magic. A trailing 4-byte field shorter
 *   than a block header (the kernel's appended size) is ignored.
 * @param maxOutput Refuse to produce more than this many bytes (default 1 GiB).
 * @param name Name used in error messages.
 * @throws BootImageError for a missing magic, truncated or corrupt blocks, or too much output.
 */
export function decompressLz4Legacy(data: Uint8Array, maxOutput = 2 ** 30, name = 'LZ4 stream'): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError('data must be a Uint8Array');
  if (typeof maxOutput !== 'number' || !(maxOutput >= 0)) throw new RangeError(`maxOutput must be a non-negative number, got ${String(maxOutput)}`);
  if (data.length < 4 || u32(data, 0) !== LZ4_LEGACY_MAGIC) throw new BootImageError(name, 'not an LZ4 legacy frame (no 0x184c2102 magic)');
  const chunks: Uint8Array[] = [];
  let total = 0;
  let i = 4;
  const scratch = new Uint8Array(LZ4_LEGACY_BLOCK_MAX);
  while (data.length - i > 4) {
    const size = u32(data, i);
    i += 4;
    if (size === LZ4_LEGACY_MAGIC) continue; // a concatenated frame starts
    if (size === 0 || size > data.length - i)
      throw new BootImageError(name, `truncated: block at offset ${i - 4} claims ${size} bytes, ${data.length - i} remain`);
    const n = decodeBlock(data, i, i + size, scratch, name);
    i += size;
    total += n;
    if (total > maxOutput) throw new BootImageError(name, `decompresses to more than ${maxOutput} bytes`);
    chunks.push(scratch.slice(0, n));
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Small helpers shared by the boot loaders: argument checks, alignment with safe-integer
 * arithmetic, hex formatting, range overlap, and a bounds-checked little-endian reader
 * over a hostile image that throws {@link BootImageError} on truncation.
 */
import { BootImageError } from './errors.js';

/** Format a number or bigint as `0x…` hexadecimal. */
export function hex(value: number | bigint): string {
  return `0x${value.toString(16)}`;
}

/** True if `n` is a positive safe integer power of two. */
export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}

/** Round `value` up to a multiple of `align` (a power of two); RangeError if the result is not a safe integer. */
export function alignUp(value: number, align: number): number {
  const r = Math.ceil(value / align) * align;
  if (!Number.isSafeInteger(r)) throw new RangeError(`alignment of ${hex(value)} to ${hex(align)} overflows`);
  return r;
}

/** Round `value` down to a multiple of `align` (a power of two). */
export function alignDown(value: number, align: number): number {
  return Math.floor(value / align) * align;
}

/** True if `[aStart, aStart + aLen)` and `[bStart, bStart + bLen)` share a byte (empty ranges never do). */
export function overlaps(aStart: number, aLen: number, bStart: number, bLen: number): boolean {
  return aLen > 0 && bLen > 0 && aStart < bStart + bLen && bStart < aStart + aLen;
}

/** Throw TypeError unless `value` is a Uint8Array. */
export function requireBytes(value: unknown, name: string): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`${name} must be a Uint8Array`);
}

/** Throw TypeError/RangeError unless `value` is a non-negative safe integer; returns it. */
export function requireAddress(value: unknown, name: string): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
  return value;
}

/** Throw TypeError unless `value` is a string; returns it. */
export function requireString(value: unknown, name: string): string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${typeof value}`);
  return value;
}

/** A named guest-physical range, for overlap checks between the pieces a loader places. */
export interface PlacedRange {
  /** What occupies the range, for messages. */
  what: string;
  /** First byte. */
  start: number;
  /** Length in bytes. */
  length: number;
}

/** Return the first range in `ranges` overlapping `[start, start + length)`, or undefined. */
export function findOverlap(ranges: readonly PlacedRange[], start: number, length: number): PlacedRange | undefined {
  return ranges.find((r) => overlaps(r.start, r.length, start, length));
}

/** Encode `s` as NUL-terminated bytes; RangeError (naming `name`) if it contains a NUL. */
export function cString(s: string, name: string): Uint8Array {
  requireString(s, name);
  if (s.includes('\0')) throw new RangeError(`${name} must not contain NUL characters`);
  const body = new TextEncoder().encode(s);
  const out = new Uint8Array(body.length + 1);
  out.set(body);
  return out;
}

/**
 * A bounds-checked little-endian reader over an untrusted image. Every read beyond the end
 * throws a {@link BootImageError} naming the image.
 */
export class ImageReader {
  readonly #view: DataView;
  /** The image bytes. */
  readonly bytes: Uint8Array;
  /** The image's name for error messages. */
  readonly name: string;

  /** Wrap `bytes`, naming it `name` in errors. */
  constructor(bytes: Uint8Array, name: string) {
    this.bytes = bytes;
    this.name = name;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** The image length in bytes. */
  get length(): number {
    return this.bytes.length;
  }

  /** Throw unless `[offset, offset + length)` lies within the image; `what` names the field. */
  need(offset: number, length: number, what: string): void {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      !Number.isSafeInteger(offset + length) ||
      offset + length > this.bytes.length
    ) {
      throw new BootImageError(
        this.name,
        `truncated: ${what} at ${hex(offset)} (${length} bytes) extends beyond the end of the file (${hex(this.bytes.length)} bytes)`,
      );
    }
  }

  /** Read a u8 at `offset`. */
  u8(offset: number, what = 'field'): number {
    this.need(offset, 1, what);
    return this.#view.getUint8(offset);
  }
  /** Read a little-endian u16 at `offset`. */
  u16(offset: number, what = 'field'): number {
    this.need(offset, 2, what);
    return this.#view.getUint16(offset, true);
  }
  /** Read a little-endian u32 at `offset`. */
  u32(offset: number, what = 'field'): number {
    this.need(offset, 4, what);
    return this.#view.getUint32(offset, true);
  }
  /** Read a little-endian u64 at `offset` as a bigint. */
  u64(offset: number, what = 'field'): bigint {
    this.need(offset, 8, what);
    return this.#view.getBigUint64(offset, true);
  }
  /** Read a little-endian u64 at `offset` as a number; BootImageError if it exceeds 2^53-1. */
  u64n(offset: number, what = 'field'): number {
    const v = this.u64(offset, what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BootImageError(this.name, `${what} ${hex(v)} is too large`);
    return Number(v);
  }
}

/**
 * Small helpers shared by the device emulators: turning guest-supplied values and
 * widths into safe numbers without ever throwing.
 */

import type { AccessSize } from './device.js';

/** All-ones for a 64-bit access (cannot be represented exactly as a JS number). */
const ONES_64 = 0xffff_ffff_ffff_ffffn;

/**
 * The all-ones value of an access of `size` bytes: what a read of an undecoded register
 * returns on an ISA-style bus. Sizes 1, 2 and 4 give numbers; 8 gives a bigint. Any other
 * (invalid) size is treated as a 1-byte access.
 */
export function allOnes(size: AccessSize | number): number | bigint {
  switch (size) {
    case 2:
      return 0xffff;
    case 4:
      return 0xffff_ffff;
    case 8:
      return ONES_64;
    default:
      return 0xff;
  }
}

/**
 * Reduce a guest-written value to its low 32 bits as an unsigned number. Never throws:
 * non-finite numbers become 0, fractional numbers are truncated, negative numbers and
 * bigints wrap modulo 2^32.
 */
export function toU32(value: number | bigint): number {
  if (typeof value === 'bigint') return Number(BigInt.asUintN(32, value));
  if (typeof value !== 'number' || !Number.isFinite(value)) return 0;
  return Math.trunc(value) >>> 0;
}

/** Low 8 bits of a guest-written value (see {@link toU32}). */
export function toU8(value: number | bigint): number {
  return toU32(value) & 0xff;
}

/** Low 16 bits of a guest-written value (see {@link toU32}). */
export function toU16(value: number | bigint): number {
  return toU32(value) & 0xffff;
}

/**
 * Mask a guest-written value to the width of an access of `size` bytes (1, 2 or 4; an
 * 8-byte access and any invalid size are reduced to 32 bits). Never throws.
 */
export function toAccessWidth(value: number | bigint, size: AccessSize | number): number {
  const v = toU32(value);
  if (size === 1) return v & 0xff;
  if (size === 2) return v & 0xffff;
  return v;
}

/** True for a well-formed register offset (a non-negative safe integer). */
export function isOffset(offset: number): boolean {
  return Number.isSafeInteger(offset) && offset >= 0;
}

/**
 * Validate a host-supplied byte array argument: a `Uint8Array`, or an array of integers
 * 0-255. Returns it as a `Uint8Array` (a copy when `copy` is true or it was an array).
 * Throws `TypeError` naming `name` otherwise.
 */
export function toByteArray(bytes: Uint8Array | readonly number[], name: string, copy = true): Uint8Array {
  if (bytes instanceof Uint8Array) return copy ? bytes.slice() : bytes;
  if (!Array.isArray(bytes)) throw new TypeError(`${name} must be a Uint8Array or an array of bytes`);
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i];
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b > 0xff) {
      throw new TypeError(`${name}[${i}] must be an integer 0-255`);
    }
    out[i] = b;
  }
  return out;
}

/**
 * A fixed-capacity FIFO of bytes (a ring buffer), O(1) push and shift. Used for UART
 * FIFOs and host input buffers.
 */
export class ByteQueue {
  private readonly buf: Uint8Array;
  private head = 0;
  private count = 0;

  /** Create an empty queue holding at most `capacity` bytes. */
  constructor(readonly capacity: number) {
    this.buf = new Uint8Array(Math.max(capacity, 1));
  }

  /** Number of bytes queued. */
  get length(): number {
    return this.count;
  }

  /** True when no more bytes fit. */
  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Append a byte; returns false (and drops it) when the queue is full. */
  push(byte: number): boolean {
    if (this.count >= this.capacity) return false;
    this.buf[(this.head + this.count) % this.buf.length] = byte;
    this.count++;
    return true;
  }

  /** Remove and return the oldest byte, or `undefined` when empty. */
  shift(): number | undefined {
    if (this.count === 0) return undefined;
    const b = this.buf[this.head];
    this.head = (this.head + 1) % this.buf.length;
    this.count--;
    return b;
  }

  /** The oldest byte without removing it, or `undefined` when empty. */
  peek(): number | undefined {
    return this.count === 0 ? undefined : this.buf[this.head];
  }

  /** Remove every byte. */
  clear(): void {
    this.head = 0;
    this.count = 0;
  }

  /** The queued bytes, oldest first, as a plain array. */
  toArray(): number[] {
    const out: number[] = new Array(this.count);
    for (let i = 0; i < this.count; i++) out[i] = this.buf[(this.head + i) % this.buf.length];
    return out;
  }
}

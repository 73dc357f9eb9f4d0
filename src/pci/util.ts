/**
 * Small helpers shared by the PCI models: turning guest values into bytes without ever
 * throwing, and checking host-supplied arguments with errors that name them.
 */

import type { AccessSize } from '../devices/device.js';

/** True for an access width a bus delivers (1, 2, 4 or 8). */
export function isAccessSize(size: unknown): size is AccessSize {
  return size === 1 || size === 2 || size === 4 || size === 8;
}

/**
 * A guest-written value of `size` bytes as a bigint of that width. Never throws:
 * non-finite numbers become 0, fractions are truncated, negatives and over-wide values wrap.
 */
export function toUintN(value: number | bigint, size: number): bigint {
  const bits = size * 8;
  if (typeof value === 'bigint') return BigInt.asUintN(bits, value);
  if (typeof value !== 'number' || !Number.isFinite(value)) return 0n;
  return BigInt.asUintN(bits, BigInt(Math.trunc(value)));
}

/** Assemble `n` (1, 2 or 4) little-endian bytes from `get(i)` into an unsigned number. */
export function assembleLE(n: number, get: (i: number) => number): number {
  let v = 0;
  for (let i = n - 1; i >= 0; i--) v = v * 256 + get(i);
  return v;
}

/** Throw TypeError unless `v` is an integer in [min, max]; RangeError if it is an integer outside. */
export function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`);
  if (v < min || v > max) throw new RangeError(`${name} must be in [${hex(min)}, ${hex(max)}], got ${hex(v)}`);
  return v;
}

/** True for a positive power of two that is a safe integer. */
export function isPowerOfTwo(v: number): boolean {
  return Number.isSafeInteger(v) && v > 0 && 2 ** Math.round(Math.log2(v)) === v;
}

/** `v` rounded up to a multiple of the power of two `align` (exact for safe integers). */
export function alignUp(v: number, align: number): number {
  return Math.ceil(v / align) * align;
}

/** `0x`-prefixed lower-case hex. */
export function hex(v: number): string {
  return v < 0 ? `-0x${(-v).toString(16)}` : `0x${v.toString(16)}`;
}

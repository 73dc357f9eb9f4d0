/**
 * Checks for restoring snapshot state, shared by the PCI, virtio, net and vsock models.
 *
 * A state comes from a file and is treated as hostile: every check throws a TypeError
 * (wrong type) or a RangeError (a value out of range, a wrong length) naming the field, so
 * that a `restore` can check everything before it changes anything. States are plain
 * JSON-safe data; integers are checked with `checkInt` (util.ts). This module also holds their two encodings: bigints (and 64-bit
 * addresses) as `0x`-prefixed lower-case hex strings, byte arrays as base64 strings.
 */
import { checkInt } from './util.js';

/** `v` as a plain object (not null, not an array). */
export function stateObject(v: unknown, name: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object`);
  return v as Record<string, unknown>;
}

/** `v` as a boolean. */
export function stateBool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeof v}`);
  return v;
}

/** `v` as a string of at most `maxLength` characters. */
export function stateString(v: unknown, name: string, maxLength: number): string {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeof v}`);
  if (v.length > maxLength) throw new RangeError(`${name} must be at most ${maxLength} characters, got ${v.length}`);
  return v;
}

/** `v` as an array of at most `maxLength` entries (or exactly `length` when given). */
export function stateArray(v: unknown, name: string, maxLength: number, length?: number): unknown[] {
  if (!Array.isArray(v)) throw new TypeError(`${name} must be an array`);
  if (length !== undefined && v.length !== length) throw new RangeError(`${name} must have ${length} entries, got ${v.length}`);
  if (v.length > maxLength) throw new RangeError(`${name} must have at most ${maxLength} entries, got ${v.length}`);
  return v;
}

/** `v` as one of `values`. */
export function stateOneOf<T extends string>(v: unknown, name: string, values: readonly T[]): T {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string, got ${typeof v}`);
  if (!values.includes(v as T)) throw new RangeError(`${name} must be one of ${values.join(', ')}, got ${JSON.stringify(v.slice(0, 40))}`);
  return v as T;
}

/** `v` as a list of distinct integers in [0, max], ascending (a set of indices). */
export function stateIndexSet(v: unknown, name: string, max: number): number[] {
  const a = stateArray(v, name, max + 1);
  return a.map((x, i) => {
    const n = checkInt(x, `${name}[${i}]`, 0, max);
    if (i > 0 && n <= (a[i - 1] as number)) throw new RangeError(`${name} must be ascending without repeats (at ${i})`);
    return n;
  });
}

/** A bigint (or non-negative safe integer) as a state's hex string, e.g. `0x1f`. */
export function toHex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

const HEX = /^0x[0-9a-f]{1,32}$/;

/** `v`, a hex string from {@link toHex}, as a bigint in [0, max]. */
export function stateHex(v: unknown, name: string, max: bigint): bigint {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a hex string like 0x1f, got ${typeof v}`);
  if (!HEX.test(v)) throw new RangeError(`${name} must be a lower-case hex string like 0x1f, got ${JSON.stringify(v.slice(0, 40))}`);
  const n = BigInt(v);
  if (n > max) throw new RangeError(`${name} must be at most ${toHex(max)}, got ${v}`);
  return n;
}

/** Bytes as a state's base64 string. */
export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** `v`, a base64 string from {@link toBase64}, as (a copy of) at most `maxBytes` bytes, or exactly `length`. */
export function stateBytes(v: unknown, name: string, maxBytes: number, length?: number): Uint8Array {
  if (typeof v !== 'string') throw new TypeError(`${name} must be a base64 string, got ${typeof v}`);
  if (v.length > Math.ceil(maxBytes / 3) * 4) throw new RangeError(`${name} must hold at most ${maxBytes} bytes`);
  if (!BASE64.test(v)) throw new RangeError(`${name} must be a base64 string`);
  const bytes = new Uint8Array(Buffer.from(v, 'base64'));
  if (bytes.length > maxBytes) throw new RangeError(`${name} must hold at most ${maxBytes} bytes, got ${bytes.length}`);
  if (length !== undefined && bytes.length !== length) throw new RangeError(`${name} must hold ${length} bytes, got ${bytes.length}`);
  return bytes;
}

/**
 * Run `check`, renaming the fields its errors name: `state.x` (or `root.x`) becomes
 * `prefix.x`, for a part's state checked inside a whole's (`state.queues[1].queue.size`).
 */
export function nested<T>(prefix: string, check: () => T, root: 'state' | 'overrides' = 'state'): T {
  try {
    return check();
  } catch (e) {
    if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
    const message = e.message.replace(new RegExp(`\\b${root}(?=[.[]| must)`, 'g'), prefix);
    throw e instanceof TypeError ? new TypeError(message, { cause: e }) : new RangeError(message, { cause: e });
  }
}

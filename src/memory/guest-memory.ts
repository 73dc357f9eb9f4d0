/**
 * Guest-physical memory: one bounds-checked accessor over all of a VM's memory segments.
 *
 * Segments are kept sorted and may not overlap (checked when added). Every access checks
 * its whole range with overflow-safe arithmetic and may span adjacent segments.
 *
 * A segment may be larger than one typed array can view (Node 20 / V8 11 caps a typed
 * array at 2^32 elements, while a SharedArrayBuffer over guest RAM may be up to 1 TiB).
 * Each segment is therefore viewed as consecutive chunks of at most {@link DEFAULT_CHUNK_SIZE}
 * bytes; byte copies that cross a chunk are split, and scalar accesses go through one
 * DataView over the whole segment (DataViews have no 2^32 cap).
 */
import { GuestMemoryError, type GuestMemoryAccess } from './access.js';

/** One contiguous guest-physical range backed by host memory. */
export interface MemorySegment {
  /** First guest-physical address. */
  readonly gpa: number;
  /** Length in bytes (may exceed 2^32: take views with {@link GuestMemory.slice}). */
  readonly length: number;
  /** The buffer holding the bytes: `length` bytes starting at `byteOffset`. */
  readonly buffer: ArrayBufferLike;
  /** Where the segment's first byte lies in `buffer`. */
  readonly byteOffset: number;
  /** True if the guest cannot write it (a ROM); host writes still work. */
  readonly readonly: boolean;
}

/** The longest Uint8Array this Node can create (V8's TypedArray::kMaxLength on 64-bit hosts). */
export const MAX_VIEW_LENGTH = 2 ** 32;

/** The default length of the typed-array chunks a segment is viewed through (2 GiB). */
export const DEFAULT_CHUNK_SIZE = 2 ** 31;

const MAX_GPA = 2 ** 52;

/** A segment and the views over it. */
interface Backed {
  readonly seg: MemorySegment;
  readonly end: number;
  readonly view: DataView;
  /** Chunk i covers segment offsets [i * chunkSize, min((i + 1) * chunkSize, length)). */
  readonly chunks: Uint8Array[];
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null) return 'null';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return String(v);
}

function checkRange(gpa: unknown, length: unknown, lengthArg = 'length'): void {
  if (typeof gpa !== 'number') throw new TypeError(`gpa must be a number, got ${show(gpa)}`);
  if (!Number.isSafeInteger(gpa) || gpa < 0) throw new RangeError(`gpa must be an integer in [0, 2^53), got ${gpa}`);
  if (typeof length !== 'number') throw new TypeError(`${lengthArg} must be a number, got ${show(length)}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`${lengthArg} must be an integer in [0, 2^53), got ${length}`);
}

function checkUint(value: unknown, bits: 8 | 16 | 32): number {
  if (typeof value !== 'number') throw new TypeError(`value must be a number, got ${show(value)}`);
  const max = 2 ** bits - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`value must be an integer in [0, ${hex(max)}], got ${value}`);
  return value;
}

/** `bytes` as a Uint8Array: Uint8Array (Buffer), Uint8ClampedArray, ArrayBuffer, SharedArrayBuffer. */
function toBytes(bytes: unknown): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof Uint8ClampedArray) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes instanceof ArrayBuffer || bytes instanceof SharedArrayBuffer) return new Uint8Array(bytes);
  throw new TypeError(`bytes must be a Uint8Array (or Buffer, Uint8ClampedArray), an ArrayBuffer or a SharedArrayBuffer, got ${show(bytes)}`);
}

/** The guest-physical address space of a VM (or a test buffer), as sorted segments. */
export class GuestMemory implements GuestMemoryAccess {
  #backed: Backed[] = [];
  #segments: MemorySegment[] = [];
  readonly #enforceReadonly: boolean;
  readonly #chunkSize: number;

  /**
   * `enforceReadonly`: writes to read-only segments (ROMs) throw, as a guest's own writes
   * would not land there. The default (false) is the host's view: loaders may write ROMs.
   * `chunkSize`: the length of the typed-array chunks segments are viewed through, a power
   * of two up to 2^32 (default {@link DEFAULT_CHUNK_SIZE}); tests make it small to cross
   * chunks cheaply.
   */
  constructor(opts: { enforceReadonly?: boolean; chunkSize?: number } = {}) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const ro = opts.enforceReadonly ?? false;
    if (typeof ro !== 'boolean') throw new TypeError('opts.enforceReadonly must be a boolean');
    const chunk = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (typeof chunk !== 'number') throw new TypeError('opts.chunkSize must be a number');
    if (!Number.isInteger(chunk) || chunk < 1 || chunk > MAX_VIEW_LENGTH || !Number.isInteger(Math.log2(chunk))) {
      throw new RangeError(`opts.chunkSize must be a power of two in [1, 2^32], got ${chunk}`);
    }
    this.#enforceReadonly = ro;
    this.#chunkSize = chunk;
  }

  /** The segments, sorted by address. */
  get segments(): readonly MemorySegment[] {
    return this.#segments;
  }

  /**
   * Add a segment at `gpa` over `memory`: a Uint8Array (its bytes), or a whole ArrayBuffer or
   * SharedArrayBuffer (which may be larger than one Uint8Array can view). Throws RangeError if
   * it is empty, overlaps another or leaves the 52-bit space; nothing is added then.
   */
  addSegment(gpa: number, memory: Uint8Array | ArrayBuffer | SharedArrayBuffer, readonly = false): MemorySegment {
    let buffer: ArrayBufferLike;
    let byteOffset: number;
    let length: number;
    if (memory instanceof Uint8Array) {
      ({ buffer, byteOffset, byteLength: length } = memory);
    } else if (memory instanceof ArrayBuffer || memory instanceof SharedArrayBuffer) {
      buffer = memory;
      byteOffset = 0;
      length = memory.byteLength;
    } else {
      throw new TypeError(`memory must be a Uint8Array, an ArrayBuffer or a SharedArrayBuffer, got ${show(memory)}`);
    }
    if (typeof readonly !== 'boolean') throw new TypeError('readonly must be a boolean');
    checkRange(gpa, length);
    if (length === 0) throw new RangeError('length must be greater than zero');
    if (gpa + length > MAX_GPA) throw new RangeError(`segment at ${hex(gpa)} ends beyond 2^52`);
    for (const s of this.#segments) {
      if (gpa < s.gpa + s.length && s.gpa < gpa + length) {
        throw new RangeError(`segment ${hex(gpa)}+${hex(length)} overlaps segment ${hex(s.gpa)}+${hex(s.length)}`);
      }
    }
    const chunks: Uint8Array[] = [];
    for (let off = 0; off < length; off += this.#chunkSize) {
      chunks.push(new Uint8Array(buffer, byteOffset + off, Math.min(this.#chunkSize, length - off)));
    }
    const seg: MemorySegment = { gpa, length, buffer, byteOffset, readonly };
    const view = new DataView(buffer, byteOffset, length);
    this.#backed.push({ seg, end: gpa + length, view, chunks });
    this.#backed.sort((a, b) => a.seg.gpa - b.seg.gpa);
    this.#segments = this.#backed.map((b) => b.seg);
    return seg;
  }

  /** Remove the segment that starts at `gpa`; returns false if there is none. */
  removeSegment(gpa: number): boolean {
    const i = this.#backed.findIndex((b) => b.seg.gpa === gpa);
    if (i < 0) return false;
    this.#backed.splice(i, 1);
    this.#segments = this.#backed.map((b) => b.seg);
    return true;
  }

  #find(gpa: number): Backed | undefined {
    const segs = this.#backed;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const b = segs[mid];
      if (gpa < b.seg.gpa) hi = mid - 1;
      else if (gpa >= b.end) lo = mid + 1;
      else return b;
    }
    return undefined;
  }

  /** The segment containing `gpa`, or undefined. */
  segmentAt(gpa: number): MemorySegment | undefined {
    if (!Number.isSafeInteger(gpa)) return undefined;
    return this.#find(gpa)?.seg;
  }

  /** True if every byte of `[gpa, gpa + length)` is backed. */
  isBacked(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length < 0) return false;
    let at = gpa;
    const end = gpa + length;
    while (at < end) {
      const b = this.#find(at);
      if (!b) return false;
      at = b.end;
    }
    return true;
  }

  /**
   * A view of `[gpa, gpa + length)` if it lies within one segment, else undefined.
   * The view aliases guest memory (no copy). RangeError if `length` exceeds
   * {@link MAX_VIEW_LENGTH} (no typed array can be that long).
   */
  slice(gpa: number, length: number): Uint8Array | undefined {
    checkRange(gpa, length);
    if (length > MAX_VIEW_LENGTH) throw new RangeError(`length must be at most 2^32 (one Uint8Array), got ${length}`);
    const b = this.#find(gpa);
    if (!b || gpa + length > b.end) return undefined;
    return new Uint8Array(b.seg.buffer, b.seg.byteOffset + (gpa - b.seg.gpa), length);
  }

  /** The DataView and offset for a `size`-byte scalar at `gpa` inside one segment, or undefined. */
  #scalar(gpa: number, size: number): Backed | undefined {
    if (!Number.isSafeInteger(gpa)) return undefined;
    const b = this.#find(gpa);
    return b && gpa + size <= b.end ? b : undefined;
  }

  /** Read a byte. */
  readU8(gpa: number): number {
    const b = this.#scalar(gpa, 1);
    if (b) return b.view.getUint8(gpa - b.seg.gpa);
    checkRange(gpa, 1);
    throw new GuestMemoryError(gpa, 1, 'read');
  }
  /** Read a little-endian 16-bit value (it may span segments). */
  readU16(gpa: number): number {
    const b = this.#scalar(gpa, 2);
    if (b) return b.view.getUint16(gpa - b.seg.gpa, true);
    return new DataView(this.readBytes(gpa, 2).buffer).getUint16(0, true);
  }
  /** Read a little-endian 32-bit value (it may span segments). */
  readU32(gpa: number): number {
    const b = this.#scalar(gpa, 4);
    if (b) return b.view.getUint32(gpa - b.seg.gpa, true);
    return new DataView(this.readBytes(gpa, 4).buffer).getUint32(0, true);
  }
  /** Read a little-endian 64-bit value (it may span segments). */
  readU64(gpa: number): bigint {
    const b = this.#scalar(gpa, 8);
    if (b) return b.view.getBigUint64(gpa - b.seg.gpa, true);
    return new DataView(this.readBytes(gpa, 8).buffer).getBigUint64(0, true);
  }

  /** The segment a guest write of `size` bytes at `gpa` can go to directly, or undefined. */
  #writeTarget(gpa: number, size: number): Backed | undefined {
    const b = this.#scalar(gpa, size);
    return b && !(this.#enforceReadonly && b.seg.readonly) ? b : undefined;
  }

  /** Write a byte: `value` an integer in [0, 0xff] (RangeError otherwise, nothing written). */
  writeU8(gpa: number, value: number): void {
    const v = checkUint(value, 8);
    const b = this.#writeTarget(gpa, 1);
    if (b) b.view.setUint8(gpa - b.seg.gpa, v);
    else this.writeBytes(gpa, Uint8Array.of(v)); // checks the range, refuses ROMs
  }
  /** Write a little-endian 16-bit value: an integer in [0, 0xffff] (it may span segments). */
  writeU16(gpa: number, value: number): void {
    const v = checkUint(value, 16);
    const b = this.#writeTarget(gpa, 2);
    if (b) return b.view.setUint16(gpa - b.seg.gpa, v, true);
    const tmp = new DataView(new ArrayBuffer(2));
    tmp.setUint16(0, v, true);
    this.writeBytes(gpa, new Uint8Array(tmp.buffer));
  }
  /** Write a little-endian 32-bit value: an integer in [0, 0xffffffff] (it may span segments). */
  writeU32(gpa: number, value: number): void {
    const v = checkUint(value, 32);
    const b = this.#writeTarget(gpa, 4);
    if (b) return b.view.setUint32(gpa - b.seg.gpa, v, true);
    const tmp = new DataView(new ArrayBuffer(4));
    tmp.setUint32(0, v, true);
    this.writeBytes(gpa, new Uint8Array(tmp.buffer));
  }
  /**
   * Write a little-endian 64-bit value: a bigint in [0, 2^64) or a non-negative safe integer
   * (it may span segments).
   */
  writeU64(gpa: number, value: bigint | number): void {
    let v: bigint;
    if (typeof value === 'bigint') {
      if (value < 0n || value >= 1n << 64n) throw new RangeError(`value must be in [0, 2^64), got ${value}n`);
      v = value;
    } else if (typeof value === 'number') {
      if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`value must be a bigint in [0, 2^64) or a non-negative safe integer, got ${value}`);
      v = BigInt(value);
    } else {
      throw new TypeError(`value must be a bigint or a number, got ${show(value)}`);
    }
    const b = this.#writeTarget(gpa, 8);
    if (b) return b.view.setBigUint64(gpa - b.seg.gpa, v, true);
    const tmp = new DataView(new ArrayBuffer(8));
    tmp.setBigUint64(0, v, true);
    this.writeBytes(gpa, new Uint8Array(tmp.buffer));
  }

  /**
   * Call `each(chunk, chunkOffset, done, n)` for consecutive pieces of `[gpa, gpa + length)`,
   * which the caller has checked is backed; a piece never crosses a segment or chunk.
   */
  #pieces(gpa: number, length: number, each: (chunk: Uint8Array, off: number, done: number, n: number) => void): void {
    let done = 0;
    while (done < length) {
      const b = this.#find(gpa + done)!;
      const segOff = gpa + done - b.seg.gpa;
      const index = Math.floor(segOff / this.#chunkSize);
      const chunk = b.chunks[index];
      const off = segOff - index * this.#chunkSize;
      const n = Math.min(length - done, chunk.length - off);
      each(chunk, off, done, n);
      done += n;
    }
  }

  /** Copy `length` bytes (at most 2^32) starting at `gpa` out of guest memory. */
  readBytes(gpa: number, length: number): Uint8Array {
    checkRange(gpa, length);
    if (length > MAX_VIEW_LENGTH) throw new RangeError(`length must be at most 2^32 (one Uint8Array), got ${length}`);
    if (!this.isBacked(gpa, length)) throw new GuestMemoryError(gpa, length, 'read');
    const out = new Uint8Array(length);
    this.#pieces(gpa, length, (chunk, off, done, n) => out.set(chunk.subarray(off, off + n), done));
    return out;
  }

  #checkWritable(gpa: number, length: number, what: string): void {
    if (!this.isBacked(gpa, length)) throw new GuestMemoryError(gpa, length, what);
    if (!this.#enforceReadonly) return;
    for (let at = gpa; at < gpa + length; ) {
      const b = this.#find(at)!;
      if (b.seg.readonly) throw new GuestMemoryError(at, length, `${what} (read-only memory)`);
      at = b.end;
    }
  }

  /**
   * Copy `bytes` into guest memory starting at `gpa`: a Uint8Array (or Buffer,
   * Uint8ClampedArray), an ArrayBuffer or a SharedArrayBuffer. Any other typed array is a
   * TypeError (its elements are not bytes). Nothing is written unless all of it fits.
   */
  writeBytes(gpa: number, bytes: Uint8Array | ArrayBuffer | SharedArrayBuffer): void {
    const src = toBytes(bytes);
    checkRange(gpa, src.length, 'bytes.length');
    this.#checkWritable(gpa, src.length, 'write');
    this.#pieces(gpa, src.length, (chunk, off, done, n) => chunk.set(src.subarray(done, done + n), off));
  }

  /** Fill `length` bytes at `gpa` with `value`, an integer in [0, 0xff]. */
  fill(gpa: number, length: number, value: number): void {
    const v = checkUint(value, 8);
    checkRange(gpa, length);
    this.#checkWritable(gpa, length, 'fill');
    this.#pieces(gpa, length, (chunk, off, _done, n) => chunk.fill(v, off, off + n));
  }
}

/** A {@link GuestMemory} over one plain buffer at `gpa` (default 0): for tests and builders. */
export function bufferMemory(length: number, gpa = 0): GuestMemory {
  const m = new GuestMemory();
  m.addSegment(gpa, new Uint8Array(length));
  return m;
}

/**
 * Guest-physical memory: one bounds-checked accessor over all of a VM's memory segments.
 *
 * Segments are kept sorted and may not overlap (checked when added). Every access checks
 * its whole range with overflow-safe arithmetic and may span adjacent segments.
 */
import { GuestMemoryError, type GuestMemoryAccess } from './access.js';

/** One contiguous guest-physical range backed by host memory. */
export interface MemorySegment {
  /** First guest-physical address. */
  readonly gpa: number;
  /** Length in bytes. */
  readonly length: number;
  /** The bytes, `length` long. */
  readonly bytes: Uint8Array;
  /** True if the guest cannot write it (a ROM); host writes still work. */
  readonly readonly: boolean;
}

const MAX_GPA = 2 ** 52;

function checkRange(gpa: number, length: number): void {
  if (!Number.isSafeInteger(gpa) || gpa < 0) throw new RangeError(`gpa must be a non-negative integer, got ${gpa}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length must be a non-negative integer, got ${length}`);
}

/** The guest-physical address space of a VM (or a test buffer), as sorted segments. */
export class GuestMemory implements GuestMemoryAccess {
  #segments: MemorySegment[] = [];
  #views = new Map<MemorySegment, DataView>();
  readonly #enforceReadonly: boolean;

  /**
   * `enforceReadonly`: writes to read-only segments (ROMs) throw, as a guest's own writes
   * would not land there. The default (false) is the host's view: loaders may write ROMs.
   */
  constructor(opts: { enforceReadonly?: boolean } = {}) {
    this.#enforceReadonly = opts.enforceReadonly ?? false;
  }

  /** The segments, sorted by address. */
  get segments(): readonly MemorySegment[] {
    return this.#segments;
  }

  /** Add a segment. Throws RangeError if it overlaps another or leaves the 52-bit space. */
  addSegment(gpa: number, bytes: Uint8Array, readonly = false): MemorySegment {
    checkRange(gpa, bytes.length);
    if (bytes.length === 0) throw new RangeError('length must be greater than zero');
    if (gpa + bytes.length > MAX_GPA) throw new RangeError(`segment at 0x${gpa.toString(16)} ends beyond 2^52`);
    for (const s of this.#segments) {
      if (gpa < s.gpa + s.length && s.gpa < gpa + bytes.length) {
        throw new RangeError(
          `segment 0x${gpa.toString(16)}+0x${bytes.length.toString(16)} overlaps segment 0x${s.gpa.toString(16)}+0x${s.length.toString(16)}`,
        );
      }
    }
    const seg: MemorySegment = { gpa, length: bytes.length, bytes, readonly };
    this.#segments.push(seg);
    this.#segments.sort((a, b) => a.gpa - b.gpa);
    this.#views.set(seg, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return seg;
  }

  /** Remove the segment that starts at `gpa`; returns false if there is none. */
  removeSegment(gpa: number): boolean {
    const i = this.#segments.findIndex((s) => s.gpa === gpa);
    if (i < 0) return false;
    this.#views.delete(this.#segments[i]);
    this.#segments.splice(i, 1);
    return true;
  }

  /** The segment containing `gpa`, or undefined. */
  segmentAt(gpa: number): MemorySegment | undefined {
    if (!Number.isSafeInteger(gpa)) return undefined;
    const segs = this.#segments;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = segs[mid];
      if (gpa < s.gpa) hi = mid - 1;
      else if (gpa >= s.gpa + s.length) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  /** True if every byte of `[gpa, gpa + length)` is backed. */
  isBacked(gpa: number, length: number): boolean {
    if (!Number.isSafeInteger(gpa) || gpa < 0 || !Number.isSafeInteger(length) || length < 0) return false;
    let at = gpa;
    const end = gpa + length;
    while (at < end) {
      const s = this.segmentAt(at);
      if (!s) return false;
      at = s.gpa + s.length;
    }
    return true;
  }

  /**
   * A view of `[gpa, gpa + length)` if it lies within one segment, else undefined.
   * The view aliases guest memory (no copy).
   */
  slice(gpa: number, length: number): Uint8Array | undefined {
    checkRange(gpa, length);
    const s = this.segmentAt(gpa);
    if (!s || gpa + length > s.gpa + s.length) return undefined;
    return s.bytes.subarray(gpa - s.gpa, gpa - s.gpa + length);
  }

  #scalar(gpa: number, size: number): { view: DataView; off: number } {
    checkRange(gpa, size);
    const s = this.segmentAt(gpa);
    if (s && gpa + size <= s.gpa + s.length) return { view: this.#views.get(s)!, off: gpa - s.gpa };
    throw new GuestMemoryError(gpa, size);
  }

  readU8(gpa: number): number {
    const { view, off } = this.#scalar(gpa, 1);
    return view.getUint8(off);
  }
  readU16(gpa: number): number {
    const s = this.segmentAt(gpa);
    if (s && gpa + 2 <= s.gpa + s.length && Number.isSafeInteger(gpa)) return this.#views.get(s)!.getUint16(gpa - s.gpa, true);
    return new DataView(this.readBytes(gpa, 2).buffer).getUint16(0, true);
  }
  readU32(gpa: number): number {
    const s = this.segmentAt(gpa);
    if (s && gpa + 4 <= s.gpa + s.length && Number.isSafeInteger(gpa)) return this.#views.get(s)!.getUint32(gpa - s.gpa, true);
    return new DataView(this.readBytes(gpa, 4).buffer).getUint32(0, true);
  }
  readU64(gpa: number): bigint {
    const s = this.segmentAt(gpa);
    if (s && gpa + 8 <= s.gpa + s.length && Number.isSafeInteger(gpa)) return this.#views.get(s)!.getBigUint64(gpa - s.gpa, true);
    return new DataView(this.readBytes(gpa, 8).buffer).getBigUint64(0, true);
  }
  writeU8(gpa: number, value: number): void {
    this.writeBytes(gpa, Uint8Array.of(value & 0xff));
  }
  writeU16(gpa: number, value: number): void {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, value, true);
    this.writeBytes(gpa, b);
  }
  writeU32(gpa: number, value: number): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    this.writeBytes(gpa, b);
  }
  writeU64(gpa: number, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    this.writeBytes(gpa, b);
  }

  readBytes(gpa: number, length: number): Uint8Array {
    checkRange(gpa, length);
    if (!this.isBacked(gpa, length)) throw new GuestMemoryError(gpa, length, 'read');
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const s = this.segmentAt(gpa + done)!;
      const off = gpa + done - s.gpa;
      const n = Math.min(length - done, s.length - off);
      out.set(s.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  #checkWritable(gpa: number, length: number, what: string): void {
    if (!this.isBacked(gpa, length)) throw new GuestMemoryError(gpa, length, what);
    if (!this.#enforceReadonly) return;
    for (let at = gpa; at < gpa + length; ) {
      const s = this.segmentAt(at)!;
      if (s.readonly) throw new GuestMemoryError(at, length, `${what} (read-only memory)`);
      at = s.gpa + s.length;
    }
  }

  writeBytes(gpa: number, bytes: Uint8Array): void {
    checkRange(gpa, bytes.length);
    this.#checkWritable(gpa, bytes.length, 'write');
    let done = 0;
    while (done < bytes.length) {
      const s = this.segmentAt(gpa + done)!;
      const off = gpa + done - s.gpa;
      const n = Math.min(bytes.length - done, s.length - off);
      s.bytes.set(bytes.subarray(done, done + n), off);
      done += n;
    }
  }

  fill(gpa: number, length: number, value: number): void {
    checkRange(gpa, length);
    this.#checkWritable(gpa, length, 'fill');
    let done = 0;
    while (done < length) {
      const s = this.segmentAt(gpa + done)!;
      const off = gpa + done - s.gpa;
      const n = Math.min(length - done, s.length - off);
      s.bytes.fill(value, off, off + n);
      done += n;
    }
  }
}

/** A {@link GuestMemory} over one plain buffer at `gpa` (default 0): for tests and builders. */
export function bufferMemory(length: number, gpa = 0): GuestMemory {
  const m = new GuestMemory();
  m.addSegment(gpa, new Uint8Array(length));
  return m;
}

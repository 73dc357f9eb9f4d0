/**
 * Guest-physical memory as the engine's MMU sees it: the RAM segments of a
 * {@link GuestMemory} with one DataView each (what software-TLB entries point at), lazily
 * created Int32Array/BigUint64Array windows over the segments' buffers for atomic
 * operations, and byte-granular physical reads and writes that route everything which is
 * not RAM (and guest writes to read-only segments) to MMIO.
 */
import type { GuestMemory, MemorySegment } from '../memory/guest-memory.js';
import type { EngineIo } from './types.js';

/** The length of one atomic-access window over a buffer (typed arrays cap their element count). */
const WINDOW = 2 ** 30;

/** One RAM segment with the views the MMU uses. */
export interface PhysSegment {
  /** First guest-physical address. */
  readonly gpa: number;
  /** One past the last guest-physical address. */
  readonly end: number;
  /** A DataView over exactly the segment (offset 0 = `gpa`). */
  readonly view: DataView;
  /** The buffer and where the segment starts in it. */
  readonly buffer: ArrayBufferLike;
  readonly byteOffset: number;
  /** A ROM: guest writes go to MMIO (as a write to a read-only KVM memory slot exits). */
  readonly readonly: boolean;
  /** Windows of {@link WINDOW} bytes over `buffer`, created on first use. */
  readonly i32: (Int32Array | undefined)[];
  readonly u64: (BigUint64Array | undefined)[];
}

/** The segments of a {@link GuestMemory}, refreshed when its memory map changes. */
export class PhysMap {
  /** The segments, sorted by address. */
  segs: PhysSegment[] = [];
  #ref: readonly MemorySegment[] | undefined;
  /** The element index of the last successful {@link i32At}/{@link u64At}/{@link i32Containing}/{@link u64Containing}. */
  index = 0;
  /** The byte position of the access within the element found by {@link i32Containing}/{@link u64Containing}. */
  shift = 0;

  constructor(
    readonly memory: GuestMemory,
    readonly io: EngineIo,
  ) {
    this.refresh();
  }

  /** Rebuild the segment list if the memory map changed; true if it did. */
  refresh(): boolean {
    const cur = this.memory.segments;
    if (cur === this.#ref) return false;
    this.#ref = cur;
    this.segs = cur.map((s) => ({
      gpa: s.gpa,
      end: s.gpa + s.length,
      view: new DataView(s.buffer, s.byteOffset, s.length),
      buffer: s.buffer,
      byteOffset: s.byteOffset,
      readonly: s.readonly,
      i32: [],
      u64: [],
    }));
    return true;
  }

  /** The segment containing `gpa`, or undefined. */
  find(gpa: number): PhysSegment | undefined {
    const segs = this.segs;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const s = segs[mid];
      if (gpa < s.gpa) hi = mid - 1;
      else if (gpa >= s.end) lo = mid + 1;
      else return s;
    }
    return undefined;
  }

  /** True if some segment (some writable one, with `writable`) overlaps `[gpa, gpa + length)`. */
  #overlapsRam(gpa: number, length: number, writable = false): boolean {
    for (const s of this.segs) if (gpa < s.end && s.gpa < gpa + length && !(writable && s.readonly)) return true;
    return false;
  }

  /**
   * The Int32Array window holding the aligned dword at `gpa` of segment `s` (`gpa` must be
   * 4-aligned in the buffer for a result), with its element index in {@link index}.
   */
  i32At(s: PhysSegment, gpa: number): Int32Array | undefined {
    const abs = s.byteOffset + (gpa - s.gpa);
    if (abs % 4 !== 0 || gpa + 4 > s.end) return undefined;
    const w = Math.floor(abs / WINDOW);
    let a = s.i32[w];
    if (a === undefined) {
      const len = Math.floor(Math.min(WINDOW, s.buffer.byteLength - w * WINDOW) / 4);
      a = s.i32[w] = new Int32Array(s.buffer, w * WINDOW, len);
    }
    this.index = (abs - w * WINDOW) / 4;
    return a;
  }

  /** As {@link i32At} for the aligned qword at `gpa`. */
  u64At(s: PhysSegment, gpa: number): BigUint64Array | undefined {
    const abs = s.byteOffset + (gpa - s.gpa);
    if (abs % 8 !== 0 || gpa + 8 > s.end) return undefined;
    const w = Math.floor(abs / WINDOW);
    let a = s.u64[w];
    if (a === undefined) {
      const len = Math.floor(Math.min(WINDOW, s.buffer.byteLength - w * WINDOW) / 8);
      a = s.u64[w] = new BigUint64Array(s.buffer, w * WINDOW, len);
    }
    this.index = (abs - w * WINDOW) / 8;
    return a;
  }

  /**
   * The Int32Array window holding the whole `size`-byte access at `gpa` of segment `s` in
   * one naturally aligned dword of the buffer (index in {@link index}, byte position in
   * {@link shift}), or undefined if the access straddles dwords.
   */
  i32Containing(s: PhysSegment, gpa: number, size: number): Int32Array | undefined {
    const abs = s.byteOffset + (gpa - s.gpa);
    const shift = abs % 4;
    if (shift + size > 4 || abs - shift + 4 > s.buffer.byteLength) return undefined;
    const d = abs - shift;
    const w = Math.floor(d / WINDOW);
    let a = s.i32[w];
    if (a === undefined) {
      const len = Math.floor(Math.min(WINDOW, s.buffer.byteLength - w * WINDOW) / 4);
      a = s.i32[w] = new Int32Array(s.buffer, w * WINDOW, len);
    }
    this.index = (d - w * WINDOW) / 4;
    this.shift = shift;
    return a;
  }

  /** As {@link i32Containing} for one naturally aligned qword. */
  u64Containing(s: PhysSegment, gpa: number, size: number): BigUint64Array | undefined {
    const abs = s.byteOffset + (gpa - s.gpa);
    const shift = abs % 8;
    if (shift + size > 8 || abs - shift + 8 > s.buffer.byteLength) return undefined;
    const d = abs - shift;
    const w = Math.floor(d / WINDOW);
    let a = s.u64[w];
    if (a === undefined) {
      const len = Math.floor(Math.min(WINDOW, s.buffer.byteLength - w * WINDOW) / 8);
      a = s.u64[w] = new BigUint64Array(s.buffer, w * WINDOW, len);
    }
    this.index = (d - w * WINDOW) / 8;
    this.shift = shift;
    return a;
  }

  /**
   * Read `size` bytes at `gpa` (little-endian; a bigint for 8 bytes): RAM when one segment
   * holds them all, MMIO when no RAM does, byte by byte (each RAM or MMIO) otherwise.
   */
  read(gpa: number, size: 1 | 2 | 4 | 8): number | bigint {
    const s = this.find(gpa);
    if (s !== undefined && gpa + size <= s.end) {
      const o = gpa - s.gpa;
      const v = s.view;
      return size === 1 ? v.getUint8(o) : size === 2 ? v.getUint16(o, true) : size === 4 ? v.getUint32(o, true) : v.getBigUint64(o, true);
    }
    if (!this.#overlapsRam(gpa, size)) {
      const r = this.io.mmioRead(gpa, size);
      return size === 8 ? BigInt.asUintN(64, r) : Number(BigInt.asUintN(size * 8, r));
    }
    let v = 0n;
    for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(this.readByte(gpa + k));
    return size === 8 ? v : Number(v);
  }

  /** One byte at `gpa`, from RAM or MMIO. */
  readByte(gpa: number): number {
    const s = this.find(gpa);
    if (s !== undefined) return s.view.getUint8(gpa - s.gpa);
    return Number(BigInt.asUintN(8, this.io.mmioRead(gpa, 1)));
  }

  /** A guest write of one byte at `gpa`: RAM, or MMIO for unbacked and read-only memory. */
  writeByte(gpa: number, v: number): void {
    const s = this.find(gpa);
    if (s !== undefined && !s.readonly) s.view.setUint8(gpa - s.gpa, v);
    else this.io.mmioWrite(gpa, 1, BigInt(v & 0xff));
  }

  /** A guest write of `size` bytes at `gpa` (`value` a bigint for 8 bytes), routed as {@link read}. */
  write(gpa: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    const s = this.find(gpa);
    if (s !== undefined && !s.readonly && gpa + size <= s.end) {
      const o = gpa - s.gpa;
      const v = s.view;
      if (size === 1) v.setUint8(o, value as number);
      else if (size === 2) v.setUint16(o, value as number, true);
      else if (size === 4) v.setUint32(o, value as number, true);
      else v.setBigUint64(o, value as bigint, true);
      return;
    }
    const big = size === 8 ? BigInt.asUintN(64, value as bigint) : BigInt(Number(value) >>> 0) & ((1n << BigInt(size * 8)) - 1n);
    if (!this.#overlapsRam(gpa, size, true)) {
      this.io.mmioWrite(gpa, size, big);
      return;
    }
    for (let k = 0; k < size; k++) this.writeByte(gpa + k, Number((big >> BigInt(8 * k)) & 0xffn));
  }
}

/**
 * What a virtqueue needs from guest memory, and the bounds checks it makes on buffers
 * the guest names.
 *
 * {@link QueueMemory} is {@link GuestMemoryAccess} plus two optional members that
 * {@link GuestMemory} has: `slice` (live views, so ring indices can be accessed with
 * Atomics and descriptors read without a bounds check per field) and `segmentAt` (so
 * device-writable buffers in read-only segments can be refused). A test double that has
 * neither still works: the queue then goes through the scalar accessors.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { DESC_SIZE } from './constants.js';

/** The part of a memory segment a queue looks at. */
export interface QueueSegment {
  /** First guest-physical address. */
  readonly gpa: number;
  /** Length in bytes. */
  readonly length: number;
  /** True if the guest cannot write it (a ROM): device-writable buffers there are refused. */
  readonly readonly: boolean;
}

/**
 * Guest memory as a virtqueue uses it. {@link GuestMemory} satisfies it; so does any
 * {@link GuestMemoryAccess} (without the optional members, at some cost in speed and, for
 * memory shared with other threads, in ordering guarantees: see {@link SplitQueue}).
 */
export interface QueueMemory extends GuestMemoryAccess {
  /**
   * A live view (no copy) of `[gpa, gpa + length)` if it lies in one buffer, else
   * undefined. The queue only asks for ranges that {@link GuestMemoryAccess.isBacked} accepted.
   */
  slice?(gpa: number, length: number): Uint8Array | undefined;
  /** The segment holding `gpa`, or undefined. */
  segmentAt?(gpa: number): QueueSegment | undefined;
}

// Compile-time proof that GuestMemory is a QueueMemory.
const _guestMemoryIsQueueMemory: (m: GuestMemory) => QueueMemory = (m) => m;
void _guestMemoryIsQueueMemory;

/** The highest exclusive end address the queue accepts for any range (2^53 - 1). */
const MAX_END = Number.MAX_SAFE_INTEGER;

/** True if `[gpa, gpa + length)` is a range of safe integers that `mem` fully backs. */
export function inMemory(mem: QueueMemory, gpa: number, length: number): boolean {
  return Number.isSafeInteger(gpa) && gpa >= 0 && length >= 0 && gpa + length <= MAX_END && mem.isBacked(gpa, length);
}

/** True if no byte of `[gpa, gpa + length)` (already known to be backed) is in a read-only segment. */
export function guestWritable(mem: QueueMemory, gpa: number, length: number): boolean {
  if (!mem.segmentAt) return true;
  const end = gpa + length;
  // Each step moves past one segment, so this ends after at most (segments + 1) steps.
  for (let at = gpa; at < end; ) {
    const s = mem.segmentAt(at);
    if (!s) return false;
    if (s.readonly) return false;
    const next = s.gpa + s.length;
    if (!(next > at)) return false;
    at = next;
  }
  return true;
}

/** One descriptor as read from a table; `addr` is exact below 2^53 and ≥ 2^53 otherwise. */
export interface RawDescriptor {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

/**
 * A descriptor table of `entries` descriptors at `gpa` (the queue's own, or an indirect
 * one). The caller checks that the whole table is backed before opening it.
 */
export class DescriptorTable {
  /** The number of descriptors. */
  readonly entries: number;
  readonly #view: DataView | undefined;
  readonly #mem: QueueMemory;
  readonly #gpa: number;

  /** The table of `entries` descriptors at `gpa` in `mem`. */
  constructor(mem: QueueMemory, gpa: number, entries: number) {
    this.entries = entries;
    this.#mem = mem;
    this.#gpa = gpa;
    const bytes = mem.slice?.(gpa, entries * DESC_SIZE);
    this.#view = bytes ? new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength) : undefined;
  }

  /** Read descriptor `index` (< entries) into `out`. */
  read(index: number, out: RawDescriptor): void {
    const off = index * DESC_SIZE;
    const v = this.#view;
    if (v) {
      out.addr = v.getUint32(off, true) + v.getUint32(off + 4, true) * 2 ** 32;
      out.len = v.getUint32(off + 8, true);
      out.flags = v.getUint16(off + 12, true);
      out.next = v.getUint16(off + 14, true);
      return;
    }
    const m = this.#mem;
    const at = this.#gpa + off;
    out.addr = m.readU32(at) + m.readU32(at + 4) * 2 ** 32;
    out.len = m.readU32(at + 8);
    out.flags = m.readU16(at + 12);
    out.next = m.readU16(at + 14);
  }
}

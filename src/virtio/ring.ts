/**
 * Access to the available and used rings of one split queue, with the memory ordering
 * the virtio protocol needs when vCPU threads write the rings concurrently.
 *
 * Two implementations share the {@link Rings} interface:
 *
 * - {@link openRings} prefers live views (`QueueMemory.slice`): the indices, flags and
 *   event words are read with `Atomics.load` and written with `Atomics.store` on a
 *   Uint16Array over guest memory. Atomics are sequentially consistent, so (a) the
 *   available index is read before the ring entry and the descriptors it publishes,
 *   (b) a used element is written before the used index that publishes it, and (c) a
 *   store of avail_event / used flags is ordered before the following load of the
 *   available index (the store-load fence the notification re-check needs). On x86-64
 *   V8 compiles these to plain loads and XCHG stores, which give exactly that.
 * - When a ring does not lie in one view (no `slice`, a ring spanning two segments, or
 *   a host buffer offset that is odd), the scalar accessors are used, with an Atomics
 *   read-modify-write on a private cell as the fence. That orders the host's own
 *   accesses but the JavaScript memory model promises nothing for guest memory outside
 *   a shared view, so this path is meant for memory no other thread writes (tests).
 *
 * Views use host byte order; vmmapi runs on x86-64 only, which is little-endian like
 * the rings.
 */
import type { QueueMemory } from './memory.js';

/** Ring-word access for one queue; slot numbers are already reduced modulo the size. */
export interface Rings {
  /** avail.idx, read before anything it publishes. */
  availIdx(): number;
  /** avail.flags. */
  availFlags(): number;
  /** avail.ring[slot]. */
  availEntry(slot: number): number;
  /** used_event (avail.ring[size]). */
  usedEvent(): number;
  /** Store used.flags, ordered before later loads. */
  setUsedFlags(value: number): void;
  /** Store avail_event (used.ring[size]), ordered before later loads. */
  setAvailEvent(value: number): void;
  /** Write used.ring[slot] = { id, len }. */
  writeUsed(slot: number, id: number, len: number): void;
  /** Store used.idx, after the elements it publishes and before later loads. */
  publishUsedIdx(value: number): void;
}

/** Rings over live Uint16Array views; see the module comment. */
class ViewRings implements Rings {
  readonly #avail: Uint16Array;
  readonly #used: Uint16Array;
  readonly #usedData: DataView;
  readonly #size: number;
  constructor(avail: Uint16Array, used: Uint16Array, size: number) {
    this.#avail = avail;
    this.#used = used;
    this.#usedData = new DataView(used.buffer, used.byteOffset, used.byteLength);
    this.#size = size;
  }
  availIdx(): number {
    return Atomics.load(this.#avail, 1);
  }
  availFlags(): number {
    return Atomics.load(this.#avail, 0);
  }
  availEntry(slot: number): number {
    return Atomics.load(this.#avail, 2 + slot);
  }
  usedEvent(): number {
    return Atomics.load(this.#avail, 2 + this.#size);
  }
  setUsedFlags(value: number): void {
    Atomics.store(this.#used, 0, value);
  }
  setAvailEvent(value: number): void {
    Atomics.store(this.#used, 2 + 4 * this.#size, value);
  }
  writeUsed(slot: number, id: number, len: number): void {
    this.#usedData.setUint32(4 + 8 * slot, id, true);
    this.#usedData.setUint32(8 + 8 * slot, len, true);
  }
  publishUsedIdx(value: number): void {
    Atomics.store(this.#used, 1, value);
  }
}

/** Rings through the scalar accessors, fenced by a private atomic; see the module comment. */
class AccessorRings implements Rings {
  readonly #mem: QueueMemory;
  readonly #avail: number;
  readonly #used: number;
  readonly #size: number;
  readonly #fence = new Int32Array(new SharedArrayBuffer(4));
  constructor(mem: QueueMemory, avail: number, used: number, size: number) {
    this.#mem = mem;
    this.#avail = avail;
    this.#used = used;
    this.#size = size;
  }
  #barrier(): void {
    Atomics.add(this.#fence, 0, 0);
  }
  availIdx(): number {
    const v = this.#mem.readU16(this.#avail + 2);
    this.#barrier();
    return v;
  }
  availFlags(): number {
    return this.#mem.readU16(this.#avail);
  }
  availEntry(slot: number): number {
    return this.#mem.readU16(this.#avail + 4 + 2 * slot);
  }
  usedEvent(): number {
    this.#barrier();
    return this.#mem.readU16(this.#avail + 4 + 2 * this.#size);
  }
  setUsedFlags(value: number): void {
    this.#mem.writeU16(this.#used, value);
    this.#barrier();
  }
  setAvailEvent(value: number): void {
    this.#mem.writeU16(this.#used + 4 + 8 * this.#size, value);
    this.#barrier();
  }
  writeUsed(slot: number, id: number, len: number): void {
    this.#mem.writeU32(this.#used + 4 + 8 * slot, id);
    this.#mem.writeU32(this.#used + 8 + 8 * slot, len);
  }
  publishUsedIdx(value: number): void {
    this.#barrier();
    this.#mem.writeU16(this.#used + 2, value);
    this.#barrier();
  }
}

/** A Uint16Array live view of `[gpa, gpa + bytes)`, or undefined if none can be had. */
function view16(mem: QueueMemory, gpa: number, bytes: number): Uint16Array | undefined {
  const v = mem.slice?.(gpa, bytes);
  if (!v || v.byteLength !== bytes || v.byteOffset % 2 !== 0) return undefined;
  return new Uint16Array(v.buffer, v.byteOffset, bytes / 2);
}

/**
 * The rings of a queue of `size` entries with the available ring at `avail` and the used
 * ring at `used` (both already checked to be backed and aligned). Uses views when both
 * rings have one, else the accessors.
 */
export function openRings(mem: QueueMemory, size: number, avail: number, used: number): Rings {
  const a = view16(mem, avail, 6 + 2 * size);
  const u = view16(mem, used, 6 + 8 * size);
  return a && u ? new ViewRings(a, u, size) : new AccessorRings(mem, avail, used, size);
}

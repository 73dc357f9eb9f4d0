/**
 * The posted-write ring: a single-producer (the vCPU worker), single-consumer (the main
 * thread) queue of guest writes whose device answers nothing, in a shared Int32Array.
 * The worker appends and lets the vCPU continue at once; the main thread delivers the
 * writes in order before it services that vCPU's next exit, so a read that follows a
 * write always sees it.
 *
 * Head and tail are free-running Int32 counters (all arithmetic wraps with `| 0`); the
 * entry index is the counter masked by the capacity, a power of two. An entry's words are
 * written before the tail is published with `Atomics.store`, and the consumer reads the tail
 * with `Atomics.load` before the words, so it never sees a half-written entry.
 */
import type { Access } from '../bus/dispatch.js';
import type { AccessSize } from '../devices/device.js';

/** Int32 words per entry: [space | size << 8, address lo, address hi, value lo, value hi, 0]. */
export const RING_ENTRY_INTS = 6;

/** Address space of a ring entry. */
export const RING_SPACE = { PIO: 1, MMIO: 2 } as const;

/** Where a ring lives inside a shared Int32Array. */
export interface RingLayout {
  /** Index of the head counter (next entry the consumer takes). */
  head: number;
  /** Index of the tail counter (next entry the producer fills). */
  tail: number;
  /** Index of the first word of entry 0. */
  base: number;
  /** Entries (a power of two). */
  capacity: number;
}

/** Int32 words a ring of `capacity` entries needs after its `base`. */
export function ringWords(capacity: number): number {
  return capacity * RING_ENTRY_INTS;
}

/** One view of a ring; the producer and the consumer each make their own over the same cells. */
export class WriteRing {
  readonly #c: Int32Array;
  readonly #l: RingLayout;
  readonly #mask: number;

  constructor(cells: Int32Array, layout: RingLayout) {
    const cap = layout.capacity;
    if (!Number.isInteger(cap) || cap < 1 || (cap & (cap - 1)) !== 0) throw new RangeError(`capacity must be a power of two, got ${cap}`);
    if (layout.base + ringWords(cap) > cells.length) throw new RangeError('the ring does not fit in the cells');
    this.#c = cells;
    this.#l = layout;
    this.#mask = cap - 1;
  }

  /** Entries written and not yet consumed. */
  pending(): number {
    return (Atomics.load(this.#c, this.#l.tail) - Atomics.load(this.#c, this.#l.head)) | 0;
  }

  /** True when the producer must wait for the consumer. */
  full(): boolean {
    return this.pending() >= this.#l.capacity;
  }

  /** The head counter (for Atomics.wait on it while the ring is full). */
  headCounter(): number {
    return Atomics.load(this.#c, this.#l.head);
  }

  /**
   * Producer: append the single-element write `a` of address space `space`. Returns the
   * number of entries pending afterwards, or 0 (nothing written) if the ring is full.
   */
  push(space: number, a: Access): number {
    const c = this.#c;
    const tail = Atomics.load(c, this.#l.tail);
    const pending = (tail - Atomics.load(c, this.#l.head)) | 0;
    if (pending >= this.#l.capacity) return 0;
    const o = this.#l.base + (tail & this.#mask) * RING_ENTRY_INTS;
    c[o] = space | (a.size << 8);
    c[o + 1] = a.addr | 0;
    c[o + 2] = Math.floor(a.addr / 2 ** 32) | 0;
    const d = a.data;
    const at = a.offset;
    if (a.size === 8) {
      c[o + 3] = d.getInt32(at, true);
      c[o + 4] = d.getInt32(at + 4, true);
    } else {
      c[o + 3] = a.size === 4 ? d.getInt32(at, true) : a.size === 2 ? d.getUint16(at, true) : d.getUint8(at);
      c[o + 4] = 0;
    }
    Atomics.store(c, this.#l.tail, (tail + 1) | 0);
    return pending + 1;
  }

  /**
   * Consumer: describe the oldest entry in `out` (its value in `out.data`, an 8-byte scratch
   * view) and return its address space, or 0 if the ring is empty. The entry stays in the
   * ring until {@link consume}.
   */
  peek(out: Access): number {
    const c = this.#c;
    const head = Atomics.load(c, this.#l.head);
    if (head === Atomics.load(c, this.#l.tail)) return 0;
    const o = this.#l.base + (head & this.#mask) * RING_ENTRY_INTS;
    out.addr = (c[o + 1] >>> 0) + (c[o + 2] >>> 0) * 2 ** 32;
    out.size = ((c[o] >> 8) & 0xff) as AccessSize;
    out.count = 1;
    out.write = true;
    out.offset = 0;
    out.data.setInt32(0, c[o + 3], true);
    out.data.setInt32(4, c[o + 4], true);
    return c[o] & 0xff;
  }

  /** Consumer: drop the oldest entry (after it was delivered). */
  consume(): void {
    Atomics.store(this.#c, this.#l.head, (Atomics.load(this.#c, this.#l.head) + 1) | 0);
  }
}

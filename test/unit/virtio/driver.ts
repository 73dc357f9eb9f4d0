/**
 * The guest's side of a split virtqueue, for tests: lays out the rings in a
 * SharedArrayBuffer-backed GuestMemory with guard bytes around it, posts chains (direct
 * or indirect), and reads the used ring back, as a virtio driver would.
 */
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  SplitQueue, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY, type QueueMemory, type SplitQueueOptions,
} from '../../../src/virtio/index.js';

/** The byte the guard areas are filled with. */
export const GUARD_BYTE = 0xa5;

/** `length` bytes of guest RAM at `base` in a SharedArrayBuffer, between two guard areas. */
export class TestRam {
  readonly sab: SharedArrayBuffer;
  readonly all: Uint8Array;
  readonly ram: Uint8Array;
  readonly mem: GuestMemory;
  constructor(readonly length: number, readonly base = 0x10000, readonly guard = 256) {
    this.sab = new SharedArrayBuffer(length + 2 * guard);
    this.all = new Uint8Array(this.sab);
    this.all.fill(GUARD_BYTE, 0, guard);
    this.all.fill(GUARD_BYTE, guard + length);
    this.ram = new Uint8Array(this.sab, guard, length);
    this.mem = new GuestMemory();
    this.mem.addSegment(base, this.ram);
  }
  /** True if no byte outside the RAM changed. */
  guardsIntact(): boolean {
    const a = this.all;
    for (let i = 0; i < this.guard; i++) if (a[i] !== GUARD_BYTE) return false;
    for (let i = this.guard + this.length; i < a.length; i++) if (a[i] !== GUARD_BYTE) return false;
    return true;
  }
}

/**
 * A QueueMemory without `slice` (forcing the accessor paths), with `segmentAt` unless
 * `bare` (then it is a plain GuestMemoryAccess, which cannot tell ROM from RAM).
 */
export function accessorOnly(m: GuestMemory, bare = false): QueueMemory {
  return {
    ...(bare ? {} : { segmentAt: (g: number) => m.segmentAt(g) }),
    readU8: (g) => m.readU8(g), readU16: (g) => m.readU16(g), readU32: (g) => m.readU32(g), readU64: (g) => m.readU64(g),
    writeU8: (g, v) => m.writeU8(g, v), writeU16: (g, v) => m.writeU16(g, v), writeU32: (g, v) => m.writeU32(g, v),
    writeU64: (g, v) => m.writeU64(g, v), readBytes: (g, n) => m.readBytes(g, n), writeBytes: (g, b) => m.writeBytes(g, b),
    fill: (g, n, v) => m.fill(g, n, v), isBacked: (g, n) => m.isBacked(g, n),
  };
}

/** One descriptor as the driver writes it. */
export interface Desc {
  addr: number | bigint;
  len: number;
  flags?: number;
  next?: number;
}

/** What the driver knows about a posted chain. */
export interface Posted {
  head: number;
  /** The device-writable buffers, to read the device's answer from. */
  inBufs: { gpa: number; len: number }[];
}

export interface DriverOptions {
  size: number;
  ramBytes?: number;
  eventIdx?: boolean;
  indirectDesc?: boolean;
  /** Starting avail/used index (both). */
  start?: number;
  /** Memory the queue sees instead of the GuestMemory itself. */
  queueMemory?: (m: GuestMemory) => QueueMemory;
  queueOptions?: Partial<SplitQueueOptions>;
}

/** The driver side of one queue, and the device's SplitQueue over the same memory. */
export class GuestDriver {
  readonly ram: TestRam;
  readonly mem: GuestMemory;
  readonly size: number;
  readonly queue: SplitQueue;
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  readonly dataBase: number;
  readonly dataEnd: number;
  /** The driver's avail.idx shadow. */
  availIdx: number;
  /** The next used index the driver will read. */
  lastUsed: number;
  #dataNext: number;
  #free: number[];
  readonly #chains = new Map<number, number[]>();

  constructor(readonly opts: DriverOptions) {
    const size = opts.size;
    this.size = size;
    this.ram = new TestRam(opts.ramBytes ?? 0x20000);
    this.mem = this.ram.mem;
    const base = this.ram.base;
    this.descAddr = base;
    this.availAddr = base + 16 * size;
    this.usedAddr = (this.availAddr + 6 + 2 * size + 3) & ~3;
    this.dataBase = (this.usedAddr + 6 + 8 * size + 15) & ~15;
    this.dataEnd = base + this.ram.length;
    this.#dataNext = this.dataBase;
    this.#free = Array.from({ length: size }, (_, i) => i);
    this.availIdx = this.lastUsed = opts.start ?? 0;
    this.mem.writeU16(this.availAddr + 2, this.availIdx);
    const qmem = opts.queueMemory ? opts.queueMemory(this.mem) : this.mem;
    this.queue = new SplitQueue(qmem, { maxSize: size, ...opts.queueOptions });
  }

  /** Program the queue's registers and enable it, as a transport would. */
  enable(): SplitQueue {
    const q = this.queue;
    q.size = this.size;
    q.descAddr = this.descAddr;
    q.availAddr = this.availAddr;
    q.usedAddr = this.usedAddr;
    const s = this.opts.start ?? 0;
    q.enable({ eventIdx: this.opts.eventIdx ?? false, indirectDesc: this.opts.indirectDesc ?? false }, { availIdx: s, usedIdx: s });
    return q;
  }

  /** `len` bytes of data area (16-aligned), wrapping to the start when it runs out. */
  alloc(len: number): number {
    const n = (len + 15) & ~15;
    if (this.#dataNext + n > this.dataEnd) this.#dataNext = this.dataBase;
    const at = this.#dataNext;
    this.#dataNext += n;
    return at;
  }

  /** Write descriptor `i` of the table at `table`. */
  writeDesc(i: number, d: Desc, table = this.descAddr): void {
    const at = table + 16 * i;
    this.mem.writeU64(at, BigInt(d.addr));
    this.mem.writeU32(at + 8, d.len >>> 0);
    this.mem.writeU16(at + 12, d.flags ?? 0);
    this.mem.writeU16(at + 14, d.next ?? 0);
  }

  /** Put `head` in the next available slot and publish it (avail.idx += 1). */
  publish(head: number): void {
    this.mem.writeU16(this.availAddr + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    const v = this.mem.slice(this.availAddr, 4)!;
    Atomics.store(new Uint16Array(v.buffer, v.byteOffset, 2), 1, this.availIdx); // after the entry, as a driver's wmb
  }

  /** Set avail.idx to `idx` without writing entries (hostile tests). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    this.mem.writeU16(this.availAddr + 2, this.availIdx);
  }

  /**
   * Post a chain of device-readable buffers `out` and device-writable buffers of lengths
   * `inLens`; with `indirect`, as one descriptor pointing at an indirect table. Returns the
   * head and the writable buffers.
   */
  add(out: Uint8Array[], inLens: number[] = [], indirect = false): Posted {
    const bufs: Desc[] = [];
    const inBufs: { gpa: number; len: number }[] = [];
    for (const o of out) {
      const at = this.alloc(o.length);
      this.mem.writeBytes(at, o);
      bufs.push({ addr: at, len: o.length });
    }
    for (const len of inLens) {
      const at = this.alloc(len);
      this.mem.fill(at, len, 0);
      bufs.push({ addr: at, len, flags: VIRTQ_DESC_F_WRITE });
      inBufs.push({ gpa: at, len });
    }
    let head: number;
    if (indirect) {
      const table = this.alloc(16 * bufs.length);
      bufs.forEach((d, i) => {
        const last = i === bufs.length - 1;
        this.writeDesc(i, { ...d, flags: (d.flags ?? 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : i + 1 }, table);
      });
      head = this.#take(1)[0];
      this.writeDesc(head, { addr: table, len: 16 * bufs.length, flags: VIRTQ_DESC_F_INDIRECT });
      this.#chains.set(head, [head]);
    } else {
      const ids = this.#take(bufs.length);
      bufs.forEach((d, i) => {
        const last = i === bufs.length - 1;
        this.writeDesc(ids[i], { ...d, flags: (d.flags ?? 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), next: last ? 0 : ids[i + 1] });
      });
      head = ids[0];
      this.#chains.set(head, ids);
    }
    this.publish(head);
    return { head, inBufs };
  }

  /** Take descriptors `ids` off the free list, for chains the test writes by hand. */
  reserve(ids: number[]): void {
    this.#free = this.#free.filter((i) => !ids.includes(i));
  }

  #take(n: number): number[] {
    if (this.#free.length < n) throw new Error(`driver out of descriptors (${this.#free.length} free, ${n} wanted)`);
    return this.#free.splice(0, n);
  }

  /** The used elements the device added since the last call, freeing their descriptors. */
  used(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.mem.readU16(this.usedAddr + 2);
    while (this.lastUsed !== idx) {
      const at = this.usedAddr + 4 + 8 * (this.lastUsed % this.size);
      const id = this.mem.readU32(at);
      out.push({ id, len: this.mem.readU32(at + 4) });
      const ids = this.#chains.get(id);
      if (ids) {
        this.#free.push(...ids);
        this.#chains.delete(id);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** used.idx as the device wrote it. */
  usedIdx(): number {
    return this.mem.readU16(this.usedAddr + 2);
  }
  /** used.flags. */
  usedFlags(): number {
    return this.mem.readU16(this.usedAddr);
  }
  /** avail_event (used.ring[size]). */
  availEvent(): number {
    return this.mem.readU16(this.usedAddr + 4 + 8 * this.size);
  }
  /** Set used_event (avail.ring[size]). */
  setUsedEvent(v: number): void {
    this.mem.writeU16(this.availAddr + 4 + 2 * this.size, v & 0xffff);
  }
  /** Set or clear VIRTQ_AVAIL_F_NO_INTERRUPT. */
  setNoInterrupt(on: boolean): void {
    this.mem.writeU16(this.availAddr, on ? VIRTQ_AVAIL_F_NO_INTERRUPT : 0);
  }
  /**
   * Whether the driver would notify after moving avail.idx from `old` to the current
   * value: EVENT_IDX's vring_need_event on avail_event, else the NO_NOTIFY flag.
   */
  wouldKick(old: number): boolean {
    if (this.opts.eventIdx) {
      const ev = this.availEvent();
      return ((this.availIdx - ev - 1) & 0xffff) < ((this.availIdx - old) & 0xffff);
    }
    return (this.usedFlags() & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }
}

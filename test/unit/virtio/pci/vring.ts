/**
 * The driver's side of one split queue at a chosen place in guest RAM, for the virtio-pci
 * tests (several queues share one TestRam; the queue itself lives in the transport).
 */
import type { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../../src/virtio/index.js';

export class Vring {
  readonly descAddr: number;
  readonly availAddr: number;
  readonly usedAddr: number;
  readonly dataBase: number;
  readonly end: number;
  availIdx = 0;
  lastUsed = 0;
  #next: number;
  #free: number[];

  /** Rings of `size` entries from `base` (16-aligned), with `dataBytes` of buffers after them. */
  constructor(readonly mem: GuestMemory, readonly base: number, readonly size: number, dataBytes = 0x2000) {
    this.descAddr = base;
    this.availAddr = base + 16 * size;
    this.usedAddr = (this.availAddr + 6 + 2 * size + 3) & ~3;
    this.dataBase = (this.usedAddr + 6 + 8 * size + 15) & ~15;
    this.end = this.dataBase + dataBytes;
    this.#next = this.dataBase;
    this.#free = Array.from({ length: size }, (_, i) => i);
  }

  #alloc(n: number): number {
    const len = (n + 15) & ~15;
    if (this.#next + len > this.end) this.#next = this.dataBase;
    const at = this.#next;
    this.#next += len;
    return at;
  }

  /** Post `out` (device-readable) and one device-writable buffer of `inLen` bytes; returns the head and the writable buffer. */
  post(out: Uint8Array, inLen: number): { head: number; inGpa: number } {
    const a = this.#free.shift()!;
    const b = this.#free.shift()!;
    if (a === undefined || b === undefined) throw new Error('vring out of descriptors');
    const outGpa = this.#alloc(out.length);
    this.mem.writeBytes(outGpa, out);
    const inGpa = this.#alloc(inLen);
    this.mem.fill(inGpa, inLen, 0);
    this.#desc(a, outGpa, out.length, VIRTQ_DESC_F_NEXT, b);
    this.#desc(b, inGpa, inLen, VIRTQ_DESC_F_WRITE, 0);
    this.mem.writeU16(this.availAddr + 4 + 2 * (this.availIdx % this.size), a);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.mem.writeU16(this.availAddr + 2, this.availIdx);
    return { head: a, inGpa };
  }

  #desc(i: number, addr: number, len: number, flags: number, next: number): void {
    const at = this.descAddr + 16 * i;
    this.mem.writeU64(at, BigInt(addr));
    this.mem.writeU32(at + 8, len);
    this.mem.writeU16(at + 12, flags);
    this.mem.writeU16(at + 14, next);
  }

  /** Used elements since the last call; their descriptors go back on the free list. */
  used(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    const idx = this.mem.readU16(this.usedAddr + 2);
    while (this.lastUsed !== idx) {
      const at = this.usedAddr + 4 + 8 * (this.lastUsed % this.size);
      const id = this.mem.readU32(at);
      out.push({ id, len: this.mem.readU32(at + 4) });
      const next = this.mem.readU16(this.descAddr + 16 * id + 14);
      this.#free.push(id, next);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** Set used_event (EVENT_IDX). */
  setUsedEvent(v: number): void {
    this.mem.writeU16(this.availAddr + 4 + 2 * this.size, v & 0xffff);
  }
}

/**
 * An address-space bus: devices registered over non-overlapping ranges, looked up by
 * address. One instance per address space (port I/O, MMIO). Devices see offsets only.
 */
import type { AccessSize, Device } from '../devices/device.js';
import { serveAccess, type Access } from './dispatch.js';
import { readLE, writeLE } from './le.js';

/** A registered range. */
export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly device: Device;
  readonly name: string;
}

/** Counts of what the bus served. */
export interface BusCounters {
  reads: number;
  writes: number;
  unhandledReads: number;
  unhandledWrites: number;
}

/** A bus over addresses [0, limit). */
export class Bus {
  /** Human-readable name ('pio', 'mmio'). */
  readonly name: string;
  /** One past the highest address. */
  readonly limit: number;
  /** What was served so far. */
  readonly counters: BusCounters = { reads: 0, writes: 0, unhandledReads: 0, unhandledWrites: 0 };
  #ranges: BusRange[] = [];
  #last: BusRange | undefined;

  /** An empty bus named `name` (in messages) for addresses in [0, `limit`). */
  constructor(name: string, limit: number) {
    this.name = name;
    this.limit = limit;
  }

  /** The registered ranges, sorted by base. */
  get ranges(): readonly BusRange[] {
    return this.#ranges;
  }

  /**
   * Register `device` over `[base, base + length)`. Throws RangeError on a zero length, a
   * range that wraps or leaves the bus, or an overlap with a registered range.
   */
  register(base: number, length: number, device: Device, name = device.constructor?.name ?? 'device'): BusRange {
    if (typeof base !== 'number' || !Number.isInteger(base) || base < 0) throw new RangeError(`base must be a non-negative integer, got ${base}`);
    if (typeof length !== 'number' || !Number.isInteger(length)) throw new RangeError(`length must be an integer, got ${length}`);
    if (length <= 0) throw new RangeError(`length must be greater than zero (${this.name} 0x${base.toString(16)})`);
    if (base + length > this.limit || !Number.isSafeInteger(base + length)) {
      throw new RangeError(`${this.name} range 0x${base.toString(16)}+0x${length.toString(16)} wraps or leaves the bus (limit 0x${this.limit.toString(16)})`);
    }
    if (!device || typeof device.read !== 'function' || typeof device.write !== 'function') {
      throw new TypeError('device must have read(offset, size) and write(offset, size, value)');
    }
    for (const r of this.#ranges) {
      if (base < r.base + r.length && r.base < base + length) {
        throw new RangeError(
          `${this.name} range 0x${base.toString(16)}+0x${length.toString(16)} overlaps ${r.name} at 0x${r.base.toString(16)}+0x${r.length.toString(16)}`,
        );
      }
    }
    const range: BusRange = { base, length, device, name };
    this.#ranges.push(range);
    this.#ranges.sort((a, b) => a.base - b.base);
    return range;
  }

  /** Remove the range registered at `base`; returns false if none. */
  unregister(base: number): boolean {
    const i = this.#ranges.findIndex((r) => r.base === base);
    if (i < 0) return false;
    if (this.#last === this.#ranges[i]) this.#last = undefined;
    this.#ranges.splice(i, 1);
    return true;
  }

  /** The range containing `addr`, or undefined. */
  find(addr: number): BusRange | undefined {
    const l = this.#last;
    if (l && addr >= l.base && addr < l.base + l.length) return l;
    let lo = 0;
    let hi = this.#ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.#ranges[mid];
      if (addr < r.base) hi = mid - 1;
      else if (addr >= r.base + r.length) lo = mid + 1;
      else return (this.#last = r);
    }
    return undefined;
  }

  /**
   * Read through the bus (the dispatch seam, src/bus/dispatch.ts). Returns undefined when no
   * device claims `addr` (counted as unhandled; the caller decides the answer).
   */
  read(addr: number, size: AccessSize): number | bigint | undefined {
    const a = scratch(addr, size, false);
    if (!serveAccess(this, a)) {
      this.counters.unhandledReads++;
      return undefined;
    }
    return readLE(a.data, 0, size);
  }

  /** Write through the bus (the dispatch seam). Returns false when no device claims `addr`. */
  write(addr: number, size: AccessSize, value: number | bigint): boolean {
    const a = scratch(addr, size, true);
    writeLE(a.data, 0, size, value);
    if (serveAccess(this, a)) return true;
    this.counters.unhandledWrites++;
    return false;
  }
}

function scratch(addr: number, size: AccessSize, write: boolean): Access {
  return { addr, size, count: 1, write, data: new DataView(new ArrayBuffer(8)), offset: 0 };
}

/** A port-I/O bus (ports 0..0xffff). */
export class PioBus extends Bus {
  /** An empty port-I/O bus. */
  constructor() {
    super('pio', 0x10000);
  }
}

/** An MMIO bus (guest-physical addresses below 2^52). */
export class MmioBus extends Bus {
  /** An empty MMIO bus. */
  constructor() {
    super('mmio', 2 ** 52);
  }
}

/**
 * Placing BARs in the platform's address windows, as firmware does before the OS runs:
 * a 32-bit MMIO window below 4 GiB, an optional 64-bit MMIO window, and an optional I/O
 * port window. Each BAR is placed naturally aligned (at a multiple of its size) at the
 * lowest address that fits, so mixed sizes fill the alignment holes; address 0 is never
 * handed out (a BAR at 0 is not decoded). Memory BARs are also aligned to, and occupy at
 * least, `minMemoryAlign` bytes (default 4 KiB), so no two share a page. When a window is
 * full the allocator throws a RangeError naming the window and the request.
 */

import type { PciBarKind, PciConfigSpace } from './config-space.js';
import { PCI_IO_LIMIT, PCI_MMIO64_LIMIT } from './registers.js';
import { alignUp, checkInt, hex, isPowerOfTwo } from './util.js';

/** A window: `[base, base + size)`. */
export interface PciWindow {
  /** First address. */
  readonly base: number;
  /** Bytes. */
  readonly size: number;
}

/** The windows an allocator places BARs in. */
export type PciWindowName = 'mmio32' | 'mmio64' | 'io';

/** Options for {@link BarAllocator}. */
export interface BarAllocatorOptions {
  /** 32-bit MMIO window; must end at or below 4 GiB. */
  mmio32: PciWindow;
  /** 64-bit MMIO window (must end at or below 2^52); 64-bit BARs go here first. */
  mmio64?: PciWindow;
  /** I/O port window (must end at or below 0x10000); without it I/O BARs cannot be placed. */
  io?: PciWindow;
  /** Minimum alignment and footprint of a memory BAR, a power of two. Default 4096. */
  minMemoryAlign?: number;
}

/** Where {@link BarAllocator.assign} put a BAR. */
export interface BarPlacement {
  /** BAR index. */
  readonly bar: number;
  /** The BAR's kind. */
  readonly kind: PciBarKind;
  /** The BAR's size. */
  readonly size: number;
  /** The window it went to. */
  readonly window: PciWindowName;
  /** Its address. */
  readonly address: number;
}

interface Window {
  readonly base: number;
  readonly end: number;
  /** Allocated [start, end) ranges, sorted by start. */
  readonly used: [number, number][];
}

const LIMITS: Record<PciWindowName, number> = { mmio32: 2 ** 32, mmio64: PCI_MMIO64_LIMIT, io: PCI_IO_LIMIT };

function checkWindow(w: PciWindow | undefined, name: PciWindowName): Window | undefined {
  if (w === undefined) return undefined;
  if (typeof w !== 'object' || w === null) throw new TypeError(`opts.${name} must be an object with base and size`);
  const base = checkInt(w.base, `opts.${name}.base`, 0, LIMITS[name] - 1);
  const size = checkInt(w.size, `opts.${name}.size`, 1, LIMITS[name]);
  if (base + size > LIMITS[name]) throw new RangeError(`opts.${name} ${hex(base)}+${hex(size)} must end at or below ${hex(LIMITS[name])}`);
  return { base, end: base + size, used: [] };
}

/** A first-fit, naturally aligned BAR allocator over fixed windows (see the module comment). */
export class BarAllocator {
  /** Minimum alignment and footprint of memory BARs. */
  readonly minMemoryAlign: number;
  readonly #windows: Partial<Record<PciWindowName, Window>>;

  /** An allocator over the given windows. Throws TypeError/RangeError naming a bad window. */
  constructor(opts: BarAllocatorOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    if (opts.mmio32 === undefined) throw new TypeError('opts.mmio32 is required');
    this.#windows = { mmio32: checkWindow(opts.mmio32, 'mmio32'), mmio64: checkWindow(opts.mmio64, 'mmio64'), io: checkWindow(opts.io, 'io') };
    const a = this.#windows.mmio32!;
    const b = this.#windows.mmio64;
    if (b && a.base < b.end && b.base < a.end) throw new RangeError('opts.mmio64 overlaps opts.mmio32');
    const m = opts.minMemoryAlign ?? 4096;
    if (typeof m !== 'number' || !isPowerOfTwo(m)) throw new RangeError(`opts.minMemoryAlign must be a power of two, got ${String(m)}`);
    this.minMemoryAlign = m;
  }

  /** The window `name` as configured, or undefined. */
  window(name: PciWindowName): PciWindow | undefined {
    const w = this.#windows[name];
    return w && { base: w.base, size: w.end - w.base };
  }

  /** Bytes not yet handed out in window `name` (0 when absent; may be fragmented). */
  free(name: PciWindowName): number {
    const w = this.#windows[name];
    return w ? w.end - w.base - w.used.reduce((n, [s, e]) => n + e - s, 0) : 0;
  }

  /**
   * Place a BAR of `kind` and `size`: I/O BARs in the I/O window, 32-bit BARs in the 32-bit
   * window, 64-bit BARs in the 64-bit window, else (absent or full) the 32-bit one. Returns
   * the window and address. RangeError when it fits nowhere or `size` is not a power of two.
   */
  allocate(kind: PciBarKind, size: number): { window: PciWindowName; address: number } {
    if (kind !== 'mem32' && kind !== 'mem64' && kind !== 'io') throw new TypeError(`kind must be 'mem32', 'mem64' or 'io', got ${String(kind)}`);
    const order: PciWindowName[] = kind === 'io' ? ['io'] : kind === 'mem32' ? ['mmio32'] : ['mmio64', 'mmio32'];
    const tried = order.filter((n) => this.#windows[n]);
    if (tried.length === 0) throw new RangeError(`no ${order.join(' or ')} window to place a ${kind} BAR in`);
    for (const name of tried) {
      const address = this.#place(name, size);
      if (address !== undefined) return { window: name, address };
    }
    throw new RangeError(`no room for a ${kind} BAR of ${hex(size)} bytes in ${tried.map((n) => this.#describe(n)).join(' or ')}`);
  }

  /** Place `size` bytes (a power of two) in window `name`, naturally aligned. RangeError when full or absent. */
  allocateIn(name: PciWindowName, size: number): number {
    if (!this.#windows[name]) throw new RangeError(`window must be a configured window, got ${String(name)}`);
    const address = this.#place(name, size);
    if (address === undefined) throw new RangeError(`no room for ${hex(size)} bytes in ${this.#describe(name)}`);
    return address;
  }

  /** Return the range starting at `address` in window `name`; false if none starts there. */
  release(name: PciWindowName, address: number): boolean {
    const w = this.#windows[name];
    const i = w ? w.used.findIndex(([s]) => s === address) : -1;
    if (i < 0) return false;
    w!.used.splice(i, 1);
    return true;
  }

  /**
   * Place every declared BAR of `config` (largest first, to keep holes small) and program
   * the addresses into it (listeners see mapping changes once decode is enabled). Returns
   * the placements by BAR index. On a RangeError the BARs placed by this call are released.
   */
  assign(config: PciConfigSpace): BarPlacement[] {
    if (typeof config !== 'object' || config === null || typeof config.bars !== 'function') throw new TypeError('config must be a PciConfigSpace');
    const bars = config.bars().sort((x, y) => y.size - x.size || x.index - y.index);
    const out: BarPlacement[] = [];
    try {
      for (const b of bars) {
        const { window, address } = this.allocate(b.kind, b.size);
        out.push({ bar: b.index, kind: b.kind, size: b.size, window, address });
      }
    } catch (e) {
      for (const p of out) this.release(p.window, p.address);
      throw e;
    }
    for (const p of out) config.programBar(p.bar, p.address);
    return out.sort((x, y) => x.bar - y.bar);
  }

  #place(name: PciWindowName, size: number): number | undefined {
    const io = name === 'io';
    const [min, max] = io ? [4, 256] : [16, 2 ** 51];
    if (typeof size !== 'number' || !isPowerOfTwo(size) || size < min || size > max) {
      throw new RangeError(`size must be a power of two in [${min}, ${hex(max)}], got ${String(size)}`);
    }
    const w = this.#windows[name]!;
    const footprint = io ? size : Math.max(size, this.minMemoryAlign); // also the alignment
    let gapStart = w.base;
    for (let i = 0; i <= w.used.length; i++) {
      const gapEnd = i < w.used.length ? w.used[i][0] : w.end;
      const at = alignUp(Math.max(gapStart, 1), footprint);
      if (at + footprint <= gapEnd) {
        w.used.splice(i, 0, [at, at + footprint]);
        return at;
      }
      if (i < w.used.length) gapStart = w.used[i][1];
    }
    return undefined;
  }

  #describe(name: PciWindowName): string {
    const w = this.#windows[name]!;
    return `the ${name} window ${hex(w.base)}-${hex(w.end - 1)} (${hex(this.free(name))} bytes free)`;
  }
}

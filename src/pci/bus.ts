/**
 * A PCI bus: bus 0 of segment 0, 32 device numbers × 8 functions, each slot holding a
 * {@link PciFunction}. The config mechanisms ({@link PciConfigIo}, {@link PciEcam}) route
 * guest configuration accesses here by bus/device/function; absent functions read
 * all-ones (what a master abort returns) and ignore writes. BAR accesses do not pass
 * through the bus: the platform registers {@link barDevice} at each BAR's mapped address.
 */

import type { AccessSize, Device } from '../devices/device.js';
import { allOnes } from '../devices/io-util.js';
import { PciConfigSpace } from './config-space.js';
import { checkInt } from './util.js';

/** Device numbers on a bus. */
export const PCI_DEVICES_PER_BUS = 32;
/** Functions per device. */
export const PCI_FUNCTIONS_PER_DEVICE = 8;

/** A PCI function: its configuration space and, optionally, handlers for its BARs. */
export interface PciFunction {
  /** The function's configuration space. */
  readonly config: PciConfigSpace;
  /**
   * A guest read of `size` bytes at `offset` within BAR `bar` (relative to the BAR's base).
   * Must not throw for guest-controlled offsets or sizes. Absent: the BAR reads all-ones.
   */
  readBar?(bar: number, offset: number, size: AccessSize): number | bigint;
  /** A guest write within BAR `bar`. Must not throw for guest-controlled values. Absent: writes are ignored. */
  writeBar?(bar: number, offset: number, size: AccessSize, value: number | bigint): void;
  /**
   * The function's whole state for a snapshot, JSON-safe. Absent: a snapshot holds its
   * configuration space only ({@link PciConfigSpace.snapshot}), which is all a function
   * without other registers has.
   */
  snapshot?(): unknown;
  /**
   * Check `state` (from {@link snapshot} of a function like this one) and return the
   * function that applies it; throws TypeError/RangeError naming the field, changing
   * nothing. `overrides` are the function's own (e.g. a clone's new MAC address).
   */
  prepareRestore?(state: unknown, overrides?: unknown): () => void;
}

/** A function's position: bus, device (0-31), function (0-7). */
export interface PciAddress {
  /** Bus number (always 0 here). */
  readonly bus: number;
  /** Device number 0-31. */
  readonly device: number;
  /** Function number 0-7. */
  readonly function: number;
}

/** A function on the bus and where it sits. */
export interface PciBusEntry {
  /** Where it sits. */
  readonly address: PciAddress;
  /** The function. */
  readonly fn: PciFunction;
}

/** Counts of the configuration accesses a {@link PciBus} served. */
export interface PciBusCounters {
  /** Reads that reached a function. */
  configReads: number;
  /** Writes that reached a function. */
  configWrites: number;
  /** Reads of an absent function (answered all-ones). */
  absentReads: number;
  /** Writes to an absent function (ignored). */
  absentWrites: number;
}

/** `bb:dd.f` in hex, as lspci prints it. */
export function formatPciAddress(a: PciAddress): string {
  const h = (v: number, n: number) => v.toString(16).padStart(n, '0');
  return `${h(a.bus, 2)}:${h(a.device, 2)}.${a.function}`;
}

/**
 * A {@link Device} serving BAR `bar` of `fn` at offsets relative to the BAR's base: what
 * the platform registers on its MMIO or port bus where the BAR is mapped.
 */
export function barDevice(fn: PciFunction, bar: number): Device {
  if (typeof fn !== 'object' || fn === null || !(fn.config instanceof PciConfigSpace)) throw new TypeError('fn must be a PciFunction');
  checkInt(bar, 'bar', 0, 5);
  return {
    read: (offset, size) => (fn.readBar ? fn.readBar(bar, offset, size) : allOnes(size)),
    write: (offset, size, value) => fn.writeBar?.(bar, offset, size, value),
  };
}

/** Bus 0: 32 devices × 8 functions (see the module comment). */
export class PciBus {
  /** What was served so far. */
  readonly counters: PciBusCounters = { configReads: 0, configWrites: 0, absentReads: 0, absentWrites: 0 };
  readonly #slots: (PciFunction | undefined)[] = new Array(PCI_DEVICES_PER_BUS * PCI_FUNCTIONS_PER_DEVICE).fill(undefined);

  /**
   * Put `fn` at `device`.`function`. Function 0's header-type multi-function bit is kept
   * set while other functions share its device number (a guest only scans functions 1-7
   * when it is set). Throws RangeError for a taken slot or bad numbers, TypeError for a
   * non-function or one already on the bus.
   */
  add(device: number, func: number, fn: PciFunction): PciAddress {
    checkInt(device, 'device', 0, PCI_DEVICES_PER_BUS - 1);
    checkInt(func, 'function', 0, PCI_FUNCTIONS_PER_DEVICE - 1);
    if (typeof fn !== 'object' || fn === null || !(fn.config instanceof PciConfigSpace)) throw new TypeError('fn must be a PciFunction (an object with a PciConfigSpace config)');
    if (this.#slots.includes(fn)) throw new TypeError('fn is already on this bus');
    const i = device * PCI_FUNCTIONS_PER_DEVICE + func;
    if (this.#slots[i]) throw new RangeError(`PCI slot ${formatPciAddress({ bus: 0, device, function: func })} is already taken`);
    this.#slots[i] = fn;
    this.#syncMultiFunction(device);
    return Object.freeze({ bus: 0, device, function: func });
  }

  /**
   * Put `fn` at function 0 of the lowest free device number (from `from`, default 1: device
   * 0 is the host bridge's). RangeError when every device number is taken.
   */
  addDevice(fn: PciFunction, from = 1): PciAddress {
    checkInt(from, 'from', 0, PCI_DEVICES_PER_BUS - 1);
    for (let d = from; d < PCI_DEVICES_PER_BUS; d++) {
      if (!this.#occupied(d)) return this.add(d, 0, fn);
    }
    throw new RangeError(`no free PCI device number from ${from} to ${PCI_DEVICES_PER_BUS - 1}`);
  }

  /** Remove and return the function at `device`.`function` (undefined when empty). */
  remove(device: number, func: number): PciFunction | undefined {
    checkInt(device, 'device', 0, PCI_DEVICES_PER_BUS - 1);
    checkInt(func, 'function', 0, PCI_FUNCTIONS_PER_DEVICE - 1);
    const i = device * PCI_FUNCTIONS_PER_DEVICE + func;
    const fn = this.#slots[i];
    this.#slots[i] = undefined;
    if (fn && func === 0) fn.config.multiFunction = false;
    this.#syncMultiFunction(device);
    return fn;
  }

  /** The function at `device`.`function` of bus `bus`, or undefined (never throws). */
  get(device: number, func: number, bus = 0): PciFunction | undefined {
    if (bus !== 0 || !Number.isInteger(device) || !Number.isInteger(func)) return undefined;
    if (device < 0 || device >= PCI_DEVICES_PER_BUS || func < 0 || func >= PCI_FUNCTIONS_PER_DEVICE) return undefined;
    return this.#slots[device * PCI_FUNCTIONS_PER_DEVICE + func];
  }

  /** Every function on the bus, in device/function order. */
  entries(): PciBusEntry[] {
    const out: PciBusEntry[] = [];
    this.#slots.forEach((fn, i) => {
      if (fn) out.push({ address: { bus: 0, device: Math.floor(i / PCI_FUNCTIONS_PER_DEVICE), function: i % PCI_FUNCTIONS_PER_DEVICE }, fn });
    });
    return out;
  }

  /**
   * A guest configuration read of register `reg` (0-0xfff) of `bus`:`device`.`function`.
   * An absent function (or any bus but 0) reads all-ones. Never throws.
   */
  readConfig(bus: number, device: number, func: number, reg: number, size: AccessSize): number | bigint {
    const fn = this.get(device, func, bus);
    if (!fn) {
      this.counters.absentReads++;
      return allOnes(size);
    }
    this.counters.configReads++;
    return fn.config.read(reg, size);
  }

  /** A guest configuration write; ignored (counted) for an absent function. Never throws. */
  writeConfig(bus: number, device: number, func: number, reg: number, size: AccessSize, value: number | bigint): void {
    const fn = this.get(device, func, bus);
    if (!fn) {
      this.counters.absentWrites++;
      return;
    }
    this.counters.configWrites++;
    fn.config.write(reg, size, value);
  }

  #occupied(device: number): boolean {
    for (let f = 0; f < PCI_FUNCTIONS_PER_DEVICE; f++) if (this.#slots[device * PCI_FUNCTIONS_PER_DEVICE + f]) return true;
    return false;
  }

  #syncMultiFunction(device: number): void {
    const base = device * PCI_FUNCTIONS_PER_DEVICE;
    const f0 = this.#slots[base];
    if (!f0) return;
    let others = false;
    for (let f = 1; f < PCI_FUNCTIONS_PER_DEVICE; f++) others ||= this.#slots[base + f] !== undefined;
    f0.config.multiFunction = others;
  }
}

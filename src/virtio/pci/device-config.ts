/**
 * The device-specific configuration structure: a window onto {@link VirtioDevice.readConfig}
 * and {@link VirtioDevice.writeConfig} that only ever hands the device accesses it can take
 * (1, 2 or 4 bytes, naturally aligned, inside configSize).
 *
 * - An aligned access inside the structure goes to the device as is; an 8-byte access as
 *   two 4-byte ones, low half first (the driver reads 64-bit fields in halves anyway and
 *   uses config_generation to see whether they belong together).
 * - A read that is unaligned or runs past configSize is assembled from 1-byte device reads,
 *   with bytes past the end reading 0; such a write is ignored. Both are reported as
 *   irregular so the function can count them.
 */
import type { VirtioDevice } from '../device.js';

/** Outcome of a device-configuration access. */
export interface ConfigAccess {
  /** The value read (0 for a write). */
  readonly value: number | bigint;
  /** True when the access was not a natural one (unaligned, partly outside, or an ignored write). */
  readonly irregular: boolean;
}

/** Reads and writes of one device's configuration space (see the module comment). */
export class DeviceConfigWindow {
  readonly #device: VirtioDevice;
  readonly #size: number;
  readonly #call: <T>(what: string, f: () => T, fallback: T) => T;

  /**
   * A window onto `device`'s configuration; `call` runs each device method, turning an
   * exception into `fallback` (the function reports it).
   */
  constructor(device: VirtioDevice, size: number, call: <T>(what: string, f: () => T, fallback: T) => T) {
    this.#device = device;
    this.#size = size;
    this.#call = call;
  }

  /** A driver read of `size` (1, 2, 4 or 8) bytes at `offset` in the structure. */
  read(offset: number, size: number): ConfigAccess {
    if (size === 8) {
      const lo = this.#read(offset, 4);
      const hi = this.#read(offset + 4, 4);
      return { value: (BigInt(hi.value) << 32n) | BigInt(lo.value), irregular: lo.irregular || hi.irregular || offset % 8 !== 0 };
    }
    return this.#read(offset, size as 1 | 2 | 4);
  }

  /** A driver write of `value` (reduced to the access width) at `offset`; false if ignored. */
  write(offset: number, size: number, value: bigint): boolean {
    if (size === 8) {
      const lo = this.#write(offset, 4, Number(value & 0xffff_ffffn));
      const hi = this.#write(offset + 4, 4, Number(value >> 32n));
      return lo && hi;
    }
    return this.#write(offset, size as 1 | 2 | 4, Number(value));
  }

  #natural(offset: number, size: number): boolean {
    return offset % size === 0 && offset + size <= this.#size;
  }

  #read(offset: number, size: 1 | 2 | 4): { value: number; irregular: boolean } {
    const mask = 2 ** (8 * size) - 1;
    if (this.#natural(offset, size)) {
      const v = this.#call('readConfig', () => this.#device.readConfig(offset, size), 0);
      return { value: (toUint(v) & mask) >>> 0, irregular: false };
    }
    let v = 0;
    for (let i = 0; i < size; i++) {
      const at = offset + i;
      const b = at < this.#size ? toUint(this.#call('readConfig', () => this.#device.readConfig(at, 1), 0)) & 0xff : 0;
      v += b * 2 ** (8 * i);
    }
    return { value: v, irregular: true };
  }

  #write(offset: number, size: 1 | 2 | 4, value: number): boolean {
    if (!this.#natural(offset, size)) return false;
    this.#call('writeConfig', () => this.#device.writeConfig(offset, size, value), undefined);
    return true;
  }
}

/** A device's answer as an unsigned 32-bit number (a device returning garbage reads 0). */
function toUint(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.trunc(v) >>> 0 : 0;
}

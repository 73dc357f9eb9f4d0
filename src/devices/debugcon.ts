/**
 * A QEMU/Bochs-style debug console port (0x402 for SeaBIOS, 0xe9 for Bochs): every byte
 * the guest writes is handed to the host, and reads return a fixed "readback" value so
 * that firmware can detect the port (0xe9 by default, which SeaBIOS checks for).
 *
 * A write at offset 0 passes the low byte of the value to `onOutput` (wider writes
 * output only the low byte, like QEMU). Reads at offset 0 return the readback value,
 * zero-extended. Accesses at any other offset read all-ones and ignore writes.
 */

import type { AccessSize, Device } from './device.js';
import { allOnes, toU8 } from './io-util.js';

/** Options for {@link Debugcon}. */
export interface DebugconOptions {
  /** Called with every byte the guest writes. */
  onOutput: (byte: number) => void;
  /** Value reads return (default 0xe9). */
  readback?: number;
}

/** The debug console port. */
export class Debugcon implements Device {
  private readonly onOutput: (byte: number) => void;
  private readonly readback: number;

  /** Create the device. Throws `TypeError`/`RangeError` on bad options. */
  constructor(options: DebugconOptions) {
    if (typeof options !== 'object' || options === null || typeof options.onOutput !== 'function') {
      throw new TypeError('options.onOutput must be a function');
    }
    const { readback = 0xe9 } = options;
    if (!Number.isInteger(readback) || readback < 0 || readback > 0xff) {
      throw new RangeError('options.readback must be an integer 0-255');
    }
    this.onOutput = options.onOutput;
    this.readback = readback;
  }

  /** Guest read: the readback value at offset 0, all-ones elsewhere. */
  read(offset: number, size: AccessSize): number | bigint {
    return offset === 0 ? this.readback : allOnes(size);
  }

  /** Guest write at offset 0: output one byte. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (offset !== 0) return;
    this.onOutput(toU8(value));
  }
}

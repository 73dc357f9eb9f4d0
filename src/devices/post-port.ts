/**
 * The POST diagnostic code port (0x80), as a 1-byte device. Firmware writes progress
 * codes here; they are recorded and optionally reported to the host.
 *
 * A write at offset 0 records the low byte of the value (wider writes keep only the low
 * byte) and calls `onCode(code)`. A read at offset 0 returns the last code, zero-extended.
 * Accesses at any other offset read all-ones and ignore writes.
 */

import type { AccessSize, Device } from './device.js';
import { allOnes, toU8 } from './io-util.js';

/** Options for {@link PostPort}. */
export interface PostPortOptions {
  /** Called with every code the guest writes. */
  onCode?: (code: number) => void;
}

/** The plain-data state of a {@link PostPort}. */
export interface PostPortState {
  /** Last code written (0 initially). */
  lastCode: number;
}

/** The POST code port. */
export class PostPort implements Device {
  private readonly onCode: ((code: number) => void) | undefined;
  private code = 0;

  /** Create the port. Throws `TypeError` if `options.onCode` is given but not a function. */
  constructor(options: PostPortOptions = {}) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (options.onCode !== undefined && typeof options.onCode !== 'function') {
      throw new TypeError('options.onCode must be a function');
    }
    this.onCode = options.onCode;
  }

  /** The last code written by the guest (0 if none). */
  get lastCode(): number {
    return this.code;
  }

  /** Guest read: the last code at offset 0, all-ones elsewhere. */
  read(offset: number, size: AccessSize): number | bigint {
    return offset === 0 ? this.code : allOnes(size);
  }

  /** Guest write: record a code (offset 0 only). */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (offset !== 0) return;
    this.code = toU8(value);
    this.onCode?.(this.code);
  }

  /** A plain-object copy of the state. */
  snapshot(): PostPortState {
    return { lastCode: this.code };
  }

  /** Restore a state produced by {@link snapshot}. Throws `RangeError` if malformed. */
  restore(state: PostPortState): void {
    const v = state?.lastCode;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) {
      throw new RangeError('state.lastCode must be an integer 0-255');
    }
    this.code = v;
  }
}

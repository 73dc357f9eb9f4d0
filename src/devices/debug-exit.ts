/**
 * A QEMU `isa-debug-exit`-compatible device: a guest write asks the VMM to exit with a
 * status derived from the written value, which lets test guests report pass/fail.
 *
 * A write of value `v` at offset 0 (1, 2 or 4 bytes; the value is masked to the access
 * width, and an 8-byte write keeps the low 32 bits) calls `onExit(status, v)` with
 * `status = (v << 1) | 1`, exactly as QEMU computes its process exit status. The status
 * is not truncated here (it can exceed 8 bits for wide writes); a process exit code
 * would be `status & 0xff`. Because bit 0 is always set, an odd status can never be
 * confused with a normal exit code of 0.
 *
 * Reads at offset 0 return 0 (as QEMU does); accesses at any other offset read all-ones
 * and ignore writes.
 */

import type { AccessSize, Device } from './device.js';
import { allOnes, toAccessWidth } from './io-util.js';

/** Options for {@link DebugExit}. */
export interface DebugExitOptions {
  /** Called with `status = (value << 1) | 1` and the raw written `value`. */
  onExit: (status: number, value: number) => void;
}

/** Compute the QEMU isa-debug-exit status for a written value: `(value << 1) | 1`, without 32-bit overflow. */
export function debugExitStatus(value: number): number {
  return value * 2 + 1;
}

/** The debug-exit port. */
export class DebugExit implements Device {
  private readonly onExit: (status: number, value: number) => void;
  private last: number | undefined;

  /** Create the device. Throws `TypeError` if `options.onExit` is not a function. */
  constructor(options: DebugExitOptions) {
    if (typeof options !== 'object' || options === null || typeof options.onExit !== 'function') {
      throw new TypeError('options.onExit must be a function');
    }
    this.onExit = options.onExit;
  }

  /** The last value the guest wrote, or `undefined` if it never wrote. */
  get lastValue(): number | undefined {
    return this.last;
  }

  /** The exit status for the last write, or `undefined` if the guest never wrote. */
  get exitStatus(): number | undefined {
    return this.last === undefined ? undefined : debugExitStatus(this.last);
  }

  /** Guest read: 0 at offset 0, all-ones elsewhere. */
  read(offset: number, size: AccessSize): number | bigint {
    return offset === 0 ? 0 : allOnes(size);
  }

  /** Guest write at offset 0: request an exit. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (offset !== 0) return;
    const v = toAccessWidth(value, size);
    this.last = v;
    this.onExit(debugExitStatus(v), v);
  }
}

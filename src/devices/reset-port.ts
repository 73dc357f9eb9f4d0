/**
 * The PCI Reset Control register at I/O port 0xcf9 (Intel ICH/PCH "RST_CNT"), as a
 * 1-byte device.
 *
 * Bits: 1 = SYS_RST (choose a hard reset rather than a soft/INIT reset), 2 = RST_CPU
 * (a 0→1 transition starts the reset), 3 = FULL_RST (with a hard reset, power-cycle the
 * platform). The usual guest sequence (Linux `reboot=pci`) is to write 0x02 and then
 * 0x06; writing 0x06 or 0x0e directly works too. When RST_CPU goes from 0 to 1,
 * `onReset(kind)` is called with `'soft'` (SYS_RST clear), `'hard'` (SYS_RST set) or
 * `'full'` (SYS_RST and FULL_RST set). RST_CPU is self-clearing: it reads back as 0
 * after the reset it triggered, so a later write of 0x06 resets again.
 *
 * Reads return the last value written, masked to the defined bits 1-3. Other bits are
 * reserved: written as ignored, read as 0. A wider access at offset 0 acts on the low
 * byte (reads zero-extended); accesses at any other offset read all-ones and ignore
 * writes.
 */

import type { AccessSize, Device } from './device.js';
import { allOnes, isOffset, toU8 } from './io-util.js';

/** Bits of the reset control register. */
export const ResetControl = {
  /** System reset: hard (1) or soft (0) reset. */
  SYS_RST: 0x02,
  /** Reset CPU: a 0→1 transition starts the reset. */
  RST_CPU: 0x04,
  /** Full reset: power-cycle on a hard reset. */
  FULL_RST: 0x08,
} as const;

/** The kind of reset the guest asked for. */
export type ResetKind = 'soft' | 'hard' | 'full';

/** Options for {@link ResetPort}. */
export interface ResetPortOptions {
  /** Called when the guest requests a reset. */
  onReset: (kind: ResetKind) => void;
}

/** The plain-data state of a {@link ResetPort}. */
export interface ResetPortState {
  /** Register value (bits 1-3). */
  value: number;
}

/** The 0xcf9 reset control register. */
export class ResetPort implements Device {
  private readonly onReset: (kind: ResetKind) => void;
  private value = 0;

  /** Create the register (value 0). Throws `TypeError` if `options.onReset` is not a function. */
  constructor(options: ResetPortOptions) {
    if (typeof options !== 'object' || options === null || typeof options.onReset !== 'function') {
      throw new TypeError('options.onReset must be a function');
    }
    this.onReset = options.onReset;
  }

  /** Guest read: the register at offset 0, all-ones elsewhere. */
  read(offset: number, size: AccessSize): number | bigint {
    if (offset !== 0) return allOnes(size);
    return this.value;
  }

  /** Guest write: updates the register; a 0→1 edge on RST_CPU requests a reset. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    void size;
    if (!isOffset(offset) || offset !== 0) return;
    const v = toU8(value) & 0x0e;
    const rising = (v & ResetControl.RST_CPU) !== 0 && (this.value & ResetControl.RST_CPU) === 0;
    this.value = v;
    if (!rising) return;
    this.value &= ~ResetControl.RST_CPU; // self-clearing
    const kind: ResetKind = (v & ResetControl.SYS_RST) === 0 ? 'soft' : (v & ResetControl.FULL_RST) !== 0 ? 'full' : 'hard';
    this.onReset(kind);
  }

  /** Return the register to 0. */
  reset(): void {
    this.value = 0;
  }

  /** A plain-object copy of the state. */
  snapshot(): ResetPortState {
    return { value: this.value };
  }

  /** Restore a state produced by {@link snapshot}. Throws `RangeError` if malformed. */
  restore(state: ResetPortState): void {
    const v = state?.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff || (v & ~0x0e) !== 0) {
      throw new RangeError('state.value must be a byte with only bits 1-3 set');
    }
    this.value = v;
  }
}

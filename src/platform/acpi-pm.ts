/**
 * The ACPI PM1a event and control registers of a "full" (not hardware-reduced) ACPI
 * platform, as one 6-byte device (registered at 0x600, matching the FADT that
 * src/boot/acpi.ts writes by default):
 *
 * | off | register | behaviour                                                   |
 * |-----|----------|-------------------------------------------------------------|
 * | 0   | PM1_STS  | 16 bits, write 1 to clear (no event ever sets a bit)         |
 * | 2   | PM1_EN   | 16 bits, read/write                                         |
 * | 4   | PM1_CNT  | SCI_EN (bit 0) always reads 1: the platform is always in ACPI mode (the FADT has no SMI_CMD); SLP_TYP (bits 10-12) read/write; SLP_EN (bit 13) write-only |
 *
 * Writing SLP_EN = 1 calls `onSleep(slpTyp)`; the platform powers off when `slpTyp` is the
 * `\_S5` value of the DSDT (5). Accesses of any width at any offset work byte by byte, so
 * a 32-bit access at offset 0 covers PM1_STS and PM1_EN. Offsets past 5 read all-ones.
 */
import type { AccessSize, Device } from '../devices/device.js';

/** PM1_CNT bits. */
export const Pm1Cnt = {
  /** SCI enable: the OS owns power management (always 1 here). */
  SCI_EN: 0x0001,
  /** Sleep type field (bits 10-12). */
  SLP_TYP_MASK: 0x1c00,
  /** Sleep enable: enter the state in SLP_TYP (write-only). */
  SLP_EN: 0x2000,
} as const;

/** Options for {@link AcpiPm}. */
export interface AcpiPmOptions {
  /** Called when the guest sets SLP_EN, with the SLP_TYP value (0-7) it wrote. */
  onSleep: (slpTyp: number) => void;
}

/** The guest-visible state of an {@link AcpiPm}, for snapshots. */
export interface AcpiPmState {
  /** PM1_STS (16 bits). */
  sts: number;
  /** PM1_EN (16 bits). */
  en: number;
  /** PM1_CNT as it reads (SCI_EN set; SLP_TYP and bits 1-2 as written). */
  cnt: number;
}

/** PM1a status, enable and control registers. */
export class AcpiPm implements Device {
  readonly #onSleep: (slpTyp: number) => void;
  #sts = 0;
  #en = 0;
  #cnt: number = Pm1Cnt.SCI_EN;

  /** Create the registers (all clear but SCI_EN). */
  constructor(options: AcpiPmOptions) {
    if (typeof options !== 'object' || options === null || typeof options.onSleep !== 'function') {
      throw new TypeError('options.onSleep must be a function');
    }
    this.#onSleep = options.onSleep;
  }

  /** PM1_CNT as the guest reads it. */
  get control(): number {
    return this.#cnt;
  }

  /** A plain-object copy of the registers. */
  snapshot(): AcpiPmState {
    return { sts: this.#sts, en: this.#en, cnt: this.#cnt };
  }

  /** Restore a {@link snapshot}; TypeError/RangeError naming a bad field, with nothing changed. */
  restore(state: AcpiPmState): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object');
    for (const k of ['sts', 'en', 'cnt'] as const) {
      const v = state[k];
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`state.${k} must be a 16-bit integer, got ${String(v)}`);
    }
    if (state.cnt & Pm1Cnt.SLP_EN) throw new RangeError('state.cnt must not have SLP_EN (write-only) set');
    this.#sts = state.sts;
    this.#en = state.en;
    this.#cnt = (state.cnt & (Pm1Cnt.SLP_TYP_MASK | 0x0006)) | Pm1Cnt.SCI_EN;
  }

  /** Guest read of `size` bytes at `offset` (little-endian across the registers). */
  read(offset: number, size: AccessSize): number | bigint {
    let v = 0;
    for (let i = Math.min(size, 4) - 1; i >= 0; i--) v = v * 256 + this.#byte(offset + i);
    return size === 8 ? BigInt(v) | (0xffff_ffffn << 32n) : v;
  }

  /** Guest write of `size` bytes at `offset`. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    let v = BigInt.asUintN(64, BigInt(value));
    let cnt: number | undefined;
    for (let i = 0; i < size; i++, v >>= 8n) {
      const o = offset + i;
      const b = Number(v & 0xffn);
      const shift = (o & 1) * 8;
      if (o === 0 || o === 1) this.#sts &= ~(b << shift);
      else if (o === 2 || o === 3) this.#en = (this.#en & ~(0xff << shift)) | (b << shift);
      else if (o === 4 || o === 5) cnt = ((cnt ?? this.#cnt) & ~(0xff << shift)) | (b << shift);
    }
    if (cnt === undefined) return;
    this.#cnt = (cnt & Pm1Cnt.SLP_TYP_MASK) | Pm1Cnt.SCI_EN | (cnt & 0x0006);
    if (cnt & Pm1Cnt.SLP_EN) this.#onSleep((cnt & Pm1Cnt.SLP_TYP_MASK) >> 10);
  }

  #byte(o: number): number {
    switch (o) {
      case 0:
      case 1:
        return (this.#sts >> ((o & 1) * 8)) & 0xff;
      case 2:
      case 3:
        return (this.#en >> ((o & 1) * 8)) & 0xff;
      case 4:
      case 5:
        return (this.#cnt >> ((o & 1) * 8)) & 0xff;
      default:
        return 0xff;
    }
  }
}

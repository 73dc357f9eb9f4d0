/**
 * Whose answers the engine gives where the architecture leaves a result undefined (issue 15).
 *
 * Intel's SDM and AMD's APM leave some flags (and a few results) undefined; each vendor's
 * hardware still gives a fixed answer, and the two differ. The engine models one vendor
 * (the `vendor` option of {@link Cpl0Engine}, by default the host's: the CPU KVM runs the
 * guest on whenever the engine does not), so a guest sees the same CPU in both.
 */
import { readFileSync } from 'node:fs';
import { F, STATUS } from './flags.js';

/** A CPU vendor whose undefined results the engine models. */
export type CpuVendor = 'intel' | 'amd';

/** The vendors, for checking options. */
export const CPU_VENDORS: readonly CpuVendor[] = ['intel', 'amd'];

let host: CpuVendor | undefined;

/**
 * The vendor of the CPU this process runs on, from the first `vendor_id` of /proc/cpuinfo
 * (read once): `AuthenticAMD` and `HygonGenuine` (Hygon's cores are AMD's Zen) are 'amd',
 * anything else, or no /proc/cpuinfo, 'intel'.
 */
export function hostVendor(): CpuVendor {
  if (host === undefined) {
    let id = '';
    try {
      id = /^vendor_id\s*:\s*(\S+)/m.exec(readFileSync('/proc/cpuinfo', 'latin1'))?.[1] ?? '';
    } catch {
      /* not Linux, or no procfs: the Intel model */
    }
    host = id === 'AuthenticAMD' || id === 'HygonGenuine' ? 'amd' : 'intel';
  }
  return host;
}

/**
 * The answers one vendor's hardware gives where the architecture leaves them undefined, as
 * the engine models them (src/engine/cpu.ts for the interpreter, src/engine/jit.ts for
 * compiled code). Flag masks are RFLAGS bits (src/engine/flags.ts F). Each entry was read
 * natively at CPL 3 through KVM (test/engine/kvm-reference.ts; the forms one by one in
 * test/guest/engine-vendor.test.ts): 'intel' on the project's earlier Intel Xeon hosts,
 * 'amd' on an AMD EPYC (family 26, Zen 5).
 */
export interface UndefinedResults {
  /**
   * MUL and IMUL (every form): CF = OF = "the product did not fit"; of SF ZF AF PF, `keep`
   * stay as they were, `fromLow` are set from the low half of the product, the rest clear.
   * Intel: SF and PF from the low half, ZF and AF clear. AMD: all four kept.
   */
  mul: { keep: number; fromLow: number };
  /**
   * DIV and IDIV that do not raise #DE (every flag undefined): `keep` stay, `set` are set,
   * the rest clear. Intel: all kept. AMD: CF and OF kept, AF set, SF ZF PF clear.
   */
  div: { keep: number; set: number };
  /**
   * OF of shifts and rotates (and SHLD/SHRD) by a count above 1, where the architecture
   * defines it only for a count of 1:
   * - 'operand' (Intel): what a count of 1 would set, from the original operand(s);
   * - 'result' (AMD): the count-1 formula applied to the result: MSB(result) XOR CF for the
   *   left ones (ROL RCL SHL SHLD; SHLD takes the MSB of the destination shifted alone,
   *   0 once the count reaches the width), MSB(result) XOR the bit below it for the right
   *   ones (ROR RCR SHR SAR SHRD).
   */
  shiftOf: 'operand' | 'result';
  /** AF after SHL SHR SAR SHLD SHRD by a non-zero count: Intel 0 (clear), AMD F.AF (set). Rotates keep AF on both. */
  shiftAf: number;
  /** ROL/ROR of a register by an immediate count above 1 leaves OF as it was (Intel); AMD sets it as for a count in CL. */
  rotateImmKeepsOf: boolean;
  /**
   * RCL/RCR of 8 or 16 bits by a non-zero multiple of 9 or 17 (the value comes back whole):
   * Intel leaves every flag as it was; AMD sets CF (to itself) and OF as for any other count.
   */
  fullCarryRotateKeepsFlags: boolean;
  /**
   * 16-bit SHLD/SHRD by 17-31 shift a 48-bit window, the source continued by:
   * - 'dst' (Intel): dst:src:dst, CF the last bit shifted out of it;
   * - 'src' (AMD): dst:src:src for SHLD, src:src:dst for SHRD, CF clear.
   */
  shld16Fill: 'dst' | 'src';
  /**
   * BSWAP of a 16-bit register: zeroes it as a write of this many bytes. AMD 2 (the low word
   * only, bits 63-16 kept). Intel 4 (a 32-bit write: the whole register reads 0), as the
   * engine had it before this table; the random sequences never emit the form, so unlike
   * the other Intel entries it was not confirmed against an Intel host's own answer.
   */
  bswap16Write: 2 | 4;
}

/** {@link UndefinedResults} of each vendor. */
export const UNDEFINED: Readonly<Record<CpuVendor, Readonly<UndefinedResults>>> = {
  intel: {
    mul: { keep: 0, fromLow: F.SF | F.PF },
    div: { keep: STATUS, set: 0 },
    shiftOf: 'operand',
    shiftAf: 0,
    rotateImmKeepsOf: true,
    fullCarryRotateKeepsFlags: true,
    shld16Fill: 'dst',
    bswap16Write: 4,
  },
  amd: {
    mul: { keep: F.SF | F.ZF | F.AF | F.PF, fromLow: 0 },
    div: { keep: F.CF | F.OF, set: F.AF },
    shiftOf: 'result',
    shiftAf: F.AF,
    rotateImmKeepsOf: false,
    fullCarryRotateKeepsFlags: false,
    shld16Fill: 'src',
    bswap16Write: 2,
  },
};

/** Check a `vendor` option: undefined (the host's, {@link hostVendor}) or one of {@link CPU_VENDORS}. */
export function checkVendor(v: unknown, arg = 'opts.vendor'): CpuVendor {
  if (v === undefined) return hostVendor();
  if (typeof v !== 'string' || !(CPU_VENDORS as readonly string[]).includes(v)) throw new TypeError(`${arg} must be one of ${CPU_VENDORS.join(', ')}, got ${String(v)}`);
  return v as CpuVendor;
}

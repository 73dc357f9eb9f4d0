/**
 * RFLAGS, CR0, CR4 and EFER bit definitions (Intel SDM Vol. 1 §3.4.3, Vol. 3 §2.5, §2.2.1)
 * and helpers for updating the arithmetic status flags.
 */

/** RFLAGS bits. */
export const RFLAGS = {
  CF: 1n << 0n,
  PF: 1n << 2n,
  AF: 1n << 4n,
  ZF: 1n << 6n,
  SF: 1n << 7n,
  TF: 1n << 8n,
  IF: 1n << 9n,
  DF: 1n << 10n,
  OF: 1n << 11n,
  NT: 1n << 14n,
  RF: 1n << 16n,
  VM: 1n << 17n,
  AC: 1n << 18n,
} as const;

/** The six arithmetic status flags: CF, PF, AF, ZF, SF, OF. */
export const STATUS_FLAGS = RFLAGS.CF | RFLAGS.PF | RFLAGS.AF | RFLAGS.ZF | RFLAGS.SF | RFLAGS.OF;

/** CR0 bits. */
export const CR0 = {
  PE: 1n << 0n,
  MP: 1n << 1n,
  EM: 1n << 2n,
  TS: 1n << 3n,
  NE: 1n << 5n,
  WP: 1n << 16n,
  AM: 1n << 18n,
  PG: 1n << 31n,
} as const;

/** CR4 bits. */
export const CR4 = {
  PSE: 1n << 4n,
  PAE: 1n << 5n,
  OSFXSR: 1n << 9n,
  OSXMMEXCPT: 1n << 10n,
  LA57: 1n << 12n,
  PCIDE: 1n << 17n,
  OSXSAVE: 1n << 18n,
  SMEP: 1n << 20n,
  SMAP: 1n << 21n,
} as const;

/** IA32_EFER bits. */
export const EFER = {
  LME: 1n << 8n,
  LMA: 1n << 10n,
  NXE: 1n << 11n,
} as const;

/**
 * Return `rflags` with the status flags in `mask` cleared and those in `set` (a subset of
 * `mask`) set. Other bits are preserved.
 */
export function updateFlags(rflags: bigint, mask: bigint, set: bigint): bigint {
  return (rflags & ~mask) | (set & mask);
}

/** True if `bit` is set in `value`. */
export function hasBit(value: bigint, bit: bigint): boolean {
  return (value & bit) !== 0n;
}

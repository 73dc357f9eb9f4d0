/**
 * Lazy arithmetic flags for the engine (issue 15): the interpreter records the last
 * flag-setting operation (kind, operand size, operands, result) and this module turns
 * that record into CF PF AF ZF SF OF when something reads them (Intel SDM Vol. 1 §3.4.3,
 * Appendix A), and evaluates the 16 condition codes.
 */

/** RFLAGS status bits as numbers. */
export const F = { CF: 0x1, PF: 0x4, AF: 0x10, ZF: 0x40, SF: 0x80, TF: 0x100, IF: 0x200, DF: 0x400, OF: 0x800, IOPL: 0x3000, NT: 0x4000, RF: 0x10000, VM: 0x20000, AC: 0x40000, VIF: 0x80000, VIP: 0x100000, ID: 0x200000 } as const;
/** The six status flags. */
export const STATUS = 0x8d5;

/** Lazy-flag operation kinds. `NONE` means the flags are already materialised. */
export const FOP = { NONE: 0, ADD: 1, ADC: 2, SUB: 3, SBB: 4, LOGIC: 5, INC: 6, DEC: 7 } as const;

/** Parity flag (PF bit value) of each byte value: set when the number of one bits is even. */
export const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let n = 0;
  for (let b = i; b; b >>= 1) n += b & 1;
  PARITY[i] = n & 1 ? 0 : F.PF;
}

/** Sign bit of each operand size (by size in bytes). */
export const SIGN: bigint[] = [0n, 0x80n, 0x8000n, 0n, 0x80000000n, 0n, 0n, 0n, 0x8000000000000000n];
/** Bit count of each operand size (by size in bytes), as a bigint. */
export const BITS: bigint[] = [0n, 8n, 16n, 0n, 32n, 0n, 0n, 0n, 64n];
/** All-ones mask of each operand size (by size in bytes). */
export const MASK: bigint[] = [0n, 0xffn, 0xffffn, 0n, 0xffffffffn, 0n, 0n, 0n, 0xffffffffffffffffn];

/** ZF, SF and PF of a result of `size` bytes (already truncated). */
export function szp(res: bigint, size: number): number {
  return (res === 0n ? F.ZF : 0) | ((res & SIGN[size]) !== 0n ? F.SF : 0) | PARITY[Number(res & 0xffn)];
}

/**
 * Materialise the status flags of a recorded operation: `aux` is the carry in for ADC/SBB
 * and the preserved CF for INC/DEC.
 */
export function lazyFlags(op: number, size: number, res: bigint, src: bigint, dst: bigint, aux: number): number {
  const sign = SIGN[size];
  let f = szp(res, size);
  switch (op) {
    case FOP.ADD:
      if (res < dst) f |= F.CF;
      if (((dst ^ res) & (src ^ res) & sign) !== 0n) f |= F.OF;
      break;
    case FOP.ADC:
      if (res < dst || (aux !== 0 && res === dst)) f |= F.CF;
      if (((dst ^ res) & (src ^ res) & sign) !== 0n) f |= F.OF;
      break;
    case FOP.SUB:
      if (dst < src) f |= F.CF;
      if (((dst ^ src) & (dst ^ res) & sign) !== 0n) f |= F.OF;
      break;
    case FOP.SBB:
      if (dst < src || (aux !== 0 && dst === src)) f |= F.CF;
      if (((dst ^ src) & (dst ^ res) & sign) !== 0n) f |= F.OF;
      break;
    case FOP.LOGIC:
      return f;
    case FOP.INC:
      f |= aux & F.CF;
      if (res === sign) f |= F.OF;
      break;
    case FOP.DEC:
      f |= aux & F.CF;
      if (res === sign - 1n) f |= F.OF;
      break;
  }
  if (((dst ^ src ^ res) & 0x10n) !== 0n) f |= F.AF;
  return f;
}

/** Evaluate condition code `cc` (0-15, the low nibble of Jcc/SETcc/CMOVcc) over materialised flags. */
export function condition(cc: number, f: number): boolean {
  let r: boolean;
  switch (cc >> 1) {
    case 0: r = (f & F.OF) !== 0; break;
    case 1: r = (f & F.CF) !== 0; break;
    case 2: r = (f & F.ZF) !== 0; break;
    case 3: r = (f & (F.CF | F.ZF)) !== 0; break;
    case 4: r = (f & F.SF) !== 0; break;
    case 5: r = (f & F.PF) !== 0; break;
    case 6: r = ((f & F.SF) !== 0) !== ((f & F.OF) !== 0); break;
    default: r = (f & F.ZF) !== 0 || ((f & F.SF) !== 0) !== ((f & F.OF) !== 0); break;
  }
  return (cc & 1) !== 0 ? !r : r;
}

/**
 * POPCNT, LZCNT and TZCNT (Intel SDM Vol. 2B): 16/32/64-bit, register or memory source.
 *
 * Flags: POPCNT clears OF, SF, ZF, AF, CF, PF and sets ZF if the source is zero. LZCNT and
 * TZCNT set CF if the source is zero and ZF if the result is zero; OF, SF, PF and AF are
 * architecturally undefined — this emulator clears them.
 */
import { RFLAGS, STATUS_FLAGS, updateFlags } from '../flags.js';
import { bytesToBigint } from '../host.js';
import type { DecodedInsn } from '../decoder-types.js';
import type { ExecContext } from '../context.js';
import { modrmOf, type Handler } from './types.js';

/** Number of set bits in the low `bits` bits of `v`. */
export function popcount(v: bigint, bits: number): number {
  let x = BigInt.asUintN(bits, v);
  let n = 0;
  while (x !== 0n) {
    x &= x - 1n;
    n++;
  }
  return n;
}

/** Leading zero count of a `bits`-wide value (`bits` when zero). */
export function leadingZeros(v: bigint, bits: number): number {
  const x = BigInt.asUintN(bits, v);
  return x === 0n ? bits : bits - x.toString(2).length;
}

/** Trailing zero count of a `bits`-wide value (`bits` when zero). */
export function trailingZeros(v: bigint, bits: number): number {
  const x = BigInt.asUintN(bits, v);
  if (x === 0n) return bits;
  return (x & -x).toString(2).length - 1;
}

function source(insn: DecodedInsn, ctx: ExecContext): bigint {
  const size = insn.operandSize;
  if (insn.mem) return bytesToBigint(ctx.readOperand(size, { ac: size }));
  return ctx.gpr(modrmOf(insn).rm, size);
}

/** POPCNT r, r/m. */
export const popcnt: Handler = (insn, ctx) => {
  const src = source(insn, ctx);
  const bits = insn.operandSize * 8;
  ctx.setGpr(modrmOf(insn).reg, insn.operandSize, BigInt(popcount(src, bits)));
  ctx.rflags = updateFlags(ctx.rflags, STATUS_FLAGS, src === 0n ? RFLAGS.ZF : 0n);
};

function countHandler(count: (v: bigint, bits: number) => number): Handler {
  return (insn, ctx) => {
    const src = source(insn, ctx);
    const bits = insn.operandSize * 8;
    const result = count(src, bits);
    ctx.setGpr(modrmOf(insn).reg, insn.operandSize, BigInt(result));
    const set = (src === 0n ? RFLAGS.CF : 0n) | (result === 0 ? RFLAGS.ZF : 0n);
    ctx.rflags = updateFlags(ctx.rflags, STATUS_FLAGS, set);
  };
}

/** LZCNT r, r/m. */
export const lzcnt: Handler = countHandler(leadingZeros);

/** TZCNT r, r/m. */
export const tzcnt: Handler = countHandler(trailingZeros);

/**
 * LDMXCSR and STMXCSR (Intel SDM Vol. 2A/2B).
 */
import { gp0 } from '../fault.js';
import { bigintToBytes, bytesToBigint } from '../host.js';
import type { Handler } from './types.js';

/** Writable MXCSR bits (MXCSR_MASK with DAZ supported): bits 31:16 are reserved. */
export const MXCSR_MASK = 0xffff;

/** LDMXCSR m32: #GP(0) if a reserved bit would be set. */
export const ldmxcsr: Handler = (_insn, ctx) => {
  ctx.requireSse();
  const v = Number(bytesToBigint(ctx.readOperand(4, { ac: 4 })));
  if ((v & ~MXCSR_MASK) !== 0) throw gp0(`ldmxcsr: reserved MXCSR bits in 0x${v.toString(16)}`);
  ctx.fpu.mxcsr = v;
};

/** STMXCSR m32. */
export const stmxcsr: Handler = (_insn, ctx) => {
  ctx.requireSse();
  ctx.writeOperand(bigintToBytes(BigInt(ctx.fpu.mxcsr), 4), { ac: 4 });
};

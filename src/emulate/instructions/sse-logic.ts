/**
 * 128-bit bitwise logic (Intel SDM Vol. 2): PXOR/XORPS/XORPD, PAND, PANDN, POR. A memory
 * source must be 16-byte aligned (#GP(0)), as for every legacy-SSE 128-bit operand.
 */
import type { Mnemonic } from '../decoder-types.js';
import type { Handler } from './types.js';
import { modrmOf } from './types.js';

const OPS: Partial<Record<Mnemonic, (d: number, s: number) => number>> = {
  pxor: (d, s) => d ^ s,
  xorps: (d, s) => d ^ s,
  xorpd: (d, s) => d ^ s,
  pand: (d, s) => d & s,
  pandn: (d, s) => ~d & s,
  por: (d, s) => d | s,
};

/** xmm1 ← xmm1 OP xmm2/m128. */
export const logic128: Handler = (insn, ctx) => {
  ctx.requireSse();
  const op = OPS[insn.mnemonic];
  if (!op) throw new Error(`no logic op for ${insn.mnemonic}`);
  const { reg, rm } = modrmOf(insn);
  const src = insn.mem ? ctx.readOperand(16, { gp: 16 }) : ctx.fpu.xmm(rm);
  const dst = ctx.fpu.xmm(reg);
  for (let i = 0; i < 16; i++) dst[i] = op(dst[i], src[i]) & 0xff;
  ctx.fpu.setXmm(reg, dst);
};

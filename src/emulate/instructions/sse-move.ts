/**
 * SSE data moves (Intel SDM Vol. 2): MOVD/MOVQ between XMM and GPR/memory, MOVQ between XMM
 * and XMM/m64, and the 128-bit MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVAPD/MOVUPD loads, stores and
 * register moves, and the MOVNTDQ/MOVNTPS/MOVNTPD stores. The aligned forms raise #GP(0) on
 * a memory operand that is not 16-byte aligned.
 */
import { bigintToBytes, bytesToBigint } from '../host.js';
import type { Handler } from './types.js';
import { modrmOf } from './types.js';

function zeroExtend(bytes: Uint8Array): Uint8Array {
  const x = new Uint8Array(16);
  x.set(bytes.subarray(0, 16));
  return x;
}

/** MOVD/MOVQ: 66 [REX.W] 0F 6E (xmm ← r/m) and 66 [REX.W] 0F 7E (r/m ← xmm). */
export const movdGpr: Handler = (insn, ctx) => {
  ctx.requireSse();
  const { reg, rm } = modrmOf(insn);
  const size = insn.rexW ? 8 : 4;
  if (insn.opcode === 0x6e) {
    const src = insn.mem ? ctx.readOperand(size, { ac: size }) : bigintToBytes(ctx.gpr(rm, size), size);
    ctx.fpu.setXmm(reg, zeroExtend(src));
    return;
  }
  const low = ctx.fpu.xmm(reg).subarray(0, size);
  if (insn.mem) ctx.writeOperand(low, { ac: size });
  else ctx.setGpr(rm, size, bytesToBigint(low));
};

/** MOVQ xmm, xmm/m64 (F3 0F 7E) and MOVQ xmm/m64, xmm (66 0F D6): upper quadword of an XMM destination is zeroed. */
export const movqXmm: Handler = (insn, ctx) => {
  ctx.requireSse();
  const { reg, rm } = modrmOf(insn);
  if (insn.opcode === 0x7e) {
    const src = insn.mem ? ctx.readOperand(8, { ac: 8 }) : ctx.fpu.xmm(rm).subarray(0, 8);
    ctx.fpu.setXmm(reg, zeroExtend(src));
    return;
  }
  const low = ctx.fpu.xmm(reg).subarray(0, 8);
  if (insn.mem) ctx.writeOperand(low, { ac: 8 });
  else ctx.fpu.setXmm(rm, zeroExtend(low));
};

const LOADS = new Set([0x10, 0x28, 0x6f]);
const ALIGNED = new Set(['movdqa', 'movaps', 'movapd', 'movntdq', 'movntps', 'movntpd']);

/** 128-bit moves: loads (0F 10/28/6F), stores (0F 11/29/7F/2B/E7) and register-to-register. */
export const move128: Handler = (insn, ctx) => {
  ctx.requireSse();
  const { reg, rm } = modrmOf(insn);
  const align = ALIGNED.has(insn.mnemonic) ? { gp: 16 } : {};
  if (LOADS.has(insn.opcode)) {
    const src = insn.mem ? ctx.readOperand(16, align) : ctx.fpu.xmm(rm);
    ctx.fpu.setXmm(reg, src);
  } else if (insn.mem) ctx.writeOperand(ctx.fpu.xmm(reg), align);
  else ctx.fpu.setXmm(rm, ctx.fpu.xmm(reg));
};

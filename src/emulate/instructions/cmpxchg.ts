/**
 * CMPXCHG8B and CMPXCHG16B (Intel SDM Vol. 2A): compare EDX:EAX / RDX:RAX with the memory
 * operand; if equal set ZF and store ECX:EBX / RCX:RBX, else clear ZF and load the operand
 * into EDX:EAX / RDX:RAX. Only ZF changes. CMPXCHG16B needs a 16-byte aligned operand (#GP(0)).
 * The operand is always translated for writing (the instruction writes back even on
 * mismatch). When it lies in one page the host's atomic compare-exchange performs it; an
 * operand split across pages (CMPXCHG8B only) is done non-atomically.
 */
import { RFLAGS, updateFlags } from '../flags.js';
import { bigintToBytes, bytesToBigint, memoryCmpxchg, type CmpxchgResult } from '../host.js';
import type { Handler } from './types.js';

/** CMPXCHG8B m64 / CMPXCHG16B m128 (REX.W). */
export const cmpxchg8b16b: Handler = (insn, ctx) => {
  const size: 8 | 16 = insn.rexW ? 16 : 8;
  const half = (size / 2) as 4 | 8;
  const { chunks } = ctx.translateOperand(size, 'rmw', { gp: size === 16 ? 16 : undefined, ac: 8 });
  const shift = BigInt(half * 8);
  const expected = (ctx.gpr(2, half) << shift) | ctx.gpr(0, half);
  const replacement = (ctx.gpr(1, half) << shift) | ctx.gpr(3, half);
  const mem = ctx.host.memory;
  let r: CmpxchgResult;
  if (chunks.length === 1) {
    const op = ctx.host.atomicCmpxchg ? ctx.host.atomicCmpxchg.bind(ctx.host) : memoryCmpxchg(mem);
    r = op(chunks[0].gpa, size, expected, replacement);
  } else {
    const buf = new Uint8Array(size);
    let o = 0;
    for (const c of chunks) {
      buf.set(mem.readBytes(c.gpa, c.length), o);
      o += c.length;
    }
    const old = bytesToBigint(buf);
    r = { ok: old === expected, old };
    if (r.ok) {
      const nb = bigintToBytes(replacement, size);
      o = 0;
      for (const c of chunks) {
        mem.writeBytes(c.gpa, nb.subarray(o, o + c.length));
        o += c.length;
      }
    }
  }
  if (r.ok) {
    ctx.rflags = updateFlags(ctx.rflags, RFLAGS.ZF, RFLAGS.ZF);
  } else {
    ctx.rflags = updateFlags(ctx.rflags, RFLAGS.ZF, 0n);
    const old = BigInt.asUintN(size * 8, r.old);
    ctx.setGpr(0, half, old & ((1n << shift) - 1n));
    ctx.setGpr(2, half, old >> shift);
  }
};

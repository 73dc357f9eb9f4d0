/**
 * String instructions for the engine (issue 15): MOVS, CMPS, STOS, LODS, SCAS, INS, OUTS,
 * with REP/REPE/REPNE, DF and 32-bit address size. A repeated instruction runs at most
 * {@link REP_CHUNK} iterations per execution and then restarts itself (RIP stays on it),
 * which the architecture allows, so a huge RCX cannot starve the instruction budget.
 * Registers are updated after each iteration's memory accesses, so a fault mid-way leaves
 * a restartable state.
 */
import type { Cpl0Engine } from './cpu.js';
import type { Insn } from './decode.js';
import { F, MASK } from './flags.js';
import { GuestException } from './types.js';

/** Iterations of a REP string instruction per execution. */
export const REP_CHUNK = 4096;

/** Execute a string instruction (opcodes 6C-6F, A4-A7, AA-AF). */
export function execString(e: Cpl0Engine, d: Insn): void {
  const op = d.op;
  const size = (op & 1) === 0 ? 1 : op >= 0x6c && op <= 0x6f ? (d.osz === 2 ? 2 : 4) : d.osz;
  const step = BigInt(size);
  const am = MASK[d.asz];
  const R = e.regs;
  const rep = d.rep !== 0;
  const srcBase = d.seg === 3 ? e.sregs.fs.base : d.seg === 4 ? e.sregs.gs.base : 0n;
  const lin = (off: bigint, base: bigint): bigint => BigInt.asUintN(64, (off & am) + base);
  const adv = (r: number): void => {
    const v = (e.rfl & F.DF) !== 0 ? R[r] - step : R[r] + step;
    e.setR(d.asz, r, v & am);
  };
  let count = rep ? R[1] & am : 1n;
  let n = 0;
  while (count !== 0n && n < REP_CHUNK) {
    switch (op) {
      case 0xa4: case 0xa5: e.wr(lin(R[7], 0n), size, e.rd(lin(R[6], srcBase), size)); adv(6); adv(7); break;
      case 0xaa: case 0xab: e.wr(lin(R[7], 0n), size, e.getR(size, 0)); adv(7); break;
      case 0xac: case 0xad: e.setR(size, 0, e.rd(lin(R[6], srcBase), size)); adv(6); break;
      case 0xa6: case 0xa7: {
        const a = e.rd(lin(R[6], srcBase), size);
        const b = e.rd(lin(R[7], 0n), size);
        e.alu(7, size, a, b); adv(6); adv(7); break;
      }
      case 0xae: case 0xaf: e.alu(7, size, e.getR(size, 0), e.rd(lin(R[7], 0n), size)); adv(7); break;
      case 0x6c: case 0x6d: {
        const la = lin(R[7], 0n);
        e.rd(la, size); // check the destination before the port read has side effects
        e.wr(la, size, BigInt(e.io.pioRead(Number(R[2] & 0xffffn), size as 1 | 2 | 4) >>> 0) & MASK[size]);
        adv(7); break;
      }
      case 0x6e: case 0x6f: {
        const v = e.rd(lin(R[6], srcBase), size);
        e.io.pioWrite(Number(R[2] & 0xffffn), size as 1 | 2 | 4, Number(v));
        adv(6); break;
      }
      default: throw new GuestException(6);
    }
    n++;
    if (!rep) return;
    count = (count - 1n) & am;
    e.setR(d.asz, 1, count);
    if (op === 0xa6 || op === 0xa7 || op === 0xae || op === 0xaf) {
      const zf = (e.flags() & F.ZF) !== 0;
      if (d.rep === 0xf3 ? !zf : zf) return;
    }
  }
  if (rep && count !== 0n) e.nextRip = e.rip;
}

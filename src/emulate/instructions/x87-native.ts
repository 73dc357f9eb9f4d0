/**
 * x87 floating point (Intel SDM Vol. 1 ch. 8, Vol. 2 D8-DF opcode maps) other than FNINIT and
 * FNCLEX, executed on the host CPU with the guest's x87 state loaded (the native path's
 * executor, native/sse_exec.*), in any CPU mode:
 *
 * - the emulator decodes the instruction and computes its memory operand through the guest's
 *   segmentation and page tables (faults are the instruction's); the host runs one canonical
 *   encoding — the opcode and ModRM, a memory operand rewritten RIP-relative to a scratch copy
 *   of the exact operand bytes — with the guest's FCW/FSW/tags/registers as they are (no
 *   exception masking: an unmasked x87 exception sets FSW.ES and is delivered as #MF by the
 *   next waiting instruction, as on hardware);
 * - a waiting instruction with an exception already pending raises #MF (CR0.NE=1; with
 *   CR0.NE=0 the FERR# path is not modelled: unsupported); CR0.EM or CR0.TS raises #NM;
 * - stores write back only the operand bytes the instruction changed, after the operand was
 *   checked writable; FIP/FDP/FOP are set to the guest's instruction and operand addresses
 *   when the host updated them.
 *
 * FLDENV, FNSTENV, FRSTOR and FNSAVE (which move the environment with host addresses in it)
 * are reported unsupported; reserved encodings raise #UD.
 */
import { native } from '../../kvm/native.js';
import { FPU, encodeRegs, decodeRegs } from '../../kvm/structs.js';
import { effectiveAddress } from '../address.js';
import type { ExecContext } from '../context.js';
import { Fault, Unsupported, VECTOR, nm, ud } from '../fault.js';
import { CR0, STATUS_FLAGS, hasBit } from '../flags.js';
import { modrmOf, type Handler } from './types.js';
import { X87_MNEMONICS } from '../mnemonics.js';

/** One of {@link X87_MNEMONICS}. */
export type X87Mnemonic = (typeof X87_MNEMONICS)[number];

/** What one x87 encoding is. */
export type X87Class =
  | { kind: 'insn'; mnemonic: X87Mnemonic; mem?: { size: number; store: boolean }; waiting: boolean }
  | { kind: 'ud'; reason: string }
  | { kind: 'unsupported'; reason: string };

const ARITH = ['fadd', 'fmul', 'fcom', 'fcomp', 'fsub', 'fsubr', 'fdiv', 'fdivr'] as const;
const IARITH = ['fiadd', 'fimul', 'ficom', 'ficomp', 'fisub', 'fisubr', 'fidiv', 'fidivr'] as const;
const D9_E0: readonly (X87Mnemonic | undefined)[] = [
  'fchs', 'fabs', undefined, undefined, 'ftst', 'fxam', undefined, undefined,
  'fld1', 'fldl2t', 'fldl2e', 'fldpi', 'fldlg2', 'fldln2', 'fldz', undefined,
  'f2xm1', 'fyl2x', 'fptan', 'fpatan', 'fxtract', 'fprem1', 'fdecstp', 'fincstp',
  'fprem', 'fyl2xp1', 'fsqrt', 'fsincos', 'frndint', 'fscale', 'fsin', 'fcos',
];

function m(mnemonic: X87Mnemonic, size: number, store = false, waiting = true): X87Class {
  return { kind: 'insn', mnemonic, mem: { size, store }, waiting };
}
function r(mnemonic: X87Mnemonic, waiting = true): X87Class {
  return { kind: 'insn', mnemonic, waiting };
}
const UD = (op: number, modrm: number): X87Class => ({ kind: 'ud', reason: `reserved x87 encoding ${op.toString(16)} ${modrm.toString(16)}` });

/** Classify an x87 opcode (D8-DF) and its ModRM byte. */
export function classifyX87(op: number, modrm: number): X87Class {
  const mod = modrm >> 6;
  const reg = (modrm >> 3) & 7;
  if (mod !== 3) {
    switch (op) {
      case 0xd8: return m(ARITH[reg], 4);
      case 0xdc: return m(ARITH[reg], 8);
      case 0xda: return m(IARITH[reg], 4);
      case 0xde: return m(IARITH[reg], 2);
      case 0xd9:
        switch (reg) {
          case 0: return m('fld', 4);
          case 2: return m('fst', 4, true);
          case 3: return m('fstp', 4, true);
          case 5: return m('fldcw', 2, false, false);
          case 7: return m('fnstcw', 2, true, false);
          case 4: return { kind: 'unsupported', reason: 'fldenv is not emulated' };
          case 6: return { kind: 'unsupported', reason: 'fnstenv is not emulated' };
          default: return UD(op, modrm);
        }
      case 0xdb:
        switch (reg) {
          case 0: return m('fild', 4);
          case 1: return m('fisttp', 4, true);
          case 2: return m('fist', 4, true);
          case 3: return m('fistp', 4, true);
          case 5: return m('fld', 10);
          case 7: return m('fstp', 10, true);
          default: return UD(op, modrm);
        }
      case 0xdd:
        switch (reg) {
          case 0: return m('fld', 8);
          case 1: return m('fisttp', 8, true);
          case 2: return m('fst', 8, true);
          case 3: return m('fstp', 8, true);
          case 7: return m('fnstsw', 2, true, false);
          case 4: return { kind: 'unsupported', reason: 'frstor is not emulated' };
          case 6: return { kind: 'unsupported', reason: 'fnsave is not emulated' };
          default: return UD(op, modrm);
        }
      default: // 0xdf
        switch (reg) {
          case 0: return m('fild', 2);
          case 1: return m('fisttp', 2, true);
          case 2: return m('fist', 2, true);
          case 3: return m('fistp', 2, true);
          case 4: return m('fbld', 10);
          case 5: return m('fild', 8);
          case 6: return m('fbstp', 10, true);
          default: return m('fistp', 8, true);
        }
    }
  }
  const low = modrm & 7;
  switch (op) {
    case 0xd8: return r(ARITH[reg]);
    case 0xd9:
      if (reg === 0) return r('fld');
      if (reg === 1) return r('fxch');
      if (modrm === 0xd0) return r('fnop');
      if (reg === 2) return UD(op, modrm);
      if (reg === 3) return r('fstp'); // FSTP1 alias
      return D9_E0[modrm - 0xe0] ? r(D9_E0[modrm - 0xe0]!) : UD(op, modrm);
    case 0xda:
      if (reg < 4) return r((['fcmovb', 'fcmove', 'fcmovbe', 'fcmovu'] as const)[reg]);
      return modrm === 0xe9 ? r('fucompp') : UD(op, modrm);
    case 0xdb:
      if (reg < 4) return r((['fcmovnb', 'fcmovne', 'fcmovnbe', 'fcmovnu'] as const)[reg]);
      if (reg === 5) return r('fucomi');
      if (reg === 6) return r('fcomi');
      if (modrm === 0xe0 || modrm === 0xe1 || modrm === 0xe4) return r('fnop', false); // FNENI/FNDISI/FNSETPM: no-ops
      return UD(op, modrm); // E2/E3 (FNCLEX/FNINIT) are decoded elsewhere
    case 0xdc: return r((['fadd', 'fmul', 'fcom', 'fcomp', 'fsubr', 'fsub', 'fdivr', 'fdiv'] as const)[reg]);
    case 0xdd:
      return reg < 6 ? r((['ffree', 'fxch', 'fst', 'fstp', 'fucom', 'fucomp'] as const)[reg]) : UD(op, modrm);
    case 0xde:
      if (reg === 3) return low === 1 ? r('fcompp') : UD(op, modrm);
      return r((['faddp', 'fmulp', 'fcomp', 'fcompp', 'fsubrp', 'fsubp', 'fdivrp', 'fdivp'] as const)[reg]);
    default: // 0xdf
      if (reg === 0) return r('ffreep');
      if (reg === 1) return r('fxch');
      if (reg === 2 || reg === 3) return r('fstp');
      if (reg === 4) return modrm === 0xe0 ? r('fnstsw', false) : UD(op, modrm);
      if (reg === 5) return r('fucomip');
      if (reg === 6) return r('fcomip');
      return UD(op, modrm);
  }
}

/** FSW.ES. */
const FSW_ES = 0x80;
/** Where the canonical encoding's memory operand lives: the scratch area after the code. */
const SCRATCH = 64;
const SIGILL = 4;

/** kvm_fpu → FXSAVE64 image, unchanged (no masking: x87 exceptions are deferred to #MF). */
function fxImage(f: DataView): Uint8Array {
  const fx = new Uint8Array(512);
  const v = new DataView(fx.buffer);
  v.setUint16(0, f.getUint16(FPU.fcw, true), true);
  v.setUint16(2, f.getUint16(FPU.fsw, true), true);
  v.setUint8(4, f.getUint8(FPU.ftwx));
  v.setUint16(6, f.getUint16(FPU.lastOpcode, true), true);
  v.setBigUint64(8, f.getBigUint64(FPU.lastIp, true), true);
  v.setBigUint64(16, f.getBigUint64(FPU.lastDp, true), true);
  v.setUint32(24, f.getUint32(FPU.mxcsr, true) & 0xffff, true);
  v.setUint32(28, 0xffff, true);
  fx.set(new Uint8Array(f.buffer, f.byteOffset + FPU.fpr, 128), 32);
  fx.set(new Uint8Array(f.buffer, f.byteOffset + FPU.xmm, 256), 160);
  return fx;
}

/** The x87 handler (all of D8-DF except FNINIT/FNCLEX). */
export const x87: Handler = (insn, ctx) => {
  const modrm = modrmOf(insn).byte;
  const c = classifyX87(insn.opcode, modrm);
  if (c.kind === 'ud') throw ud(c.reason);
  const cr0 = ctx.cpu.sregs.cr0;
  if (hasBit(cr0, CR0.EM) || hasBit(cr0, CR0.TS)) throw nm(`x87 instruction with CR0.EM or CR0.TS set`);
  if (c.kind === 'unsupported') throw new Unsupported(c.reason);
  const f = ctx.fpu;
  const fsw = f.u16(FPU.fsw);
  if (c.waiting && (fsw & FSW_ES) !== 0) {
    if (!hasBit(cr0, CR0.NE)) throw new Unsupported(`${c.mnemonic} with a pending x87 exception and CR0.NE clear (FERR#)`);
    throw new Fault(VECTOR.MF, undefined, undefined, 'pending unmasked x87 exception');
  }

  const scratch = new Uint8Array(SCRATCH);
  let code: Uint8Array;
  let chunks: { gpa: number; length: number }[] = [];
  let ea = 0n;
  if (c.mem) {
    const size = c.mem.size;
    if (c.mem.store) {
      chunks = ctx.translateOperand(size, 'write', { ac: Math.min(size, 8) }).chunks;
      let o = 0;
      for (const ch of chunks) {
        scratch.set(ctx.host.memory.readBytes(ch.gpa, ch.length), o);
        o += ch.length;
      }
    } else {
      scratch.set(ctx.readOperand(size, { ac: Math.min(size, 8) }));
    }
    ea = effectiveAddress(insn.mem!, ctx.cpu.regs, insn.addressSize, ctx.nextRip);
    // opcode, ModRM mod=00 rm=101 (RIP-relative), disp32 to the scratch area
    code = Uint8Array.of(insn.opcode, (modrm & 0x38) | 0x05, SCRATCH - 6, 0, 0, 0);
  } else {
    code = Uint8Array.of(insn.opcode, modrm);
  }
  const before = new Uint8Array(f.view.buffer, f.view.byteOffset, 416).slice();
  const beforeView = new DataView(before.buffer);
  const fx = fxImage(beforeView);
  const regs = ctx.cpu.regs;
  const rbuf = new Uint8Array(encodeRegs({ ...regs, rflags: (regs.rflags & STATUS_FLAGS) | 2n }));
  const original = scratch.slice();
  const exec = ctx.host.execNative ? ctx.host.execNative.bind(ctx.host) : native().execSse;
  const sig = exec(code, rbuf, fx, scratch);
  if (sig === SIGILL) throw ud(`${c.mnemonic}: the host CPU rejected it`);
  if (sig !== 0) throw new Unsupported(`${c.mnemonic}: host signal ${sig} while executing it`);

  // memory first: a store that cannot land leaves everything else unchanged
  if (c.mem?.store) {
    const size = c.mem.size;
    let changed = false;
    for (let i = 0; i < size; i++) if (scratch[i] !== original[i]) changed = true;
    if (changed) {
      let o = 0;
      for (const ch of chunks) {
        ctx.host.memory.writeBytes(ch.gpa, scratch.subarray(o, o + ch.length));
        o += ch.length;
      }
    }
  }
  const fv = new DataView(fx.buffer);
  f.setU16(FPU.fcw, fv.getUint16(0, true));
  f.setU16(FPU.fsw, fv.getUint16(2, true));
  f.setU8(FPU.ftwx, fv.getUint8(4));
  new Uint8Array(f.view.buffer, f.view.byteOffset + FPU.fpr, 128).set(fx.subarray(32, 160));
  // FOP/FIP/FDP: the guest's, where the host updated them
  if (fv.getUint16(6, true) !== beforeView.getUint16(FPU.lastOpcode, true) || fv.getBigUint64(8, true) !== beforeView.getBigUint64(FPU.lastIp, true)) {
    f.setU16(FPU.lastOpcode, c.mem ? ((insn.opcode & 7) << 8) | modrm : fv.getUint16(6, true));
    f.setU64(FPU.lastIp, regs.rip);
  }
  if (fv.getBigUint64(16, true) !== beforeView.getBigUint64(FPU.lastDp, true)) f.setU64(FPU.lastDp, c.mem ? ea : fv.getBigUint64(16, true));

  const after = decodeRegs(rbuf.buffer as ArrayBuffer);
  if (c.mnemonic === 'fnstsw' && !c.mem) ctx.setGpr(0, 2, after.rax);
  if (c.mnemonic === 'fcomi' || c.mnemonic === 'fucomi' || c.mnemonic === 'fcomip' || c.mnemonic === 'fucomip') {
    ctx.rflags = (ctx.rflags & ~STATUS_FLAGS) | (after.rflags & STATUS_FLAGS);
  }
  return { mnemonic: c.mnemonic };
};

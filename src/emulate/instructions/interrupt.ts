/**
 * Software interrupts and interrupt return (Intel SDM Vol. 2A "INT n/INTO/INT3/INT1",
 * "IRET/IRETD/IRETQ"; Vol. 3 §6.12 and §6.14): INT n delivered through the IDT by the emulator
 * itself — real-mode IVT, protected-mode 16/32-bit interrupt and trap gates, IA-32e 64-bit
 * gates with the IST — with the architectural checks and frames; INT1 as a #DB trap; IRET in
 * legacy protected mode, to the same or an outer privilege level.
 *
 * Not emulated (reported unsupported, with the reason): task gates and task returns (NT=1),
 * interrupts from virtual-8086 mode, delivery that changes privilege level (only reachable
 * from CPL 1/2 here: CPL 3 code runs natively), IRET back to virtual-8086 mode, IRET in real
 * or IA-32e mode (KVM's emulator finishes those itself on the hosts measured).
 */
import type { KvmSegment } from '../../kvm/structs.js';
import type { ExecContext } from '../context.js';
import {
  StackCursor, VECTOR_NP, markAccessed, nullSegment, readDescriptor, readSystem, selectorFault, systemPaging, toKvmSegment,
  type Descriptor,
} from '../descriptors.js';
import { Fault, Unsupported, VECTOR, gp0 } from '../fault.js';
import { RFLAGS, hasBit } from '../flags.js';
import { bytesToBigint } from '../host.js';
import { isCanonical, linearWidth } from '../paging.js';
import type { Handler } from './types.js';

/** RFLAGS.IOPL (bits 13:12). */
const IOPL_MASK = 3n << 12n;
/** RFLAGS.VIF, VIP, ID. */
const VIF = 1n << 19n;
const VIP = 1n << 20n;
const ID = 1n << 21n;

/** The IDT error code of vector `v` (IDT bit set, EXT clear: a software interrupt). */
function idtError(v: number): number {
  return (v << 3) | 2;
}

/** INT1 (ICEBP, F1): a #DB trap delivered without the gate DPL check. */
export const int1: Handler = () => ({ trap: VECTOR.DB });

/** INT imm8: deliver the interrupt through the IDT (or the real-mode IVT). */
export const intN: Handler = (insn, ctx) => {
  const vector = Number(insn.imm ?? 0n) & 0xff;
  const mode = ctx.mode;
  if (mode.kind === 'real') return realModeInt(ctx, vector);
  if (mode.kind === 'vm86') throw new Unsupported('int n in virtual-8086 mode is not emulated');
  return protectedInt(ctx, vector);
};

function realModeInt(ctx: ExecContext, vector: number): ReturnType<Handler> {
  const s = ctx.cpu.sregs;
  if (vector * 4 + 3 > s.idt.limit) throw gp0(`int 0x${vector.toString(16)}: IVT entry beyond IDTR.limit`);
  const entry = bytesToBigint(readSystem(ctx.host, s, s.idt.base + BigInt(vector * 4), 4));
  const stack = new StackCursor(ctx.host, s, ctx.cpu.regs.rsp, s.ss.db ? 4 : 2, { ...s.ss, type: 3, present: 1, unusable: 0 }, false);
  stack.push(ctx.rflags & 0xffffn, 2);
  stack.push(BigInt(s.cs.selector), 2);
  stack.push(ctx.nextRip & 0xffffn, 2);
  stack.commit(systemPaging(s));
  ctx.cpu.regs.rsp = stack.sp;
  ctx.rflags = ctx.rflags & ~(RFLAGS.IF | RFLAGS.TF | RFLAGS.AC | RFLAGS.RF);
  const sel = Number(entry >> 16n);
  s.cs = { ...s.cs, selector: sel, base: BigInt(sel) << 4n };
  return { rip: entry & 0xffffn, noSingleStep: true };
}

/** An IDT gate, decoded. */
interface Gate {
  offset: bigint;
  selector: number;
  type: number;
  dpl: number;
  present: boolean;
  ist: number;
}

function readGate(ctx: ExecContext, vector: number): Gate {
  const s = ctx.cpu.sregs;
  const ia32e = ctx.mode.ia32e;
  const size = ia32e ? 16 : 8;
  if (vector * size + size - 1 > s.idt.limit) throw new Fault(VECTOR.GP, idtError(vector), undefined, `int 0x${vector.toString(16)}: gate beyond IDTR.limit`);
  const b = readSystem(ctx.host, s, s.idt.base + BigInt(vector * size), size);
  const lo = bytesToBigint(b.subarray(0, 8));
  const hi = ia32e ? bytesToBigint(b.subarray(8, 16)) : 0n;
  const type = Number((lo >> 40n) & 0xfn);
  let offset = (lo & 0xffffn) | (((lo >> 48n) & 0xffffn) << 16n);
  if (ia32e) offset |= (hi & 0xffff_ffffn) << 32n;
  else if (type === 6 || type === 7) offset &= 0xffffn;
  return {
    offset, type, selector: Number((lo >> 16n) & 0xffffn), dpl: Number((lo >> 45n) & 3n), present: ((lo >> 47n) & 1n) === 1n,
    ist: ia32e ? Number((lo >> 32n) & 7n) : 0,
  };
}

function protectedInt(ctx: ExecContext, vector: number): ReturnType<Handler> {
  const s = ctx.cpu.sregs;
  const ia32e = ctx.mode.ia32e;
  const cpl = ctx.mode.cpl;
  const g = readGate(ctx, vector);
  const gateFault = (why: string) => new Fault(VECTOR.GP, idtError(vector), undefined, `int 0x${vector.toString(16)}: ${why}`);
  if (!ia32e && g.type === 5) throw new Unsupported(`int 0x${vector.toString(16)} through a task gate is not emulated`);
  const validTypes = ia32e ? [0xe, 0xf] : [6, 7, 0xe, 0xf];
  if (!validTypes.includes(g.type)) throw gateFault(`gate type ${g.type} is not an interrupt or trap gate`);
  if (g.dpl < cpl) throw gateFault(`gate DPL ${g.dpl} < CPL ${cpl}`);
  if (!g.present) throw new Fault(VECTOR_NP, idtError(vector), undefined, `int 0x${vector.toString(16)}: gate not present`);

  // the target code segment
  const sel = g.selector;
  if ((sel & 0xfffc) === 0) throw gp0(`int 0x${vector.toString(16)}: NULL code selector in the gate`);
  const d = readDescriptor(ctx.host, s, sel, VECTOR.GP);
  const selErr = sel & 0xfffc;
  if (!d.s || (d.type & 8) === 0) throw selectorFault(VECTOR.GP, selErr, `int 0x${vector.toString(16)}: gate selector 0x${sel.toString(16)} is not a code segment`);
  if (d.dpl > cpl) throw selectorFault(VECTOR.GP, selErr, `int 0x${vector.toString(16)}: code segment DPL ${d.dpl} > CPL ${cpl}`);
  if (!d.present) throw selectorFault(VECTOR_NP, selErr, `int 0x${vector.toString(16)}: code segment not present`);
  if (ia32e && (d.l !== 1 || d.db !== 0)) throw selectorFault(VECTOR.GP, selErr, `int 0x${vector.toString(16)}: target is not a 64-bit code segment`);
  const conforming = (d.type & 4) !== 0;
  if (!conforming && d.dpl < cpl) throw new Unsupported(`int 0x${vector.toString(16)}: delivery to an inner privilege level (CPL ${cpl} → ${d.dpl}) is not emulated`);

  const cs: KvmSegment = toKvmSegment(d, (sel & 0xfffc) | cpl);
  const oldFlags = ctx.rflags;
  const regs = ctx.cpu.regs;
  let stack: StackCursor;
  if (ia32e) {
    if (!isCanonical(g.offset, linearWidth(s.cr4))) throw gp0(`int 0x${vector.toString(16)}: non-canonical handler address`);
    let rsp = regs.rsp;
    if (g.ist) rsp = tssIst(ctx, g.ist);
    rsp &= ~0xfn;
    stack = new StackCursor(ctx.host, s, rsp, 8, s.ss, true);
    stack.push(BigInt(s.ss.selector), 8);
    stack.push(regs.rsp, 8);
    stack.push(oldFlags, 8);
    stack.push(BigInt(s.cs.selector), 8);
    stack.push(ctx.nextRip, 8);
  } else {
    if (g.offset > BigInt(d.limit >>> 0)) throw gp0(`int 0x${vector.toString(16)}: handler offset beyond the code segment limit`);
    const size: 2 | 4 = g.type >= 0xe ? 4 : 2;
    stack = new StackCursor(ctx.host, s, regs.rsp, s.ss.db ? 4 : 2, s.ss, false);
    stack.push(oldFlags & (size === 4 ? 0xffff_ffffn : 0xffffn), size);
    stack.push(BigInt(s.cs.selector), size);
    stack.push(ctx.nextRip & (size === 4 ? 0xffff_ffffn : 0xffffn), size);
  }
  stack.commit(systemPaging(s));
  markAccessed(ctx.host, s, sel, d);
  regs.rsp = stack.sp;
  let flags = oldFlags & ~(RFLAGS.TF | RFLAGS.NT | RFLAGS.RF | RFLAGS.VM);
  if (g.type === 0xe || g.type === 6) flags &= ~RFLAGS.IF; // interrupt gate
  ctx.rflags = flags;
  s.cs = cs;
  return { rip: g.offset, noSingleStep: true };
}

/** The IST pointer `n` (1-7) of the 64-bit TSS. */
function tssIst(ctx: ExecContext, n: number): bigint {
  const tr = ctx.cpu.sregs.tr;
  const off = 0x24 + 8 * (n - 1);
  if (tr.unusable || !tr.present || (tr.type !== 9 && tr.type !== 11)) throw new Fault(10, tr.selector & 0xfffc, undefined, 'IST: TR does not hold an available/busy 64-bit TSS');
  if (off + 7 > tr.limit >>> 0) throw new Fault(10, tr.selector & 0xfffc, undefined, `IST${n} beyond the TSS limit`);
  return bytesToBigint(readSystem(ctx.host, ctx.cpu.sregs, tr.base + BigInt(off), 8));
}

/** IRET/IRETD in legacy protected mode. */
export const iret: Handler = (insn, ctx) => {
  const mode = ctx.mode;
  if (mode.kind === 'real' || mode.kind === 'vm86') throw new Unsupported(`iret in ${mode.kind} mode is not emulated`);
  if (mode.ia32e) throw new Unsupported('iret in IA-32e mode is not emulated (KVM finishes iretq itself)');
  const s = ctx.cpu.sregs;
  const regs = ctx.cpu.regs;
  if (hasBit(ctx.rflags, RFLAGS.NT)) throw new Unsupported('iret with RFLAGS.NT set (a task return) is not emulated');
  const size: 2 | 4 = insn.operandSize === 2 ? 2 : 4;
  const cpl = mode.cpl;
  const stack = new StackCursor(ctx.host, s, regs.rsp, s.ss.db ? 4 : 2, s.ss, false);
  const eip = stack.pop(size);
  const csSel = Number(stack.pop(size) & 0xffffn);
  const tempFlags = stack.pop(size);
  if (size === 4 && cpl === 0 && hasBit(tempFlags, RFLAGS.VM)) throw new Unsupported('iret to virtual-8086 mode is not emulated');

  if ((csSel & 0xfffc) === 0) throw gp0('iret: NULL code selector');
  const csErr = csSel & 0xfffc;
  const rpl = csSel & 3;
  const d = readDescriptor(ctx.host, s, csSel, VECTOR.GP);
  if (!d.s || (d.type & 8) === 0) throw selectorFault(VECTOR.GP, csErr, `iret: 0x${csSel.toString(16)} is not a code segment`);
  if (rpl < cpl) throw selectorFault(VECTOR.GP, csErr, `iret: return to a more privileged level (RPL ${rpl} < CPL ${cpl})`);
  const conforming = (d.type & 4) !== 0;
  if (conforming ? d.dpl > rpl : d.dpl !== rpl) throw selectorFault(VECTOR.GP, csErr, `iret: code segment DPL ${d.dpl} does not match RPL ${rpl}`);
  if (!d.present) throw selectorFault(VECTOR_NP, csErr, 'iret: code segment not present');

  let newSs: KvmSegment | undefined;
  let ssDesc: Descriptor | undefined;
  let ssSel = 0;
  let newSp: bigint | undefined;
  if (rpl > cpl) {
    newSp = stack.pop(size);
    ssSel = Number(stack.pop(size) & 0xffffn);
    if ((ssSel & 0xfffc) === 0) throw gp0('iret: NULL stack selector for the outer level');
    const ssErr = ssSel & 0xfffc;
    if ((ssSel & 3) !== rpl) throw selectorFault(VECTOR.GP, ssErr, 'iret: SS.RPL differs from CS.RPL');
    ssDesc = readDescriptor(ctx.host, s, ssSel, VECTOR.GP);
    if (!ssDesc.s || (ssDesc.type & 8) !== 0 || (ssDesc.type & 2) === 0) throw selectorFault(VECTOR.GP, ssErr, 'iret: SS is not a writable data segment');
    if (ssDesc.dpl !== rpl) throw selectorFault(VECTOR.GP, ssErr, 'iret: SS.DPL differs from CS.RPL');
    if (!ssDesc.present) throw selectorFault(VECTOR.SS, ssErr, 'iret: SS not present');
    newSs = toKvmSegment(ssDesc, ssSel);
  }
  const ip = size === 2 ? eip & 0xffffn : eip;
  if (ip > BigInt(d.limit >>> 0)) throw gp0('iret: return address beyond the code segment limit');

  // commit: accessed bits, flags (by the old CPL), segments, stack pointer
  markAccessed(ctx.host, s, csSel, d);
  if (ssDesc) markAccessed(ctx.host, s, ssSel, ssDesc);
  let mask = RFLAGS.CF | RFLAGS.PF | RFLAGS.AF | RFLAGS.ZF | RFLAGS.SF | RFLAGS.TF | RFLAGS.DF | RFLAGS.OF | RFLAGS.NT;
  if (size === 4) mask |= RFLAGS.RF | RFLAGS.AC | ID;
  const iopl = Number((ctx.rflags & IOPL_MASK) >> 12n);
  if (cpl <= iopl) mask |= RFLAGS.IF;
  if (cpl === 0) {
    mask |= IOPL_MASK;
    if (size === 4) mask |= VIF | VIP;
  }
  ctx.rflags = (ctx.rflags & ~mask) | (tempFlags & mask);
  s.cs = toKvmSegment(d, csSel);
  if (newSs && newSp !== undefined) {
    s.ss = newSs;
    const width = newSs.db ? 4 : 2;
    regs.rsp = size === 4 ? newSp & 0xffff_ffffn : (regs.rsp & ~0xffffn) | (newSp & 0xffffn);
    if (width === 2 && size === 4) regs.rsp = newSp & 0xffff_ffffn;
    // data segments the outer level may not use become NULL
    for (const r of ['es', 'ds', 'fs', 'gs'] as const) {
      const seg = s[r];
      const codeConforming = seg.s && (seg.type & 0xc) === 0xc;
      if (!seg.unusable && !codeConforming && seg.dpl < rpl) s[r] = nullSegment(0);
    }
  } else {
    regs.rsp = stack.sp;
  }
  return { rip: ip };
};

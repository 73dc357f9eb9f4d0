/**
 * System instructions and exception delivery for the engine (issue 15): segment loads
 * from the GDT, PUSHF/POPF, IN/OUT, CPUID, RDTSC(P), RDMSR/WRMSR, MOV to/from control
 * registers, LGDT/LIDT/SGDT/SIDT, SWAPGS, INVLPG, SYSCALL/SYSRET, INT n/INT3, IRETQ, and the
 * delivery of exceptions and software interrupts through the 64-bit IDT (interrupt and
 * trap gates, IST stacks from the TSS, error codes, CR2, #DF escalation, shutdown).
 */
import type { KvmSegment } from '../kvm/structs.js';
import type { Cpl0Engine } from './cpu.js';
import type { Insn } from './decode.js';
import { F, MASK } from './flags.js';
import { GuestException, type EngineStop } from './types.js';

const M32 = 0xffffffffn;

/** MSR indices the engine implements. */
export const MSR = {
  TSC: 0x10, APIC_BASE: 0x1b, EFER: 0xc0000080, STAR: 0xc0000081, LSTAR: 0xc0000082, CSTAR: 0xc0000083, FMASK: 0xc0000084,
  FS_BASE: 0xc0000100, GS_BASE: 0xc0000101, KERNEL_GS_BASE: 0xc0000102, TSC_AUX: 0xc0000103,
} as const;

/** kvm_sregs segment names by the ModRM.reg encoding of MOV Sreg (ES CS SS DS FS GS). */
const SREG_BY_REG = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

function canonical(v: bigint): boolean {
  return BigInt.asUintN(64, BigInt.asIntN(48, v)) === v;
}

/** Read a segment descriptor (8 bytes) from the GDT: [low dword, high dword]. */
function readDescriptor(e: Cpl0Engine, sel: number, vectorOnFault: number): [number, number, bigint] {
  if ((sel & 4) !== 0) throw new GuestException(vectorOnFault, sel & 0xfffc); // LDT selectors: not supported
  const idx = sel & 0xfff8;
  if (idx + 7 > e.sregs.gdt.limit) throw new GuestException(13, sel & 0xfffc);
  const la = BigInt.asUintN(64, e.sregs.gdt.base + BigInt(idx));
  const v = e.rd(la, 8);
  return [Number(v & M32), Number(v >> 32n), la];
}

/** Decode a code/data descriptor into a KvmSegment (selector given). */
export function descriptorToSegment(sel: number, lo: number, hi: number): KvmSegment {
  let limit = (lo & 0xffff) | (hi & 0xf0000);
  const g = (hi >>> 23) & 1;
  if (g) limit = ((limit << 12) | 0xfff) >>> 0;
  const base = BigInt(((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) >>> 0);
  return {
    base, limit, selector: sel, type: (hi >>> 8) & 0xf, s: (hi >>> 12) & 1, dpl: (hi >>> 13) & 3, present: (hi >>> 15) & 1,
    avl: (hi >>> 20) & 1, l: (hi >>> 21) & 1, db: (hi >>> 22) & 1, g, unusable: 0,
  };
}

/** A null (unusable) segment with the given selector. */
function nullSegment(sel: number): KvmSegment {
  return { base: 0n, limit: 0, selector: sel, type: 0, s: 0, dpl: 0, present: 0, avl: 0, l: 0, db: 0, g: 0, unusable: 1 };
}

/** Load a data/stack segment register (DS ES FS GS SS) from the GDT, with the protected-mode checks at CPL 0. */
export function loadSegment(e: Cpl0Engine, name: 'ds' | 'es' | 'fs' | 'gs' | 'ss', sel: number): void {
  sel &= 0xffff;
  if ((sel & 0xfffc) === 0) {
    const keepBase = name === 'fs' || name === 'gs' ? e.sregs[name].base : 0n;
    const seg = nullSegment(sel);
    seg.base = name === 'fs' || name === 'gs' ? 0n : keepBase;
    if (name === 'ss') { seg.dpl = 0; }
    e.sregs[name] = seg;
    return;
  }
  const [lo, hi, la] = readDescriptor(e, sel, 13);
  const seg = descriptorToSegment(sel, lo, hi);
  const code = (seg.type & 8) !== 0;
  if (name === 'ss') {
    if ((sel & 3) !== 0 || seg.dpl !== 0 || seg.s === 0 || code || (seg.type & 2) === 0) throw new GuestException(13, sel & 0xfffc);
    if (!seg.present) throw new GuestException(12, sel & 0xfffc);
  } else {
    if (seg.s === 0 || (code && (seg.type & 2) === 0)) throw new GuestException(13, sel & 0xfffc);
    if (!seg.present) throw new GuestException(11, sel & 0xfffc);
  }
  if ((hi & 0x100) === 0) e.wr(la + 4n, 4, BigInt((hi | 0x100) >>> 0));
  seg.type |= 1;
  e.sregs[name] = seg;
}

/** Load CS for a far transfer at the target privilege level `rpl` (0 or 3): a code segment. */
function loadCode(e: Cpl0Engine, sel: number): KvmSegment {
  if ((sel & 0xfffc) === 0) throw new GuestException(13, 0);
  const [lo, hi] = readDescriptor(e, sel, 13);
  const seg = descriptorToSegment(sel, lo, hi);
  if (seg.s === 0 || (seg.type & 8) === 0) throw new GuestException(13, sel & 0xfffc);
  if (!seg.present) throw new GuestException(11, sel & 0xfffc);
  seg.type |= 1;
  return seg;
}

/** MOV Sreg, r/m16. */
export function movToSreg(e: Cpl0Engine, d: Insn): boolean {
  const r = d.reg & 7;
  if (r === 1 || r > 5) throw new GuestException(6);
  const sel = Number(e.readRM(d, 2));
  loadSegment(e, SREG_BY_REG[r] as 'ds', sel);
  return true;
}

/** MOV r/m, Sreg. */
export function movFromSreg(e: Cpl0Engine, d: Insn): boolean {
  const r = d.reg & 7;
  if (r > 5) throw new GuestException(6);
  const sel = BigInt(e.sregs[SREG_BY_REG[r]].selector);
  if (d.mem) e.writeRM(d, 2, sel);
  else e.writeRM(d, d.osz === 1 ? 4 : d.osz, sel);
  return true;
}

/** PUSHF (RF and VM read as clear). */
export function pushf(e: Cpl0Engine, d: Insn): boolean {
  const v = BigInt(e.rflags() & ~(F.RF | F.VM));
  if (d.osz === 2) e.push(v & 0xffffn, 2);
  else e.push(v);
  return true;
}

/** POPF at CPL 0: every flag but VM, RF, VIF, VIP is writable. */
export function popf(e: Cpl0Engine, d: Insn): boolean {
  const size = d.osz === 2 ? 2 : 8;
  const v = Number(e.pop(size) & 0xffffffffn);
  const old = e.rflags();
  const keep = F.VM | F.RF | F.VIF | F.VIP | (size === 2 ? 0xffff0000 : 0);
  e.setRflags(((old & keep) | (v & ~keep)) >>> 0);
  e.rfl &= ~F.RF;
  return true;
}

/** IN/OUT with an immediate port or DX. */
export function inOut(e: Cpl0Engine, d: Insn): boolean {
  const op = d.op;
  const size = (op & 1) === 0 ? 1 : d.osz === 2 ? 2 : 4;
  const port = op >= 0xec ? Number(e.regs[2] & 0xffffn) : d.imm2;
  if ((op & 2) === 0) {
    const v = e.io.pioRead(port, size as 1 | 2 | 4) >>> 0;
    e.setR(size, 0, BigInt(v) & MASK[size]);
  } else {
    e.io.pioWrite(port, size as 1 | 2 | 4, Number(e.getR(size, 0)));
  }
  return true;
}

/** INT n / INT3: a software interrupt, delivered with the next RIP. */
export function softInt(e: Cpl0Engine, vector: number): boolean {
  deliver(e, vector, undefined, e.nextRip, true);
  e.nextRip = e.rip; // delivery set RIP
  return true;
}

/** IRETQ: to CPL 0 (continue) or CPL 3 (stop with the state there). */
export function iret(e: Cpl0Engine, d: Insn): boolean {
  if (d.osz !== 8) { d.bad = 'IRET with 16/32-bit operand size'; return false; }
  const sp = e.regs[4];
  const at = (i: number): bigint => e.rd(BigInt.asUintN(64, sp + BigInt(i * 8)), 8);
  const rip = at(0), cs = Number(at(1) & 0xffffn), fl = Number(at(2) & 0xffffffffn), rsp = at(3), ss = Number(at(4) & 0xffffn);
  const rpl = cs & 3;
  if (rpl !== 0 && rpl !== 3) { d.bad = `IRET to CPL ${rpl}`; return false; }
  const code = loadCode(e, cs);
  if (code.dpl !== rpl) throw new GuestException(13, cs & 0xfffc);
  let stack: KvmSegment;
  if (rpl === 0 && (ss & 0xfffc) === 0) stack = nullSegment(ss);
  else {
    const [lo, hi] = readDescriptor(e, ss, 13);
    stack = descriptorToSegment(ss, lo, hi);
    if ((ss & 3) !== rpl || stack.dpl !== rpl || stack.s === 0 || (stack.type & 10) !== 2) throw new GuestException(13, ss & 0xfffc);
    if (!stack.present) throw new GuestException(12, ss & 0xfffc);
    stack.type |= 1;
  }
  if (code.l === 1 && !canonical(rip)) throw new GuestException(13, 0);
  e.sregs.cs = code;
  e.sregs.ss = stack;
  e.regs[4] = rsp;
  e.setRflags((fl & ~(F.VM | F.VIF | F.VIP)) | (e.rflags() & 0));
  e.nextRip = rip;
  if (rpl === 3) {
    e.updateMmu();
    e.stop = { kind: 'cpl3' };
  }
  return true;
}

/** The flat CPL 3 segments SYSRET loads. */
function userSeg(sel: number, code: boolean, long: boolean): KvmSegment {
  return { base: 0n, limit: 0xffffffff, selector: sel, type: code ? 0xb : 0x3, s: 1, dpl: 3, present: 1, avl: 0, l: long ? 1 : 0, db: code && long ? 0 : 1, g: 1, unusable: 0 };
}

function sysret(e: Cpl0Engine, d: Insn): boolean {
  if ((e.sregs.efer & 1n) === 0n) throw new GuestException(6);
  const base = Number((e.msrs.star >> 48n) & 0xffffn);
  const long = d.osz === 8;
  const rip = long ? e.regs[1] : e.regs[1] & M32;
  if (long && !canonical(rip)) throw new GuestException(13, 0);
  e.sregs.cs = userSeg(((long ? base + 16 : base) | 3) & 0xffff, true, long);
  e.sregs.ss = userSeg(((base + 8) | 3) & 0xffff, false, false);
  e.setRflags((Number(e.regs[11] & M32) & ~(F.RF | F.VM)) | 2);
  e.nextRip = rip;
  e.updateMmu();
  e.stop = { kind: 'cpl3' };
  return true;
}

function syscall(e: Cpl0Engine): boolean {
  if ((e.sregs.efer & 1n) === 0n) throw new GuestException(6);
  const sel = Number((e.msrs.star >> 32n) & 0xfffcn);
  e.regs[1] = e.nextRip;
  e.regs[11] = BigInt(e.rflags() & ~F.RF);
  e.setRflags(e.rflags() & ~Number(e.msrs.fmask & M32) & ~F.RF);
  e.sregs.cs = { base: 0n, limit: 0xffffffff, selector: sel, type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 1, db: 0, g: 1, unusable: 0 };
  e.sregs.ss = { base: 0n, limit: 0xffffffff, selector: sel + 8, type: 0x3, s: 1, dpl: 0, present: 1, avl: 0, l: 0, db: 1, g: 1, unusable: 0 };
  e.nextRip = e.msrs.lstar;
  return true;
}

function rdmsr(e: Cpl0Engine, idx: number): bigint {
  const s = e.sregs, m = e.msrs;
  switch (idx) {
    case MSR.TSC: return e.tscFn();
    case MSR.APIC_BASE: return s.apicBase;
    case MSR.EFER: return s.efer;
    case MSR.STAR: return m.star;
    case MSR.LSTAR: return m.lstar;
    case MSR.CSTAR: return m.cstar;
    case MSR.FMASK: return m.fmask;
    case MSR.FS_BASE: return s.fs.base;
    case MSR.GS_BASE: return s.gs.base;
    case MSR.KERNEL_GS_BASE: return m.kernelGsBase;
    case MSR.TSC_AUX: return m.tscAux;
  }
  throw new GuestException(13, 0);
}

function wrmsr(e: Cpl0Engine, idx: number, v: bigint): void {
  const s = e.sregs, m = e.msrs;
  const canon = (): bigint => { if (!canonical(v)) throw new GuestException(13, 0); return v; };
  switch (idx) {
    case MSR.EFER: {
      if ((v & ~0xd01n) !== 0n) throw new GuestException(13, 0);
      const lma = s.efer & 0x400n;
      if (((v ^ s.efer) & 0x100n) !== 0n) throw new GuestException(13, 0); // LME with paging on
      s.efer = (v & ~0x400n) | lma;
      e.updateMmu();
      return;
    }
    case MSR.STAR: m.star = v; return;
    case MSR.LSTAR: m.lstar = canon(); return;
    case MSR.CSTAR: m.cstar = canon(); return;
    case MSR.FMASK: m.fmask = v & M32; return;
    case MSR.FS_BASE: s.fs.base = canon(); return;
    case MSR.GS_BASE: s.gs.base = canon(); return;
    case MSR.KERNEL_GS_BASE: m.kernelGsBase = canon(); return;
    case MSR.TSC_AUX: m.tscAux = v & M32; return;
  }
  throw new GuestException(13, 0);
}

function movCr(e: Cpl0Engine, d: Insn, toCr: boolean): boolean {
  const cr = d.reg;
  const s = e.sregs;
  if (!toCr) {
    let v: bigint;
    switch (cr) {
      case 0: v = s.cr0; break;
      case 2: v = s.cr2; break;
      case 3: v = s.cr3; break;
      case 4: v = s.cr4; break;
      case 8: v = s.cr8; break;
      default: throw new GuestException(6);
    }
    e.regs[d.rm] = v;
    return true;
  }
  const v = e.regs[d.rm];
  switch (cr) {
    case 0:
      if ((v >> 32n) !== 0n || (v & 0x80000000n) === 0n || (v & 1n) === 0n) throw new GuestException(13, 0);
      if ((v & 0x20000000n) === 0n && (v & 0x40000000n) !== 0n) throw new GuestException(13, 0); // CD=0, NW=1
      s.cr0 = v | 0x10n;
      break;
    case 2: s.cr2 = v; return true;
    case 3: s.cr3 = v; break;
    case 4:
      if ((v & 0x20n) === 0n || (v >> 32n) !== 0n) throw new GuestException(13, 0);
      s.cr4 = v;
      break;
    case 8:
      if ((v >> 4n) !== 0n) throw new GuestException(13, 0);
      s.cr8 = v;
      return true;
    default: throw new GuestException(6);
  }
  e.updateMmu();
  return true;
}

function group0f01(e: Cpl0Engine, d: Insn): boolean {
  const k = d.reg & 7;
  if (!d.mem) {
    const rm = d.rm & 7;
    if (k === 7 && rm === 0) { // SWAPGS
      const t = e.sregs.gs.base; e.sregs.gs.base = e.msrs.kernelGsBase; e.msrs.kernelGsBase = t; return true;
    }
    if (k === 7 && rm === 1) { rdtsc(e); e.setR(4, 1, e.msrs.tscAux & M32); return true; }
    if (k === 1 && rm === 2) { e.setRflags(e.rflags() & ~F.AC); return true; } // CLAC
    if (k === 1 && rm === 3) { e.setRflags(e.rflags() | F.AC); return true; } // STAC
    d.bad = `0F 01 /${k} rm ${rm}`;
    return false;
  }
  const a = e.ea(d);
  switch (k) {
    case 0: case 1: {
      const t = k === 0 ? e.sregs.gdt : e.sregs.idt;
      e.rd(BigInt.asUintN(64, a + 9n), 1);
      e.wr(a, 2, BigInt(t.limit));
      e.wr(BigInt.asUintN(64, a + 2n), 8, t.base);
      return true;
    }
    case 2: case 3: {
      const limit = Number(e.rd(a, 2));
      const base = e.rd(BigInt.asUintN(64, a + 2n), 8);
      if (!canonical(base)) throw new GuestException(13, 0);
      if (k === 2) e.sregs.gdt = { base, limit }; else e.sregs.idt = { base, limit };
      return true;
    }
    case 4: e.writeRM(d, 2, e.sregs.cr0 & 0xffffn); return true;
    case 7: e.mmu.invalidatePage(a); return true;
  }
  d.bad = `0F 01 /${k}`;
  return false;
}

function rdtsc(e: Cpl0Engine): void {
  const t = BigInt.asUintN(64, e.tscFn());
  e.setR(4, 0, t & M32);
  e.setR(4, 2, t >> 32n);
}

/** The system part of the 0F map. */
export function exec0fSystem(e: Cpl0Engine, d: Insn): boolean {
  const op = d.op & 0xff;
  switch (op) {
    case 0x01: return group0f01(e, d);
    case 0x05: return syscall(e);
    case 0x06: e.sregs.cr0 &= ~8n; e.updateMmu(); return true;
    case 0x07: return sysret(e, d);
    case 0x08: case 0x09: return true; // INVD/WBINVD: no caches to write back
    case 0x0b: throw new GuestException(6);
    case 0x20: return movCr(e, d, false);
    case 0x22: return movCr(e, d, true);
    case 0x30: wrmsr(e, Number(e.regs[1] & M32), ((e.regs[2] & M32) << 32n) | (e.regs[0] & M32)); return true;
    case 0x31: rdtsc(e); return true;
    case 0x32: { const v = rdmsr(e, Number(e.regs[1] & M32)); e.setR(4, 0, v & M32); e.setR(4, 2, v >> 32n); return true; }
    case 0xa0: case 0xa8: {
      const sel = BigInt(e.sregs[op === 0xa0 ? 'fs' : 'gs'].selector);
      if (d.osz === 2) e.push(sel, 2); else e.push(sel);
      return true;
    }
    case 0xa1: case 0xa9: {
      const size = d.osz === 2 ? 2 : 8;
      const v = Number(e.rd(e.regs[4], size) & 0xffffn);
      loadSegment(e, op === 0xa1 ? 'fs' : 'gs', v);
      e.regs[4] += BigInt(size);
      return true;
    }
    case 0xa2: {
      const [a, b, c, dd] = e.cpuidFn(Number(e.regs[0] & M32), Number(e.regs[1] & M32));
      e.setR(4, 0, BigInt(a >>> 0)); e.setR(4, 3, BigInt(b >>> 0)); e.setR(4, 1, BigInt(c >>> 0)); e.setR(4, 2, BigInt(dd >>> 0));
      return true;
    }
    case 0xae:
      if (!d.mem && (d.reg & 7) >= 5) return true; // LFENCE/MFENCE/SFENCE
      d.bad = '0F AE (FXSAVE/XSAVE family)';
      return false;
  }
  if (op === 0x00 || op === 0x02 || op === 0x03) { d.bad = `0F ${op.toString(16).padStart(2, '0')} (LDT/TSS/access-rights)`; return false; }
  if (op === 0x21 || op === 0x23) { d.bad = 'debug registers'; return false; }
  if (op >= 0x10 && op <= 0x17 || op >= 0x28 && op <= 0x2f || op >= 0x50 && op <= 0x7f || op >= 0xc2 && op <= 0xc6 || op >= 0xd0) {
    d.bad = 'SSE/MMX instruction';
    return false;
  }
  if (d.bad === null) d.bad = `0F ${op.toString(16).padStart(2, '0')}`;
  return false;
}

// ---- exception delivery ----

const PUSHES_ERROR = new Set([8, 10, 11, 12, 13, 14, 17, 21]);
const CONTRIBUTORY = new Set([0, 10, 11, 12, 13]);

/**
 * Deliver a fault the engine caught at an instruction boundary (RIP at the faulting
 * instruction): null to continue, or a shutdown stop (triple fault).
 */
export function raise(e: Cpl0Engine, ex: GuestException): EngineStop | null {
  let vec = ex.vector;
  let err = ex.errorCode;
  if (vec === 14 && ex.cr2 !== undefined) e.sregs.cr2 = ex.cr2;
  for (let depth = 0; depth < 3; depth++) {
    try {
      deliver(e, vec, PUSHES_ERROR.has(vec) ? (err ?? 0) : undefined, e.rip, false);
      return null;
    } catch (ex2) {
      if (!(ex2 instanceof GuestException)) throw ex2;
      if (vec === 8) return { kind: 'shutdown', vector: ex2.vector };
      const v2 = ex2.vector;
      if (v2 === 14 && ex2.cr2 !== undefined) e.sregs.cr2 = ex2.cr2;
      const first = CONTRIBUTORY.has(vec) ? 1 : vec === 14 ? 2 : 0;
      const second = CONTRIBUTORY.has(v2) ? 1 : v2 === 14 ? 2 : 0;
      if ((first === 1 && second === 1) || (first === 2 && second !== 0)) { vec = 8; err = 0; }
      else { vec = v2; err = ex2.errorCode; }
    }
  }
  return { kind: 'shutdown', vector: vec };
}

/**
 * Deliver `vector` through the IDT (64-bit interrupt/trap gate) with return address `rip`:
 * pushes SS, RSP, RFLAGS, CS, RIP and the error code if given; throws the fault delivery
 * itself raises (nothing changed then).
 */
export function deliver(e: Cpl0Engine, vector: number, err: number | undefined, rip: bigint, soft: boolean): void {
  const ext = soft ? 0 : 1;
  const idtErr = vector * 8 + 2 + ext;
  const idt = e.sregs.idt;
  if (vector * 16 + 15 > idt.limit) throw new GuestException(13, idtErr);
  const ga = BigInt.asUintN(64, idt.base + BigInt(vector * 16));
  const lo = e.rd(ga, 8);
  const hi = e.rd(BigInt.asUintN(64, ga + 8n), 8);
  const type = Number((lo >> 40n) & 0xfn);
  const dpl = Number((lo >> 45n) & 3n);
  const present = (lo >> 47n) & 1n;
  if (type !== 0xe && type !== 0xf) throw new GuestException(13, idtErr);
  if (soft && dpl < 0) throw new GuestException(13, idtErr);
  if (!present) throw new GuestException(11, idtErr);
  const sel = Number((lo >> 16n) & 0xffffn);
  const ist = Number((lo >> 32n) & 7n);
  const target = BigInt.asUintN(64, (lo & 0xffffn) | (((lo >> 48n) & 0xffffn) << 16n) | ((hi & M32) << 32n));
  let code: KvmSegment;
  try {
    code = loadCode(e, sel);
  } catch (x) {
    if (x instanceof GuestException) throw new GuestException(x.vector, ((sel & 0xfffc) | ext) >>> 0);
    throw x;
  }
  if (code.l !== 1 || code.dpl !== 0) throw new GuestException(13, (sel & 0xfffc) | ext);
  if (!canonical(target)) throw new GuestException(13, ext);
  let sp = e.regs[4];
  if (ist !== 0) sp = e.rd(BigInt.asUintN(64, e.sregs.tr.base + BigInt(0x24 + (ist - 1) * 8)), 8);
  sp &= ~0xfn;
  const frame = [BigInt(e.sregs.ss.selector), e.regs[4], BigInt(e.rflags()), BigInt(e.sregs.cs.selector), rip];
  if (err !== undefined) frame.push(BigInt(err >>> 0));
  for (const v of frame) {
    sp = BigInt.asUintN(64, sp - 8n);
    e.wr(sp, 8, v);
  }
  e.regs[4] = sp;
  e.sregs.cs = { ...code, selector: (sel & 0xfffc) };
  let fl = e.rflags() & ~(F.TF | F.NT | F.RF | F.VM);
  if (type === 0xe) fl &= ~F.IF;
  e.setRflags(fl);
  e.rip = target;
}

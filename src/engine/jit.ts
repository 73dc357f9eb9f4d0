/**
 * The engine's block compiler (issue 15): turns a hot decoded block of common integer
 * instructions into a JavaScript function that keeps the registers it uses in locals as
 * 32-bit halves (no bigint on the hot path), forms addresses as (low, high) pairs of 32-bit
 * integers, reads and writes guest RAM directly through the software TLB's int32 keys
 * ({@link FastMmu}), keeps the arithmetic flags in locals and hands them back materialised,
 * and runs a block that branches to its own start as a loop inside the function.
 *
 * A block is compiled only when every instruction in it is in the subset below; anything
 * else stays interpreted (src/engine/cpu.ts). At run time the compiled code leaves at an
 * instruction boundary — with RIP, the registers and the flags exactly as the interpreter
 * would have them there — when the block ends, when the budget is spent, and before an
 * instruction with an access the TLB's RAM entries do not cover (a miss, MMIO, a page
 * crossing, a page holding decoded code for a store): it then reports a deopt and the
 * interpreter runs that instruction, filling the TLB or raising the guest's exception.
 * Compiled code itself never raises one.
 *
 * The subset (64-bit addressing, no segment override, no LOCK/REP, operand sizes 1/2/4/8):
 * MOV (88 89 8A 8B B0-BF C6 C7), MOVZX/MOVSX/MOVSXD, LEA, CMOVcc, SETcc, ADD OR ADC SBB AND SUB XOR CMP
 * (00-3D, 80 81 83), TEST (84 85 A8 A9 F6/F7 /0), NOT/NEG, INC/DEC (FE FF /0 /1), SHL/SHR/SAR
 * by an immediate (C1 D1, 32-bit registers), IMUL (0F AF, 69, 6B; 32-bit), PUSH/POP of 8 bytes
 * (50-5F, 68, 6A, FF /6, 8F /0), NOP, and as the last instruction Jcc, JMP, CALL rel32 and RET.
 */
import type { Insn } from './decode.js';
import { FOP, F, PARITY, condition } from './flags.js';
import type { UndefinedResults } from './vendor.js';

/**
 * What compiled code reaches of the MMU (src/engine/mmu.ts SoftMmu has it): the RAM it reads
 * and writes directly, and the active bank's TLB keys over it.
 */
export interface FastMmu {
  readonly ram: Uint8Array;
  readonly ramView: DataView;
  readonly rKeyLo: Int32Array;
  readonly rKeyHi: Int32Array;
  readonly rHost: Int32Array;
  readonly wKeyLo: Int32Array;
  readonly wKeyHi: Int32Array;
  readonly wHost: Int32Array;
  readonly tlbMask: number;
  /** Bumped by every event that may change a translation (links between blocks hold while it does not change). */
  readonly fetchEpoch: number;
}

/** What compiled code reads and writes of the engine. */
export interface JitEngine {
  rip: bigint;
  fop: number;
  fval: number;
  /** Set by compiled code that stopped before an instruction it cannot run (the interpreter runs it). */
  jitDeopt: boolean;
  /** The way out compiled code took (see {@link CompiledBlock}). */
  jitExit: number;
  flags(): number;
  cf(): number;
}

/**
 * A compiled block: runs at most `budget` instructions (at least one pass of the block must
 * fit; below 2^31) and returns how many it retired; RIP and the flags are the engine's again.
 * Unless it deopted, it says in `jitExit` which way it left: 0 to the fall-through RIP after
 * its last instruction, 1 to its branch target (taken, or the loop's start when the budget
 * ran out), -1 elsewhere (a return, a block cut short): the engine links 0 and 1 to the next
 * blocks.
 */
export type CompiledBlock = (e: JitEngine, R: Int32Array, budget: number) => number;

/** True if `mmu` has what compiled code needs. */
export function isFastMmu(mmu: unknown): mmu is FastMmu {
  const m = mmu as Partial<FastMmu>;
  return m.ram instanceof Uint8Array && m.ramView instanceof DataView && m.rHost instanceof Int32Array && m.wHost instanceof Int32Array && typeof m.tlbMask === 'number' && typeof m.fetchEpoch === 'number';
}

// ---- flags of Number operands (the lazy record of src/engine/flags.ts, without bigints) ----

const SIGN_N = [0, 0x80, 0x8000, 0, 0x80000000];
const MASK_N = [0, 0xff, 0xffff, 0, 0xffffffff];

/** Status flags of an operation on `size`-byte (1, 2, 4) operands given as Numbers (any 32-bit form). */
export function numFlags(op: number, size: number, res: number, src: number, dst: number, aux: number): number {
  const m = MASK_N[size];
  const sign = SIGN_N[size];
  const r = (res & m) >>> 0, s = (src & m) >>> 0, d = (dst & m) >>> 0;
  let f = (r === 0 ? F.ZF : 0) | ((r & sign) !== 0 ? F.SF : 0) | PARITY[r & 0xff];
  switch (op) {
    case FOP.ADD:
    case FOP.ADC:
      if (r < d || (op === FOP.ADC && aux !== 0 && r === d)) f |= F.CF;
      if (((d ^ r) & (s ^ r) & sign) !== 0) f |= F.OF;
      break;
    case FOP.SUB:
    case FOP.SBB:
      if (d < s || (op === FOP.SBB && aux !== 0 && d === s)) f |= F.CF;
      if (((d ^ s) & (d ^ r) & sign) !== 0) f |= F.OF;
      break;
    case FOP.LOGIC:
      return f;
    case FOP.INC:
      f |= aux & F.CF;
      if (r === sign) f |= F.OF;
      break;
    case FOP.DEC:
      f |= aux & F.CF;
      if (r === ((sign - 1) >>> 0)) f |= F.OF;
      break;
  }
  if (((d ^ s ^ r) & 0x10) !== 0) f |= F.AF;
  return f;
}

/** {@link numFlags} of 64-bit operands given as (low, high) 32-bit halves. */
export function numFlags64(op: number, rl: number, rh: number, sl: number, sh: number, dl: number, dh: number, aux: number): number {
  rl >>>= 0; rh >>>= 0; sl >>>= 0; sh >>>= 0; dl >>>= 0; dh >>>= 0;
  let f = (rl === 0 && rh === 0 ? F.ZF : 0) | ((rh & 0x80000000) !== 0 ? F.SF : 0) | PARITY[rl & 0xff];
  const SGN = 0x80000000;
  switch (op) {
    case FOP.ADD:
    case FOP.ADC:
      if (rh < dh || (rh === dh && (rl < dl || (op === FOP.ADC && aux !== 0 && rl === dl)))) f |= F.CF;
      if (((dh ^ rh) & (sh ^ rh) & SGN) !== 0) f |= F.OF;
      break;
    case FOP.SUB:
    case FOP.SBB:
      if (dh < sh || (dh === sh && (dl < sl || (op === FOP.SBB && aux !== 0 && dl === sl)))) f |= F.CF;
      if (((dh ^ sh) & (dh ^ rh) & SGN) !== 0) f |= F.OF;
      break;
    case FOP.LOGIC:
      return f;
    case FOP.INC:
      f |= aux & F.CF;
      if (rh === SGN && rl === 0) f |= F.OF;
      break;
    case FOP.DEC:
      f |= aux & F.CF;
      if (rh === 0x7fffffff && rl === 0xffffffff) f |= F.OF;
      break;
  }
  if (((dl ^ sl ^ rl) & 0x10) !== 0) f |= F.AF;
  return f;
}

/**
 * Status flags of SHL/SHR/SAR (k = 4, 5, 7) of a 32-bit `v` by a count 1-31, as the
 * interpreter's shiftCalc: `ofResult` 1 takes OF from the result, 0 from the operand
 * ({@link UndefinedResults.shiftOf} 'result' or 'operand'); `af` is the vendor's AF.
 */
export function shiftFlags32(k: number, v: number, c: number, res: number, ofResult: number, af: number): number {
  const r = res >>> 0;
  let f = (r === 0 ? F.ZF : 0) | ((r & 0x80000000) !== 0 ? F.SF : 0) | PARITY[r & 0xff] | af;
  const b1 = ofResult ? r >>> 31 : v >>> 31;
  if (k === 4) {
    const cf = (v >>> (32 - c)) & 1;
    f |= cf;
    if ((b1 ^ (ofResult ? cf : (v << 1) >>> 31)) !== 0) f |= F.OF;
  } else if (k === 5) {
    f |= (v >>> (c - 1)) & 1;
    if ((ofResult ? b1 ^ ((r >>> 30) & 1) : b1) !== 0) f |= F.OF;
  } else f |= (v >> (c - 1)) & 1;
  return f;
}

/**
 * Status flags of a 32-bit IMUL whose low half is `lo` (`over`: the product did not fit),
 * as the interpreter's mulFlags: `keep` of the flags before (`f`) stay, `fromLow` are set
 * from `lo` ({@link UndefinedResults.mul}).
 */
export function imulFlags32(lo: number, over: boolean, f: number, keep: number, fromLow: number): number {
  const r = lo >>> 0;
  const low = (r === 0 ? F.ZF : 0) | ((r & 0x80000000) !== 0 ? F.SF : 0) | PARITY[r & 0xff];
  return (over ? F.CF | F.OF : 0) | (f & keep) | (low & fromLow);
}

// ---- what compiled code calls: its one way out ----
//
// Every way out of compiled code breaks out to one call of finish(), with what it must do
// in locals: a call site or property access the optimising compiler had never seen run
// would deoptimise the block the first time it runs (V8 compiles such sites as
// "insufficient type feedback" exits), and a looping block deoptimised at a way out it had
// not taken yet (the loop's fall-through, say) was seen to stay in interpreter-plus-OSR code
// for good at a third of its speed. One site, taken at the first exit, has feedback from
// then on; finish() itself is shared by every block.

/** How compiled code left (`xk` of {@link finish}). */
const EXIT = { LEAVE: 0, DEOPT: 1, RETURN: 2 } as const;
/** Which flags it hands back (`ft`): the engine's (unchanged), a word, or a lazy record of 32- or 64-bit operands. */
const OUT_FLAGS = { NONE: 0, WORD: 1, LAZY: 2, LAZY64: 3 } as const;

/**
 * Leave compiled code: the flags (`ft` and `f0`-`f7`, see {@link OUT_FLAGS}), then RIP:
 * `rips[xi]` and way out `xw` (LEAVE), `rips[xi]` with a deopt (DEOPT), or the popped
 * `xh:xl` (RETURN). Returns `xn`, the instructions retired.
 */
function finish(
  e: JitEngine, rips: readonly bigint[], xk: number, xi: number, xn: number, xw: number, xl: number, xh: number,
  ft: number, f0: number, f1: number, f2: number, f3: number, f4: number, f5: number, f6: number, f7: number,
): number {
  if (ft !== OUT_FLAGS.NONE) {
    e.fval = ft === OUT_FLAGS.WORD ? f0 : ft === OUT_FLAGS.LAZY ? numFlags(f0, f1, f2, f3, f4, f5) : numFlags64(f0, f1, f2, f3, f4, f5, f6, f7);
    e.fop = 0;
  }
  if (xk === EXIT.DEOPT) {
    e.rip = rips[xi];
    e.jitDeopt = true;
    return xn;
  }
  e.rip = xk === EXIT.RETURN ? (BigInt(xh >>> 0) << 32n) | BigInt(xl >>> 0) : rips[xi];
  e.jitExit = xw;
  return xn;
}

const HELPERS = { numFlags, numFlags64, shiftFlags32, imulFlags32, condition, finish };

// ---- the compiler ----

/** Where the arithmetic flags are, at a point of the block (at compile time). */
type Flags =
  | { t: 'in' } // the engine's own (nothing in the block wrote them yet)
  | { t: 'lazy'; op: number; size: number; res: string; src: string; dst: string; aux: string }
  | { t: 'lazy64'; op: number; res: [string, string]; src: [string, string]; dst: [string, string]; aux: string }
  | { t: 'val'; v: string }; // a materialised flag word in a local

/** An operand value: one 32-bit expression, or (low, high) for 8 bytes. */
type Val = { lo: string; hi: string };
/** A memory address as a (low, high) pair, and the instruction it belongs to (a miss leaves before it). */
type Addr = Val & { at: number };

/** Placeholder for "the flags are the engine's": in a loop's later passes, the last pass's. */
const IN = '@IN@';

class Unsupported extends Error {}

function int32Of(v: bigint): number {
  return Number(BigInt.asIntN(32, v));
}

/** Compiles one block; see the module comment. */
class BlockCompiler {
  private readonly out: string[] = [];
  private nvars = 0;
  private readonly vars: string[] = [];
  private flags: Flags = { t: 'in' };
  /** Flags state before each instruction (for exits there). */
  private readonly before: Flags[] = [];
  /** Something read the engine's incoming flags inside the block (then it cannot loop). */
  private readsIncoming = false;
  private endFlags: Flags = { t: 'in' };

  constructor(
    private readonly insns: Insn[],
    /** RIP of each instruction, then the RIP after the last. */
    private readonly rips: bigint[],
    /** The vendor's undefined results (src/engine/vendor.ts). */
    private readonly undef: Readonly<UndefinedResults>,
  ) {}

  private v(): string {
    const n = `v${this.nvars++}`;
    this.vars.push(n);
    return n;
  }

  private emit(s: string): void {
    this.out.push(s);
  }

  // -- flags --

  /** The flag word of `f` as an expression (`inLoop`: 'in' means the last pass's end when done > 0). */
  private mat(f: Flags): string {
    switch (f.t) {
      case 'in': this.readsIncoming = true; return 'e.flags()';
      case 'val': return f.v;
      case 'lazy': return `numFlags(${f.op}, ${f.size}, ${f.res}, ${f.src}, ${f.dst}, ${f.aux})`;
      case 'lazy64': return `numFlags64(${f.op}, ${f.res[0]}, ${f.res[1]}, ${f.src[0]}, ${f.src[1]}, ${f.dst[0]}, ${f.dst[1]}, ${f.aux})`;
    }
  }

  /** CF of `f` (0 or 1) as an expression. */
  private cf(f: Flags): string {
    if (f.t === 'in') { this.readsIncoming = true; return 'e.cf()'; }
    if (f.t === 'lazy') {
      const m = MASK_N[f.size];
      if (f.op === FOP.ADD) return `(((${f.res}) & ${m}) >>> 0 < ((${f.dst}) & ${m}) >>> 0 ? 1 : 0)`;
      if (f.op === FOP.SUB) return `(((${f.dst}) & ${m}) >>> 0 < ((${f.src}) & ${m}) >>> 0 ? 1 : 0)`;
      if (f.op === FOP.LOGIC) return '0';
      if (f.op === FOP.INC || f.op === FOP.DEC) return `((${f.aux}) & 1)`;
    }
    if (f.t === 'lazy64' && (f.op === FOP.ADD || f.op === FOP.SUB)) {
      // unsigned 64-bit compare of (high, low) halves: result < dst for ADD, dst < src for SUB
      const [ah, al, bh, bl] = f.op === FOP.ADD ? [f.res[1], f.res[0], f.dst[1], f.dst[0]] : [f.dst[1], f.dst[0], f.src[1], f.src[0]];
      return `((((${ah}) >>> 0) < ((${bh}) >>> 0) || ((${ah}) | 0) === ((${bh}) | 0) && ((${al}) >>> 0) < ((${bl}) >>> 0)) ? 1 : 0)`;
    }
    if (f.t === 'lazy64' && f.op === FOP.LOGIC) return '0';
    if (f.t === 'lazy64' && (f.op === FOP.INC || f.op === FOP.DEC)) return `((${f.aux}) & 1)`;
    return `(${this.mat(f)} & 1)`;
  }

  /** Condition code `cc` of the current flags as a boolean expression. */
  private cond(cc: number): string {
    const f = this.flags;
    if (f.t === 'lazy' && f.size === 4) {
      const a = `(${f.dst})`, b = `(${f.src})`, r = `(${f.res})`;
      if (f.op === FOP.SUB) {
        switch (cc) {
          case 2: return `(${a} >>> 0) < (${b} >>> 0)`;
          case 3: return `(${a} >>> 0) >= (${b} >>> 0)`;
          case 4: return `(${a} | 0) === (${b} | 0)`;
          case 5: return `(${a} | 0) !== (${b} | 0)`;
          case 6: return `(${a} >>> 0) <= (${b} >>> 0)`;
          case 7: return `(${a} >>> 0) > (${b} >>> 0)`;
          case 0xc: return `(${a} | 0) < (${b} | 0)`;
          case 0xd: return `(${a} | 0) >= (${b} | 0)`;
          case 0xe: return `(${a} | 0) <= (${b} | 0)`;
          case 0xf: return `(${a} | 0) > (${b} | 0)`;
        }
      }
      if (cc === 4) return `(${r} | 0) === 0`;
      if (cc === 5) return `(${r} | 0) !== 0`;
      if (cc === 8) return `(${r} | 0) < 0`;
      if (cc === 9) return `(${r} | 0) >= 0`;
    }
    if (f.t === 'lazy' && f.size === 1) {
      const a = `(${f.dst})`, b = `(${f.src})`, r = `(${f.res})`;
      if (f.op === FOP.SUB) {
        switch (cc) {
          case 2: return `${a} < ${b}`;
          case 3: return `${a} >= ${b}`;
          case 4: return `${a} === ${b}`;
          case 5: return `${a} !== ${b}`;
          case 6: return `${a} <= ${b}`;
          case 7: return `${a} > ${b}`;
        }
      }
      if (cc === 4) return `${r} === 0`;
      if (cc === 5) return `${r} !== 0`;
    }
    if (f.t === 'lazy64' && (cc === 4 || cc === 5) && f.op !== FOP.SUB) {
      const z = `((${f.res[0]}) | (${f.res[1]})) === 0`;
      return cc === 4 ? z : `!(${z})`;
    }
    return `condition(${cc}, ${this.mat(f)})`;
  }

  /** Store the flags of `f` into the engine (nothing when they still are the engine's). */
  private flagsOut(f: Flags): string {
    switch (f.t) {
      case 'in': return IN; // resolved once the loop's end state is known
      case 'val': return `ft = ${OUT_FLAGS.WORD}; f0 = ${f.v};`;
      case 'lazy': return `ft = ${OUT_FLAGS.LAZY}; f0 = ${f.op}; f1 = ${f.size}; f2 = ${f.res}; f3 = ${f.src}; f4 = ${f.dst}; f5 = ${f.aux};`;
      case 'lazy64': {
        const [a, b, c] = [f.res, f.src, f.dst];
        return `ft = ${OUT_FLAGS.LAZY64}; f0 = ${f.op}; f1 = ${a[0]}; f2 = ${a[1]}; f3 = ${b[0]}; f4 = ${b[1]}; f5 = ${c[0]}; f6 = ${c[1]}; f7 = ${f.aux};`;
      }
    }
  }

  // -- registers --

  /**
   * The registers live in locals while the block runs (`rlN`/`rhN`: the low and high halves
   * of register N), loaded at entry and written back to the register file on every way out
   * (the `finally` of the compiled function): a loop keeps them in machine registers.
   */
  private readonly used = new Set<number>();
  private readonly written = new Set<number>();

  private lo(r: number): string {
    this.used.add(r);
    return `rl${r}`;
  }

  private hi(r: number): string {
    this.used.add(r);
    return `rh${r}`;
  }

  private reg(size: number, r: number): Val {
    if (size === 8) return { lo: this.lo(r), hi: this.hi(r) };
    if (size === 4) return { lo: this.lo(r), hi: '0' };
    if (size === 2) return { lo: `(${this.lo(r)} & 0xffff)`, hi: '0' };
    if (r < 16) return { lo: `(${this.lo(r)} & 0xff)`, hi: '0' };
    return { lo: `((${this.lo(r - 16)} >> 8) & 0xff)`, hi: '0' };
  }

  private setReg(size: number, r: number, v: Val): void {
    const q = size === 1 && r >= 16 ? r - 16 : r;
    this.written.add(q);
    const l = this.lo(q), h = this.hi(q);
    if (size === 8) { this.emit(`${l} = ${v.lo}; ${h} = ${v.hi};`); return; }
    if (size === 4) { this.emit(`${l} = ${v.lo}; ${h} = 0;`); return; }
    if (size === 2) { this.emit(`${l} = (${l} & ~0xffff) | ((${v.lo}) & 0xffff);`); return; }
    if (r < 16) this.emit(`${l} = (${l} & ~0xff) | ((${v.lo}) & 0xff);`);
    else this.emit(`${l} = (${l} & ~0xff00) | (((${v.lo}) & 0xff) << 8);`);
  }

  /** Set the high half of register r to 0 (a 32-bit CMOV that does not move). */
  private clearHigh(r: number): string {
    this.written.add(r);
    return `${this.hi(r)} = 0;`;
  }

  /** Copy `v` into fresh locals (so later register writes do not change it). */
  private hold(size: number, v: Val): Val {
    const lo = this.v();
    this.emit(`${lo} = ${v.lo};`);
    if (size !== 8) return { lo, hi: '0' };
    const hi = this.v();
    this.emit(`${hi} = ${v.hi};`);
    return { lo, hi };
  }

  private imm(size: number, v: bigint): Val {
    if (size === 8) return { lo: String(int32Of(v)), hi: String(int32Of(v >> 32n)) };
    if (size === 4) return { lo: String(int32Of(v)), hi: '0' };
    if (size === 2) return { lo: String(Number(v & 0xffffn)), hi: '0' };
    return { lo: String(Number(v & 0xffn)), hi: '0' };
  }

  // -- memory --

  /** The effective address of `d` (a memory operand of instruction i) as a (low, high) pair of 32-bit values. */
  private ea(d: Insn, i: number): Addr {
    if (d.asz !== 8 || d.seg >= 0) throw new Unsupported();
    return { ...this.eaPair(d, i), at: i };
  }

  /** The effective address of `d` as a (low, high) pair, with 32-bit arithmetic only. */
  private eaPair(d: Insn, i: number): Val {
    if (d.ripRel) return this.constAddr(BigInt.asIntN(64, this.rips[i + 1] + d.disp));
    let acc: Val | null = null;
    if (d.base >= 0) acc = this.reg(8, d.base);
    if (d.index >= 0) {
      let x = this.reg(8, d.index);
      if (d.scale !== 0) {
        const lo = this.v(), hi = this.v();
        this.emit(`${lo} = ${x.lo} << ${d.scale}; ${hi} = (${x.hi} << ${d.scale}) | (${x.lo} >>> ${32 - d.scale});`);
        x = { lo, hi };
      }
      acc = acc === null ? x : this.addPair(acc, x);
    }
    const disp = int32Of(BigInt.asIntN(64, d.disp));
    if (acc === null) return this.constAddr(BigInt.asIntN(64, d.disp));
    if (disp !== 0) return this.addPair(acc, { lo: String(disp), hi: disp < 0 ? '-1' : '0' });
    // a copy of a bare register: a later register write must not move it
    return acc.lo.startsWith('rl') ? this.hold(8, acc) : acc;
  }

  /** A constant address as a pair (outside the exact range: not compiled). */
  private constAddr(c: bigint): Val {
    if (!(c >= -(2n ** 47n) && c < 2n ** 47n)) throw new Unsupported();
    return { lo: String(int32Of(c)), hi: String(int32Of(c >> 32n)) };
  }

  /** Emit the 64-bit sum of two pairs into fresh locals. */
  private addPair(a: Val, b: Val): Val {
    const lo = this.v(), hi = this.v();
    const carry = `((${lo} >>> 0) < (${a.lo} >>> 0) ? 1 : 0)`;
    const bhi = b.hi === '0' ? '' : b.hi === '-1' ? ' - 1' : ` + ${b.hi}`;
    this.emit(`${lo} = (${a.lo} + ${b.lo}) | 0; ${hi} = (${a.hi}${bhi} + ${carry}) | 0;`);
    return { lo, hi };
  }

  /**
   * The fast-path test for a `size`-byte access at `a` through the read or write TLB keys:
   * true when the page is in the RAM compiled code reaches directly (`q`: its offset there)
   * and the access stays in the page. Returns the test and the in-page offset expression.
   */
  private hit(a: Val, size: number, w: boolean): [string, string] {
    const t = w ? 'W' : 'R';
    this.tables.add(t);
    this.emit(`pg = ${a.lo} >>> 12; ti = pg & MK;`);
    const test = `${t}KL[ti] === pg && ${t}KH[ti] === ${a.hi} && (q = ${t}Q[ti]) >= 0`;
    if (size === 1) return [test, `(${a.lo} & 4095)`];
    return [`${test} && (o = ${a.lo} & 4095) <= ${4096 - size}`, 'o'];
  }

  /**
   * Load. A miss (the page not in the TLB's RAM entries, MMIO, an access across pages, a
   * non-canonical address) leaves before the instruction: the interpreter runs it (filling
   * the TLB, or raising the fault) and the compiled code runs again from the next block.
   * The first access of an instruction comes before any of its effects; a later one's
   * re-run only repeats a RAM read (a first access that was MMIO has left already).
   */
  private load(size: number, a: Addr): Val {
    const [test, o] = this.hit(a, size, false);
    const miss = this.exitDeopt(a.at);
    const lo = this.v();
    switch (size) {
      case 1: this.emit(`if (${test}) ${lo} = U8[q + ${o}]; else { ${miss} }`); return { lo, hi: '0' };
      case 2: this.emit(`if (${test}) ${lo} = DV.getUint16(q + ${o}, true); else { ${miss} }`); return { lo, hi: '0' };
      case 4: this.emit(`if (${test}) ${lo} = DV.getInt32(q + ${o}, true); else { ${miss} }`); return { lo, hi: '0' };
      default: {
        const hi = this.v();
        this.emit(`if (${test}) { ${lo} = DV.getInt32(q + ${o}, true); ${hi} = DV.getInt32(q + ${o} + 4, true); } else { ${miss} }`);
        return { lo, hi };
      }
    }
  }

  /**
   * Store; a miss leaves before the instruction as {@link load}'s does. The write table never
   * holds a page with decoded code, so a store into one is the interpreter's, which stops the
   * block after it.
   */
  private store(size: number, a: Addr, v: Val): void {
    const [test, o] = this.hit(a, size, true);
    let fast: string;
    switch (size) {
      case 1: fast = `U8[q + ${o}] = ${v.lo};`; break;
      case 2: fast = `DV.setUint16(q + ${o}, ${v.lo}, true);`; break;
      case 4: fast = `DV.setInt32(q + ${o}, ${v.lo}, true);`; break;
      default: fast = `DV.setInt32(q + ${o}, ${v.lo}, true); DV.setInt32(q + ${o} + 4, ${v.hi}, true);`;
    }
    this.emit(`if (${test}) { ${fast} } else { ${this.exitDeopt(a.at)} }`);
  }

  /** The TLB tables the block uses ('R', 'W'). */
  private readonly tables = new Set<string>();

  /** The r/m operand of `d` (memory read once if `a` is given). */
  private rm(d: Insn, size: number, a: Addr | null): Val {
    if (a !== null) return this.load(size, a);
    return this.reg(size, size === 1 ? d.rmB : d.rm);
  }

  private setRm(d: Insn, size: number, a: Addr | null, v: Val, i: number): void {
    if (a !== null) this.store(size, a, v);
    else this.setReg(size, size === 1 ? d.rmB : d.rm, v);
  }

  private regOp(d: Insn, size: number): number {
    return size === 1 ? d.regB : d.reg;
  }

  // -- exits --

  /** Leave to the RIP `rips[i]` by way out `way` (see {@link CompiledBlock}), the flags already set out. */
  private leave(i: number, way: number): string {
    return `xk = ${EXIT.LEAVE}; xi = ${i}; xn = done; xw = ${way}; break out;`;
  }

  /** Leave before instruction i (not run): the interpreter runs it next. */
  private exitDeopt(i: number): string {
    return `${this.flagsOut(this.before[i])} xk = ${EXIT.DEOPT}; xi = ${i}; xn = done + ${i}; break out;`;
  }

  // -- instructions --

  /** ALU op k (0 add, 1 or, 2 adc, 3 sbb, 4 and, 5 sub, 6 xor, 7 cmp) of dst and src; returns the result. */
  private alu(k: number, size: number, dst: Val, src: Val): Val {
    const carry = k === 2 || k === 3;
    let c = '0';
    if (carry) {
      c = this.v();
      this.emit(`${c} = ${this.cf(this.flags)};`);
    }
    const d = this.hold(size, dst), s = this.hold(size, src);
    const op = k === 0 ? FOP.ADD : k === 2 ? FOP.ADC : k === 3 ? FOP.SBB : k === 5 || k === 7 ? FOP.SUB : FOP.LOGIC;
    const adds = op === FOP.ADD || op === FOP.ADC;
    const subs = op === FOP.SUB || op === FOP.SBB;
    const cin = carry ? ` ${adds ? '+' : '-'} ${c}` : '';
    const bin = k === 1 ? '|' : k === 4 ? '&' : '^';
    const r = this.v();
    if (size === 8) {
      const rh = this.v();
      // 32-bit arithmetic only: the carry out of the low half from an unsigned compare
      if (adds) {
        const out = carry ? `(${c} ? (${r} >>> 0) <= (${d.lo} >>> 0) : (${r} >>> 0) < (${d.lo} >>> 0))` : `(${r} >>> 0) < (${d.lo} >>> 0)`;
        this.emit(`${r} = (${d.lo} + ${s.lo}${cin}) | 0; ${rh} = (${d.hi} + ${s.hi} + (${out} ? 1 : 0)) | 0;`);
      } else if (subs) {
        const out = carry ? `(${c} ? (${d.lo} >>> 0) <= (${s.lo} >>> 0) : (${d.lo} >>> 0) < (${s.lo} >>> 0))` : `(${d.lo} >>> 0) < (${s.lo} >>> 0)`;
        this.emit(`${r} = (${d.lo} - ${s.lo}${cin}) | 0; ${rh} = (${d.hi} - ${s.hi} - (${out} ? 1 : 0)) | 0;`);
      } else this.emit(`${r} = ${d.lo} ${bin} ${s.lo}; ${rh} = ${d.hi} ${bin} ${s.hi};`);
      this.flags = { t: 'lazy64', op, res: [r, rh], src: [s.lo, s.hi], dst: [d.lo, d.hi], aux: c };
      return { lo: r, hi: rh };
    }
    const m = size === 4 ? '| 0' : `& ${MASK_N[size]}`;
    if (adds) this.emit(`${r} = (${d.lo} + ${s.lo}${cin}) ${m};`);
    else if (subs) this.emit(`${r} = (${d.lo} - ${s.lo}${cin}) ${m};`);
    else this.emit(`${r} = ${d.lo} ${bin} ${s.lo};`);
    this.flags = { t: 'lazy', op, size, res: r, src: s.lo, dst: d.lo, aux: c };
    return { lo: r, hi: '0' };
  }

  /** ALU with an r/m destination. */
  private aluRm(d: Insn, i: number, k: number, size: number, src: Val): void {
    const a = d.mem ? this.ea(d, i) : null;
    const srcH = this.hold(size, src);
    const dst = this.rm(d, size, a);
    const prev = this.flags;
    const res = this.alu(k, size, dst, srcH);
    if (k === 7) return;
    if (a !== null) {
      // the flags count only once the store has been done (a store that misses leaves them)
      const next = this.flags;
      this.flags = prev;
      this.store(size, a, res);
      this.flags = next;
    } else this.setRm(d, size, null, res, i);
  }

  private incDec(d: Insn, i: number, size: number, dec: boolean): void {
    const a = d.mem ? this.ea(d, i) : null;
    const x = this.hold(size, this.rm(d, size, a));
    const aux = this.v();
    this.emit(`${aux} = ${this.cf(this.flags)};`);
    const op = dec ? FOP.DEC : FOP.INC;
    const r = this.v();
    let res: Val;
    let f: Flags;
    if (size === 8) {
      const rh = this.v();
      if (dec) this.emit(`${r} = (${x.lo} - 1) | 0; ${rh} = (${x.hi} - (${x.lo} === 0 ? 1 : 0)) | 0;`);
      else this.emit(`${r} = (${x.lo} + 1) | 0; ${rh} = (${x.hi} + (${x.lo} === -1 ? 1 : 0)) | 0;`);
      res = { lo: r, hi: rh };
      f = { t: 'lazy64', op, res: [r, rh], src: ['1', '0'], dst: [x.lo, x.hi], aux };
    } else {
      const m = size === 4 ? '| 0' : `& ${MASK_N[size]}`;
      this.emit(`${r} = (${x.lo} ${dec ? '-' : '+'} 1) ${m};`);
      res = { lo: r, hi: '0' };
      f = { t: 'lazy', op, size, res: r, src: '1', dst: x.lo, aux };
    }
    this.setRm(d, size, a, res, i);
    this.flags = f;
  }

  private shift(d: Insn, i: number, count: number): void {
    const k = d.reg & 7;
    if (d.osz !== 4 || (k !== 4 && k !== 5 && k !== 7) || d.mem) throw new Unsupported();
    const c = count & 31;
    if (c === 0) { this.setReg(4, d.rm, this.reg(4, d.rm)); return; }
    const x = this.hold(4, this.reg(4, d.rm));
    const r = this.v();
    this.emit(`${r} = ${x.lo} ${k === 4 ? '<<' : k === 5 ? '>>>' : '>>'} ${c} | 0;`);
    const f = this.v();
    const u = this.undef;
    this.emit(`${f} = shiftFlags32(${k}, ${x.lo}, ${c}, ${r}, ${u.shiftOf === 'result' ? 1 : 0}, ${u.shiftAf});`);
    this.setReg(4, d.rm, { lo: r, hi: '0' });
    this.flags = { t: 'val', v: f };
    void i;
  }

  private imul(d: Insn, i: number, a: Val, b: Val): void {
    if (d.osz !== 4) throw new Unsupported();
    const x = this.hold(4, a), y = this.hold(4, b);
    const r = this.v(), f = this.v();
    const { keep, fromLow } = this.undef.mul;
    // the flags before only when the vendor keeps some (reading them stops a block from looping)
    const before = keep !== 0 ? this.mat(this.flags) : '0';
    this.emit(`${r} = Math.imul(${x.lo}, ${y.lo}); ${f} = imulFlags32(${r}, ${x.lo} * ${y.lo} !== ${r}, ${before}, ${keep}, ${fromLow});`);
    this.setReg(4, d.reg, { lo: r, hi: '0' });
    this.flags = { t: 'val', v: f };
    void i;
  }

  /** RSP plus `delta` (an address of instruction i) as a pair in fresh locals. */
  private stack(i: number, delta: number): Addr {
    const a = delta === 0 ? this.hold(8, this.reg(8, 4)) : this.addPair(this.reg(8, 4), { lo: String(delta), hi: delta < 0 ? '-1' : '0' });
    return { ...a, at: i };
  }

  private push(i: number, v: Val): void {
    const a = this.stack(i, -8);
    this.store(8, a, v);
    this.setReg(8, 4, a);
  }

  /** POP m64 (no RSP in the address): RSP moves only once the store is done. */
  private popMem(d: Insn, i: number): void {
    const sp = this.stack(i, 0);
    const v = this.load(8, sp);
    const a = this.ea(d, i);
    this.store(8, a, v);
    this.setReg(8, 4, this.addPair(sp, { lo: '8', hi: '0' }));
  }

  /** CMOVcc: the source is read whatever the condition; a 32-bit move that does not happen still clears the high half. */
  private cmov(d: Insn, i: number, size: number): void {
    const a = d.mem ? this.ea(d, i) : null;
    const src = this.hold(size, this.rm(d, size, a));
    const c = this.v();
    this.emit(`${c} = ${this.cond(d.op & 15)};`);
    this.emit(`if (${c}) {`);
    this.setReg(size, d.reg, src);
    this.emit(size === 4 ? `} else ${this.clearHigh(d.reg)}` : '}');
  }

  /** NEG (the flags of 0 - x) or NOT (no flags). */
  private negNot(d: Insn, i: number, size: number, neg: boolean): void {
    const a = d.mem ? this.ea(d, i) : null;
    const x = this.hold(size, this.rm(d, size, a));
    if (!neg) {
      this.setRm(d, size, a, size === 8 ? { lo: `~${x.lo}`, hi: `~${x.hi}` } : { lo: `~${x.lo}`, hi: '0' }, i);
      return;
    }
    const prev = this.flags;
    const res = this.alu(5, size, { lo: '0', hi: '0' }, x);
    const next = this.flags;
    this.flags = prev; // a faulting store leaves the flags
    this.setRm(d, size, a, res, i);
    this.flags = next;
  }

  /** Pop 8 bytes; returns the value (RSP updated). */
  private pop(i: number): Val {
    const a = this.stack(i, 0);
    const v = this.load(8, a);
    this.setReg(8, 4, this.addPair(a, { lo: '8', hi: '0' }));
    return v;
  }

  /** Compile instruction i (not the last, or the last when it does not transfer control). */
  private insn(d: Insn, i: number): void {
    if (d.lock || d.rep !== 0 || d.bad !== null || d.ud) throw new Unsupported();
    const op = d.op;
    const size = d.osz;
    if (op < 0x40) {
      const k = op >> 3;
      switch (op & 7) {
        case 0: case 1: this.aluRm(d, i, k, size, this.reg(size, this.regOp(d, size))); return;
        case 2: case 3: {
          const a = d.mem ? this.ea(d, i) : null;
          const src = this.rm(d, size, a);
          const res = this.alu(k, size, this.reg(size, this.regOp(d, size)), src);
          if (k !== 7) this.setReg(size, this.regOp(d, size), res);
          return;
        }
        case 4: case 5: {
          const res = this.alu(k, size, this.reg(size, 0), this.imm(size, d.imm));
          if (k !== 7) this.setReg(size, 0, res);
          return;
        }
      }
      throw new Unsupported();
    }
    // the stack moves 8 bytes (2 with an operand-size prefix: interpreted)
    const stack8 = size !== 2;
    if (op >= 0x50 && op <= 0x57 && stack8) { this.push(i, this.hold(8, this.reg(8, d.rm))); return; }
    if (op >= 0x58 && op <= 0x5f && stack8) { const v = this.pop(i); this.setReg(8, d.rm, v); return; }
    if (op >= 0x140 && op <= 0x14f) { this.cmov(d, i, size); return; }
    if (op >= 0x190 && op <= 0x19f) {
      const a = d.mem ? this.ea(d, i) : null;
      const c = this.v();
      this.emit(`${c} = ${this.cond(op & 15)} ? 1 : 0;`);
      this.setRm(d, 1, a, { lo: c, hi: '0' }, i);
      return;
    }
    if (op >= 0xb0 && op <= 0xbf) { this.setReg(size, size === 1 ? d.rmB : d.rm, this.imm(size, d.imm)); return; }
    switch (op) {
      case 0x63: {
        if (size === 2) throw new Unsupported();
        const a = d.mem ? this.ea(d, i) : null;
        const v = this.hold(4, this.rm(d, 4, a));
        this.setReg(size, d.reg, size === 8 ? { lo: v.lo, hi: `(${v.lo} >> 31)` } : v);
        return;
      }
      case 0x68: case 0x6a: if (!stack8) break; this.push(i, this.imm(8, d.imm)); return;
      case 0x8f: {
        if (!stack8 || (d.reg & 7) !== 0 || !d.mem || d.base === 4 || d.index === 4) break;
        this.popMem(d, i);
        return;
      }
      case 0x69: case 0x6b: {
        const a = d.mem ? this.ea(d, i) : null;
        this.imul(d, i, this.rm(d, 4, a), this.imm(4, d.imm));
        return;
      }
      case 0x80: case 0x81: case 0x83: this.aluRm(d, i, d.reg & 7, size, this.imm(size, d.imm)); return;
      case 0x84: case 0x85: {
        const a = d.mem ? this.ea(d, i) : null;
        this.alu(4, size, this.rm(d, size, a), this.reg(size, this.regOp(d, size)));
        return;
      }
      case 0x88: case 0x89: {
        const v = this.hold(size, this.reg(size, this.regOp(d, size)));
        const a = d.mem ? this.ea(d, i) : null;
        this.setRm(d, size, a, v, i);
        return;
      }
      case 0x8a: case 0x8b: {
        const a = d.mem ? this.ea(d, i) : null;
        this.setReg(size, this.regOp(d, size), this.rm(d, size, a));
        return;
      }
      case 0x8d: {
        if (!d.mem || d.asz !== 8 || d.seg >= 0) throw new Unsupported();
        const a = this.eaPair(d, i); // an address computed, not accessed: any value is exact
        this.setReg(size, d.reg, size === 8 ? a : { lo: a.lo, hi: '0' });
        return;
      }
      case 0x90: if (d.rm === 0) return; throw new Unsupported();
      case 0xa8: case 0xa9: this.alu(4, size, this.reg(size, 0), this.imm(size, d.imm)); return;
      case 0xc1: this.shift(d, i, d.imm2); return;
      case 0xd1: this.shift(d, i, 1); return;
      case 0xc6: case 0xc7: {
        if ((d.reg & 7) !== 0) throw new Unsupported();
        const a = d.mem ? this.ea(d, i) : null;
        this.setRm(d, size, a, this.imm(size, d.imm), i);
        return;
      }
      case 0xf6: case 0xf7: {
        const k = d.reg & 7;
        if (k === 2 || k === 3) { this.negNot(d, i, size, k === 3); return; }
        if (k !== 0) throw new Unsupported();
        const a = d.mem ? this.ea(d, i) : null;
        this.alu(4, size, this.rm(d, size, a), this.imm(size, d.imm));
        return;
      }
      case 0xfe: case 0xff: {
        const k = d.reg & 7;
        if (k <= 1) { this.incDec(d, i, size, k === 1); return; }
        if (op === 0xff && k === 6 && d.mem && stack8) {
          const a = this.ea(d, i);
          this.push(i, this.load(8, a));
          return;
        }
        throw new Unsupported();
      }
      case 0x11f: return; // NOP r/m
      case 0x1af: {
        const a = d.mem ? this.ea(d, i) : null;
        this.imul(d, i, this.reg(4, d.reg), this.rm(d, 4, a));
        return;
      }
      case 0x1b6: case 0x1b7: case 0x1be: case 0x1bf: {
        const from = op === 0x1b6 || op === 0x1be ? 1 : 2;
        const a = d.mem ? this.ea(d, i) : null;
        const v = this.hold(from, this.rm(d, from, a));
        if (op === 0x1b6 || op === 0x1b7) this.setReg(size, d.reg, { lo: v.lo, hi: '0' });
        else {
          const s = from === 1 ? `((${v.lo} << 24) >> 24)` : `((${v.lo} << 16) >> 16)`;
          const lo = this.hold(4, { lo: s, hi: '0' }).lo;
          this.setReg(size, d.reg, size === 8 ? { lo, hi: `(${lo} >> 31)` } : size === 4 ? { lo, hi: '0' } : { lo, hi: '0' });
        }
        return;
      }
    }
    throw new Unsupported();
  }

  /** Compile; null if some instruction is outside the subset. */
  compile(mmu: FastMmu): CompiledBlock | null {
    const ins = this.insns;
    const n = ins.length;
    const last = ins[n - 1];
    const lop = last.op;
    const isJcc = (lop >= 0x70 && lop <= 0x7f) || (lop >= 0x180 && lop <= 0x18f);
    const isJmp = lop === 0xeb || lop === 0xe9;
    const isCall = lop === 0xe8;
    const isRet = lop === 0xc3;
    const transfers = isJcc || isJmp || isCall || isRet;
    const target = isJcc || isJmp || isCall ? BigInt.asUintN(64, this.rips[n] + last.imm) : 0n;
    const selfLoop = (isJcc || isJmp) && target === this.rips[0];
    // K: RIP of each instruction, the fall-through, the branch target
    const K = [...this.rips, target];
    const body: string[] = [];
    // compiled: instructions [0, upTo); the rest (from the first outside the subset) is interpreted
    let upTo = transfers ? n - 1 : n;
    let complete = true;
    try {
      for (let i = 0; i < upTo; i++) {
        this.before[i] = this.flags;
        const mark = this.out.length;
        try {
          this.insn(ins[i], i);
        } catch (e) {
          if (!(e instanceof Unsupported)) throw e;
          this.out.splice(mark);
          this.flags = this.before[i];
          upTo = i;
          complete = false;
          break;
        }
        body.push(...this.out.splice(mark));
      }
      if (upTo === 0) return null;
      if (complete && transfers && (last.lock || last.rep !== 0 || last.bad !== null || last.ud || last.osz === 2 || (isRet && last.imm !== 0n))) complete = false;
      if (!complete) {
        this.endFlags = this.flags;
        body.push(`done += ${upTo}; ${this.flagsOut(this.flags)} ${this.leave(upTo, -1)}`);
      } else if (transfers) {
        const i = n - 1;
        this.before[i] = this.flags;
        const mark = this.out.length;
        const fo = (): string => this.flagsOut(this.flags);
        if (isJcc) {
          const c = this.v();
          this.emit(`${c} = ${this.cond(lop & 15)};`);
          this.endFlags = this.flags;
          this.emit(`done = (done + ${n}) | 0;`);
          if (selfLoop) this.emit(`if (${c}) { if (done <= last) continue; ${fo()} ${this.leave(n + 1, 1)} }`);
          else this.emit(`if (${c}) { ${fo()} ${this.leave(n + 1, 1)} }`);
          this.emit(`${fo()} ${this.leave(n, 0)}`);
        } else if (isJmp) {
          this.endFlags = this.flags;
          this.emit(`done = (done + ${n}) | 0;`);
          if (selfLoop) this.emit(`if (done <= last) continue;`);
          this.emit(`${fo()} ${this.leave(n + 1, 1)}`);
        } else if (isCall) {
          const ret = this.rips[n];
          this.push(i, { lo: String(int32Of(ret)), hi: String(int32Of(ret >> 32n)) });
          this.endFlags = this.flags;
          this.emit(`done += ${n}; ${fo()} ${this.leave(n + 1, 1)}`);
        } else {
          const a = this.stack(i, 0);
          const t = this.load(8, a);
          this.setReg(8, 4, this.addPair(a, { lo: '8', hi: '0' }));
          this.endFlags = this.flags;
          this.emit(`done += ${n}; ${fo()} xk = ${EXIT.RETURN}; xl = ${t.lo}; xh = ${t.hi}; xn = done; xw = -1; break out;`);
        }
        body.push(...this.out.splice(mark));
      } else {
        this.endFlags = this.flags;
        body.push(`done += ${n}; ${this.flagsOut(this.flags)} ${this.leave(n, 0)}`);
      }
    } catch (e) {
      if (e instanceof Unsupported) return null;
      throw e;
    }
    const loops = selfLoop && complete;
    // a loop re-enters with the last pass's flags, not the engine's: not when something read those
    if (loops && this.readsIncoming) return null;
    const inFlags = loops && this.endFlags.t !== 'in' ? `if (done > 0) { ${this.flagsOut(this.endFlags)} } else ft = 0;` : 'ft = 0;';
    const regs = [...this.used].sort((a, b) => a - b);
    const writeBack = [...this.written].sort((a, b) => a - b).map((r) => `R[${2 * r}] = rl${r}; R[${2 * r + 1}] = rh${r};`);
    const src = [
      // last: the most instructions done after which one more pass fits the budget (an int32)
      `let done = 0${this.vars.map((v) => `, ${v} = 0`).join('')}; const last = (budget - ${n}) | 0;`,
      regs.length ? `let ${regs.map((r) => `rl${r} = R[${2 * r}], rh${r} = R[${2 * r + 1}]`).join(', ')};` : '',
      this.tables.size ? 'let pg = 0, ti = 0, q = 0, o = 0;' : '',
      'let xk = 0, xi = 0, xn = 0, xw = 0, xl = 0, xh = 0, ft = 0, f0 = 0, f1 = 0, f2 = 0, f3 = 0, f4 = 0, f5 = 0, f6 = 0, f7 = 0;',
      'try {',
      loops ? 'out: for (;;) {' : 'out: {',
      ...body,
      '}',
      'return finish(e, K, xk, xi, xn, xw, xl, xh, ft, f0, f1, f2, f3, f4, f5, f6, f7);',
      // compiled code raises no guest exception (a miss leaves first): the registers go back on every return
      writeBack.length ? `} finally { ${writeBack.join(' ')} }` : '} finally { /* no register written */ }',
    ].join('\n').replaceAll(IN, inFlags);
    // The RAM and the bank's TLB tables are constants of the closure (so the optimising
    // compiler can embed them): the engine compiles a block again for another bank.
    const consts = [
      `const { ${Object.keys(HELPERS).join(', ')} } = H;`,
      'const MK = T.tlbMask, U8 = T.ram, DV = T.ramView;',
      this.tables.has('R') ? 'const RKL = T.rKeyLo, RKH = T.rKeyHi, RQ = T.rHost;' : '',
      this.tables.has('W') ? 'const WKL = T.wKeyLo, WKH = T.wKeyHi, WQ = T.wHost;' : '',
    ].join(' ');
    const make = new Function('H', 'K', 'T', `${consts}\nreturn function block(e, R, budget) {\n${src}\n};`) as (h: typeof HELPERS, k: bigint[], t: FastMmu) => CompiledBlock;
    return make(HELPERS, K, mmu);
  }
}

/**
 * Compile a decoded block whose instructions start at `rip0` and end at the RIPs in `next`
 * (each instruction's next RIP); null when some instruction is outside the subset. The code
 * reads and writes RAM through `mmu`'s current TLB bank (its tables are constants of the
 * compiled code): run it only while that bank is active. Undefined flags are `undef`'s
 * (the engine's vendor, src/engine/vendor.ts).
 */
export function compileBlock(insns: Insn[], rip0: bigint, next: readonly bigint[], mmu: FastMmu, undef: Readonly<UndefinedResults>): CompiledBlock | null {
  if (insns.length === 0) return null;
  return new BlockCompiler(insns, [rip0, ...next], undef).compile(mmu);
}

/**
 * A seeded generator of random integer-ISA instruction sequences for the engine's
 * differential tests (issue 15), emitted as raw bytes (no assembler needed).
 *
 * Every memory operand addresses the data window (layout.ts): some registers are *pointers*
 * (RSI, RDI and one or two more, set into the window's middle; RSP too) and one is a small
 * *index* (0-0x1ff); generated instructions never write those except where the instruction
 * itself moves them by a bounded amount (string ops, push/pop). Displacements are small,
 * so a generated sequence cannot fault unless asked to ({@link GenOptions.faults}), and it
 * always terminates: branches only go forward, `rep` counts are at most 16.
 *
 * {@link hostileSequence} is the other mode: fully random bytes, for "faults are reported,
 * nothing hangs".
 */
import { CODE, DATA, DATA_SIZE, type SequenceTest } from './layout.js';

// ------------------------------------------------------------------ PRNG

/** A deterministic PRNG (sfc32 seeded through splitmix32): same seed, same sequence. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d = 1;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    [this.#a, this.#b, this.#c] = [next(), next(), next()];
    for (let i = 0; i < 12; i++) this.u32();
  }

  /** A uniform unsigned 32-bit integer. */
  u32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 2 ** 32 < p;
  }

  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /** A uniform unsigned 64-bit bigint. */
  u64(): bigint {
    return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const x = this.u32();
      for (let j = 0; j < 4 && i + j < n; j++) out[i + j] = (x >>> (8 * j)) & 0xff;
    }
    return out;
  }
}

// ------------------------------------------------------------------ encoding

/** A register operand: GPR number 0-15; `high` for AH/CH/DH/BH (number 4-7, no REX allowed). */
interface RegOp {
  kind: 'reg';
  n: number;
  high?: boolean;
}
/** A memory operand. `rip` operands are encoded RIP-relative to the absolute `target`. */
interface MemOp {
  kind: 'mem';
  base?: number;
  index?: number;
  scale?: number;
  disp: number;
  /** Force disp32 even when disp8 would do. */
  wide?: boolean;
  rip?: boolean;
  target?: number;
  /** 0x67: 32-bit address size. */
  addr32?: boolean;
}
type RmOp = RegOp | MemOp;

/** One instruction to encode. */
interface Insn {
  prefixes?: number[];
  w?: boolean;
  opcode: number[];
  /** A register in the low 3 bits of the last opcode byte. */
  opReg?: RegOp;
  /** ModRM.reg: a register, or an opcode extension /0-/7. */
  reg?: RegOp | number;
  rm?: RmOp;
  imm?: { value: bigint; size: 1 | 2 | 4 | 8 };
  /** Emit a REX byte even if no bit of it is needed (0x40). */
  rex?: boolean;
}

/** Thrown when an operand combination cannot be encoded (AH..BH with a REX byte). */
class EncodeConflict extends Error {}

/** Little-endian bytes of `v` (two's complement) in `size` bytes. */
function le(v: bigint, size: number): number[] {
  const out: number[] = [];
  let x = BigInt.asUintN(size * 8, v);
  for (let i = 0; i < size; i++, x >>= 8n) out.push(Number(x & 0xffn));
  return out;
}

/** The REX bits and whether a REX is required or forbidden by `r`. */
function regNeeds(r: RegOp | undefined, byteOp: boolean): { ext: number; need: boolean; forbid: boolean } {
  if (!r) return { ext: 0, need: false, forbid: false };
  if (r.high) return { ext: 0, need: false, forbid: true };
  return { ext: r.n >> 3, need: r.n >= 8 || (byteOp && r.n >= 4 && r.n < 8), forbid: false };
}

/** ModRM, SIB and displacement bytes of a memory operand (RIP-relative disp patched later). */
function memBytes(m: MemOp, regField: number): { bytes: number[]; x: number; b: number; ripAt?: number } {
  const r = (regField & 7) << 3;
  if (m.rip) return { bytes: [r | 5, 0, 0, 0, 0], x: 0, b: 0, ripAt: 1 };
  const d8 = !m.wide && m.disp >= -128 && m.disp <= 127;
  if (m.base === undefined) {
    const index = m.index ?? 4;
    return { bytes: [r | 4, ((m.scale ?? 0) << 6) | ((index & 7) << 3) | 5, ...le(BigInt(m.disp), 4)], x: index >> 3, b: 0 };
  }
  const base = m.base;
  const needDisp = m.disp !== 0 || (base & 7) === 5 || m.wide;
  const mod = !needDisp ? 0 : d8 ? 1 : 2;
  const disp = mod === 0 ? [] : le(BigInt(m.disp), mod === 1 ? 1 : 4);
  if (m.index === undefined && (base & 7) !== 4) return { bytes: [(mod << 6) | r | (base & 7), ...disp], x: 0, b: base >> 3 };
  const index = m.index ?? 4;
  const sib = ((m.scale ?? 0) << 6) | ((index & 7) << 3) | (base & 7);
  return { bytes: [(mod << 6) | r | 4, sib, ...disp], x: index >> 3, b: base >> 3 };
}

/**
 * Encode `insn` placed at absolute address `at`.
 *
 * @throws EncodeConflict when AH..BH meet a needed REX.
 */
function encode(insn: Insn, at: number, byteOp: boolean): number[] {
  const reg = typeof insn.reg === 'object' ? insn.reg : undefined;
  const regField = typeof insn.reg === 'number' ? insn.reg : (reg?.n ?? 0);
  const rmReg = insn.rm?.kind === 'reg' ? insn.rm : undefined;
  const parts = [regNeeds(reg, byteOp), regNeeds(rmReg, byteOp), regNeeds(insn.opReg, byteOp)];
  let modrm: number[] = [];
  let x = 0;
  let b = (rmReg?.n ?? insn.opReg?.n ?? 0) >> 3;
  let ripAt: number | undefined;
  if (insn.rm?.kind === 'mem') {
    const m = memBytes(insn.rm, regField);
    [modrm, x, b, ripAt] = [m.bytes, m.x, m.b, m.ripAt];
  } else if (rmReg) modrm = [0xc0 | ((regField & 7) << 3) | (rmReg.n & 7)];
  const rexBits = (insn.w ? 8 : 0) | (parts[0].ext << 2) | (x << 1) | b;
  const needRex = rexBits !== 0 || insn.rex || parts.some((p) => p.need);
  if (needRex && parts.some((p) => p.forbid)) throw new EncodeConflict();
  const prefixes = [...(insn.prefixes ?? [])];
  if (insn.rm?.kind === 'mem' && insn.rm.addr32) prefixes.push(0x67);
  const opcode = [...insn.opcode];
  if (insn.opReg) opcode[opcode.length - 1] |= insn.opReg.n & 7;
  const out = [...prefixes, ...(needRex ? [0x40 | rexBits] : []), ...opcode];
  const modrmAt = out.length;
  out.push(...modrm);
  if (insn.imm) out.push(...le(insn.imm.value, insn.imm.size));
  if (ripAt !== undefined && insn.rm?.kind === 'mem') {
    const disp = (insn.rm.target ?? 0) - (at + out.length);
    out.splice(modrmAt + ripAt, 4, ...le(BigInt(disp), 4));
  }
  return out;
}

// ------------------------------------------------------------------ generation context

/** Options for {@link generateSequence}. */
export interface GenOptions {
  /** Instructions to emit, not counting set-up moves and jump blocks' contents (default 1-24). */
  length?: number;
  /**
   * After each instruction that leaves flags undefined (mul, div, shifts/rotates by counts
   * other than 1, bt*, bsf/bsr …), emit `cmp $imm8,%al` so no undefined flag survives:
   * the comparison then shows only defined behaviour (default false: the hardware's
   * undefined flags are compared as they are).
   */
  defineFlags?: boolean;
  /**
   * Probability of leaving out a divide's set-up (so #DE may happen) and of other
   * deliberate faults: a `lock` on a register form (#UD), `ud2`, a load from an unmapped
   * page or a store to the read-only one (default 0).
   */
  faults?: number;
  /**
   * Draw only from the classes the engine's block compiler mostly covers (ALU, test/inc/dec,
   * shifts, moves, the stack): long runs of compiled code (default false).
   */
  compiledSubset?: boolean;
}

/** A generated sequence: the test and, for diagnostics, each instruction's name and bytes. */
export interface GeneratedSequence extends SequenceTest {
  /** `mnemonic: hex bytes`, one per emitted instruction (set-up moves included). */
  listing: string[];
}

const GPR_NAMES = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
const RSP = 4;

/** Operand sizes in bytes. */
type Size = 1 | 2 | 4 | 8;

class Gen {
  readonly code: number[] = [];
  readonly listing: string[] = [];
  /** Registers generated instructions must not write: RSP, the pointers, the index. */
  readonly fixed = new Set<number>([RSP]);
  readonly pointers: number[] = [];
  index = 0;

  constructor(readonly rng: Rng, readonly opts: GenOptions) {}

  /** The address the next instruction will be at. */
  get at(): number {
    return CODE + this.code.length;
  }

  /** Encode and append one instruction; retries `build` on encoding conflicts. */
  emit(name: string, build: () => Insn, byteOp = false, undefFlags = false): void {
    for (let tries = 0; tries < 20; tries++) {
      let bytes: number[];
      try {
        bytes = encode(build(), this.at, byteOp);
      } catch (e) {
        if (e instanceof EncodeConflict) continue;
        throw e;
      }
      this.raw(name, bytes);
      if (undefFlags && this.opts.defineFlags) this.raw('cmp al,imm8', [0x3c, this.rng.int(256)]);
      return;
    }
  }

  /** Append bytes as they are. */
  raw(name: string, bytes: number[]): void {
    this.code.push(...bytes);
    this.listing.push(`${name}: ${bytes.map((x) => x.toString(16).padStart(2, '0')).join(' ')}`);
  }

  /** A register that may be written. */
  writable(): number {
    for (;;) {
      const n = this.rng.int(16);
      if (!this.fixed.has(n)) return n;
    }
  }

  /** A register operand of `size` bytes; `write` excludes the fixed ones (AH..BH count as their full register). */
  reg(size: Size, write: boolean): RegOp {
    if (size === 1 && this.rng.chance(0.25)) {
      const n = this.rng.int(4);
      if (!write || !this.fixed.has(n)) return { kind: 'reg', n: n + 4, high: true };
    }
    return { kind: 'reg', n: write ? this.writable() : this.rng.int(16) };
  }

  /** A memory operand in the data window (`span` bytes must fit after the address). */
  mem(span = 8): MemOp {
    const disp = this.rng.chance(0.5) ? this.rng.range(-128, 127) : this.rng.range(-0x800, 0x800);
    const wide = this.rng.chance(0.1);
    const addr32 = this.rng.chance(0.08);
    switch (this.rng.int(6)) {
      case 0:
        return { kind: 'mem', rip: true, target: DATA + this.rng.range(0x100, DATA_SIZE - 0x100 - span), disp: 0 };
      case 1:
        return { kind: 'mem', disp: DATA + this.rng.range(0x100, DATA_SIZE - 0x100 - span), addr32 };
      case 2:
        return { kind: 'mem', base: this.rng.pick(this.pointers), index: this.index, scale: this.rng.int(4), disp, wide, addr32 };
      case 3:
        return { kind: 'mem', base: RSP, disp, wide, addr32 };
      case 4:
        return { kind: 'mem', base: this.rng.pick(this.pointers), disp: 0, addr32 };
      default:
        return { kind: 'mem', base: this.rng.pick(this.pointers), disp, wide, addr32 };
    }
  }

  /** A register (writable if `write`) or memory r/m operand. */
  rm(size: Size, write: boolean): RmOp {
    return this.rng.chance(0.4) ? this.mem() : this.reg(size, write);
  }

  /** Prefixes and REX.W for an operand size, plus occasional harmless segment prefixes. */
  sized(size: Size): { prefixes: number[]; w: boolean } {
    const prefixes: number[] = [];
    if (this.rng.chance(0.05)) prefixes.push(this.rng.pick([0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65]));
    if (size === 2) prefixes.push(0x66);
    return { prefixes, w: size === 8 };
  }

  /** A random operand size. */
  size(): Size {
    return this.rng.pick([1, 2, 4, 8] as const);
  }

  /** An immediate of `size` bytes with interesting values likelier. */
  immValue(size: number): bigint {
    const bits = size * 8;
    const special = [0n, 1n, -1n, 1n << BigInt(bits - 1), (1n << BigInt(bits - 1)) - 1n, 0x7fn, 0x80n];
    return BigInt.asUintN(bits, this.rng.chance(0.3) ? this.rng.pick(special) : this.rng.u64());
  }

  /** `mov $value, reg64` (sign-extended imm32) as a set-up step. */
  setReg(n: number, value: number): void {
    this.emit('mov r64,imm32', () => ({ w: true, opcode: [0xc7], reg: 0, rm: { kind: 'reg', n }, imm: { value: BigInt(value), size: 4 } }));
  }
}

// ------------------------------------------------------------------ instruction classes

const ALU = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp'] as const;
const CC = ['o', 'no', 'b', 'ae', 'e', 'ne', 'be', 'a', 's', 'ns', 'p', 'np', 'l', 'ge', 'le', 'g'] as const;

/** The immediate size of an operand size's `iz` immediate. */
function izSize(size: Size): 1 | 2 | 4 {
  return size === 1 ? 1 : size === 2 ? 2 : 4;
}

/** add/or/adc/sbb/and/sub/xor/cmp in every encoding. */
function alu(g: Gen): void {
  const op = g.rng.int(8);
  const size = g.size();
  const s = g.sized(size);
  const write = op !== 7;
  const byteOp = size === 1;
  const w = size === 1 ? 0 : 1;
  const name = `${ALU[op]}${size * 8}`;
  const lock = (m: RmOp): number[] => (write && m.kind === 'mem' && g.rng.chance(0.2) ? [0xf0] : []);
  switch (g.rng.int(5)) {
    case 0: // r/m, r
      return g.emit(`${name} r/m,r`, () => {
        const rm = g.rm(size, write);
        return { ...s, prefixes: [...lock(rm), ...s.prefixes], opcode: [op * 8 + w], reg: g.reg(size, false), rm };
      }, byteOp);
    case 1: // r, r/m
      return g.emit(`${name} r,r/m`, () => ({ ...s, opcode: [op * 8 + 2 + w], reg: g.reg(size, write), rm: g.rm(size, false) }), byteOp);
    case 2: // accumulator, imm
      if (write && g.fixed.has(0)) return;
      return g.emit(`${name} acc,imm`, () => ({ ...s, opcode: [op * 8 + 4 + w], imm: { value: g.immValue(izSize(size)), size: izSize(size) } }), byteOp);
    case 3: // 80/81 /op
      return g.emit(`${name} r/m,imm`, () => {
        const rm = g.rm(size, write);
        return { ...s, prefixes: [...lock(rm), ...s.prefixes], opcode: [size === 1 ? 0x80 : 0x81], reg: op, rm, imm: { value: g.immValue(izSize(size)), size: izSize(size) } };
      }, byteOp);
    default: // 83 /op imm8 (sign-extended)
      if (size === 1) return alu(g);
      return g.emit(`${name} r/m,imm8`, () => ({ ...s, opcode: [0x83], reg: op, rm: g.rm(size, write), imm: { value: g.immValue(1), size: 1 } }));
  }
}

/** test, inc/dec, not/neg. */
function unary(g: Gen): void {
  const size = g.size();
  const s = g.sized(size);
  const byteOp = size === 1;
  const w = size === 1 ? 0 : 1;
  switch (g.rng.int(4)) {
    case 0:
      return g.emit(`test${size * 8} r/m,r`, () => ({ ...s, opcode: [0x84 + w], reg: g.reg(size, false), rm: g.rm(size, false) }), byteOp);
    case 1:
      return g.emit(`test${size * 8} r/m,imm`, () => ({ ...s, opcode: [0xf6 + w], reg: 0, rm: g.rm(size, false), imm: { value: g.immValue(izSize(size)), size: izSize(size) } }), byteOp);
    case 2: {
      const d = g.rng.int(2);
      return g.emit(`${d ? 'dec' : 'inc'}${size * 8}`, () => ({ ...s, opcode: [0xfe + w], reg: d, rm: g.rm(size, true) }), byteOp);
    }
    default: {
      const n = g.rng.int(2);
      return g.emit(`${n ? 'neg' : 'not'}${size * 8}`, () => ({ ...s, opcode: [0xf6 + w], reg: 2 + n, rm: g.rm(size, true) }), byteOp);
    }
  }
}

const SHIFTS = ['rol', 'ror', 'rcl', 'rcr', 'shl', 'shr', 'sal(/6)', 'sar'] as const;

/** Shifts and rotates by 1, CL and imm8 (counts 0, 1, width-1, width, width+1, 31, 32, 63, 64, 255 likelier). */
function shift(g: Gen): void {
  const op = g.rng.chance(0.03) ? 6 : g.rng.pick([0, 1, 2, 3, 4, 5, 7]);
  const size = g.size();
  const s = g.sized(size);
  const w = size === 1 ? 0 : 1;
  const width = size * 8;
  const count = (): number => (g.rng.chance(0.5) ? g.rng.pick([0, 1, 2, width - 1, width, width + 1, 31, 32, 33, 63, 64, 255]) : g.rng.int(256));
  const name = `${SHIFTS[op]}${width}`;
  switch (g.rng.int(3)) {
    case 0:
      return g.emit(`${name} r/m,1`, () => ({ ...s, opcode: [0xd0 + w], reg: op, rm: g.rm(size, true) }), size === 1, true);
    case 1:
      if (g.rng.chance(0.5)) g.setReg(1, count());
      return g.emit(`${name} r/m,cl`, () => ({ ...s, opcode: [0xd2 + w], reg: op, rm: g.rm(size, true) }), size === 1, true);
    default:
      return g.emit(`${name} r/m,imm8`, () => ({ ...s, opcode: [0xc0 + w], reg: op, rm: g.rm(size, true), imm: { value: BigInt(count()), size: 1 } }), size === 1, true);
  }
}

/** shld/shrd by imm8 and CL. */
function doubleShift(g: Gen): void {
  const size = g.rng.pick([2, 4, 8] as const);
  const s = g.sized(size);
  const right = g.rng.int(2);
  const byCl = g.rng.int(2);
  if (byCl && g.rng.chance(0.5)) g.setReg(1, g.rng.int(70));
  g.emit(`sh${right ? 'r' : 'l'}d${size * 8}`, () => ({
    ...s, opcode: [0x0f, 0xa4 + right * 8 + byCl], reg: g.reg(size, false), rm: g.rm(size, true),
    imm: byCl ? undefined : { value: BigInt(g.rng.int(70)), size: 1 },
  }), false, true);
}

/** Make the divisor operand non-zero (and not -1 for idiv) and the dividend's high half small. */
function divSetup(g: Gen, size: Size, signed: boolean, rm: RmOp): void {
  const divisor = g.rng.pick([2, 3, 7, 10, 255, -2, -3, -100, 0x12345, 0x7fffffff]) || 1;
  const v = size === 1 ? (divisor & 0x7f) || 3 : size === 2 ? (divisor & 0x7fff) || 3 : divisor;
  if (rm.kind === 'reg') {
    if (rm.high) g.emit('mov r8,imm8', () => ({ opcode: [0xb0], opReg: rm, imm: { value: BigInt(v), size: 1 } }), true);
    else g.setReg(rm.n, v);
  } else {
    g.emit('mov m64,imm32', () => ({ w: true, opcode: [0xc7], reg: 0, rm, imm: { value: BigInt(v), size: 4 } }));
  }
  if (signed) {
    // sign-extend the accumulator into its high half: cbw / cwd / cdq / cqo
    if (size === 1) g.raw('cbw', [0x66, 0x98]);
    else g.raw(`c${size * 8}`, [...(size === 2 ? [0x66] : []), ...(size === 8 ? [0x48] : []), 0x99]);
  } else if (size === 1) g.raw('mov ah,0', [0xb4, 0x00]);
  else g.raw('xor edx,edx', [0x31, 0xd2]);
}

/** mul/imul/div/idiv (one-operand forms), two- and three-operand imul. */
function muldiv(g: Gen): void {
  const size = g.size();
  const s = g.sized(size);
  const w = size === 1 ? 0 : 1;
  const kind = g.rng.int(4);
  if (kind <= 1) {
    const sub = 4 + g.rng.int(4); // mul, imul, div, idiv
    const rm = g.rm(size, sub >= 6); // a divisor register gets set up: it must be writable
    if (rm.kind === 'reg' && (rm.n === 0 || rm.n === 2 || (rm.high && rm.n === 4))) return; // divisor in the dividend
    if (sub >= 6 && !g.rng.chance(g.opts.faults ?? 0)) divSetup(g, size, sub === 7, rm);
    const names = ['mul', 'imul', 'div', 'idiv'];
    return g.emit(`${names[sub - 4]}${size * 8}`, () => ({ ...s, opcode: [0xf6 + w], reg: sub, rm }), size === 1, true);
  }
  if (size === 1) return muldiv(g);
  if (kind === 2) return g.emit(`imul${size * 8} r,r/m`, () => ({ ...s, opcode: [0x0f, 0xaf], reg: g.reg(size, true), rm: g.rm(size, false) }), false, true);
  const imm8 = g.rng.int(2);
  const isz = imm8 ? 1 : izSize(size);
  g.emit(`imul${size * 8} r,r/m,imm`, () => ({ ...s, opcode: [imm8 ? 0x6b : 0x69], reg: g.reg(size, true), rm: g.rm(size, false), imm: { value: g.immValue(isz), size: isz } }), false, true);
}

/** bt/bts/btr/btc (register and imm8 bit offsets), bsf/bsr, bswap. */
function bits(g: Gen): void {
  const size = g.rng.pick([2, 4, 8] as const);
  const s = g.sized(size);
  switch (g.rng.int(4)) {
    case 0: {
      const op = g.rng.int(4);
      const rm = g.rm(size, op !== 0);
      let offset = g.reg(size, false);
      if (rm.kind === 'mem') {
        // a register bit offset reaches offset/8 bytes away: keep it within ±64 bytes
        offset = { kind: 'reg', n: g.writable() };
        g.setReg(offset.n, g.rng.range(-512, 511));
      }
      const lock = rm.kind === 'mem' && op !== 0 && g.rng.chance(0.2) ? [0xf0] : [];
      return g.emit(`${['bt', 'bts', 'btr', 'btc'][op]}${size * 8} r/m,r`, () => ({ ...s, prefixes: [...lock, ...s.prefixes], opcode: [0x0f, 0xa3 + op * 8], reg: offset, rm }), false, true);
    }
    case 1: {
      const op = g.rng.int(4);
      return g.emit(`${['bt', 'bts', 'btr', 'btc'][op]}${size * 8} r/m,imm8`, () => ({ ...s, opcode: [0x0f, 0xba], reg: 4 + op, rm: g.rm(size, op !== 0), imm: { value: BigInt(g.rng.int(256)), size: 1 } }), false, true);
    }
    case 2: {
      const r = g.rng.int(2);
      const zero = g.rng.chance(0.2);
      const src = zero ? g.reg(size, true) : g.rm(size, false);
      if (zero && src.kind === 'reg') g.emit('xor r32,r32', () => ({ opcode: [0x31], reg: src, rm: src }));
      return g.emit(`bs${r ? 'r' : 'f'}${size * 8}`, () => ({ ...s, opcode: [0x0f, 0xbc + r], reg: g.reg(size, true), rm: src }), false, true);
    }
    default:
      if (size === 2) return bits(g);
      return g.emit(`bswap${size * 8}`, () => ({ w: size === 8, opcode: [0x0f, 0xc8], opReg: { kind: 'reg', n: g.writable() } }));
  }
}

/** setcc, cmovcc. */
function conditional(g: Gen): void {
  const cc = g.rng.int(16);
  if (g.rng.int(2)) return g.emit(`set${CC[cc]}`, () => ({ opcode: [0x0f, 0x90 + cc], reg: 0, rm: g.rm(1, true) }), true);
  const size = g.rng.pick([2, 4, 8] as const);
  g.emit(`cmov${CC[cc]}${size * 8}`, () => ({ ...g.sized(size), opcode: [0x0f, 0x40 + cc], reg: g.reg(size, true), rm: g.rm(size, false) }));
}

/** mov in its forms, movzx/movsx/movsxd, lea. */
function moves(g: Gen): void {
  const size = g.size();
  const s = g.sized(size);
  const w = size === 1 ? 0 : 1;
  const byteOp = size === 1;
  switch (g.rng.int(8)) {
    case 0:
      return g.emit(`mov${size * 8} r/m,r`, () => ({ ...s, opcode: [0x88 + w], reg: g.reg(size, false), rm: g.rm(size, true) }), byteOp);
    case 1:
      return g.emit(`mov${size * 8} r,r/m`, () => ({ ...s, opcode: [0x8a + w], reg: g.reg(size, true), rm: g.rm(size, false) }), byteOp);
    case 2:
      return g.emit(`mov${size * 8} r/m,imm`, () => ({ ...s, opcode: [0xc6 + w], reg: 0, rm: g.rm(size, true), imm: { value: g.immValue(izSize(size)), size: izSize(size) } }), byteOp);
    case 3: {
      // b0+r ib, b8+r iw/id, REX.W b8+r io (the only 64-bit immediate)
      const isz = size === 8 ? 8 : size;
      return g.emit(`mov${size * 8} r,imm${isz * 8}`, () => ({ ...s, opcode: [size === 1 ? 0xb0 : 0xb8], opReg: g.reg(size, true), imm: { value: g.immValue(isz), size: isz } }), byteOp);
    }
    case 4: {
      const from = g.rng.pick([1, 2] as const);
      const to = g.rng.pick(from === 1 ? ([2, 4, 8] as const) : ([4, 8] as const));
      const sx = g.rng.int(2);
      return g.emit(`mov${sx ? 's' : 'z'}x ${to * 8}<-${from * 8}`, () => ({ ...g.sized(to), opcode: [0x0f, 0xb6 + sx * 8 + (from - 1)], reg: g.reg(to, true), rm: g.rm(from, false) }), from === 1);
    }
    case 5: {
      const w64 = g.rng.chance(0.85);
      return g.emit(`movsxd${w64 ? '' : ' (no REX.W)'}`, () => ({ w: w64, opcode: [0x63], reg: g.reg(w64 ? 8 : 4, true), rm: g.rm(4, false) }));
    }
    default: {
      const lsize = g.rng.pick([2, 4, 8] as const);
      return g.emit(`lea${lsize * 8}`, () => {
        const m = g.mem();
        // lea computes, it does not access: any index will do
        if (m.base !== undefined && g.rng.chance(0.5)) m.index = g.rng.pick([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        return { ...g.sized(lsize), opcode: [0x8d], reg: g.reg(lsize, true), rm: m };
      });
    }
  }
}

/** xchg (register, memory, 90+r), xadd, cmpxchg. */
function exchange(g: Gen): void {
  const size = g.size();
  const s = g.sized(size);
  const w = size === 1 ? 0 : 1;
  const byteOp = size === 1;
  switch (g.rng.int(4)) {
    case 0:
      return g.emit(`xchg${size * 8} r/m,r`, () => ({ ...s, opcode: [0x86 + w], reg: g.reg(size, true), rm: g.rm(size, true) }), byteOp);
    case 1:
      if (size === 1) return exchange(g);
      return g.emit(`xchg${size * 8} acc,r`, () => ({ ...s, opcode: [0x90], opReg: g.reg(size, true) }));
    case 2:
      return g.emit(`xadd${size * 8}`, () => {
        const rm = g.rm(size, true);
        return { ...s, prefixes: [...(rm.kind === 'mem' && g.rng.chance(0.3) ? [0xf0] : []), ...s.prefixes], opcode: [0x0f, 0xc0 + w], reg: g.reg(size, true), rm };
      }, byteOp);
    default:
      return g.emit(`cmpxchg${size * 8}`, () => {
        const rm = g.rm(size, true);
        return { ...s, prefixes: [...(rm.kind === 'mem' && g.rng.chance(0.3) ? [0xf0] : []), ...s.prefixes], opcode: [0x0f, 0xb0 + w], reg: g.reg(size, false), rm };
      }, byteOp);
  }
}

/** push/pop of registers, immediates, memory; pushf and a popf that only changes status flags. */
function stack(g: Gen): void {
  const o16 = g.rng.chance(0.15) ? [0x66] : [];
  switch (g.rng.int(7)) {
    case 0:
      return g.emit('push r', () => ({ prefixes: o16, opcode: [0x50], opReg: g.reg(8, false) }));
    case 1:
      return g.emit('pop r', () => ({ prefixes: o16, opcode: [0x58], opReg: g.reg(8, true) }));
    case 2:
      return g.emit('push imm8', () => ({ prefixes: o16, opcode: [0x6a], imm: { value: g.immValue(1), size: 1 } }));
    case 3:
      return g.emit('push imm', () => ({ prefixes: o16, opcode: [0x68], imm: { value: g.immValue(o16.length ? 2 : 4), size: o16.length ? 2 : 4 } }));
    case 4:
      return g.emit('push m', () => ({ prefixes: o16, opcode: [0xff], reg: 6, rm: g.mem() }));
    case 5:
      return g.emit('pop m', () => ({ prefixes: o16, opcode: [0x8f], reg: 0, rm: g.mem() }));
    default: {
      // pushfq ; xorq $mask,(%rsp) (status flags and DF only) ; popfq
      const mask = g.rng.int(0x1000) & 0xcd5;
      g.raw('pushfq', [0x9c]);
      g.raw('xorq $mask,(%rsp)', [0x48, 0x81, 0x34, 0x24, ...le(BigInt(mask), 4)]);
      if (g.rng.chance(0.5)) g.raw('popfq', [0x9d]);
      else g.raw('pop rax; push rax; popfq', [0x58, 0x50, 0x9d]);
    }
  }
}

/** movs/stos/lods/cmps/scas, with rep/repe/repne and small counts. */
function strings(g: Gen): void {
  const size = g.size();
  const ops = [
    { name: 'movs', op: 0xa4, rep: [0xf3] },
    { name: 'cmps', op: 0xa6, rep: [0xf3, 0xf2] },
    { name: 'stos', op: 0xaa, rep: [0xf3] },
    { name: 'lods', op: 0xac, rep: [0xf3] },
    { name: 'scas', op: 0xae, rep: [0xf3, 0xf2] },
  ];
  const o = g.rng.pick(ops);
  const rep = g.rng.chance(0.6) ? [g.rng.pick(o.rep)] : [];
  if (rep.length) g.setReg(1, g.rng.pick([0, 1, 2, 3, 5, 8, 16]));
  const prefixes = [...rep, ...(size === 2 ? [0x66] : [])];
  g.raw(`${rep.length ? (rep[0] === 0xf2 ? 'repne ' : 'rep ') : ''}${o.name}${size * 8}`, [...prefixes, ...(size === 8 ? [0x48] : []), o.op + (size === 1 ? 0 : 1)]);
}

/** Flag instructions and accumulator extensions: lahf/sahf, cbw…cqo, clc/stc/cmc/cld/std. */
function flagsAndExtends(g: Gen): void {
  const choices: [string, number[]][] = [
    ['lahf', [0x9f]], ['sahf', [0x9e]], ['cbw', [0x66, 0x98]], ['cwde', [0x98]], ['cdqe', [0x48, 0x98]],
    ['cwd', [0x66, 0x99]], ['cdq', [0x99]], ['cqo', [0x48, 0x99]], ['clc', [0xf8]], ['stc', [0xf9]], ['cmc', [0xf5]],
    ['cld', [0xfc]], ['std', [0xfd]], ['nop', [0x90]], ['nopw m', [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00]],
  ];
  const [name, bytes] = g.rng.pick(choices);
  g.raw(name, bytes);
}

/** A forward jcc/jmp/loop/jrcxz over a small block of generated instructions. */
function branch(g: Gen, depth: number): void {
  const kind = g.rng.int(8);
  const cc = g.rng.int(16);
  const near = kind === 1 || kind === 3;
  const [opcode, name] =
    kind === 0 ? [[0x70 + cc], `j${CC[cc]} rel8`] :
    kind === 1 ? [[0x0f, 0x80 + cc], `j${CC[cc]} rel32`] :
    kind === 2 ? [[0xeb], 'jmp rel8'] :
    kind === 3 ? [[0xe9], 'jmp rel32'] :
    kind === 4 ? [[0xe2], 'loop rel8'] :
    kind === 5 ? [[0xe3], 'jrcxz rel8'] :
    [[0x70 + cc], `j${CC[cc]} rel8`];
  const len = opcode.length + (near ? 4 : 1);
  // generate the block where it will land, then insert the branch before it
  const start = g.code.length;
  const startListing = g.listing.length;
  g.code.push(...new Array<number>(len).fill(0));
  // a rel8 block holds no nested branch and stops growing at 60 bytes (the largest generated
  // instruction with its set-up is < 40), so rel8 always reaches
  const n = g.rng.range(1, 3);
  for (let i = 0; i < n && g.code.length - start < 60; i++) one(g, near ? depth + 1 : 2);
  const rel = g.code.length - start - len;
  g.code.splice(start, len, ...opcode, ...le(BigInt(rel), near ? 4 : 1));
  g.listing.splice(startListing, 0, `${name} +${rel}: ${g.code.slice(start, start + len).map((x) => x.toString(16).padStart(2, '0')).join(' ')}`);
}

/** A deliberate fault (with {@link GenOptions.faults}). */
function deliberateFault(g: Gen): void {
  switch (g.rng.int(4)) {
    case 0:
      return g.raw('ud2', [0x0f, 0x0b]);
    case 1:
      return g.raw('lock add r,r (#UD)', [0xf0, 0x01, 0xc0 + g.rng.int(64)]);
    case 2: {
      const r = g.writable();
      g.setReg(r, g.rng.pick([0x500000, 0x10f800, 0x121000, 0, 0x40000000]));
      return g.emit('load from unmapped', () => ({ opcode: [0x8b], reg: g.reg(4, true), rm: { kind: 'mem', base: r, disp: g.rng.int(16) } }));
    }
    default: {
      const r = g.writable();
      g.setReg(r, 0x120000 + g.rng.int(0x1000));
      return g.emit('store to read-only', () => ({ opcode: [0x89], reg: g.reg(4, false), rm: { kind: 'mem', base: r, disp: 0 } }));
    }
  }
}

const CLASSES: [number, (g: Gen) => void][] = [
  [14, alu], [5, unary], [8, shift], [2, doubleShift], [6, muldiv], [6, bits], [6, conditional], [10, moves],
  [5, exchange], [5, stack], [4, strings], [4, flagsAndExtends],
];
const CLASS_WEIGHT = CLASSES.reduce((a, [w]) => a + w, 0);
const SUBSET_CLASSES: [number, (g: Gen) => void][] = [[14, alu], [5, unary], [4, shift], [4, conditional], [10, moves], [4, stack]];
const SUBSET_WEIGHT = SUBSET_CLASSES.reduce((a, [w]) => a + w, 0);

/** Emit one random instruction (or a branch over a block, at most 2 deep). */
function one(g: Gen, depth = 0): void {
  if (g.rng.chance(g.opts.faults ?? 0) && g.rng.chance(0.3)) return deliberateFault(g);
  if (depth < 2 && g.rng.chance(0.08)) return branch(g, depth);
  const [classes, weight] = g.opts.compiledSubset ? [SUBSET_CLASSES, SUBSET_WEIGHT] : [CLASSES, CLASS_WEIGHT];
  let x = g.rng.int(weight);
  for (const [w, f] of classes) {
    if ((x -= w) < 0) return f(g);
  }
}

/** Random 64-bit register contents, with interesting values likelier. */
function randomValue(rng: Rng): bigint {
  const special = [0n, 1n, 0xffffffffffffffffn, 0x8000000000000000n, 0x7fffffffffffffffn, 0xffffffffn, 0x80000000n, 0x80n, 0xffn, 0x8000n];
  if (rng.chance(0.25)) return rng.pick(special);
  if (rng.chance(0.2)) return BigInt(rng.int(64));
  return rng.u64();
}

/** Choose the pointer and index registers and their initial values. */
function assignRegisters(g: Gen): Partial<Record<(typeof GPR_NAMES)[number], bigint>> {
  const regs: Partial<Record<(typeof GPR_NAMES)[number], bigint>> = {};
  for (let n = 0; n < 16; n++) regs[GPR_NAMES[n]] = randomValue(g.rng);
  const others = [3, 5, 8, 9, 10, 11, 12, 13, 14, 15];
  const extra = g.rng.range(1, 2);
  g.pointers.push(6, 7);
  for (let i = 0; i < extra; i++) {
    const n = others.splice(g.rng.int(others.length), 1)[0];
    g.pointers.push(n);
  }
  g.index = others[g.rng.int(others.length)];
  for (const n of [...g.pointers, g.index]) g.fixed.add(n);
  for (const n of g.pointers) regs[GPR_NAMES[n]] = BigInt(DATA + g.rng.range(0x3000, 0xb000));
  regs.rsp = BigInt(DATA + g.rng.range(0x6000, 0xa000)) & ~(g.rng.chance(0.8) ? 7n : 0n);
  regs[GPR_NAMES[g.index]] = BigInt(g.rng.int(0x200));
  return regs;
}

/**
 * A random sequence from `seed`: registers (pointers into the window, the rest random),
 * random status flags and DF, 64 KiB of random data, and the instructions.
 */
export function generateSequence(seed: number, opts: GenOptions = {}): GeneratedSequence {
  const rng = new Rng(seed);
  const g = new Gen(rng, opts);
  const regs = assignRegisters(g);
  const rflags = 0x202n | BigInt(rng.u32() & 0xcd5);
  const n = opts.length ?? rng.range(1, 24);
  for (let i = 0; i < n; i++) one(g);
  return { code: Uint8Array.from(g.code), regs, rflags, data: rng.bytes(DATA_SIZE), listing: g.listing };
}

/**
 * Fully random bytes (`length` default 1-32) with random registers: any outcome is possible;
 * the harness must report it (a fault, a timeout) rather than hang or crash.
 */
export function hostileSequence(seed: number, length?: number): GeneratedSequence {
  const rng = new Rng(seed ^ 0x5eed5eed);
  const n = length ?? rng.range(1, 32);
  const regs: Partial<Record<(typeof GPR_NAMES)[number], bigint>> = {};
  for (const r of GPR_NAMES) regs[r] = rng.chance(0.5) ? BigInt(DATA + rng.int(DATA_SIZE)) : randomValue(rng);
  regs.rsp = BigInt(DATA + rng.range(0x6000, 0xa000));
  const code = rng.bytes(n);
  return { code, regs, rflags: 0x202n | BigInt(rng.u32() & 0xcd5), data: rng.bytes(DATA_SIZE), listing: [`random: ${[...code].map((x) => x.toString(16).padStart(2, '0')).join(' ')}`] };
}

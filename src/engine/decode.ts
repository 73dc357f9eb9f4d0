/**
 * The engine's 64-bit-mode instruction decoder (issue 15): legacy prefixes, REX, the one-
 * and two-byte opcode maps, ModRM/SIB/displacement (RIP-relative included) and immediates,
 * into a fixed-shape {@link Insn} the interpreter (src/engine/cpu.ts) executes and the block
 * cache keeps. Decoding is total: bytes the engine does not implement decode to an Insn
 * with {@link Insn.bad} set, invalid opcodes to one with {@link Insn.ud} set; only a fetch
 * fault or an instruction longer than 15 bytes (#GP(0)) throws.
 */
import { GuestException } from './types.js';

/** Opcode-map offsets for {@link Insn.op}: one-byte opcodes are 0x000-0x0ff, 0F xx are 0x100-0x1ff. */
export const MAP_0F = 0x100;

/** The op every invalid encoding decodes to (0F FF, UD0): executing it raises #UD. */
export const UD_OP = 0x1ff;

/** One decoded instruction (fixed shape: every field is always present). */
export class Insn {
  /** The opcode: `b` for the one-byte map, `0x100 | b` for 0F b. */
  op = 0;
  /** Length in bytes (1-15), and the same as a bigint for RIP arithmetic. */
  len = 0;
  lenB = 0n;
  /** Operand size in bytes: 1, 2, 4 or 8 (1 only for byte-operand opcodes). */
  osz = 4;
  /** Address size in bytes: 8, or 4 with a 67 prefix. */
  asz = 8;
  /** The REX byte (0 when absent). */
  rex = 0;
  /** 0xf3, 0xf2 or 0 (the last of F2/F3 given). */
  rep = 0;
  /** A 66 prefix was given. */
  o66 = false;
  /** A LOCK prefix was given. */
  lock = false;
  /** Segment override: 3 for FS, 4 for GS (kvm_sregs order), -1 for none (the others are null in 64-bit mode). */
  seg = -1;
  /** ModRM present. */
  hasModrm = false;
  /** ModRM.mod. */
  mod = 0;
  /** ModRM.reg with REX.R (or the register in the opcode, with REX.B, in {@link rm}). */
  reg = 0;
  /** ModRM.rm with REX.B (register operand when {@link mem} is false). */
  rm = 0;
  /** {@link reg} / {@link rm} as byte registers: 16-19 stand for AH, CH, DH, BH. */
  regB = 0;
  rmB = 0;
  /** The r/m operand is memory. */
  mem = false;
  /** Memory operand: base register (-1 none), index register (-1 none), scale shift, displacement. */
  base = -1;
  index = -1;
  scale = 0;
  disp = 0n;
  /** The displacement is relative to the next instruction's RIP. */
  ripRel = false;
  /** The first immediate (sign-extended to 64 bits where the SDM says so, as an unsigned bigint), or moffs / rel target offset. */
  imm = 0n;
  /** The second immediate (ENTER's nesting level), or the first as a number where handy. */
  imm2 = 0;
  /** The instruction ends a decoded block (control transfer, system state change, string loop, fault). */
  ends = false;
  /** Why the engine cannot run it (null when it can). */
  bad: string | null = null;
  /** The opcode is invalid in 64-bit mode (#UD). */
  ud = false;
}

const M64 = (1n << 64n) - 1n;

/** Sign-extend an n-byte little-endian value already read into a number to a 64-bit unsigned bigint. */
function sext(v: number, bytes: number): bigint {
  return BigInt.asUintN(64, BigInt.asIntN(bytes * 8, BigInt(v)));
}

// Opcodes (one-byte map) that take a ModRM byte.
const MODRM1 = new Uint8Array(256);
// Opcodes (0F map) that take a ModRM byte.
const MODRM2 = new Uint8Array(256);
(() => {
  for (let b = 0; b < 0x40; b++) if ((b & 7) < 4) MODRM1[b] = 1;
  for (const b of [0x62, 0x63, 0x69, 0x6b, 0xc0, 0xc1, 0xc4, 0xc5, 0xc6, 0xc7, 0xd0, 0xd1, 0xd2, 0xd3, 0xf6, 0xf7, 0xfe, 0xff]) MODRM1[b] = 1;
  for (let b = 0x80; b < 0x90; b++) MODRM1[b] = 1;
  for (let b = 0xd8; b < 0xe0; b++) MODRM1[b] = 1;
  MODRM2.fill(1);
  for (const b of [0x05, 0x06, 0x07, 0x08, 0x09, 0x0b, 0x0e, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37, 0x77, 0xa0, 0xa1, 0xa2, 0xa8, 0xa9, 0xaa]) MODRM2[b] = 0;
  for (let b = 0x80; b < 0x90; b++) MODRM2[b] = 0;
  for (let b = 0xc8; b < 0xd0; b++) MODRM2[b] = 0;
})();

// Byte-operand one-byte opcodes.
function isByteOp1(b: number): boolean {
  if (b < 0x40) return (b & 7) === 0 || (b & 7) === 2 || (b & 7) === 4;
  switch (b) {
    case 0x80: case 0x82: case 0x84: case 0x86: case 0x88: case 0x8a: case 0xa0: case 0xa2: case 0xa4: case 0xa6:
    case 0xa8: case 0xaa: case 0xac: case 0xae: case 0xc0: case 0xc6: case 0xd0: case 0xd2: case 0xe4: case 0xe6:
    case 0xec: case 0xee: case 0xf6: case 0xfe: case 0x6c: case 0x6e:
      return true;
  }
  return b >= 0xb0 && b <= 0xb7;
}

// One-byte opcodes that are invalid in 64-bit mode.
const INVALID64 = new Set([0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f, 0x37, 0x3f, 0x60, 0x61, 0x62, 0x82, 0x9a, 0xce, 0xd4, 0xd5, 0xd6, 0xea]);

/** Ops (with a memory destination) the LOCK prefix is allowed on. */
function lockable(d: Insn): boolean {
  if (!d.mem) return false;
  const b = d.op;
  if (b < 0x40) return (b & 7) < 2 && b < 0x38;
  switch (b) {
    case 0x80: case 0x81: case 0x83: return (d.reg & 7) !== 7;
    case 0x86: case 0x87: return true;
    case 0xf6: case 0xf7: return (d.reg & 7) === 2 || (d.reg & 7) === 3;
    case 0xfe: case 0xff: return (d.reg & 7) < 2;
    case 0x1ab: case 0x1b3: case 0x1bb: case 0x1b0: case 0x1b1: case 0x1c0: case 0x1c1: return true;
    case 0x1ba: return (d.reg & 7) >= 5;
    case 0x1c7: return (d.reg & 7) === 1;
  }
  return false;
}

/** Ops that end a decoded block. */
function endsBlock(d: Insn): boolean {
  const b = d.op;
  if (d.bad !== null || d.ud) return true;
  if (b >= 0x70 && b <= 0x7f) return true;
  if (b >= 0x180 && b <= 0x18f) return true;
  if (b >= 0xa4 && b <= 0xaf) return d.rep !== 0;
  if (b >= 0x6c && b <= 0x6f) return true;
  switch (b) {
    case 0x9d: case 0xc2: case 0xc3: case 0xca: case 0xcb: case 0xcc: case 0xcd: case 0xcf: case 0xe0: case 0xe1:
    case 0xe2: case 0xe3: case 0xe8: case 0xe9: case 0xeb: case 0xf4: case 0xfa: case 0xfb: case 0x8e:
    case 0x101: case 0x105: case 0x106: case 0x107: case 0x122: case 0x130: case 0x1a1: case 0x1a9: case 0x100:
      return true;
    case 0xff: return (d.reg & 7) >= 2 && (d.reg & 7) <= 5;
  }
  return false;
}

/** Byte register index for a ModRM/opcode register number: 16-19 for AH-BH when there is no REX. */
function byteReg(n: number, rex: number): number {
  return rex === 0 && n >= 4 && n < 8 ? n + 12 : n;
}

/**
 * Decode one 64-bit-mode instruction whose bytes `fetch(i)` returns (i = 0, 1, ...; fetch
 * may throw a {@link GuestException}). Throws #GP(0) for an instruction longer than 15 bytes.
 */
export function decode(fetch: (i: number) => number): Insn {
  const d = new Insn();
  let i = 0;
  const next = (): number => {
    if (i >= 15) throw new GuestException(13, 0);
    return fetch(i++);
  };
  let b = next();
  let rex = 0;
  // Prefixes.
  for (;;) {
    if (b === 0x66) d.o66 = true;
    else if (b === 0x67) d.asz = 4;
    else if (b === 0xf0) d.lock = true;
    else if (b === 0xf2 || b === 0xf3) d.rep = b;
    else if (b === 0x64) d.seg = 3;
    else if (b === 0x65) d.seg = 4;
    else if (b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e) { /* null in 64-bit mode */ }
    else if ((b & 0xf0) === 0x40) { rex = b; b = next(); if ((b & 0xf0) === 0x40 || isLegacyPrefix(b)) { continue; } break; }
    else break;
    rex = 0;
    b = next();
  }
  d.rex = rex;
  let op = b;
  if (b === 0x0f) {
    op = MAP_0F | next();
    if (op === 0x138 || op === 0x13a) { d.op = op; d.bad = 'three-byte opcode map'; return finish(d, i); }
  }
  d.op = op;
  const w = (rex & 8) !== 0;
  d.osz = w ? 8 : d.o66 ? 2 : 4;
  if (op < 0x100 && isByteOp1(op)) d.osz = 1;
  if (op === 0x1b0 || op === 0x1c0) d.osz = 1;
  if (op < 0x100 && INVALID64.has(op)) { d.ud = true; return finish(d, i); }
  if (op === 0x10b || op === 0x1ff || op === 0x1b9) { d.ud = true; return finish(d, i); }
  if (op === 0xc4 || op === 0xc5) { d.bad = 'VEX-encoded instruction'; return finish(d, i); }
  if (op === 0x8f) { /* XOP is AMD-only; 8F /0 is POP r/m */ }
  const hasModrm = op < 0x100 ? MODRM1[op] === 1 : MODRM2[op & 0xff] === 1;
  if (hasModrm) decodeModrm(d, next, rex);
  else {
    d.rm = (op & 7) | ((rex & 1) << 3);
    d.rmB = byteReg(d.rm, rex);
  }
  decodeImm(d, next);
  if (d.lock && !lockable(d)) d.ud = true;
  return finish(d, i);
}

function isLegacyPrefix(b: number): boolean {
  return b === 0x66 || b === 0x67 || b === 0xf0 || b === 0xf2 || b === 0xf3 || b === 0x64 || b === 0x65 || b === 0x26 || b === 0x2e || b === 0x36 || b === 0x3e;
}

function finish(d: Insn, len: number): Insn {
  if (d.ud) d.op = UD_OP;
  d.len = len;
  d.lenB = BigInt(len);
  d.ends = endsBlock(d);
  return d;
}

function decodeModrm(d: Insn, next: () => number, rex: number): void {
  const m = next();
  d.hasModrm = true;
  d.mod = m >> 6;
  d.reg = ((m >> 3) & 7) | ((rex & 4) << 1);
  d.regB = byteReg(d.reg, rex);
  const rm = m & 7;
  if (d.mod === 3) {
    d.rm = rm | ((rex & 1) << 3);
    d.rmB = byteReg(d.rm, rex);
    return;
  }
  d.mem = true;
  if (rm === 4) {
    const sib = next();
    d.scale = sib >> 6;
    const idx = ((sib >> 3) & 7) | ((rex & 2) << 2);
    d.index = idx === 4 ? -1 : idx;
    const base = sib & 7;
    if (base === 5 && d.mod === 0) {
      d.base = -1;
      d.disp = sext(read32(next), 4);
      return;
    }
    d.base = base | ((rex & 1) << 3);
  } else if (rm === 5 && d.mod === 0) {
    d.ripRel = true;
    d.disp = sext(read32(next), 4);
    return;
  } else {
    d.base = rm | ((rex & 1) << 3);
  }
  if (d.mod === 1) d.disp = sext(next(), 1);
  else if (d.mod === 2) d.disp = sext(read32(next), 4);
}

function read16(next: () => number): number {
  const a = next();
  return a | (next() << 8);
}
function read32(next: () => number): number {
  const a = next(), b = next(), c = next(), e = next();
  return (a | (b << 8) | (c << 16) | (e << 24)) >>> 0;
}

/** Immediate z (16 or 32 bits by operand size), sign-extended to 64. */
function immZ(d: Insn, next: () => number): void {
  if (d.osz === 2) d.imm = BigInt(read16(next));
  else d.imm = sext(read32(next), 4);
  if (d.osz === 2) d.imm &= 0xffffn;
  else if (d.osz === 4) d.imm &= 0xffffffffn;
}
function imm8s(d: Insn, next: () => number): void {
  d.imm = sext(next(), 1) & sizeMask(d.osz);
}
function imm8u(d: Insn, next: () => number): void {
  d.imm = BigInt(next());
  d.imm2 = Number(d.imm);
}

/** All-ones mask of `size` bytes. */
export function sizeMask(size: number): bigint {
  return size === 8 ? M64 : size === 4 ? 0xffffffffn : size === 2 ? 0xffffn : 0xffn;
}

function decodeImm(d: Insn, next: () => number): void {
  const op = d.op;
  if (op < 0x40) {
    if ((op & 7) === 4) imm8u(d, next);
    else if ((op & 7) === 5) immZ(d, next);
    return;
  }
  if (op >= 0x70 && op <= 0x7f) { d.imm = sext(next(), 1); return; }
  if (op >= 0xb0 && op <= 0xb7) { imm8u(d, next); return; }
  if (op >= 0xb8 && op <= 0xbf) {
    if (d.osz === 8) { const lo = read32(next); const hi = read32(next); d.imm = (BigInt(hi) << 32n) | BigInt(lo); }
    else if (d.osz === 4) d.imm = BigInt(read32(next));
    else d.imm = BigInt(read16(next));
    return;
  }
  if (op >= 0x180 && op <= 0x18f) { d.imm = sext(read32(next), 4); return; }
  switch (op) {
    case 0x68: case 0x69: case 0x81: case 0xa9: case 0xc7:
      immZ(d, next);
      if (op === 0x68) d.imm = sext(Number(d.imm), d.osz === 2 ? 2 : 4);
      return;
    case 0x6a: d.imm = sext(next(), 1); return;
    case 0x6b: case 0x83: imm8s(d, next); return;
    case 0x80: case 0xa8: case 0xc6: case 0xc0: case 0xc1: case 0xcd: case 0xe4: case 0xe5: case 0xe6: case 0xe7:
    case 0x1a4: case 0x1ac: case 0x1ba:
      imm8u(d, next);
      return;
    case 0xa0: case 0xa1: case 0xa2: case 0xa3:
      if (d.asz === 8) { const lo = read32(next); const hi = read32(next); d.imm = (BigInt(hi) << 32n) | BigInt(lo); }
      else d.imm = BigInt(read32(next));
      return;
    case 0xc2: case 0xca: d.imm = BigInt(read16(next)); return;
    case 0xc8: d.imm = BigInt(read16(next)); d.imm2 = next(); return;
    case 0xe0: case 0xe1: case 0xe2: case 0xe3: case 0xeb: d.imm = sext(next(), 1); return;
    case 0xe8: case 0xe9: d.imm = sext(read32(next), 4); return;
    case 0xf6: if ((d.reg & 7) < 2) imm8u(d, next); return;
    case 0xf7: if ((d.reg & 7) < 2) immZ(d, next); return;
  }
  if (op >= 0x170 && op <= 0x173) { d.bad = 'SSE instruction'; imm8u(d, next); return; }
  if (op === 0x1c2 || op === 0x1c4 || op === 0x1c5 || op === 0x1c6) { d.bad = 'SSE instruction'; imm8u(d, next); }
}

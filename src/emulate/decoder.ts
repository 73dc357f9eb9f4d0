/**
 * x86 instruction decoder (Intel SDM Vol. 2, chapter 2 "Instruction Format"): legacy
 * prefixes, REX, the one-byte/0F/0F 38/0F 3A opcode maps, ModRM, SIB, displacement
 * (including RIP-relative addressing) and immediates. It names the instructions the
 * emulator implements and computes the length of the other legacy-encoded ones.
 *
 * Never throws for any input bytes.
 */
import {
  MAX_INSN_LENGTH,
  type DecodeMode,
  type DecodeResult,
  type DecodedInsn,
  type MemoryOperand,
  type ModRM,
  type OpcodeMap,
  type Prefixes,
  type SegmentReg,
} from './decoder-types.js';
import { selectInsn } from './insn-select.js';
import { lockAllowed, opcodeInfo, type ImmKind } from './opcode-info.js';

export * from './decoder-types.js';

class TooLong {}
class NeedMore {
  constructor(readonly need: number) {}
}

const SEGMENT_PREFIX: Readonly<Record<number, SegmentReg>> = { 0x26: 'es', 0x2e: 'cs', 0x36: 'ss', 0x3e: 'ds', 0x64: 'fs', 0x65: 'gs' };

/** Sequential reader over the instruction bytes enforcing the 15-byte limit. */
class Cursor {
  pos = 0;
  constructor(private readonly bytes: Uint8Array) {}
  peek(at = this.pos): number {
    if (at >= MAX_INSN_LENGTH) throw new TooLong();
    if (at >= this.bytes.length) throw new NeedMore(at + 1);
    return this.bytes[at];
  }
  next(): number {
    const b = this.peek();
    this.pos++;
    return b;
  }
  /** Read an n-byte little-endian unsigned value. */
  unsigned(n: number): bigint {
    let v = 0n;
    for (let i = 0; i < n; i++) v |= BigInt(this.next()) << BigInt(8 * i);
    return v;
  }
  signed(n: number): bigint {
    return BigInt.asIntN(8 * n, this.unsigned(n));
  }
}

/**
 * Decode one instruction.
 *
 * @param bytes The instruction bytes, starting at the first prefix (more than needed is fine).
 * @param mode The code-segment mode.
 * @returns The decoded instruction, or `unknown` (valid-looking but not implemented; `length`
 *   when computable), `need-more-bytes`, or `exception` (#UD for invalid encodings, #GP(0)
 *   when the instruction would be longer than 15 bytes).
 */
export function decode(bytes: Uint8Array, mode: DecodeMode): DecodeResult {
  try {
    return decodeUnchecked(bytes, mode);
  } catch (e) {
    if (e instanceof TooLong) return { kind: 'exception', vector: 13, errorCode: 0, reason: 'instruction longer than 15 bytes' };
    if (e instanceof NeedMore) return { kind: 'need-more-bytes', have: Math.min(bytes.length, MAX_INSN_LENGTH), need: e.need };
    return { kind: 'unknown', reason: `decoder error: ${e instanceof Error ? e.message : String(e)}` };
  }
}

function decodeUnchecked(bytes: Uint8Array, mode: DecodeMode): DecodeResult {
  const c = new Cursor(bytes);
  const p: Prefixes = { lock: false, rep: false, repne: false, operandSize: false, addressSize: false, mandatory: 'none', count: 0 };
  let lastRep: 'f2' | 'f3' | undefined;
  let rex = 0;
  for (;;) {
    const b = c.peek();
    const seg = SEGMENT_PREFIX[b];
    if (seg !== undefined) p.segment = seg;
    else if (b === 0xf0) p.lock = true;
    else if (b === 0xf2) { p.repne = true; lastRep = 'f2'; }
    else if (b === 0xf3) { p.rep = true; lastRep = 'f3'; }
    else if (b === 0x66) p.operandSize = true;
    else if (b === 0x67) p.addressSize = true;
    else if (mode.long && (b & 0xf0) === 0x40) {
      rex = b; // only counts if it immediately precedes the opcode
      c.pos++;
      continue;
    } else break;
    rex = 0; // a legacy prefix after REX cancels it
    p.count++;
    c.pos++;
  }
  p.mandatory = lastRep ?? (p.operandSize ? '66' : 'none');
  const rexW = (rex & 8) !== 0;
  const rexR = (rex & 4) << 1;
  const rexX = (rex & 2) << 2;
  const rexB = (rex & 1) << 3;

  let map: OpcodeMap = 'primary';
  let op = c.next();
  if (op === 0x0f) {
    op = c.next();
    if (op === 0x38) { map = '0f38'; op = c.next(); }
    else if (op === 0x3a) { map = '0f3a'; op = c.next(); }
    else map = '0f';
  }

  if (map === 'primary') {
    // VEX (C4/C5), EVEX (62) and XOP (8F) escapes: not emulated.
    if (op === 0xc4 || op === 0xc5 || op === 0x62) {
      if (mode.long || c.peek() >> 6 === 3) return { kind: 'unknown', map, opcode: op, reason: `${op === 0x62 ? 'EVEX' : 'VEX'}-encoded instruction` };
    }
    if (op === 0x8f && ((c.peek() >> 3) & 7) !== 0) return { kind: 'unknown', map, opcode: op, reason: 'XOP-encoded instruction' };
  }

  const operandSize: 2 | 4 | 8 = mode.long ? (rexW ? 8 : p.operandSize ? 2 : 4) : mode.default32 !== p.operandSize ? 4 : 2;
  const addressSize: 2 | 4 | 8 = mode.long ? (p.addressSize ? 4 : 8) : mode.default32 !== p.addressSize ? 4 : 2;

  const info = opcodeInfo(map, op);
  if (mode.long && info.invalid64) return { kind: 'exception', vector: 6, reason: `opcode ${op.toString(16)} is invalid in 64-bit mode` };
  if (info.undefinedOpcode) return { kind: 'exception', vector: 6, reason: `undefined opcode ${map}:${op.toString(16)}` };

  let modrm: ModRM | undefined;
  let mem: MemoryOperand | undefined;
  let rawModrm: number | undefined;
  if (info.modrm) {
    rawModrm = c.next();
    const mod = rawModrm >> 6;
    const reg = ((rawModrm >> 3) & 7) | rexR;
    const rm = (rawModrm & 7) | rexB;
    modrm = { byte: rawModrm, mod, reg, rm };
    if (mod !== 3) mem = addressSize === 2 ? modrm16(c, rawModrm, p) : modrm32(c, rawModrm, p, mode.long, rexX, rexB);
  }

  const immBytes = immediateSize(info.imm, operandSize, addressSize, mode.long, rawModrm);
  const imm = immBytes > 0 ? c.unsigned(immBytes) : undefined;
  const length = c.pos;

  const sel = selectInsn(map, op, p, rexW, rawModrm);
  const lockOk = lockAllowed(map, op, modrm?.mod, rawModrm === undefined ? 0 : (rawModrm >> 3) & 7);
  if (sel.kind === 'ud') return { kind: 'exception', vector: 6, reason: sel.reason, mnemonic: sel.mnemonic };
  if (sel.kind === 'unknown') {
    // LOCK MOV CR is AMD's alternate encoding of CR8 access: leave it to the caller.
    if (p.lock && !lockOk && !(map === '0f' && (op === 0x20 || op === 0x22)))
      return { kind: 'exception', vector: 6, reason: 'LOCK prefix on an instruction that does not accept it' };
    return { kind: 'unknown', map, opcode: op, length, reason: `opcode ${map}:${op.toString(16).padStart(2, '0')} is not emulated` };
  }
  if (p.lock && !lockOk) return { kind: 'exception', vector: 6, reason: `LOCK prefix on ${sel.mnemonic}`, mnemonic: sel.mnemonic };
  const insn: DecodedInsn = { kind: 'insn', mnemonic: sel.mnemonic, length, map, opcode: op, prefixes: p, rex, rexW, operandSize, addressSize };
  if (modrm) insn.modrm = modrm;
  if (mem) insn.mem = mem;
  if (imm !== undefined) insn.imm = imm;
  return insn;
}

function immediateSize(kind: ImmKind, os: number, as: number, long: boolean, modrm: number | undefined): number {
  const z = os === 2 ? 2 : 4;
  const reg = modrm === undefined ? 0 : (modrm >> 3) & 7;
  switch (kind) {
    case 'none': return 0;
    case 'b': return 1;
    case 'w': return 2;
    case 'z': return z;
    case 'v': return os;
    case 'moffs': return as;
    case 'ptr': return z + 2;
    case 'enter': return 3;
    case 'grp3b': return reg < 2 ? 1 : 0;
    case 'grp3z': return reg < 2 ? z : 0;
    case 'rel': return long ? 4 : z;
  }
}

const BASE16: readonly (readonly [number | undefined, number | undefined])[] = [
  [3, 6], [3, 7], [5, 6], [5, 7], [6, undefined], [7, undefined], [5, undefined], [3, undefined],
];

/** 16-bit addressing forms (SDM Vol. 2 Table 2-1). */
function modrm16(c: Cursor, modrm: number, p: Prefixes): MemoryOperand {
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let [base, index] = BASE16[rm];
  let disp = 0n;
  if (mod === 0 && rm === 6) {
    base = undefined;
    disp = c.signed(2);
  } else if (mod === 1) disp = c.signed(1);
  else if (mod === 2) disp = c.signed(2);
  const segment = p.segment ?? (base === 5 ? 'ss' : 'ds');
  const m: MemoryOperand = { scale: 1, disp, ripRelative: false, segment };
  if (base !== undefined) m.base = base;
  if (index !== undefined) m.index = index;
  return m;
}

/** 32/64-bit addressing forms with SIB (SDM Vol. 2 Tables 2-2, 2-3). */
function modrm32(c: Cursor, modrm: number, p: Prefixes, long: boolean, rexX: number, rexB: number): MemoryOperand {
  const mod = modrm >> 6;
  const rm = modrm & 7;
  let base: number | undefined;
  let index: number | undefined;
  let scale: 1 | 2 | 4 | 8 = 1;
  let ripRelative = false;
  let disp32 = false;
  if (rm === 4) {
    const sib = c.next();
    scale = (1 << (sib >> 6)) as 1 | 2 | 4 | 8;
    const idx = ((sib >> 3) & 7) | rexX;
    if (idx !== 4) index = idx;
    if ((sib & 7) === 5 && mod === 0) disp32 = true;
    else base = (sib & 7) | rexB;
  } else if (rm === 5 && mod === 0) {
    disp32 = true;
    ripRelative = long;
  } else base = rm | rexB;
  let disp = 0n;
  if (mod === 1) disp = c.signed(1);
  else if (mod === 2 || disp32) disp = c.signed(4);
  const segment = p.segment ?? (base === 4 || base === 5 ? 'ss' : 'ds');
  const m: MemoryOperand = { scale, disp, ripRelative, segment };
  if (base !== undefined) m.base = base;
  if (index !== undefined) m.index = index;
  return m;
}

/**
 * Length information for the general (legacy-encoded) x86 instruction set, by opcode map:
 * whether an opcode takes a ModRM byte and what immediate follows it, which opcodes are
 * invalid in 64-bit mode, and which instructions accept a LOCK prefix (Intel SDM Vol. 2,
 * Appendix A opcode maps; Vol. 3 §8.1.2.2 for LOCK). The decoder uses this to compute the
 * length of instructions it does not implement and to reject invalid encodings.
 */
import type { OpcodeMap } from './decoder-types.js';

/**
 * Immediate kinds: none; byte; word; `z` (16 or 32 by operand size); `v` (16/32/64 by
 * operand size); `moffs` (address-size offset); `ptr` (far pointer: z + 2); `enter` (w + b);
 * `grp3b`/`grp3z` (F6/F7: a b/z immediate only for /0 and /1); `rel` (near branch: 16 or 32).
 */
export type ImmKind = 'none' | 'b' | 'w' | 'z' | 'v' | 'moffs' | 'ptr' | 'enter' | 'grp3b' | 'grp3z' | 'rel';

/** What the decoder needs to know to find an instruction's length. */
export interface OpcodeInfo {
  modrm: boolean;
  imm: ImmKind;
  /** Invalid (#UD) in 64-bit mode. */
  invalid64?: boolean;
  /** Always #UD (UD0/UD1/UD2). */
  undefinedOpcode?: boolean;
}

const NONE: OpcodeInfo = { modrm: false, imm: 'none' };
const M: OpcodeInfo = { modrm: true, imm: 'none' };
const MB: OpcodeInfo = { modrm: true, imm: 'b' };

/** Info for a one-byte-map opcode (prefix bytes and 0F are handled by the decoder). */
export function primaryInfo(op: number): OpcodeInfo {
  if (op < 0x40) {
    const lo = op & 7;
    if (lo < 4) return M; // ALU r/m forms
    if (lo === 4) return { modrm: false, imm: 'b' };
    if (lo === 5) return { modrm: false, imm: 'z' };
    // 06/07/0E/16/17/1E/1F push/pop seg; 27/2F/37/3F decimal adjust. (0F and the
    // segment-override prefixes never reach here.)
    return { modrm: false, imm: 'none', invalid64: true };
  }
  if (op < 0x60) return NONE; // inc/dec (non-64) and push/pop reg
  switch (op) {
    case 0x60: case 0x61: return { modrm: false, imm: 'none', invalid64: true };
    case 0x62: return { modrm: true, imm: 'none', invalid64: true }; // BOUND (EVEX in 64-bit)
    case 0x63: return M;
    case 0x68: return { modrm: false, imm: 'z' };
    case 0x69: return { modrm: true, imm: 'z' };
    case 0x6a: return { modrm: false, imm: 'b' };
    case 0x6b: return MB;
    case 0x6c: case 0x6d: case 0x6e: case 0x6f: return NONE;
    default: break;
  }
  if (op >= 0x70 && op <= 0x7f) return { modrm: false, imm: 'b' };
  switch (op) {
    case 0x80: case 0x83: return MB;
    case 0x81: return { modrm: true, imm: 'z' };
    case 0x82: return { modrm: true, imm: 'b', invalid64: true };
    default: break;
  }
  if (op >= 0x84 && op <= 0x8f) return M;
  if (op >= 0x90 && op <= 0x9f) return op === 0x9a ? { modrm: false, imm: 'ptr', invalid64: true } : NONE;
  if (op >= 0xa0 && op <= 0xa3) return { modrm: false, imm: 'moffs' };
  if (op === 0xa8) return { modrm: false, imm: 'b' };
  if (op === 0xa9) return { modrm: false, imm: 'z' };
  if (op >= 0xa4 && op <= 0xaf) return NONE;
  if (op >= 0xb0 && op <= 0xb7) return { modrm: false, imm: 'b' };
  if (op >= 0xb8 && op <= 0xbf) return { modrm: false, imm: 'v' };
  switch (op) {
    case 0xc0: case 0xc1: return MB;
    case 0xc2: return { modrm: false, imm: 'w' };
    case 0xc3: return NONE;
    case 0xc4: case 0xc5: return { modrm: true, imm: 'none', invalid64: true }; // LES/LDS (VEX in 64-bit)
    case 0xc6: return MB;
    case 0xc7: return { modrm: true, imm: 'z' };
    case 0xc8: return { modrm: false, imm: 'enter' };
    case 0xc9: return NONE;
    case 0xca: return { modrm: false, imm: 'w' };
    case 0xcb: case 0xcc: return NONE;
    case 0xcd: return { modrm: false, imm: 'b' };
    case 0xce: return { modrm: false, imm: 'none', invalid64: true };
    case 0xcf: return NONE;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: return M;
    case 0xd4: case 0xd5: return { modrm: false, imm: 'b', invalid64: true };
    case 0xd6: return { modrm: false, imm: 'none', invalid64: true };
    case 0xd7: return NONE;
    default: break;
  }
  if (op >= 0xd8 && op <= 0xdf) return M; // x87
  if (op >= 0xe0 && op <= 0xe7) return { modrm: false, imm: 'b' };
  switch (op) {
    case 0xe8: case 0xe9: return { modrm: false, imm: 'rel' };
    case 0xea: return { modrm: false, imm: 'ptr', invalid64: true };
    case 0xeb: return { modrm: false, imm: 'b' };
    case 0xf6: return { modrm: true, imm: 'grp3b' };
    case 0xf7: return { modrm: true, imm: 'grp3z' };
    case 0xfe: case 0xff: return M;
    default: return NONE; // EC-EF, F1, F4, F5, F8-FD
  }
}

/** Info for an opcode in the 0F map (0F 38 and 0F 3A are escapes handled by the decoder). */
export function map0fInfo(op: number): OpcodeInfo {
  switch (op) {
    case 0x00: case 0x01: case 0x02: case 0x03: return M;
    case 0x04: case 0x0a: case 0x0c: return { modrm: false, imm: 'none', undefinedOpcode: true };
    case 0x05: case 0x06: case 0x07: case 0x08: case 0x09: case 0x0e: return NONE;
    case 0x0b: return { modrm: false, imm: 'none', undefinedOpcode: true }; // UD2
    case 0x0d: return M;
    case 0x0f: return MB; // 3DNow!: ModRM, then an opcode suffix byte
    default: break;
  }
  if (op >= 0x10 && op <= 0x2f) {
    if (op === 0x24 || op === 0x25 || op === 0x26 || op === 0x27) return { modrm: true, imm: 'none', undefinedOpcode: true };
    return M;
  }
  if (op >= 0x30 && op <= 0x37) return NONE;
  if (op >= 0x40 && op <= 0x6f) return M;
  if (op >= 0x70 && op <= 0x73) return MB;
  if (op === 0x77) return NONE;
  if (op >= 0x74 && op <= 0x7f) return M;
  if (op >= 0x80 && op <= 0x8f) return { modrm: false, imm: 'rel' };
  if (op >= 0x90 && op <= 0x9f) return M;
  switch (op) {
    case 0xa0: case 0xa1: case 0xa2: case 0xa8: case 0xa9: case 0xaa: return NONE;
    case 0xa3: case 0xa5: case 0xab: case 0xad: case 0xae: case 0xaf: return M;
    case 0xa4: case 0xac: return MB;
    case 0xa6: case 0xa7: return { modrm: false, imm: 'none', undefinedOpcode: true };
    case 0xb9: return { modrm: true, imm: 'none', undefinedOpcode: true }; // UD1
    case 0xba: return MB;
    case 0xc2: case 0xc4: case 0xc5: case 0xc6: return MB;
    case 0xff: return { modrm: true, imm: 'none', undefinedOpcode: true }; // UD0
    default: break;
  }
  if (op >= 0xc8 && op <= 0xcf) return NONE; // BSWAP
  return M; // B0-BF, C0-C7, D0-FE
}

/** Info for an opcode in `map`. */
export function opcodeInfo(map: OpcodeMap, op: number): OpcodeInfo {
  switch (map) {
    case 'primary': return primaryInfo(op);
    case '0f': return map0fInfo(op);
    case '0f38': return M;
    case '0f3a': return MB;
  }
}

/**
 * True if a LOCK prefix is allowed: the instruction is one of the lockable read-modify-write
 * forms and its destination is memory (ModRM.mod ≠ 3). `reg` is the raw ModRM.reg field.
 */
export function lockAllowed(map: OpcodeMap, op: number, mod: number | undefined, reg: number): boolean {
  if (mod === undefined || mod === 3) return false;
  if (map === 'primary') {
    if (op < 0x38) return (op & 7) < 2; // ADD/OR/ADC/SBB/AND/SUB/XOR r/m, r
    if (op >= 0x80 && op <= 0x83) return reg !== 7; // not CMP
    if (op === 0x86 || op === 0x87) return true; // XCHG
    if (op === 0xf6 || op === 0xf7) return reg === 2 || reg === 3; // NOT/NEG
    if (op === 0xfe || op === 0xff) return reg === 0 || reg === 1; // INC/DEC
    return false;
  }
  if (map === '0f') {
    switch (op) {
      case 0xab: case 0xb3: case 0xbb: case 0xb0: case 0xb1: case 0xc0: case 0xc1: return true;
      case 0xba: return reg >= 5;
      case 0xc7: return reg === 1;
      default: return false;
    }
  }
  return false;
}

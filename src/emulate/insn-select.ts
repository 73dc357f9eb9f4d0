/**
 * Picks the emulated instruction named by an opcode, its mandatory prefix and its ModRM
 * byte (Intel SDM Vol. 2 instruction pages), and the encodings of those opcodes that are
 * architecturally invalid (#UD).
 */
import type { Mnemonic, OpcodeMap, Prefixes } from './decoder-types.js';

/** The outcome of {@link selectInsn}. */
export type Selection =
  | { kind: 'insn'; mnemonic: Mnemonic; memoryOnly?: boolean }
  | { kind: 'ud'; reason: string; mnemonic?: Mnemonic }
  | { kind: 'unknown' };

const UNKNOWN: Selection = { kind: 'unknown' };

/** SSE instructions keyed by `opcode:mandatory-prefix` in the 0F map. */
const SSE: ReadonlyMap<string, { mnemonic: Mnemonic; memoryOnly?: boolean }> = new Map([
  ['6e:66', { mnemonic: 'movd' as Mnemonic }],
  ['7e:66', { mnemonic: 'movd' as Mnemonic }],
  ['7e:f3', { mnemonic: 'movq' as Mnemonic }],
  ['d6:66', { mnemonic: 'movq' as Mnemonic }],
  ['6f:66', { mnemonic: 'movdqa' as Mnemonic }],
  ['7f:66', { mnemonic: 'movdqa' as Mnemonic }],
  ['6f:f3', { mnemonic: 'movdqu' as Mnemonic }],
  ['7f:f3', { mnemonic: 'movdqu' as Mnemonic }],
  ['28:none', { mnemonic: 'movaps' as Mnemonic }],
  ['29:none', { mnemonic: 'movaps' as Mnemonic }],
  ['28:66', { mnemonic: 'movapd' as Mnemonic }],
  ['29:66', { mnemonic: 'movapd' as Mnemonic }],
  ['10:none', { mnemonic: 'movups' as Mnemonic }],
  ['11:none', { mnemonic: 'movups' as Mnemonic }],
  ['10:66', { mnemonic: 'movupd' as Mnemonic }],
  ['11:66', { mnemonic: 'movupd' as Mnemonic }],
  ['2b:none', { mnemonic: 'movntps' as Mnemonic, memoryOnly: true }],
  ['2b:66', { mnemonic: 'movntpd' as Mnemonic, memoryOnly: true }],
  ['e7:66', { mnemonic: 'movntdq' as Mnemonic, memoryOnly: true }],
  ['57:none', { mnemonic: 'xorps' as Mnemonic }],
  ['57:66', { mnemonic: 'xorpd' as Mnemonic }],
  ['ef:66', { mnemonic: 'pxor' as Mnemonic }],
  ['db:66', { mnemonic: 'pand' as Mnemonic }],
  ['df:66', { mnemonic: 'pandn' as Mnemonic }],
  ['eb:66', { mnemonic: 'por' as Mnemonic }],
]);

/**
 * Select the emulated instruction, if any.
 *
 * @param modrm The raw ModRM byte, when the opcode takes one.
 */
export function selectInsn(map: OpcodeMap, op: number, p: Prefixes, rexW: boolean, modrm: number | undefined): Selection {
  const mod = modrm === undefined ? -1 : modrm >> 6;
  const reg = modrm === undefined ? -1 : (modrm >> 3) & 7;
  if (map === 'primary') {
    if (op === 0xcc) return { kind: 'insn', mnemonic: 'int3' };
    if (op === 0xcd) return { kind: 'insn', mnemonic: 'int' };
    if (op === 0xf1) return { kind: 'insn', mnemonic: 'int1' };
    if (op === 0xcf) return { kind: 'insn', mnemonic: 'iret' };
    if (op === 0x9b) return { kind: 'insn', mnemonic: 'fwait' };
    if (op === 0xdb && modrm === 0xe3) return { kind: 'insn', mnemonic: 'fninit' };
    if (op === 0xdb && modrm === 0xe2) return { kind: 'insn', mnemonic: 'fnclex' };
    if (op >= 0xd8 && op <= 0xdf) return { kind: 'insn', mnemonic: 'x87' };
    return UNKNOWN;
  }
  if (map === '0f38') {
    if (op === 0x82 && p.mandatory === '66') {
      if (mod === 3) return { kind: 'ud', reason: 'invpcid needs a memory operand', mnemonic: 'invpcid' };
      return { kind: 'insn', mnemonic: 'invpcid', memoryOnly: true };
    }
    return UNKNOWN;
  }
  if (map !== '0f') return UNKNOWN;
  switch (op) {
    case 0x01:
      if (p.mandatory !== 'none') return UNKNOWN;
      if (modrm === 0xca) return { kind: 'insn', mnemonic: 'clac' };
      if (modrm === 0xcb) return { kind: 'insn', mnemonic: 'stac' };
      if (modrm === 0xd0) return { kind: 'insn', mnemonic: 'xgetbv' };
      return UNKNOWN;
    case 0xb8: case 0xbc: case 0xbd:
      if (p.mandatory !== 'f3') return UNKNOWN;
      return { kind: 'insn', mnemonic: op === 0xb8 ? 'popcnt' : op === 0xbc ? 'tzcnt' : 'lzcnt' };
    case 0xae:
      if (p.mandatory === '66' && mod !== 3 && (reg === 6 || reg === 7)) return { kind: 'insn', mnemonic: reg === 6 ? 'clwb' : 'clflushopt', memoryOnly: true };
      if (p.mandatory !== 'none') return UNKNOWN;
      if (mod !== 3) {
        if (reg === 5) return { kind: 'insn', mnemonic: 'xrstor', memoryOnly: true };
        if (reg === 2) return { kind: 'insn', mnemonic: 'ldmxcsr' };
        if (reg === 3) return { kind: 'insn', mnemonic: 'stmxcsr' };
        return UNKNOWN;
      }
      if (reg === 5) return { kind: 'insn', mnemonic: 'lfence' };
      if (reg === 6) return { kind: 'insn', mnemonic: 'mfence' };
      if (reg === 7) return { kind: 'insn', mnemonic: 'sfence' };
      if (reg === 2 || reg === 3) return { kind: 'ud', reason: `${reg === 2 ? 'ldmxcsr' : 'stmxcsr'} needs a memory operand`, mnemonic: reg === 2 ? 'ldmxcsr' : 'stmxcsr' };
      return UNKNOWN;
    case 0xc7: {
      if (reg !== 1) return UNKNOWN;
      const mnemonic: Mnemonic = rexW ? 'cmpxchg16b' : 'cmpxchg8b';
      if (mod === 3) return { kind: 'ud', reason: `${mnemonic} needs a memory operand`, mnemonic };
      return { kind: 'insn', mnemonic, memoryOnly: true };
    }
    default: {
      const e = SSE.get(`${op.toString(16).padStart(2, '0')}:${p.mandatory}`);
      if (!e) return UNKNOWN;
      if (e.memoryOnly && mod === 3) return { kind: 'ud', reason: `${e.mnemonic} needs a memory operand`, mnemonic: e.mnemonic };
      // 66 REX.W 0F 6E/7E is the 64-bit form, named MOVQ.
      const mnemonic: Mnemonic = e.mnemonic === 'movd' && rexW ? 'movq' : e.mnemonic;
      return { kind: 'insn', mnemonic, memoryOnly: e.memoryOnly };
    }
  }
}

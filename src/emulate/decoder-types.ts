/**
 * The types produced by the instruction decoder ({@link ../decoder.js}): a decoded
 * instruction with its prefixes, ModRM/SIB operands, displacement and immediate, or one of
 * the decode failures (unknown opcode, truncated bytes, architectural exception).
 */

/** Segment registers an instruction can name, by their struct kvm_sregs names. */
export type SegmentReg = 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs';

/** The opcode map an instruction's opcode byte lives in: one-byte, 0F, 0F 38 or 0F 3A. */
export type OpcodeMap = 'primary' | '0f' | '0f38' | '0f3a';

/**
 * Mnemonics the emulator implements (the decoder names only these). `x87` stands for every
 * x87 arithmetic/load/store instruction (D8-DF) other than FNINIT/FNCLEX; its handler reports
 * the instruction's own name (one of {@link ../instructions/x87-native.js X87_MNEMONICS}).
 */
export const MNEMONICS = [
  'int3', 'clac', 'stac',
  'popcnt', 'lzcnt', 'tzcnt',
  'fwait', 'fninit', 'fnclex',
  'ldmxcsr', 'stmxcsr', 'lfence', 'mfence', 'sfence',
  'cmpxchg8b', 'cmpxchg16b',
  'movd', 'movq',
  'movdqa', 'movdqu', 'movaps', 'movups', 'movapd', 'movupd',
  'movntdq', 'movntps', 'movntpd',
  'pxor', 'xorps', 'xorpd', 'pand', 'pandn', 'por',
  'int', 'int1', 'iret',
  'xgetbv', 'xrstor', 'clwb', 'clflushopt', 'invpcid',
  'x87',
] as const;

/** One of {@link MNEMONICS}. */
export type Mnemonic = (typeof MNEMONICS)[number];

/** The legacy prefixes seen before the opcode. */
export interface Prefixes {
  /** F0. */
  lock: boolean;
  /** F3 (REP/REPE, or a mandatory prefix). */
  rep: boolean;
  /** F2 (REPNE, or a mandatory prefix). */
  repne: boolean;
  /** 66. */
  operandSize: boolean;
  /** 67. */
  addressSize: boolean;
  /** The last segment override (2E/36/3E/26/64/65), if any. */
  segment?: SegmentReg;
  /**
   * The SSE mandatory prefix: the last of F2/F3 if either is present, else 66 if present,
   * else none.
   */
  mandatory: 'none' | '66' | 'f3' | 'f2';
  /** How many legacy prefix bytes there were. */
  count: number;
}

/** The decoded ModRM byte. `reg` includes REX.R; `rm` includes REX.B (for mod = 3 and non-SIB bases). */
export interface ModRM {
  /** The raw byte. */
  byte: number;
  mod: number;
  /** ModRM.reg extended by REX.R (0-15). */
  reg: number;
  /** ModRM.rm extended by REX.B (0-15); for memory forms see {@link MemoryOperand}. */
  rm: number;
}

/** A memory operand as decoded from ModRM/SIB/displacement. */
export interface MemoryOperand {
  /** Base register (0-15 = RAX..R15), if any (16-bit forms map BX/BP/SI/DI onto base and index). */
  base?: number;
  /** Index register (0-15), if any. */
  index?: number;
  /** Scale applied to the index. */
  scale: 1 | 2 | 4 | 8;
  /** Sign-extended displacement. */
  disp: bigint;
  /** True for RIP-relative addressing (64-bit mode, mod = 0, rm = 5). */
  ripRelative: boolean;
  /** The segment the access goes through: the override, else DS or SS by the base register. */
  segment: SegmentReg;
}

/** A successfully decoded, supported instruction. */
export interface DecodedInsn {
  kind: 'insn';
  mnemonic: Mnemonic;
  /** Total length in bytes, prefixes included (1-15). */
  length: number;
  map: OpcodeMap;
  /** The opcode byte within {@link map}. */
  opcode: number;
  prefixes: Prefixes;
  /** The REX byte that applies (0x40-0x4f), or 0. */
  rex: number;
  /** REX.W. */
  rexW: boolean;
  /** Effective operand size in bytes. */
  operandSize: 2 | 4 | 8;
  /** Effective address size in bytes. */
  addressSize: 2 | 4 | 8;
  modrm?: ModRM;
  /** Present when the ModRM names memory (mod ≠ 3). */
  mem?: MemoryOperand;
  /** Immediate operand (zero-extended raw value), if any. */
  imm?: bigint;
}

/** The opcode is valid x86 but not one the emulator implements. */
export interface DecodeUnknown {
  kind: 'unknown';
  map?: OpcodeMap;
  opcode?: number;
  /** The instruction length, when the decoder could compute it. */
  length?: number;
  reason: string;
}

/** More instruction bytes are needed than were given (and the instruction is not yet longer than 15). */
export interface DecodeNeedMore {
  kind: 'need-more-bytes';
  /** How many bytes were available. */
  have: number;
  /** The minimum total number of bytes needed to make progress. */
  need: number;
}

/** The bytes raise an exception when executed: #UD (6) or #GP(0) (13, instruction too long). */
export interface DecodeException {
  kind: 'exception';
  vector: 6 | 13;
  errorCode?: number;
  reason: string;
  mnemonic?: Mnemonic;
}

/** Any decode failure. */
export type DecodeError = DecodeUnknown | DecodeNeedMore | DecodeException;

/** The result of {@link ../decoder.js decode}. */
export type DecodeResult = DecodedInsn | DecodeError;

/** The code-segment mode the bytes are decoded in. */
export interface DecodeMode {
  /** 64-bit mode (EFER.LMA and CS.L). */
  long: boolean;
  /** CS.D: default operand and address size 32 (ignored in 64-bit mode). */
  default32: boolean;
}

/** The architectural maximum instruction length. */
export const MAX_INSN_LENGTH = 15;

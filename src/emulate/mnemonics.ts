/**
 * The names of the instructions the userspace fallback finishes, in one small module with no
 * dependencies: the runner sizes and names its per-mnemonic counters from
 * {@link COUNTED_MNEMONICS} without loading the emulator itself.
 */
import { MNEMONICS } from './decoder-types.js';

/** Every mnemonic the x87 handler reports. */
export const X87_MNEMONICS = [
  'fadd', 'fmul', 'fcom', 'fcomp', 'fsub', 'fsubr', 'fdiv', 'fdivr',
  'fld', 'fst', 'fstp', 'fldcw', 'fnstcw', 'fnstsw', 'fxch', 'fnop',
  'fchs', 'fabs', 'ftst', 'fxam', 'fld1', 'fldl2t', 'fldl2e', 'fldpi', 'fldlg2', 'fldln2', 'fldz',
  'f2xm1', 'fyl2x', 'fptan', 'fpatan', 'fxtract', 'fprem1', 'fdecstp', 'fincstp', 'fprem', 'fyl2xp1',
  'fsqrt', 'fsincos', 'frndint', 'fscale', 'fsin', 'fcos',
  'fiadd', 'fimul', 'ficom', 'ficomp', 'fisub', 'fisubr', 'fidiv', 'fidivr',
  'fild', 'fist', 'fistp', 'fisttp', 'fbld', 'fbstp',
  'fcmovb', 'fcmove', 'fcmovbe', 'fcmovu', 'fcmovnb', 'fcmovne', 'fcmovnbe', 'fcmovnu',
  'fucompp', 'fucomi', 'fcomi', 'fucomip', 'fcomip', 'ffree', 'ffreep', 'fucom', 'fucomp',
  'faddp', 'fmulp', 'fcompp', 'fsubrp', 'fsubp', 'fdivrp', 'fdivp',
] as const;

/** The mnemonic the fallback counts native SSE executions under. */
export const NATIVE_SSE_MNEMONIC = 'sse-native';

/**
 * Every mnemonic `emulate` can report as emulated. `finit`/`fclex` are FWAIT immediately
 * followed by FNINIT/FNCLEX, completed together in one call; the decoder's `x87` is reported
 * by the instruction's own name ({@link X87_MNEMONICS}).
 */
export const SUPPORTED_MNEMONICS: readonly string[] = Object.freeze([
  ...MNEMONICS.filter((m) => m !== 'x87'), 'finit', 'fclex', ...X87_MNEMONICS,
].filter((m, i, all) => all.indexOf(m) === i));

/**
 * Every mnemonic the fallback counts: the emulator's, native SSE execution, then the SYSCALL
 * repair's two outcomes ('syscall': a user `syscall` finished at CPL 0; 'pf-step': a page
 * fault passed through the repair's breakpoint).
 */
export const COUNTED_MNEMONICS: readonly string[] = [...SUPPORTED_MNEMONICS, NATIVE_SSE_MNEMONIC, 'syscall', 'pf-step'];

/**
 * INT3, CLAC/STAC and the LFENCE/MFENCE/SFENCE fences (Intel SDM Vol. 2).
 */
import { VECTOR, ud } from '../fault.js';
import { RFLAGS } from '../flags.js';
import type { Handler } from './types.js';

/** INT3: a #BP trap — RIP is advanced past the instruction before delivery. */
export const int3: Handler = () => ({ trap: VECTOR.BP });

/** CLAC: clear RFLAGS.AC. #UD at CPL > 0. */
export const clac: Handler = (_insn, ctx) => {
  if (ctx.mode.cpl > 0) throw ud('clac at CPL > 0');
  ctx.rflags = ctx.rflags & ~RFLAGS.AC;
};

/** STAC: set RFLAGS.AC. #UD at CPL > 0. */
export const stac: Handler = (_insn, ctx) => {
  if (ctx.mode.cpl > 0) throw ud('stac at CPL > 0');
  ctx.rflags = ctx.rflags | RFLAGS.AC;
};

/**
 * LFENCE/MFENCE/SFENCE: ordering only. Emulation runs with the vCPU stopped, which already
 * orders its memory accesses, so these complete without effect.
 */
export const fence: Handler = () => undefined;

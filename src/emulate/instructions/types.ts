/** The shape of an instruction implementation. */
import type { ExecContext } from '../context.js';
import type { DecodedInsn } from '../decoder-types.js';

/**
 * What an implementation returns: nothing when the instruction completed (the emulator then
 * sets RIP to `ctx.nextRip`), or:
 * - `trap`: a trap-class exception to deliver after advancing RIP (e.g. INT3 → #BP);
 * - `mnemonic`: the name to report instead of the decoded one (x87 instructions);
 * - `rip`: the instruction transferred control there (INT n, IRET) instead of falling through;
 * - `noSingleStep`: no single-step #DB follows, although RFLAGS.TF was set before (INT n and
 *   IRET: the SDM's TF handling is the delivery's or the return's own).
 * Faults are thrown as {@link ../fault.js Fault}.
 */
export type HandlerOutcome = void | { trap?: number; mnemonic?: string; rip?: bigint; noSingleStep?: boolean };

/** An instruction implementation: reads and mutates `ctx.cpu`, `ctx.fpu` and guest memory. */
export type Handler = (insn: DecodedInsn, ctx: ExecContext) => HandlerOutcome;

/** The ModRM of an instruction that must have one. */
export function modrmOf(insn: DecodedInsn): NonNullable<DecodedInsn['modrm']> {
  if (!insn.modrm) throw new Error(`${insn.mnemonic}: missing ModRM`);
  return insn.modrm;
}

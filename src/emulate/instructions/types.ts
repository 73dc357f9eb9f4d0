/** The shape of an instruction implementation. */
import type { ExecContext } from '../context.js';
import type { DecodedInsn } from '../decoder-types.js';

/**
 * What an implementation returns: nothing when the instruction completed (the emulator then
 * advances RIP), or a trap-class exception to deliver after advancing RIP (e.g. INT3 → #BP).
 * Faults are thrown as {@link ../fault.js Fault}.
 */
export type HandlerOutcome = void | { trap: number };

/** An instruction implementation: reads and mutates `ctx.cpu`, `ctx.fpu` and guest memory. */
export type Handler = (insn: DecodedInsn, ctx: ExecContext) => HandlerOutcome;

/** The ModRM of an instruction that must have one. */
export function modrmOf(insn: DecodedInsn): NonNullable<DecodedInsn['modrm']> {
  if (!insn.modrm) throw new Error(`${insn.mnemonic}: missing ModRM`);
  return insn.modrm;
}

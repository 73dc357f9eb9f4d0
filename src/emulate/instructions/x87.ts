/**
 * FWAIT, FNINIT and FNCLEX (Intel SDM Vol. 2A), on the x87 state in struct kvm_fpu.
 */
import { FPU } from '../../kvm/structs.js';
import { Fault, Unsupported, VECTOR, nm } from '../fault.js';
import { CR0, hasBit } from '../flags.js';
import type { Handler } from './types.js';

/** FSW.ES: an unmasked x87 exception is pending. */
export const FSW_ES = 0x80;

/**
 * FWAIT: #NM if CR0.MP and CR0.TS are both set; #MF if an unmasked x87 exception is pending
 * (FSW.ES) and CR0.NE is set. With CR0.NE clear the legacy FERR# signalling would be needed,
 * which the emulator does not model (reported as unsupported).
 */
export const fwait: Handler = (_insn, ctx) => {
  const cr0 = ctx.cpu.sregs.cr0;
  if (hasBit(cr0, CR0.MP) && hasBit(cr0, CR0.TS)) throw nm('fwait with CR0.MP and CR0.TS set');
  if ((ctx.fpu.u16(FPU.fsw) & FSW_ES) !== 0) {
    if (!hasBit(cr0, CR0.NE)) throw new Unsupported('fwait with a pending x87 exception and CR0.NE clear (FERR#)');
    throw new Fault(VECTOR.MF, undefined, undefined, 'pending unmasked x87 exception');
  }
};

function requireX87(cr0: bigint, what: string): void {
  if (hasBit(cr0, CR0.EM) || hasBit(cr0, CR0.TS)) throw nm(`${what} with CR0.EM or CR0.TS set`);
}

/**
 * FNINIT: FCW = 0x037F, FSW = 0, all tags empty (abridged FTW = 0), last instruction pointer,
 * data pointer and opcode = 0. #NM if CR0.EM or CR0.TS is set.
 */
export const fninit: Handler = (_insn, ctx) => {
  requireX87(ctx.cpu.sregs.cr0, 'fninit');
  const f = ctx.fpu;
  f.setU16(FPU.fcw, 0x037f);
  f.setU16(FPU.fsw, 0);
  f.setU8(FPU.ftwx, 0);
  f.setU16(FPU.lastOpcode, 0);
  f.setU64(FPU.lastIp, 0n);
  f.setU64(FPU.lastDp, 0n);
};

/** FNCLEX: clear FSW's exception flags (PE..IE), SF, ES and B. #NM if CR0.EM or CR0.TS is set. */
export const fnclex: Handler = (_insn, ctx) => {
  requireX87(ctx.cpu.sregs.cr0, 'fnclex');
  ctx.fpu.setU16(FPU.fsw, ctx.fpu.u16(FPU.fsw) & 0x7f00);
};

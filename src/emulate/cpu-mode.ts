/**
 * The processor operating mode and privilege level, derived from the segment and control
 * registers (Intel SDM Vol. 3 §2.2 and §5.5).
 */
import type { KvmSregs } from '../kvm/structs.js';
import { CR0, EFER, RFLAGS, hasBit } from './flags.js';

/** The operating mode of the code being emulated. */
export type ModeKind = 'real' | 'vm86' | 'protected' | 'compat' | 'long';

/** The code-segment mode and privilege level. */
export interface CpuMode {
  kind: ModeKind;
  /** 64-bit mode: IA-32e mode with CS.L set. */
  long: boolean;
  /** CS.D: default operand/address size 32 (not meaningful in 64-bit mode). */
  default32: boolean;
  /** Current privilege level. */
  cpl: number;
  /** IA-32e mode (EFER.LMA), 64-bit or compatibility. */
  ia32e: boolean;
}

/**
 * Derive the mode. CPL is 0 in real mode and 3 in virtual-8086 mode; otherwise it is CS.DPL,
 * or SS.DPL when CS is a conforming code segment (whose DPL need not equal CPL).
 */
export function cpuMode(sregs: KvmSregs, rflags: bigint): CpuMode {
  const ia32e = hasBit(sregs.efer, EFER.LMA);
  if (!hasBit(sregs.cr0, CR0.PE)) return { kind: 'real', long: false, default32: sregs.cs.db !== 0, cpl: 0, ia32e: false };
  if (!ia32e && hasBit(rflags, RFLAGS.VM)) return { kind: 'vm86', long: false, default32: false, cpl: 3, ia32e: false };
  const conforming = (sregs.cs.type & 0xc) === 0xc;
  const cpl = (conforming ? sregs.ss.dpl : sregs.cs.dpl) & 3;
  if (ia32e && sregs.cs.l) return { kind: 'long', long: true, default32: true, cpl, ia32e };
  return { kind: ia32e ? 'compat' : 'protected', long: false, default32: sregs.cs.db !== 0, cpl, ia32e };
}

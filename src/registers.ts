/**
 * Register names for `vm.getRegister`/`vm.setRegister`/`vm.getDesc`/`vm.setDesc`, numbered in
 * bhyve's VM_REG_GUEST_* order, plus the KVM-only ones at the end.
 */
import type { GprName, SegmentName } from './kvm/structs.js';

/** A guest register (bhyve's `enum vm_reg_name`). */
export enum Reg {
  RAX, RBX, RCX, RDX, RSI, RDI, RBP, R8, R9, R10, R11, R12, R13, R14, R15,
  CR0, CR3, CR4, DR7, RSP, RIP, RFLAGS,
  ES, CS, SS, DS, FS, GS, LDTR, TR, IDTR, GDTR,
  EFER, CR2,
  PDPTE0, PDPTE1, PDPTE2, PDPTE3,
  INTR_SHADOW,
  DR0, DR1, DR2, DR3, DR6,
  ENTRY_INST_LENGTH,
  // KVM additions
  CR8 = 100, APIC_BASE,
}

/** Where a register lives in KVM's state structs. */
export type RegLocation =
  | { in: 'regs'; field: GprName }
  | { in: 'sregs'; field: 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apicBase' }
  | { in: 'segment'; field: SegmentName }
  | { in: 'dtable'; field: 'gdt' | 'idt' }
  | { in: 'debugregs'; field: 0 | 1 | 2 | 3 | 'dr6' | 'dr7' }
  | { in: 'events'; field: 'shadow' }
  | { in: 'unsupported'; why: string };

const GPR: Partial<Record<Reg, GprName>> = {
  [Reg.RAX]: 'rax', [Reg.RBX]: 'rbx', [Reg.RCX]: 'rcx', [Reg.RDX]: 'rdx', [Reg.RSI]: 'rsi', [Reg.RDI]: 'rdi',
  [Reg.RBP]: 'rbp', [Reg.RSP]: 'rsp', [Reg.R8]: 'r8', [Reg.R9]: 'r9', [Reg.R10]: 'r10', [Reg.R11]: 'r11',
  [Reg.R12]: 'r12', [Reg.R13]: 'r13', [Reg.R14]: 'r14', [Reg.R15]: 'r15', [Reg.RIP]: 'rip', [Reg.RFLAGS]: 'rflags',
};
const SEG: Partial<Record<Reg, SegmentName>> = {
  [Reg.ES]: 'es', [Reg.CS]: 'cs', [Reg.SS]: 'ss', [Reg.DS]: 'ds', [Reg.FS]: 'fs', [Reg.GS]: 'gs',
  [Reg.LDTR]: 'ldt', [Reg.TR]: 'tr',
};
const CR: Partial<Record<Reg, 'cr0' | 'cr2' | 'cr3' | 'cr4' | 'cr8' | 'efer' | 'apicBase'>> = {
  [Reg.CR0]: 'cr0', [Reg.CR2]: 'cr2', [Reg.CR3]: 'cr3', [Reg.CR4]: 'cr4', [Reg.CR8]: 'cr8', [Reg.EFER]: 'efer',
  [Reg.APIC_BASE]: 'apicBase',
};
const DR: Partial<Record<Reg, 0 | 1 | 2 | 3 | 'dr6' | 'dr7'>> = {
  [Reg.DR0]: 0, [Reg.DR1]: 1, [Reg.DR2]: 2, [Reg.DR3]: 3, [Reg.DR6]: 'dr6', [Reg.DR7]: 'dr7',
};

/** True if `reg` is a known {@link Reg} value. */
export function isReg(reg: unknown): reg is Reg {
  return typeof reg === 'number' && Number.isInteger(reg) && Reg[reg] !== undefined;
}

/** Where `reg` is stored in KVM's structs. */
export function regLocation(reg: Reg): RegLocation {
  const g = GPR[reg];
  if (g) return { in: 'regs', field: g };
  const c = CR[reg];
  if (c) return { in: 'sregs', field: c };
  const s = SEG[reg];
  if (s) return { in: 'segment', field: s };
  if (reg === Reg.GDTR) return { in: 'dtable', field: 'gdt' };
  if (reg === Reg.IDTR) return { in: 'dtable', field: 'idt' };
  const d = DR[reg];
  if (d !== undefined) return { in: 'debugregs', field: d };
  if (reg === Reg.INTR_SHADOW) return { in: 'events', field: 'shadow' };
  return { in: 'unsupported', why: `${Reg[reg]} is not exposed by KVM` };
}

/** True for the registers that take a descriptor (`setDesc`/`getDesc`). */
export function isDescReg(reg: Reg): boolean {
  return SEG[reg] !== undefined || reg === Reg.GDTR || reg === Reg.IDTR;
}

/** Applying a loader's {@link BootState} to a vCPU through the libvmmapi surface. */
import type { BootRegister, BootSegment, BootState } from '../boot/boot-state.js';
import { Reg } from '../registers.js';
import type { Vm } from '../vm.js';

const SEGMENTS: Record<BootSegment, Reg> = {
  cs: Reg.CS, ds: Reg.DS, es: Reg.ES, fs: Reg.FS, gs: Reg.GS, ss: Reg.SS, tr: Reg.TR, ldtr: Reg.LDTR,
};
const REGISTERS: Record<BootRegister, Reg> = {
  rax: Reg.RAX, rbx: Reg.RBX, rcx: Reg.RCX, rdx: Reg.RDX, rsi: Reg.RSI, rdi: Reg.RDI,
  rsp: Reg.RSP, rbp: Reg.RBP, rip: Reg.RIP, rflags: Reg.RFLAGS,
};

/**
 * Put `vcpu` in `state`: descriptor tables first, then CR3/CR4/EFER/CR0 in one batch (KVM
 * rejects the intermediate states of a long-mode switch), then the segments (a 64-bit CS is
 * only consistent once EFER.LMA is set), then the general registers, RIP and RFLAGS.
 * Fields the state leaves out keep their current (normally reset) values.
 */
export function applyBootState(vm: Vm, vcpu: number, state: BootState): void {
  if (state.gdt) vm.setDesc(vcpu, Reg.GDTR, { base: state.gdt.base, limit: state.gdt.limit, access: 0 });
  if (state.idt) vm.setDesc(vcpu, Reg.IDTR, { base: state.idt.base, limit: state.idt.limit, access: 0 });
  const crs: [Reg, bigint][] = [];
  if (state.cr3 !== undefined) crs.push([Reg.CR3, state.cr3]);
  if (state.cr4 !== undefined) crs.push([Reg.CR4, state.cr4]);
  if (state.efer !== undefined) crs.push([Reg.EFER, state.efer]);
  if (state.cr0 !== undefined) crs.push([Reg.CR0, state.cr0]);
  if (crs.length) vm.setRegisters(vcpu, crs);
  const selectors: [Reg, number][] = [];
  for (const [name, seg] of Object.entries(state.segments ?? {}) as [BootSegment, NonNullable<BootState['segments']>[BootSegment]][]) {
    if (!seg) continue;
    const reg = SEGMENTS[name];
    vm.setDesc(vcpu, reg, { base: seg.base, limit: seg.limit, access: seg.access });
    selectors.push([reg, seg.selector]);
  }
  const regs: [Reg, bigint | number][] = [...selectors];
  for (const [name, value] of Object.entries(state.regs) as [BootRegister, bigint | undefined][]) {
    if (value !== undefined) regs.push([REGISTERS[name], value]);
  }
  if (regs.length) vm.setRegisters(vcpu, regs);
}

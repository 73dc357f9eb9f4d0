/**
 * Moving a vCPU's state between KVM and the CPL0 engine (src/engine/kvm-state.ts) on a real
 * long-mode vCPU: what is read is what KVM holds, what is written KVM then runs with.
 */
import { afterEach, expect, it } from 'vitest';
import { Reg, Vm } from '../../src/index.js';
import { engineEligible, readEngineState, writeEngineState } from '../../src/engine/kvm-state.js';
import { uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => vm?.destroy());

/** A 64-bit ring-0 vCPU at 0x2000 (identity-mapped 2 MiB, flat GDT) running `code`. */
function longModeVm(code: number[]): Vm {
  const v = Vm.create(uniqueName('engine-switch'), { irqchip: false });
  v.setupMemory(0, 0x200000);
  v.memory.writeU64(0x10000, 0x11000n | 3n);
  v.memory.writeU64(0x11000, 0x12000n | 3n);
  v.memory.writeU64(0x12000, 0x83n);
  v.memory.writeU64(0x508, 0x00af9b000000ffffn);
  v.memory.writeU64(0x510, 0x00cf93000000ffffn);
  v.memory.writeBytes(0x2000, Uint8Array.from(code));
  v.setDesc(0, Reg.GDTR, { base: 0x500n, limit: 23, access: 0 });
  v.setRegisters(0, [[Reg.CR3, 0x10000], [Reg.CR4, 0x20], [Reg.EFER, 0x500], [Reg.CR0, 0x80000011]]);
  v.setDesc(0, Reg.CS, { base: 0n, limit: 0xffffffff, access: 0xa09b });
  v.setRegister(0, Reg.CS, 0x08);
  for (const r of [Reg.DS, Reg.ES, Reg.SS]) {
    v.setDesc(0, r, { base: 0n, limit: 0xffffffff, access: 0xc093 });
    v.setRegister(0, r, 0x10);
  }
  v.setRegisters(0, [[Reg.RIP, 0x2000], [Reg.RSP, 0x8000], [Reg.RFLAGS, 2]]);
  return v;
}

it('reads a long-mode ring-0 vCPU, and KVM runs on from the state written back', () => {
  // add %rbx,%rax ; out %al,$0x10 ; hlt
  vm = longModeVm([0x48, 0x01, 0xd8, 0xe6, 0x10, 0xf4]);
  const fd = vm.vcpuFd(0);
  const s = readEngineState(fd);
  expect(engineEligible(s.sregs)).toBe(true);
  expect(s.regs.rip).toBe(0x2000n);
  expect(s.sregs.cr3).toBe(0x10000n);
  s.regs.rax = 0x1234n;
  s.regs.rbx = 0x10n;
  s.msrs.lstar = 0xffffffff81000000n;
  s.msrs.kernelGsBase = 0x5000n;
  writeEngineState(fd, s);
  const again = readEngineState(fd);
  expect(again.msrs.lstar).toBe(0xffffffff81000000n);
  expect(again.msrs.kernelGsBase).toBe(0x5000n);
  expect(vm.run(0)).toMatchObject({ kind: 'inout', port: 0x10, in: false, value: 0x44 });
  expect(vm.getRegister(0, Reg.RAX)).toBe(0x1244n);
});

it('is not eligible outside 64-bit ring 0', () => {
  vm = longModeVm([0xf4]);
  const s = readEngineState(vm.vcpuFd(0));
  expect(engineEligible({ ...s.sregs, cs: { ...s.sregs.cs, l: 0 } })).toBe(false);
  expect(engineEligible({ ...s.sregs, cs: { ...s.sregs.cs, selector: 0x1b, dpl: 3 } })).toBe(false);
  expect(engineEligible({ ...s.sregs, efer: 0n })).toBe(false);
});

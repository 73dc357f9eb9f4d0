/**
 * A long-mode guest set up only through the libvmmapi surface: page tables and a GDT
 * written through vm.memory, control registers with setRegister(s), segments with setDesc.
 */
import { afterEach, expect, it } from 'vitest';
import { Reg, Vm } from '../../src/index.js';
import { fixture, uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => vm?.destroy());

it('runs 64-bit code to a port write of the value it computed', () => {
  vm = Vm.create(uniqueName('long'), { irqchip: false });
  vm.setupMemory(0, 0x200000);
  const PML4 = 0x10000;
  const PDPT = 0x11000;
  const PD = 0x12000;
  vm.memory.writeU64(PML4, BigInt(PDPT) | 0x3n); // present, writable
  vm.memory.writeU64(PDPT, BigInt(PD) | 0x3n);
  vm.memory.writeU64(PD, 0x0n | 0x83n); // 2 MiB page at 0, present, writable, PS
  // GDT: null, 64-bit code (0x08), data (0x10)
  vm.memory.writeU64(0x500, 0n);
  vm.memory.writeU64(0x508, 0x00af9b000000ffffn);
  vm.memory.writeU64(0x510, 0x00cf93000000ffffn);
  vm.memory.writeBytes(0x2000, fixture('long-sum.bin'));

  vm.setDesc(0, Reg.GDTR, { base: 0x500n, limit: 23, access: 0 });
  // One KVM_SET_SREGS: long mode is only valid with CR0.PG, CR4.PAE, EFER.LME|LMA together.
  vm.setRegisters(0, [
    [Reg.CR3, PML4],
    [Reg.CR4, 0x20], // PAE
    [Reg.EFER, 0x500], // LME | LMA
    [Reg.CR0, 0x80000011], // PG | ET | PE
  ]);
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffffffff, access: 0xa09b }); // G, L, P, code
  vm.setRegister(0, Reg.CS, 0x08);
  for (const r of [Reg.DS, Reg.ES, Reg.SS]) {
    vm.setDesc(0, r, { base: 0n, limit: 0xffffffff, access: 0xc093 });
    vm.setRegister(0, r, 0x10);
  }
  vm.setRegisters(0, [[Reg.RIP, 0x2000], [Reg.RSP, 0x8000], [Reg.RFLAGS, 2]]);

  const e = vm.run(0);
  expect(e).toMatchObject({ kind: 'inout', port: 0x10, in: false, bytes: 4, value: 5050 });
  expect(vm.run(0).kind).toBe('hlt');
  expect(vm.getRegister(0, Reg.RAX)).toBe(5050n);
  expect(vm.getRegister(0, Reg.EFER) & 0x400n).toBe(0x400n);
});

/** Guest set-ups shared by the runner tests. */
import { Reg, Vm, createPc, type Pc, type PcOptions } from '../../src/index.js';
import { fixture, uniqueName } from '../helpers.js';

/** vCPU `v` in flat 32-bit protected mode at `rip` (host-built state, no GDT needed). */
export function flat32(vm: Vm, v: number, rip: number): void {
  vm.setDesc(v, Reg.CS, { base: 0n, limit: 0xffffffff, access: 0xc09b });
  for (const r of [Reg.DS, Reg.ES, Reg.SS, Reg.FS, Reg.GS]) vm.setDesc(v, r, { base: 0n, limit: 0xffffffff, access: 0xc093 });
  vm.setRegisters(v, [[Reg.CR0, 0x11], [Reg.CS, 0x08], [Reg.RIP, rip], [Reg.RSP, 0x7000], [Reg.RFLAGS, 2]]);
}

/** The 2-vCPU INIT-SIPI-SIPI guest: BSP code at 0x1000, AP trampoline at 0x8000. */
export function smpVm(): Vm {
  const vm = Vm.create(uniqueName('smp'), { vcpus: 2 });
  vm.setupMemory(0, 0x100000);
  vm.memory.writeBytes(0x1000, fixture('smp-bsp.bin'));
  vm.memory.writeBytes(0x8000, fixture('smp-ap.bin'));
  flat32(vm, 0, 0x1000);
  return vm;
}

/** A 1-vCPU real-mode VM running `name` at 0x1000. */
export function realVm(name: string, opts: { irqchip?: boolean } = {}): Vm {
  const vm = Vm.create(uniqueName('rm'), opts);
  vm.setupMemory(0, 0x100000);
  vm.memory.writeBytes(0x1000, fixture(name));
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
  vm.setRegisters(0, [[Reg.CS, 0], [Reg.RIP, 0x1000], [Reg.RFLAGS, 2]]);
  return vm;
}

/** A 1-vCPU VM in 64-bit long mode (identity-mapped first 2 MiB) running `code` at 0x2000. */
export function longModeVm(code: number[] | Uint8Array, opts: { irqchip?: boolean } = {}): Vm {
  const vm = Vm.create(uniqueName('long'), opts);
  vm.setupMemory(0, 0x200000);
  vm.memory.writeU64(0x10000, 0x11003n);
  vm.memory.writeU64(0x11000, 0x12003n);
  vm.memory.writeU64(0x12000, 0x83n);
  vm.memory.writeBytes(0x2000, Uint8Array.from(code));
  vm.setRegisters(0, [[Reg.CR3, 0x10000], [Reg.CR4, 0x20], [Reg.EFER, 0x500], [Reg.CR0, 0x80000011]]);
  vm.setDesc(0, Reg.CS, { base: 0n, limit: 0xffffffff, access: 0xa09b });
  for (const r of [Reg.DS, Reg.ES, Reg.SS]) vm.setDesc(0, r, { base: 0n, limit: 0xffffffff, access: 0xc093 });
  vm.setRegisters(0, [[Reg.CS, 0x08], [Reg.DS, 0x10], [Reg.ES, 0x10], [Reg.SS, 0x10], [Reg.RIP, 0x2000], [Reg.RSP, 0x8000], [Reg.RFLAGS, 2]]);
  return vm;
}

/** A 16 MiB PC (or as `opts` say) whose COM1 output is collected in `out.text`; pushed on `track` for clean-up. */
export function capturedPc(track: Pc[], opts: Partial<PcOptions> = {}): Pc & { out: { text: string } } {
  const out = { text: '' };
  const m = createPc({ memory: 16 * 2 ** 20, serial: { onOutput: (b) => (out.text += String.fromCharCode(b)) }, ...opts });
  track.push(m);
  return Object.assign(m, { out });
}

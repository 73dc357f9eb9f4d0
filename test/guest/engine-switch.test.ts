/**
 * Moving a vCPU's state between KVM and the CPL0 engine (src/engine/kvm-state.ts) on a real
 * long-mode vCPU: what is read is what KVM holds, what is written KVM then runs with.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Reg, VcpuRunner, Vm } from '../../src/index.js';
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

describe('a runner with engine: cpl0', () => {
  // mov $1000,%ecx ; 1: add %rcx,%rax ; dec %ecx ; jnz 1b ; out %al,$0x10 ; cli ; hlt
  const LOOP = [0xb9, 0xe8, 0x03, 0, 0, 0x48, 0x01, 0xc8, 0xff, 0xc9, 0x75, 0xf9, 0xe6, 0x10, 0xfa, 0xf4];

  async function runLoop(engine: 'kvm' | 'cpl0'): Promise<{ out: number[]; stats: Record<string, bigint>; rax: bigint }> {
    vm = longModeVm(LOOP);
    const r = new VcpuRunner(vm, { engine });
    const out: number[] = [];
    r.pio.register(0x10, 1, { read: () => 0, write: (_o, _s, v) => void out.push(Number(v)) });
    const res = await r.start();
    expect(res.vcpus[0]).toBe('halted');
    return { out, stats: vm.getStatsByName(0), rax: vm.getRegister(0, Reg.RAX) };
  }

  it('runs 64-bit ring-0 code in the engine: same result as KVM, counted in the stats', async () => {
    const sum = (1000n * 1001n) / 2n; // 500500
    const e = await runLoop('cpl0');
    expect(e.rax).toBe(sum);
    expect(e.out).toEqual([Number(sum & 0xffn)]);
    expect(e.stats.engine_instructions).toBeGreaterThanOrEqual(3001n); // mov + 1000 laps of 3 (+ out, cli)
    expect(e.stats.engine_turns).toBeGreaterThanOrEqual(1n);
    vm!.destroy();
    const k = await runLoop('kvm');
    expect(k.rax).toBe(sum);
    expect(k.out).toEqual(e.out);
    expect(k.stats.engine_instructions).toBeUndefined();
  });

  it('refuses an engine it does not know', () => {
    vm = longModeVm([0xf4]);
    expect(() => new VcpuRunner(vm!, { engine: 'tcg' as 'kvm' })).toThrow(RangeError);
  });
});

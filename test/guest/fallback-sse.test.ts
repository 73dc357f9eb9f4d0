/**
 * The native SIMD path of the instruction fallback: SSE instructions KVM's emulator cannot
 * run here execute on the host with the guest's registers, memory operands included.
 */
import { afterEach, expect, it } from 'vitest';
import { Reg, VcpuRunner, Vm, type Device } from '../../src/index.js';
import { longModeVm } from './guests.js';

const vms: Vm[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) vm.destroy();
});

function sink(): Device & { values: number[] } {
  const values: number[] = [];
  return { values, read: () => 0, write: (_o, _s, v) => void values.push(Number(v)) };
}

it('paddq with a memory operand, pextrd to memory and movd run with guest state and memory', async () => {
  const code = [
    0x0f, 0x20, 0xe0, //             mov %cr4,%rax
    0x48, 0x0d, 0x00, 0x06, 0, 0, // or $0x600,%rax   (OSFXSR | OSXMMEXCPT)
    0x0f, 0x22, 0xe0, //             mov %rax,%cr4
    0xf3, 0x0f, 0x6f, 0x04, 0x25, 0x00, 0x30, 0, 0, // movdqu 0x3000,%xmm0
    0x66, 0x0f, 0xd4, 0x04, 0x25, 0x10, 0x30, 0, 0, // paddq 0x3010,%xmm0   (memory operand)
    0xf3, 0x0f, 0x7f, 0x04, 0x25, 0x20, 0x30, 0, 0, // movdqu %xmm0,0x3020
    0x66, 0x0f, 0x3a, 0x16, 0x04, 0x25, 0x30, 0x30, 0, 0, 0x02, // pextrd $2,%xmm0,0x3030 (store)
    0x66, 0x0f, 0x7e, 0xc0, //       movd %xmm0,%eax
    0xe7, 0x10, //                   out %eax,$0x10
    0xfa, 0xf4, //                   cli ; hlt
  ];
  const vm = longModeVm(code);
  vms.push(vm);
  vm.memory.writeU64(0x3000, 40n);
  vm.memory.writeU64(0x3008, 7n);
  vm.memory.writeU64(0x3010, 2n);
  vm.memory.writeU64(0x3018, 5n);
  const runner = new VcpuRunner(vm);
  const out = sink();
  runner.pio.register(0x10, 4, out);
  const result = await runner.start();
  expect(result.reason).toBe('halted');
  expect(out.values).toEqual([42]);
  expect(vm.memory.readU64(0x3020)).toBe(42n);
  expect(vm.memory.readU64(0x3028)).toBe(12n);
  expect(vm.memory.readU32(0x3030)).toBe(12); // dword 2 of xmm0
  expect(vm.memory.readU32(0x3034)).toBe(0); // untouched
  expect(vm.getRegister(0, Reg.RAX)).toBe(42n);
  // where KVM's emulator gives up on SSE (PVM hosts), the native path did the work
  const stats = vm.getStatsByName(0);
  if (stats['emulated_sse-native'] !== undefined) expect(stats['emulated_sse-native']).toBeGreaterThanOrEqual(1n);
  console.log('native SSE executions:', stats['emulated_sse-native'] ?? 0n, 'emulated movdqu:', stats.emulated_movdqu ?? 0n);
});

/**
 * `lock cmpxchg16b` at CPL 0 in long mode: KVM's emulator cannot run it on PVM hosts, so the
 * runner's instruction fallback performs it with the addon's host `lock cmpxchg16b` on guest
 * memory (on hardware KVM the CPU runs it). Either way the guest sees the architectural result.
 */
import { afterEach, expect, it } from 'vitest';
import { loadFlat } from '../../src/boot/flat.js';
import { hostIsPvm, VcpuRunner, Vm } from '../../src/index.js';
import { applyBootState } from '../../src/platform/boot-state.js';
import { uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => {
  vm?.destroy();
  vm = undefined;
});

const CELL = 0x300000;
// mov edi,CELL; mov eax,1; xor edx,edx; mov ebx,0xaaaa; mov ecx,0xbbbb; lock cmpxchg16b [rdi];
// setz al; movzx eax,al; out 0x10,eax; (again, now mismatching) lock cmpxchg16b [rdi]; setz bl;
// out 0x11,eax (the old low half loaded into RAX); mov eax,ebx; out 0x12,eax; cli; hlt
const CODE = [
  0xbf, 0x00, 0x00, 0x30, 0x00, 0xb8, 0x01, 0, 0, 0, 0x31, 0xd2, 0xbb, 0xaa, 0xaa, 0, 0, 0xb9, 0xbb, 0xbb, 0, 0,
  0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x0f, 0x94, 0xc0, 0x0f, 0xb6, 0xc0, 0xe7, 0x10,
  0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x0f, 0x94, 0xc3, 0xe7, 0x11, 0x0f, 0xb6, 0xc3, 0xe7, 0x12, 0xfa, 0xf4,
];

// Under either engine: with 'kvm' the instruction is KVM's (on PVM, the fallback's); with
// 'cpl0' vmmapi's engine runs this ring-0 code itself and the fallback is never asked.
it.each(['kvm', 'cpl0'] as const)('swaps on a match and loads the old value on a mismatch, atomically on guest memory (engine %s)', async (engine) => {
  vm = Vm.create(uniqueName('cx16'), { vcpus: 1 });
  vm.setupMemory(0, 0x400000);
  vm.memory.writeU64(CELL, 1n);
  vm.memory.writeU64(CELL + 8, 0n);
  applyBootState(vm, 0, loadFlat(vm.memory, Uint8Array.from(CODE), 0x200000, { mode: 'long' }));
  const runner = new VcpuRunner(vm, { engine });
  const out = new Map<number, number>();
  runner.pio.register(0x10, 3, { read: () => 0, write: (off, _s, v) => void out.set(0x10 + off, Number(v)) });
  const result = await runner.start();
  expect(result.reason).toBe('halted');
  expect(out.get(0x10)).toBe(1); // ZF: swapped
  expect([vm.memory.readU64(CELL), vm.memory.readU64(CELL + 8)]).toEqual([0xaaaan, 0xbbbbn]);
  expect(out.get(0x12)).toBe(0); // ZF clear the second time
  expect(out.get(0x11)).toBe(0xaaaa); // RAX = the value found
  // on PVM under KVM both went through the fallback (counted in the VM's stats)
  expect(vm.getStatsByName(0).emulated_cmpxchg16b ?? 0n).toBe(engine === 'kvm' && hostIsPvm() ? 2n : 0n);
});

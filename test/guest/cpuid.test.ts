/**
 * CPUID as the guest sees it: a cleared bit KVM offers disappears from the guest's CPUID
 * instruction, in long mode at CPL0 (where PVM hosts emulate) and in real mode.
 */
import { afterEach, expect, it } from 'vitest';
import { loadFlat } from '../../src/boot/flat.js';
import { CPUID_BITS, ineffectiveClears, Vm } from '../../src/index.js';
import { applyBootState } from '../../src/platform/boot-state.js';
import { uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => {
  vm?.destroy();
  vm = undefined;
});

/** Run `cpuid` for leaf 1 in `mode` and return the ECX the guest saw (written to port 0x80). */
function guestLeaf1Ecx(mode: 'real' | 'long', clear: string[]): number {
  vm = Vm.create(uniqueName('cpuid'), { irqchip: false, cpuid: { clear } });
  vm.setupMemory(0, 0x400000);
  // mov eax,1; xor ecx,ecx; cpuid; mov eax,ecx; out 0x80,eax; hlt (0x66 prefixes in real mode)
  const o = mode === 'real' ? [0x66] : [];
  const code = [...o, 0xb8, 1, 0, 0, 0, ...o, 0x31, 0xc9, 0x0f, 0xa2, ...o, 0x89, 0xc8, ...o, 0xe7, 0x80, 0xf4];
  applyBootState(vm, 0, loadFlat(vm.memory, Uint8Array.from(code), mode === 'real' ? 0x1000 : 0x200000, { mode }));
  for (let i = 0; i < 10; i++) {
    const e = vm.run(0);
    if (e.kind === 'inout' && e.port === 0x80) {
      const ecx = e.value;
      vm.destroy();
      vm = undefined;
      return ecx;
    }
    if (e.kind !== 'inout') throw new Error(`unexpected exit ${e.kind}`);
  }
  throw new Error('no CPUID result');
}

it('a cleared leaf-1 ECX bit that KVM offers is clear in the guest, set without clearing', () => {
  const supported = Vm.supportedCpuid();
  expect(supported.find((e) => e.function === 0)).toBeDefined();
  const leaf1 = Object.entries(CPUID_BITS).filter(([, b]) => b.leaf === 1 && b.reg === 'ecx');
  const offered = leaf1.map(([n]) => n).filter((n) => ineffectiveClears(supported, [n]).length === 0 && n !== 'hypervisor' && n !== 'x2apic');
  expect(offered.length).toBeGreaterThan(0); // cx16 on every x86-64 KVM host we know
  const name = offered[0];
  const bit = CPUID_BITS[name].bit;
  for (const mode of ['long', 'real'] as const) {
    expect((guestLeaf1Ecx(mode, []) >>> bit) & 1, `${name} visible in ${mode} mode`).toBe(1);
    expect((guestLeaf1Ecx(mode, [name]) >>> bit) & 1, `${name} cleared in ${mode} mode`).toBe(0);
  }
});

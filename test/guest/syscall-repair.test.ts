/**
 * A 64-bit `syscall` from CPL 3 (guests/src/long-syscall.S) must reach MSR_LSTAR at CPL 0
 * and come back with `sysretq`. On PVM hosts that needs the runner's SYSCALL repair (the
 * host leaves the vCPU at CPL 3); elsewhere the hardware does it and the repair stays off.
 */
import { afterEach, expect, it } from 'vitest';
import { loadFlat } from '../../src/boot/flat.js';
import { VcpuRunner, Vm, type Device } from '../../src/index.js';
import { applyBootState } from '../../src/platform/boot-state.js';
import { hostIsPvm } from '../../src/runner/runner.js';
import { fixture, uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => {
  vm?.destroy();
  vm = undefined;
});

/** Port → values written there. */
function recorder(): Device & { seen: Map<number, number[]> } {
  const seen = new Map<number, number[]>();
  return { seen, read: () => 0, write: () => undefined };
}

async function run(syscallRepair: boolean | 'auto') {
  vm = Vm.create(uniqueName('syscall'), { vcpus: 1 });
  vm.setupMemory(0, 0x400000);
  applyBootState(vm, 0, loadFlat(vm.memory, fixture('long-syscall.bin'), 0x2000, { mode: 'long' }));
  const runner = new VcpuRunner(vm, { syscallRepair });
  const rec = recorder();
  for (const base of [0x80, 0x90, 0x9d]) {
    runner.pio.register(base, base === 0x9d ? 2 : 4, { read: () => 0, write: (off, _s, v) => {
      const port = base + off;
      rec.seen.set(port, [...(rec.seen.get(port) ?? []), Number(v)]);
      if (port === 0x83 || port >= 0x92) runner.stop();
    } });
  }
  const result = await runner.start();
  const stats = vm.getStatsByName(0);
  return { result, seen: rec.seen, repaired: Number(stats.emulated_syscall ?? 0n) };
}

it('syscall 1 and 2 reach the LSTAR handler at CPL 0 (CS 0x10), with sysretq in between', async () => {
  const { seen, repaired } = await run('auto');
  const context = JSON.stringify([...seen.entries()]);
  expect(seen.get(0x90), `no guest page fault: ${context}`).toBeUndefined();
  expect(seen.get(0x81), context).toEqual([1, 2]);
  expect(seen.get(0x82), context).toEqual([0x10, 0x10]);
  expect(seen.get(0x83), context).toEqual([0x600d]);
  // on PVM each syscall was finished by the repair (and counted in the VM's stats)
  expect(repaired).toBe(hostIsPvm() ? 2 : 0);
});

it.runIf(hostIsPvm())('without the repair, PVM leaves the syscall at CPL 3: the guest sees a page fault at LSTAR', async () => {
  const { seen } = await run(false);
  expect(seen.get(0x81)).toBeUndefined();
  expect(seen.get(0x92)).toEqual([0x33]); // the fault came from user mode, at the LSTAR handler
  expect(seen.get(0x90)?.[0]! & 4).toBe(4); // a user-mode access
});

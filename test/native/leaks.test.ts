/**
 * Creating and destroying many VMs leaves the process's fds and memory mappings where they
 * started; and every call on a destroyed VM fails cleanly with EBADF.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { KvmError, Reg, Vm } from '../../src/index.js';
import { uniqueName } from '../helpers.js';

function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}
/** Mappings a VM makes: its guest RAM (memfd) and its vCPUs' kvm_run areas (V8's own heap mappings come and go). */
function vmMappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => /memfd:vmmapi-guest-ram|anon_inode:kvm/.test(l)).length;
}
/** GC, then let deferred native finalizers (kvm_run views) run on the event loop. */
async function collect(): Promise<void> {
  const g = (globalThis as { gc?: () => void }).gc;
  if (!g) throw new Error('run with --expose-gc (vitest.config.ts passes it)');
  for (let i = 0; i < 3; i++) {
    g();
    await new Promise((r) => setImmediate(r));
  }
}

/** Create and destroy `n` VMs, each with guest memory, a vCPU (kvm_run mapped) and its stats fd. */
function churn(n: number): void {
  for (let i = 0; i < n; i++) {
    const vm = Vm.create(uniqueName('leak'), { vcpus: 1 });
    const sab = vm.setupMemory(0, 0x10000);
    new Uint8Array(sab)[0] = 1;
    vm.getRegister(0, Reg.RIP); // creates the vCPU and maps kvm_run
    vm.getStats(0); // opens the stats fd
    vm.destroy();
  }
}

it('500 VMs created and destroyed leave fds and mappings where they started', async () => {
  // warm up: the /dev/kvm fd and lazily loaded code stay open for the process
  const warm = Vm.create(uniqueName('warm'));
  warm.setupMemory(0, 0x10000);
  warm.getRegister(0, Reg.RIP);
  warm.getStats(0);
  warm.destroy();
  await collect();
  const fds0 = fdCount();
  const maps0 = vmMappingCount();
  churn(500); // in a function of its own: no frame of this one still holds the last VM's objects
  await collect();
  expect(fdCount()).toBe(fds0);
  expect(vmMappingCount()).toBe(maps0);
});

it('every method of a destroyed VM throws KvmError EBADF or a typed error', () => {
  const vm = Vm.create(uniqueName('dead'));
  vm.destroy();
  const calls: [string, () => unknown][] = [
    ['setupMemory', () => vm.setupMemory(0, 0x1000)],
    ['getMemorySeg', () => vm.getMemorySeg(0)],
    ['mapMemory', () => vm.mapMemory(0, 1)],
    ['getRegister', () => vm.getRegister(0, Reg.RAX)],
    ['setRegister', () => vm.setRegister(0, Reg.RAX, 1)],
    ['getDesc', () => vm.getDesc(0, Reg.CS)],
    ['setDesc', () => vm.setDesc(0, Reg.CS, { base: 0n, limit: 0, access: 0x93 })],
    ['getPinning', () => vm.getPinning(0)],
    ['setPinning', () => vm.setPinning(0, 0)],
    ['run', () => vm.run(0)],
    ['injectEvent', () => vm.injectEvent(0, 3, 3)],
    ['apicIdToVcpu', () => vm.apicIdToVcpu(0)],
    ['lapicIrq', () => vm.lapicIrq(0, 0x40)],
    ['injectNmi', () => vm.injectNmi(0)],
    ['getCapability', () => vm.getCapability(0, 'hlt_exit')],
    ['setCapability', () => vm.setCapability(0, 'mtrap_exit', 1)],
    ['getStats', () => vm.getStats(0)],
    ['getStatDesc', () => vm.getStatDesc(0)],
    ['getX2apicState', () => vm.getX2apicState(0)],
    ['setX2apicState', () => vm.setX2apicState(0, 1)],
    ['vcpuReset', () => vm.vcpuReset(0)],
    ['assignPptdev', () => vm.assignPptdev(0, 0, 0)],
  ];
  for (const [name, call] of calls) {
    let err: unknown;
    try {
      call();
    } catch (e) {
      err = e;
    }
    expect(err, name).toBeInstanceOf(KvmError);
    expect((err as KvmError).code, name).toBe('EBADF');
  }
});

/**
 * vm.run on a vCPU that waits for INIT/SIPI (in-kernel irqchip) is refused instead of
 * blocking the thread forever, and opts.timeoutMs gives any blocked vm.run a way out —
 * on the real /dev/kvm, with the 2-vCPU INIT-SIPI-SIPI guest driven from one thread.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KvmError, Reg, Vm } from '../../src/index.js';
import { KVM_MP_STATE } from '../../src/kvm/constants.js';
import { smpVm } from './guests.js';
import { realModeVm, uniqueName } from '../helpers.js';

let vm: Vm | undefined;
afterEach(() => {
  vm?.destroy();
  vm = undefined;
});

function mpState(v: Vm, vcpu: number): number {
  return new DataView(v.vcpuFd(vcpu).getMpState()).getUint32(0, true);
}

function expectEdeadlk(fn: () => unknown): KvmError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(KvmError);
    expect((e as KvmError).code).toBe('EDEADLK');
    expect((e as KvmError).syscall).toBe('vm_run');
    return e as KvmError;
  }
  throw new Error('expected KvmError EDEADLK');
}

describe('vm.run and vCPUs waiting for INIT/SIPI', () => {
  it('refuses an AP that waits for SIPI, runs it once the BSP has started it', () => {
    vm = smpVm();
    expect(mpState(vm, 1)).toBe(KVM_MP_STATE.UNINITIALIZED);
    const rip = vm.getRegister(1, Reg.RIP);
    const e = expectEdeadlk(() => vm!.run(1, 0x1234));
    expect(e.message).toMatch(/vcpu 1 waits for INIT\/SIPI \(KVM_MP_STATE_UNINITIALIZED\)/);
    expect(vm.getRegister(1, Reg.RIP)).toBe(rip); // refused before RIP was set
    expectEdeadlk(() => vm!.run(1)); // asked again: still refused

    // the BSP prints its APIC id, sends INIT-SIPI-SIPI, then spins waiting for the AP: the
    // timeout gets the thread back; loop (a bounded number of times) until the AP is started
    expect(vm.run(0)).toMatchObject({ kind: 'inout', port: 0x500, value: 0 });
    let started = false;
    for (let i = 0; i < 100 && !started; i++) {
      expect(vm.run(0, undefined, { timeoutMs: 20 }).kind).toBe('interrupted');
      const s = mpState(vm, 1);
      started = s !== KVM_MP_STATE.UNINITIALIZED && s !== KVM_MP_STATE.INIT_RECEIVED;
    }
    expect(started).toBe(true);
    // now the AP runs its trampoline: it prints its APIC id and sets the flag
    expect(vm.run(1)).toMatchObject({ kind: 'inout', port: 0x500, value: 1 });
    expect(vm.run(1, undefined, { timeoutMs: 20 }).kind).toBe('interrupted'); // cli; hlt
    expect(vm.memory.readU32(0x600)).toBe(1);
    // vcpuReset puts the AP back to waiting for SIPI: refused again
    vm.vcpuReset(1);
    expectEdeadlk(() => vm!.run(1));
  });

  it('an INIT_RECEIVED vCPU is refused too; a vCPU made runnable through its fd is not', () => {
    vm = Vm.create(uniqueName('sipi'), { vcpus: 2 });
    vm.setupMemory(0, 0x10000);
    const mp = new DataView(new ArrayBuffer(4));
    mp.setUint32(0, KVM_MP_STATE.INIT_RECEIVED, true);
    vm.vcpuFd(1).setMpState(mp.buffer);
    expect(expectEdeadlk(() => vm!.run(1)).message).toMatch(/KVM_MP_STATE_INIT_RECEIVED/);
    mp.setUint32(0, KVM_MP_STATE.RUNNABLE, true);
    vm.vcpuFd(1).setMpState(mp.buffer);
    vm.memory.writeU8(0xfff0, 0xf4); // hlt
    vm.setDesc(1, Reg.CS, { base: 0n, limit: 0xffff, access: 0x9b });
    vm.setRegisters(1, [[Reg.CS, 0], [Reg.RIP, 0xfff0], [Reg.RFLAGS, 2]]);
    // runnable: no refusal; its hlt stays in the kernel (irqchip), so the timeout ends it
    expect(vm.run(1, undefined, { timeoutMs: 20 }).kind).toBe('interrupted');
  });

  it('timeoutMs ends a vm.run that would block forever (cli; hlt with the in-kernel irqchip)', () => {
    vm = realModeVm([0xfa, 0xf4]); // cli; hlt
    expect(vm.irqchip).toBe(true);
    expect(vm.run(0, undefined, { timeoutMs: 10 }).kind).toBe('interrupted');
    expect(vm.run(0, undefined, { timeoutMs: 10 }).kind).toBe('interrupted'); // still halted
  });

  it('timeoutMs interrupts a spinning guest, which then continues where it was', () => {
    // 1: cmpb $0, 0x500; je 1b; out %al, $0x81; out %al, $0x82
    vm = realModeVm([0x80, 0x3e, 0x00, 0x05, 0x00, 0x74, 0xf9, 0xe6, 0x81, 0xe6, 0x82]);
    expect(vm.run(0, undefined, { timeoutMs: 10 }).kind).toBe('interrupted');
    const rip = Number(vm.getRegister(0, Reg.RIP));
    expect(rip).toBeGreaterThanOrEqual(0x1000);
    expect(rip).toBeLessThan(0x1007); // inside the loop
    vm.memory.writeU8(0x500, 1);
    expect(vm.run(0, undefined, { timeoutMs: 10_000 })).toMatchObject({ kind: 'inout', port: 0x81 });
    // a deadline that did not fire leaves nothing behind: the next run is not cut short
    expect(vm.run(0)).toMatchObject({ kind: 'inout', port: 0x82 });
  });

  it('checks opts', () => {
    vm = realModeVm([0xf4], { irqchip: false });
    expect(() => vm!.run(0, undefined, { timeoutMs: 0 })).toThrow(new RangeError('opts.timeoutMs must be an integer in [1, 2147483647], got 0'));
    expect(() => vm!.run(0, undefined, { timeoutMs: Number.NaN })).toThrow(RangeError);
    expect(() => vm!.run(0, undefined, { timeoutMs: '5' as never })).toThrow(TypeError);
    expect(() => vm!.run(0, undefined, null as never)).toThrow(/opts must be an object/);
    expect(vm.run(0, undefined, { timeoutMs: 10_000 }).kind).toBe('hlt');
  });
});

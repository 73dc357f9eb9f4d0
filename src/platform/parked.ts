/**
 * Noticing a machine that can no longer make progress: the runner finishes a vCPU that
 * halted with interrupts off, but a vCPU still waiting for INIT/SIPI (an AP nobody started)
 * never finishes, so a 2-vCPU run of a guest that halts its only CPU would never end.
 */
import { KVM_MP_STATE } from '../kvm/constants.js';
import { Reg } from '../registers.js';
import type { VcpuRunner } from '../runner/runner.js';

const IF = 0x200n;

/**
 * Pause the runner and report whether every vCPU that has not finished is parked: waiting
 * for INIT/SIPI, or halted with interrupts off. Resumes the runner unless it is.
 */
export async function allParked(runner: VcpuRunner): Promise<boolean> {
  const vm = runner.vm;
  await runner.pause();
  let parked = true;
  runner.states.forEach((state, v) => {
    if (!parked || state === 'finished') return;
    const mp = new DataView(vm.vcpuFd(v).getMpState()).getUint32(0, true);
    if (mp === KVM_MP_STATE.UNINITIALIZED || mp === KVM_MP_STATE.INIT_RECEIVED) return;
    if (mp === KVM_MP_STATE.HALTED && (vm.getRegister(v, Reg.RFLAGS) & IF) === 0n) return;
    parked = false;
  });
  if (!parked) runner.resume();
  return parked;
}

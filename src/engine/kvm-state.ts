/**
 * Moving a vCPU between KVM and the CPL0 engine: read the state the engine needs out of
 * KVM (KVM_GET_REGS, KVM_GET_SREGS, and one KVM_GET_MSRS for the syscall and swapgs MSRs)
 * and write it back the same way. Three ioctls each way at ~4.8 µs each on this project's
 * machines (../shared/DESIGN.md §1): a switch is tens of microseconds, which is why the
 * engine runs long turns and the runner switches only when the privilege level changes.
 *
 * {@link engineEligible} is the test for "this vCPU can run in the engine now": 64-bit
 * long mode (EFER.LMA, CS.L) at CPL 0.
 */
import type { NativeVcpuFd } from '../kvm/native.js';
import { decodeMsrs, decodeRegs, decodeSregs, encodeMsrs, encodeRegs, encodeSregs, type KvmSregs } from '../kvm/structs.js';
import type { EngineMsrs, EngineState } from './types.js';

/** MSR indices of {@link EngineMsrs}, in field order. */
export const ENGINE_MSR_INDEX = {
  star: 0xc0000081,
  lstar: 0xc0000082,
  cstar: 0xc0000083,
  fmask: 0xc0000084,
  kernelGsBase: 0xc0000102,
  tscAux: 0xc0000103,
} as const satisfies Record<keyof EngineMsrs, number>;

const MSR_NAMES = Object.keys(ENGINE_MSR_INDEX) as (keyof EngineMsrs)[];
/** The KVM_GET_MSRS request, reused (the ioctl overwrites only the data fields). */
const msrRequest = (): Uint8Array => encodeMsrs(MSR_NAMES.map((n) => ({ index: ENGINE_MSR_INDEX[n], data: 0n })));

/** Read the engine's view of a vCPU out of KVM. */
export function readEngineState(vcpu: NativeVcpuFd): EngineState {
  const regs = decodeRegs(vcpu.getRegs());
  const sregs = decodeSregs(vcpu.getSregs());
  const req = msrRequest();
  const n = vcpu.getMsrs(req);
  const msrs = { star: 0n, lstar: 0n, cstar: 0n, fmask: 0n, kernelGsBase: 0n, tscAux: 0n };
  for (const { index, data } of decodeMsrs(req, n)) {
    const name = MSR_NAMES.find((k) => ENGINE_MSR_INDEX[k] === index);
    if (name) msrs[name] = data;
  }
  return { regs, sregs, msrs };
}

/** Write an engine's state back into KVM (registers, segments and control registers, the MSRs). */
export function writeEngineState(vcpu: NativeVcpuFd, state: EngineState): void {
  vcpu.setSregs(encodeSregs(state.sregs));
  vcpu.setRegs(encodeRegs(state.regs));
  vcpu.setMsrs(encodeMsrs(MSR_NAMES.map((n) => ({ index: ENGINE_MSR_INDEX[n], data: state.msrs[n] }))));
}

/** EFER.LMA. */
const EFER_LMA = 1n << 10n;

/** True when the vCPU is in 64-bit long mode at CPL 0: the code the engine runs. */
export function engineEligible(sregs: KvmSregs): boolean {
  return (sregs.efer & EFER_LMA) !== 0n && sregs.cs.l === 1 && (sregs.cs.selector & 3) === 0 && sregs.cs.dpl === 0;
}

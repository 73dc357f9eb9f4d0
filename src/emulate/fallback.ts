/**
 * The instruction fallback for PVM-style hosts: when KVM's emulator gives up on an
 * instruction (KVM_EXIT_INTERNAL_ERROR, suberror 1, with the instruction bytes), finish it
 * in userspace — registers through the vCPU's ioctls, memory through the guest page tables
 * onto the VM's shared guest memory, atomic forms with host atomics — or inject the
 * exception the SDM prescribes. Runs in the vCPU's own thread.
 */
import type { NativeVcpuFd } from '../kvm/native.js';
import { native } from '../kvm/native.js';
import { SIZEOF, decodeRegs, decodeSregs, encodeRegs, encodeSregs, setInjectedException } from '../kvm/structs.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { emulate } from './emulator.js';
import { executeSseNatively } from './native-sse.js';
import type { CmpxchgResult, EmulatorHost } from './host.js';
import { memoryCmpxchg } from './host.js';
import { SyscallRepair } from './syscall-repair.js';
import { xsaveHost } from './native-xsave.js';


/** What the fallback did with one failed instruction. */
export type FallbackResult =
  | { kind: 'emulated'; mnemonic: string }
  | { kind: 'exception'; mnemonic: string; vector: number }
  | { kind: 'unsupported'; mnemonic?: string; reason: string };

/** Guest memory segments as the worker receives them (from `vm.memorySegments()`). */
export interface SharedSegment {
  gpa: number;
  /** The whole segment; it may be larger than one typed array can view (over 4 GiB). */
  buffer: SharedArrayBuffer;
  /** A ROM: the guest's writes do not land (the fallback refuses them). */
  readonly?: boolean;
}

/** Build the guest's view of shared segments (in any thread): ROM writes are refused. */
export function sharedMemory(segments: readonly SharedSegment[]): GuestMemory {
  const m = new GuestMemory({ enforceReadonly: true });
  for (const s of segments) m.addSegment(s.gpa, s.buffer, s.readonly ?? false);
  return m;
}

/** Compare-exchange with host atomics on the shared guest memory. */
function atomicCmpxchg(mem: GuestMemory): (gpa: number, size: 8 | 16, expected: bigint, replacement: bigint) => CmpxchgResult {
  const fallback = memoryCmpxchg(mem);
  return (gpa, size, expected, replacement) => {
    const seg = mem.segmentAt(gpa);
    if (!seg || gpa + size > seg.gpa + seg.length || !(seg.buffer instanceof SharedArrayBuffer)) {
      return fallback(gpa, size, expected, replacement);
    }
    const buffer = seg.buffer;
    const off = seg.byteOffset + (gpa - seg.gpa);
    if (size === 8 && off % 8 === 0) {
      const cells = new BigUint64Array(buffer, off, 1);
      const old = Atomics.compareExchange(cells, 0, BigInt.asUintN(64, expected), BigInt.asUintN(64, replacement));
      return { ok: old === BigInt.asUintN(64, expected), old };
    }
    if (size === 16 && off % 16 === 0) {
      const m64 = (1n << 64n) - 1n;
      const [ok, lo, hi] = native().cmpxchg16b(new Uint8Array(buffer, off, 16), expected & m64, (expected >> 64n) & m64, replacement & m64, (replacement >> 64n) & m64);
      return { ok, old: (hi << 64n) | lo };
    }
    return fallback(gpa, size, expected, replacement); // unaligned: split-locked on hardware, rare
  };
}

/** A fallback bound to one vCPU and the VM's memory. */
export class InstructionFallback {
  readonly #vcpu: NativeVcpuFd;
  readonly #host: EmulatorHost;
  /** The SYSCALL repair, when enabled (see syscall-repair.ts). */
  readonly repair: SyscallRepair | undefined;

  /** @param repairRecord the VM's shared SYSCALL-repair record; omit to leave the repair off. */
  constructor(vcpu: NativeVcpuFd, memory: GuestMemory, repairRecord?: SharedArrayBuffer) {
    this.#vcpu = vcpu;
    this.repair = repairRecord ? new SyscallRepair(vcpu, memory, repairRecord) : undefined;
    this.#host = {
      memory,
      getFpu: () => new DataView(vcpu.getFpu()),
      setFpu: (fpu) => vcpu.setFpu(new Uint8Array(fpu.buffer, fpu.byteOffset, fpu.byteLength)),
      atomicCmpxchg: atomicCmpxchg(memory),
      ...xsaveHost(vcpu),
    };
  }

  /** Let the SYSCALL repair install its breakpoint if the guest is ready (cheap; vCPU stopped). */
  maybeInstallRepair(): void {
    if (this.repair) this.repair.maybeInstall(decodeSregs(this.#vcpu.getSregs()));
  }

  /** Finish (or fault) the instruction whose bytes KVM reported; the vCPU can then resume. */
  handle(insn: Uint8Array): FallbackResult {
    const v = this.#vcpu;
    const cpu = { regs: decodeRegs(v.getRegs()), sregs: decodeSregs(v.getSregs()) };
    if (insn[0] === 0xcc && this.repair) {
      const action = this.repair.onBreakpoint(cpu.regs, cpu.sregs);
      if (action === 'retry') return { kind: 'emulated', mnemonic: 'pf-step' }; // RIP unchanged
      if (action) {
        v.setRegs(encodeRegs(cpu.regs));
        return { kind: 'emulated', mnemonic: action === 'syscall' ? 'syscall' : 'pf-step' };
      }
    }
    let r = emulate(insn, cpu, this.#host);
    if (r.kind === 'unsupported') {
      // SIMD the emulator does not model: run it on the host CPU if it is a vetted encoding
      const n = executeSseNatively(insn, cpu, this.#host);
      if (!n) return { kind: 'unsupported', mnemonic: r.mnemonic, reason: r.reason };
      r = n;
    }
    if (r.kind === 'emulated') {
      if (r.sregsChanged) v.setSregs(encodeSregs(cpu.sregs));
      if (r.regsChanged) v.setRegs(encodeRegs(cpu.regs));
      return { kind: 'emulated', mnemonic: r.mnemonic };
    }
    if (r.kind !== 'exception') return { kind: 'unsupported', mnemonic: r.mnemonic, reason: r.reason };
    // an exception: a trap has completed the instruction (write back), a fault has not
    // (after a fault `cpu` is as read from the vCPU: the emulator restores it, native SSE leaves it)
    const cr2 = r.vector === 14 ? r.cr2 : undefined;
    if (cr2 !== undefined) cpu.sregs.cr2 = cr2;
    if (r.trap || cr2 !== undefined) v.setSregs(encodeSregs(cpu.sregs));
    if (r.trap) v.setRegs(encodeRegs(cpu.regs));
    const ev = new DataView(v.getVcpuEvents());
    setInjectedException(ev, r.vector, r.errorCode);
    v.setVcpuEvents(new Uint8Array(ev.buffer, 0, SIZEOF.kvm_vcpu_events));
    return { kind: 'exception', mnemonic: r.mnemonic ?? `#${r.vector}`, vector: r.vector };
  }
}

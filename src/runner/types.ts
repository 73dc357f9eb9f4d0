/**
 * The runner's public types: events, options, results and counters. The runner itself
 * (src/runner/runner.ts) and the exit handler (src/runner/exit-handler.ts) share them.
 */
import type { InoutExit, MmioExit, VmExit } from '../exits.js';
import type { EngineChoice } from './protocol.js';

/** A vCPU's state as the runner reports it. */
export type VcpuState = 'starting' | 'running' | 'paused' | 'finished';

/** A handler's result: nothing, or a promise that parks only its vCPU until it settles. */
export type HandlerResult = void | Promise<void>;

/** The runner's events (typed for eventemitter3). */
export interface RunnerEvents {
  /** Every exit the main thread sees (posted writes included), before it is serviced. */
  exit: (exit: VmExit) => HandlerResult;
  /** A port I/O exit that no device claimed: fill `exit.data` to answer an IN. */
  inout: (exit: InoutExit) => HandlerResult;
  /** An MMIO exit that no device claimed: fill `exit.data` to answer a read. */
  mmio: (exit: MmioExit) => HandlerResult;
  /**
   * A vCPU halted with interrupts disabled. It stays halted (another vCPU may still wake it:
   * NMI/INIT IPIs, KVM's paravirtual unhalt kick) and finishes once every vCPU is halted so.
   */
  hlt: (exit: Extract<VmExit, { kind: 'hlt' }>) => HandlerResult;
  /** The guest triple-faulted: every vCPU stops. */
  shutdown: (exit: Extract<VmExit, { kind: 'shutdown' }>) => HandlerResult;
  /** Single-step, breakpoint or watchpoint. */
  debug: (exit: Extract<VmExit, { kind: 'debug' }>) => HandlerResult;
  /** KVM gave up on the guest (e.g. its emulator failed): every vCPU stops, start() rejects. */
  'internal-error': (exit: Extract<VmExit, { kind: 'internal-error' }>) => HandlerResult;
  /** The guest asked for shutdown/reset: every vCPU stops. */
  'system-event': (exit: Extract<VmExit, { kind: 'system-event' }>) => HandlerResult;
  /** An access nobody claimed (no device, no listener): reads got all-ones. */
  unhandled: (exit: InoutExit | MmioExit) => void;
  /** The instruction fallback finished instructions for `vcpu` (counts since the last event). */
  emulated: (vcpu: number, counts: Record<string, number>) => void;
  /** A vCPU changed state. */
  'vcpu-state': (vcpu: number, state: VcpuState) => void;
  /** The runner failed (a handler threw, a worker died, the guest failed); it stops. */
  error: (err: Error) => void;
}

/** Options for {@link VcpuRunner}. */
export interface VcpuRunnerOptions {
  /**
   * How often (ms) to look for vCPUs that halted with interrupts disabled (the in-kernel
   * APIC keeps HLT in the kernel, so this is how the runner notices). 0 disables. Default 50.
   */
  haltPollMs?: number;
  /**
   * Finish, in the vCPU's thread, instructions KVM's emulator gives up on (PVM hosts), and
   * count them in the VM's stats as `emulated_<mnemonic>` (default true). When off, such an
   * exit ends the run with a GuestError naming the instruction bytes.
   */
  emulate?: boolean;
  /**
   * Repair 64-bit `syscall` from guest user mode where the host leaves it at CPL 3 (PVM hosts
   * running unmodified kernels; see src/emulate/syscall-repair.ts). Patches an `int3` into the
   * guest's page-fault handler, so it must stay off where `int3` at CPL 0 reaches the guest
   * (hardware KVM). `'auto'` (default): on when the host's KVM is PVM (`/sys/module/kvm_pvm`)
   * and `emulate` is on.
   */
  syscallRepair?: boolean | 'auto';
  /**
   * After stop(), how long (ms) a vCPU worker may take to finish before the runner
   * terminates it (a worker-side device whose handler never returns); start() then rejects
   * with a RunnerError naming the vCPU. Default 2000.
   */
  stopGraceMs?: number;
  /**
   * Who runs ring-0 code: `'kvm'` (default), or `'cpl0'`: while a vCPU is in 64-bit long
   * mode at CPL 0 its worker runs it in vmmapi's own engine (src/engine/, issue 15) over the
   * shared guest memory, and KVM runs it at CPL 3 and in other modes. Experimental: off by
   * default until it is proven on Linux (see the README's "The CPL0 engine"). The default
   * comes from the environment variable `VMMAPI_ENGINE` when set (`npm run test:engine` runs
   * the guest tests with `cpl0`).
   */
  engine?: EngineChoice;
}

/** Options for registering a device. */
export interface RegisterOptions {
  /** A name for error messages and traces. */
  name?: string;
  /**
   * Writes are posted: the vCPU continues at once and the device sees the write later, in
   * order, before that vCPU's next exit is serviced. Reads still go through the mailbox.
   */
  posted?: boolean;
}

/** What `start()` resolves to. */
export interface RunResult {
  /** Why the run ended: every vCPU halted, stop() was called, or the guest shut down. */
  reason: 'halted' | 'stopped' | 'shutdown' | 'system-event';
  /** Why each vCPU finished. */
  vcpus: ('halted' | 'stopped' | 'shutdown' | 'system-event')[];
}

/** Counters of the runner (exits seen, hops, posted writes …). */
export interface RunnerCounters {
  /** Exits per vCPU, as counted by the workers (kicks included). */
  exits: number[];
  /** Exits handled inside the workers by worker devices. */
  workerHandled: number[];
  /** Writes posted to the ring. */
  postedWrites: number[];
  /** Round trips to the main thread. */
  hops: number[];
  /** Accesses no device or listener claimed. */
  unhandled: number;
}


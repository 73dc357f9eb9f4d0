/**
 * The CPL0 engine's turns inside a vCPU worker (`engine: 'cpl0'`, issue 15): while the
 * vCPU is in 64-bit long mode at CPL 0 it runs in vmmapi's engine (src/engine/cpu.ts) over
 * the shared guest memory; at CPL 3, and for whatever the engine does not do, KVM runs it.
 *
 * How a vCPU moves:
 * - KVM → engine: after a KVM exit (and after the bounded KVM stint described below) the
 *   loop asks {@link EngineTurns.take}; it reads the state out of KVM (regs, sregs, MSRs)
 *   and, if the vCPU is eligible, runs it in the engine.
 * - engine → KVM: the turn ends when the vCPU leaves ring 0 (IRETQ/SYSRETQ to CPL 3), halts,
 *   meets an instruction the engine does not implement, cannot deliver an exception, or
 *   has run {@link TURN_BUDGET} instructions (so pending interrupts, which the in-kernel
 *   irqchip delivers on KVM_RUN, and stop/pause requests are seen). The state is written
 *   back and KVM runs on. A HLT is handed back *at* the HLT (RIP rewound), so KVM halts the
 *   vCPU itself with its own wake-up rules; an exception that could not be delivered is
 *   handed back at the faulting instruction (faults change nothing), so KVM reproduces it.
 * - While ring-0 code runs in KVM without exits (32-bit set-up code before long mode, an
 *   instruction KVM's emulator took over), the loop bounds the KVM_RUN with
 *   {@link KVM_STINT_MS} so the engine gets the vCPU back soon; at CPL 3 KVM_RUN is not
 *   bounded (native user mode pays nothing for the engine).
 *
 * Port I/O and MMIO from the engine go through the worker's dispatch seam exactly as KVM
 * exits do: worker-side devices, posted writes, then the main thread's buses.
 */
import { KVM_MP_STATE } from '../src/kvm/constants.js';
import type { NativeVcpuFd } from '../src/kvm/native.js';
import type { GuestMemory } from '../src/memory/guest-memory.js';
import type { Access } from '../src/bus/dispatch.js';
import type { AccessSize } from '../src/devices/device.js';
import { Cpl0Engine } from '../src/engine/cpu.js';
import { SoftMmu } from '../src/engine/mmu.js';
import { engineEligible, readEngineState, writeEngineState } from '../src/engine/kvm-state.js';
import type { EngineIo, EngineStop } from '../src/engine/types.js';
import { ENGINE_COUNT } from '../src/runner/protocol.js';

/** Instructions in one engine turn before the vCPU goes back through KVM (a few ms). */
export const TURN_BUDGET = 200_000;
/** How long (ms) KVM may run ring-0 code without an exit before the engine looks again. */
export const KVM_STINT_MS = 1;

const RFLAGS_IF = 0x200n;

/** The worker loop's side of the engine: its dispatch seam and stop flag. */
export interface EngineSeam {
  /** Serve an access like a KVM exit's (worker devices, posted writes, main thread); true if the run must stop. */
  serve(space: 'pio' | 'mmio', a: Access): boolean;
  /** True once the main thread asked this vCPU to stop or pause. */
  interrupted(): boolean;
}

/** What a turn left the vCPU doing. */
export type TurnOutcome =
  /** Not eligible (not 64-bit ring 0): KVM runs it; `bounded` says whether to bound that KVM_RUN. */
  | { kind: 'kvm'; bounded: boolean }
  /** The run must stop (an access was answered "stop"). */
  | { kind: 'stop' };

/** The engine of one vCPU worker. */
export class EngineTurns {
  readonly #vcpu: NativeVcpuFd;
  readonly #engine: Cpl0Engine;
  readonly #seam: EngineSeam;
  readonly #access: Access;
  readonly #counts: BigInt64Array;
  #stop = false;
  /** Instructions retired in the engine (for stats). */
  get retired(): number {
    return this.#engine.retired;
  }

  /**
   * `counts`: the shared counters the runner copies into the VM's stats ({@link ENGINE_COUNT}),
   * updated after every turn.
   */
  constructor(vcpu: NativeVcpuFd, memory: GuestMemory, counts: BigInt64Array, seam: EngineSeam) {
    this.#vcpu = vcpu;
    this.#counts = counts;
    this.#seam = seam;
    this.#access = { addr: 0, size: 1, count: 1, write: false, data: new DataView(new ArrayBuffer(8)), offset: 0 };
    const io = this.#io();
    this.#engine = new Cpl0Engine(new SoftMmu(memory, io), io);
  }

  /** Take the vCPU into the engine if it is runnable and eligible, run it there, and hand it back to KVM. */
  take(): TurnOutcome {
    // A halted (or parked) vCPU is KVM's to wake: a bounded KVM_RUN can return while it sits
    // in HLT, with RIP already past the HLT, and the engine must not run on from there.
    if (new DataView(this.#vcpu.getMpState()).getUint32(0, true) !== KVM_MP_STATE.RUNNABLE) return { kind: 'kvm', bounded: false };
    const state = readEngineState(this.#vcpu);
    if (!engineEligible(state.sregs)) {
      // ring-0 code KVM must run (no long mode yet): bound it so the engine looks again soon
      return { kind: 'kvm', bounded: (state.sregs.cs.selector & 3) === 0 };
    }
    this.#engine.load(state);
    let stop: EngineStop;
    let out = state;
    for (;;) {
      stop = this.#engine.run(TURN_BUDGET);
      out = this.#engine.save();
      // with interrupts disabled nothing can be pending for it: stay in the engine
      if (stop.kind !== 'budget' || this.#stop || this.#seam.interrupted() || (out.regs.rflags & RFLAGS_IF) !== 0n) break;
    }
    if (stop.kind === 'hlt') out.regs.rip -= 1n; // hand KVM the HLT itself
    writeEngineState(this.#vcpu, out);
    Atomics.add(this.#counts, ENGINE_COUNT.TURNS, 1n);
    Atomics.store(this.#counts, ENGINE_COUNT.INSTRUCTIONS, BigInt(this.#engine.retired));
    if (this.#stop) return { kind: 'stop' };
    // after a budget with IF set: one bounded KVM_RUN delivers what is pending, then back here
    return { kind: 'kvm', bounded: stop.kind === 'budget' || stop.kind === 'unsupported' };
  }

  #io(): EngineIo {
    const a = this.#access;
    const go = (space: 'pio' | 'mmio', addr: number, size: AccessSize, write: boolean): void => {
      a.addr = addr;
      a.size = size;
      a.count = 1;
      a.write = write;
      a.offset = 0;
      if (this.#seam.serve(space, a)) this.#stop = true;
    };
    const d = a.data;
    return {
      pioRead: (port, size) => {
        d.setBigUint64(0, 0n, true);
        go('pio', port, size, false);
        return size === 1 ? d.getUint8(0) : size === 2 ? d.getUint16(0, true) : d.getUint32(0, true);
      },
      pioWrite: (port, size, value) => {
        if (size === 1) d.setUint8(0, value);
        else if (size === 2) d.setUint16(0, value, true);
        else d.setUint32(0, value >>> 0, true);
        go('pio', port, size, true);
      },
      mmioRead: (gpa, size) => {
        d.setBigUint64(0, 0n, true);
        go('mmio', gpa, size, false);
        return BigInt.asUintN(size * 8, d.getBigUint64(0, true));
      },
      mmioWrite: (gpa, size, value) => {
        d.setBigUint64(0, BigInt.asUintN(64, value), true);
        go('mmio', gpa, size, true);
      },
    };
  }
}

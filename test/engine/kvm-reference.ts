/**
 * The reference side of the engine's differential tests (issue 15): instruction sequences run
 * natively at CPL 3 in 64-bit long mode under this host's KVM. On a PVM host guest user mode
 * runs on the CPU itself, so the results are the hardware's (undefined flags included); only
 * the one-instruction exception handlers run at CPL 0 (emulated by KVM).
 *
 * The layout and the reading of results are in layout.ts. A run ends at the first of:
 * - an exception: delivered through a DPL-3 gate on IST 1 to a handler whose first
 *   instruction is `out %al,$0xff` (an I/O exit), 'fault' (vector from the handler's RIP,
 *   error code and the faulting RIP/RSP/RFLAGS from the frame, CR2 from KVM);
 * - the terminator `hlt`: the #GP(0) it raises at CPL 3, with RIP at the terminator, is 'done'
 *   (the state is read as for a fault: GPRs from KVM, RSP and RFLAGS from the frame);
 * - the bound: each KVM_RUN has a timeout (`timeoutMs`, default 20 ms) after which the
 *   vCPU is kicked out, 'timeout'. Generated sequences always terminate (forward branches,
 *   bounded `rep` counts); the bound is for hostile bytes (`jmp .`, long `loop`s).
 * A triple fault or emulation failure is 'error'.
 *
 * One VM serves every run: per run, one KVM_SET_REGS, one KVM_SET_SREGS, the code and data
 * written, one KVM_RUN (plus one to complete the last exit, see {@link NativeReference.run}).
 */
import { Vm, type VmExit } from '../../src/index.js';
import { native } from '../../src/kvm/native.js';
import type { KvmRegs, KvmSregs } from '../../src/kvm/structs.js';
import { uniqueName } from '../helpers.js';
import {
  HANDLER_PORT, MEMORY_SIZE, faultResult, handlerVector, initialRegs, initialSregs, loadTest, plainResult,
  terminatorAddress, writeStaticLayout, type SequenceResult, type SequenceTest,
} from './layout.js';

export type { SequenceTest, SequenceResult } from './layout.js';
/** What {@link runNative} returns. */
export type NativeResult = SequenceResult;

/** Options for {@link NativeReference}. */
export interface NativeReferenceOptions {
  /** Milliseconds one run may take before it is cut off as 'timeout' (default 20). */
  timeoutMs?: number;
}

/** How much longer the second try of a run that hit the time limit may take. */
const RETRY_FACTOR = 10;

/** A VM set up for running sequences at CPL 3; reuse it for many runs, then {@link close} it. */
export class NativeReference {
  readonly #vm: Vm;
  readonly #sregs: KvmSregs;
  readonly #timeoutMs: number;
  #pending = false;

  constructor(opts: NativeReferenceOptions = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 20;
    this.#vm = Vm.create(uniqueName('engine-ref'), { irqchip: false });
    try {
      this.#vm.setupMemory(0, MEMORY_SIZE);
      writeStaticLayout(this.#vm.memory);
      this.#sregs = initialSregs(3, this.#vm.getKvmSregs(0).apicBase);
    } catch (e) {
      this.#vm.destroy();
      throw e;
    }
  }

  /**
   * Run one sequence. A run cut off by the time limit runs once more from the start with
   * {@link RETRY_FACTOR} times the limit: on a loaded machine the vCPU thread can be kept off
   * the CPU for longer than the limit, and 'timeout' must mean the code does not end, not
   * that the host was busy (the CI failure "seed 1271: timeout" was such a run).
   */
  run(test: SequenceTest): NativeResult {
    const vm = this.#vm;
    let e = this.#attempt(test, this.#timeoutMs);
    if (e.kind === 'interrupted') e = this.#attempt(test, this.#timeoutMs * RETRY_FACTOR);
    const regs = vm.getKvmRegs(0);
    switch (e.kind) {
      case 'inout':
        return this.#ioResult(test, regs, e.port, e.in, e.bytes);
      case 'interrupted':
        return plainResult(vm.memory, 'timeout', regs, regs.rip);
      default:
        return { ...plainResult(vm.memory, 'error', regs, regs.rip), detail: `unexpected exit: ${e.kind}` };
    }
  }

  /** Load `test` and run it from its start for at most `limitMs`. */
  #attempt(test: SequenceTest, limitMs: number): VmExit {
    const vm = this.#vm;
    this.#completeLastExit();
    loadTest(vm.memory, test);
    vm.setKvmSregs(0, this.#sregs);
    vm.setKvmRegs(0, initialRegs(test));
    const exit = vm.run(0, undefined, { timeoutMs: limitMs });
    this.#pending = true;
    return exit;
  }

  /** Run many sequences in order (the same as calling {@link run} for each). */
  runBatch(tests: readonly SequenceTest[]): NativeResult[] {
    return tests.map((t) => this.run(t));
  }

  /** Destroy the VM. */
  close(): void {
    this.#vm.destroy();
  }

  /** Classify an I/O exit: a handler's (a fault, or the terminator's #GP), or something unexpected. */
  #ioResult(test: SequenceTest, regs: KvmRegs, port: number, isIn: boolean, size: number): NativeResult {
    const mem = this.#vm.memory;
    const vector = handlerVector(regs.rip);
    if (vector === undefined || port !== HANDLER_PORT || isIn) {
      return { ...plainResult(mem, 'error', regs, regs.rip), detail: `unexpected I/O exit: port 0x${port.toString(16)}, ${isIn ? 'in' : 'out'} ${size}` };
    }
    const result = faultResult(mem, regs, vector, this.#vm.getKvmSregs(0).cr2);
    if (vector !== 13 || result.fault?.errorCode !== 0 || result.rip !== terminatorAddress(test.code.length)) return result;
    const { fault: _terminator, ...state } = result;
    return { ...state, outcome: 'done' };
  }

  /**
   * KVM finishes an I/O exit (RIP past the OUT, or the emulator's write-back at CPL 0) on the
   * next KVM_RUN; with new registers set, that would apply to the next test. One KVM_RUN with
   * immediate_exit set (the kick sets it) completes it and runs nothing.
   */
  #completeLastExit(): void {
    if (!this.#pending) return;
    this.#pending = false;
    native().kick(this.#vm.vcpuFdNumber(0));
    const e = this.#vm.run(0);
    if (e.kind !== 'interrupted') throw new Error(`completing the last exit ran the guest: ${e.kind}`);
  }
}

let shared: NativeReference | undefined;

/** Run one sequence (or a batch) on a process-wide {@link NativeReference}, created on first use. */
export function runNative(test: SequenceTest): NativeResult;
export function runNative(tests: readonly SequenceTest[]): NativeResult[];
export function runNative(t: SequenceTest | readonly SequenceTest[]): NativeResult | NativeResult[] {
  shared ??= new NativeReference();
  return Array.isArray(t) ? shared.runBatch(t) : shared.run(t as SequenceTest);
}

/** Destroy the process-wide reference VM of {@link runNative} (call from afterAll). */
export function closeNative(): void {
  shared?.close();
  shared = undefined;
}

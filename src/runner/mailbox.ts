/**
 * Both ends of a vCPU's mailbox (the control block of src/runner/protocol.ts): the worker
 * posts a request (an exit, or a halt it cannot wake from) and waits; the main thread
 * answers continue or stop. Waiting on either side goes through the adaptive hand-off
 * (src/runner/handoff.ts).
 */
import { ACCESS_SPACE, BELL, CB, CONTROL, MAILBOX, MAIN_WAIT, REPLY } from './protocol.js';
import type { Access } from '../bus/dispatch.js';
import type { AccessSize } from '../devices/device.js';
import { SpinPolicy, futexWait, futexWake } from './handoff.js';
import { SPARE } from './host-load.js';

/** How long (ms) the worker spins for the main thread's answer when no host-load cells say otherwise. */
const WORKER_SPIN_MS = 0.1;

/** The worker's end: signals, status, requests. */
export class MailboxClient {
  /** The control block. */
  readonly ctl: Int32Array;
  /** The runner's doorbell. */
  readonly bell: Int32Array;
  readonly #policy: SpinPolicy;

  /** `spare`: the host-load flag (src/runner/host-load.ts). */
  constructor(ctl: Int32Array, bell: Int32Array, spare?: Int32Array) {
    this.ctl = ctl;
    this.bell = bell;
    this.#policy = new SpinPolicy(WORKER_SPIN_MS, spare, SPARE.WORKER_SPIN_US);
  }

  /** Ring the doorbell: the main thread's serve loop looks at every vCPU again. */
  signal(): void {
    ringBell(this.bell);
  }

  /** Publish the worker's status ({@link STATUS}) and signal. */
  setStatus(status: number): void {
    Atomics.store(this.ctl, CB.STATUS, status);
    this.signal();
  }

  /** True once the main thread asked this worker to stop. */
  stopRequested(): boolean {
    return Atomics.load(this.ctl, CB.CONTROL) === CONTROL.STOP;
  }

  /** Post a request of `kind` ({@link REQUEST}) and wait for the answer: its {@link REPLY} bits. */
  request(kind: number): number {
    const ctl = this.ctl;
    Atomics.add(ctl, CB.HOPS, 1);
    Atomics.store(ctl, CB.REQUEST, kind);
    Atomics.store(ctl, CB.STATE, MAILBOX.WAITING);
    this.signal();
    if (!this.#policy.spin(ctl, CB.STATE, MAILBOX.WAITING)) {
      this.#policy.startSleep();
      // SLEEPING is set before the last look at STATE: an answer after it sees the flag and notifies
      Atomics.store(ctl, CB.WORKER_SLEEPING, 1);
      while (Atomics.load(ctl, CB.STATE) === MAILBOX.WAITING) {
        if (this.stopRequested()) break;
        futexWait(ctl, CB.STATE, MAILBOX.WAITING, 0);
      }
      Atomics.store(ctl, CB.WORKER_SLEEPING, 0);
      if (Atomics.load(ctl, CB.STATE) === MAILBOX.WAITING) return REPLY.STOP; // told to stop
      this.#policy.endSleep();
    }
    Atomics.store(ctl, CB.STATE, MAILBOX.IDLE);
    return Atomics.load(ctl, CB.REPLY);
  }
}

/**
 * The main thread's end: answer the waiting request of the vCPU whose control block is
 * `ctl`. `inline`: the answer to an ACCESS read was written to ACCESS_VALUE (not kvm_run).
 */
export function answerRequest(ctl: Int32Array, stop: boolean, inline = false): void {
  Atomics.store(ctl, CB.REPLY, (stop ? REPLY.STOP : REPLY.CONTINUE) | (inline ? REPLY.INLINE : 0));
  Atomics.store(ctl, CB.STATE, MAILBOX.ANSWERED);
  // a spinning worker sees the store; only a sleeping one needs the (costly) notify
  if (Atomics.load(ctl, CB.WORKER_SLEEPING) !== 0) futexWake(ctl, CB.STATE);
}

/** Wake the worker of `ctl` if it sleeps waiting for an answer (to see a stop or pause request). */
export function wakeWaitingWorker(ctl: Int32Array): void {
  futexWake(ctl, CB.STATE);
}

/** True while the worker of `ctl` waits for an answer. */
export function requestWaiting(ctl: Int32Array): boolean {
  return Atomics.load(ctl, CB.STATE) === MAILBOX.WAITING;
}

/**
 * Ring a runner's doorbell (from either thread). A waiting main thread is woken the way it
 * waits: a futex wake for a short blocking wait, Atomics.notify for an async one.
 */
export function ringBell(bell: Int32Array): void {
  Atomics.add(bell, BELL.SEQ, 1);
  wakeMain(bell, Atomics.load(bell, BELL.MAIN_SLEEPING));
}

/** Wake the main thread waiting on `bell` in wait state `how` ({@link MAIN_WAIT}). */
export function wakeMain(bell: Int32Array, how: number): void {
  if (how === MAIN_WAIT.BLOCKED) futexWake(bell, BELL.SEQ);
  else if (how === MAIN_WAIT.ASLEEP) Atomics.notify(bell, BELL.SEQ);
}

/**
 * The main thread reads an ACCESS request (a single-element access the worker described
 * inline): fills `out` — its data is `ctlView` at ACCESS_VALUE, where a read's answer goes —
 * and returns the address space.
 */
export function inlineAccess(ctl: Int32Array, ctlView: DataView, out: Access): 'pio' | 'mmio' {
  const info = ctl[CB.ACCESS];
  out.addr = (ctl[CB.ACCESS_ADDR_LO] >>> 0) + (ctl[CB.ACCESS_ADDR_HI] >>> 0) * 2 ** 32;
  out.size = ((info >> 8) & 0xff) as AccessSize;
  out.count = 1;
  out.write = ((info >> 16) & 1) === 1;
  out.data = ctlView;
  out.offset = CB.ACCESS_VALUE * 4;
  return (info & 0xff) === ACCESS_SPACE.PIO ? 'pio' : 'mmio';
}

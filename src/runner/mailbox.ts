/**
 * Both ends of a vCPU's mailbox (the control block of src/runner/protocol.ts): the worker
 * posts a request (an exit, or a halt it cannot wake from) and waits; the main thread
 * answers continue or stop. Waiting on either side goes through the adaptive hand-off
 * (src/runner/handoff.ts).
 */
import { CB, CONTROL, MAILBOX, REPLY } from './protocol.js';
import { SpinPolicy } from './handoff.js';

/** How long (ms) the worker spins for the main thread's answer, when spinning pays. */
const WORKER_SPIN_MS = 0.1;

/** The worker's end: signals, status, requests. */
export class MailboxClient {
  /** The control block. */
  readonly ctl: Int32Array;
  readonly #policy: SpinPolicy;

  /** `spare`: the host-load flag (src/runner/host-load.ts). */
  constructor(ctl: Int32Array, spare?: Int32Array) {
    this.ctl = ctl;
    this.#policy = new SpinPolicy(WORKER_SPIN_MS, spare);
  }

  /** Wake the main thread's serve loop for this vCPU. */
  signal(): void {
    Atomics.add(this.ctl, CB.SEQ, 1);
    Atomics.notify(this.ctl, CB.SEQ);
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

  /** Post a request of `kind` ({@link REQUEST}) and wait for the answer; true if told to stop. */
  request(kind: number): boolean {
    const ctl = this.ctl;
    Atomics.add(ctl, CB.HOPS, 1);
    Atomics.store(ctl, CB.REQUEST, kind);
    Atomics.store(ctl, CB.STATE, MAILBOX.WAITING);
    this.signal();
    this.#policy.spin(ctl, CB.STATE, MAILBOX.WAITING);
    while (Atomics.load(ctl, CB.STATE) === MAILBOX.WAITING) {
      if (this.stopRequested()) return true;
      Atomics.wait(ctl, CB.STATE, MAILBOX.WAITING);
    }
    Atomics.store(ctl, CB.STATE, MAILBOX.IDLE);
    return Atomics.load(ctl, CB.REPLY) === REPLY.STOP;
  }
}

/** The main thread's end: answer the waiting request of the vCPU whose control block is `ctl`. */
export function answerRequest(ctl: Int32Array, stop: boolean): void {
  Atomics.store(ctl, CB.REPLY, stop ? REPLY.STOP : REPLY.CONTINUE);
  Atomics.store(ctl, CB.STATE, MAILBOX.ANSWERED);
  Atomics.notify(ctl, CB.STATE);
}

/** True while the worker of `ctl` waits for an answer. */
export function requestWaiting(ctl: Int32Array): boolean {
  return Atomics.load(ctl, CB.STATE) === MAILBOX.WAITING;
}

/**
 * The main thread's side of one vCPU: wait for its worker's signals, deliver its posted
 * writes, answer its mailbox requests through the exit handler. The runner
 * (src/runner/runner.ts) owns the lifecycle and the decisions that span vCPUs (halts).
 */
import { decodeExit } from '../exits.js';
import { newAccess } from '../bus/dispatch.js';
import type { StatsReader } from '../stats.js';
import { CB, REQUEST, RING_LAYOUT, STATUS } from './protocol.js';
import { answerRequest, requestWaiting } from './mailbox.js';
import { SpinPolicy } from './handoff.js';
import { hostLoad } from './host-load.js';
import { WriteRing } from './write-ring.js';
import { deliverPostedWrites, handleClaimedIo, handleExit, type ExitAction, type ExitContext } from './exit-handler.js';
import type { RunResult, VcpuState } from './types.js';

/** How a vCPU finished. */
export type VcpuEnd = RunResult['vcpus'][number];

/** What the runner knows of one vCPU. */
export interface VcpuSlot {
  readonly index: number;
  /** The vCPU fd number (for kicks). */
  readonly fd: number;
  /** The control block. */
  readonly ctl: Int32Array;
  /** The kvm_run mapping and a view of it. */
  readonly run: Uint8Array;
  readonly view: DataView;
  status: VcpuState;
  finished?: VcpuEnd;
  /** The vCPU's binary stats (to notice halts), if KVM has them. */
  stats?: StatsReader;
  blockingIndex: number;
  /** The worker's task settled (returned, threw or was terminated). */
  taskDone: boolean;
  /** Reported halted with interrupts disabled, and no exit since. */
  halted?: boolean;
}

/** What the server asks of the runner. */
export interface ServerHooks {
  /** Exit handling context (buses, listeners, counters). */
  readonly ctx: ExitContext;
  /** True once the run is stopping: every answer is then "stop". */
  stopping(): boolean;
  /** Apply an exit action that concerns more than this vCPU; returns true to stop this vCPU. */
  apply(slot: VcpuSlot, action: ExitAction): boolean;
  /** The vCPU cannot wake by itself (halted with IF=0, or parked); true to stop it. */
  halted(slot: VcpuSlot, parked: boolean): Promise<boolean>;
  /** The status word changed. */
  status(slot: VcpuSlot, status: number): void;
  /** A handler failed. */
  fail(err: Error): void;
}

/** A sleeping serve loop re-checks its vCPU at least this often (ms). */
const SAFETY_WAKE_MS = 250;
/** How long (ms) a serve loop spins for its vCPU's next event, when spinning pays. */
const MAIN_SPIN_MS = 0.05;

/** Serves one vCPU until its worker has finished. */
export class VcpuServer {
  readonly #s: VcpuSlot;
  readonly #h: ServerHooks;
  readonly #ring: WriteRing;
  readonly #io = newAccess();
  readonly #posted = newAccess();
  readonly #policy: SpinPolicy;

  constructor(slot: VcpuSlot, hooks: ServerHooks) {
    this.#s = slot;
    this.#h = hooks;
    this.#ring = new WriteRing(slot.ctl, RING_LAYOUT);
    this.#policy = new SpinPolicy(MAIN_SPIN_MS, hostLoad.flag);
  }

  /** The serve loop: resolves once the worker has finished and everything it sent is handled. */
  async serve(): Promise<void> {
    const s = this.#s;
    const ctl = s.ctl;
    for (;;) {
      const seen = Atomics.load(ctl, CB.SEQ);
      this.#h.status(s, Atomics.load(ctl, CB.STATUS));
      await this.#deliverPosted();
      if (requestWaiting(ctl)) {
        // the worker pushes before it posts: deliver again so every earlier write lands first
        await this.#deliverPosted();
        const stop = await this.#answer();
        answerRequest(ctl, stop || this.#h.stopping());
        continue;
      }
      if (s.status === 'finished' || s.taskDone) {
        s.finished ??= s.halted ? 'halted' : 'stopped';
        if (s.status !== 'finished') this.#h.status(s, STATUS.FINISHED);
        return;
      }
      if (this.#policy.spin(ctl, CB.SEQ, seen)) continue;
      Atomics.store(ctl, CB.MAIN_SLEEPING, 1);
      // the timeout is a safety net: the loop re-reads everything after any wake-up anyway
      const w = Atomics.waitAsync(ctl, CB.SEQ, seen, SAFETY_WAKE_MS);
      if (w.async) await w.value;
      Atomics.store(ctl, CB.MAIN_SLEEPING, 0);
    }
  }

  async #deliverPosted(): Promise<void> {
    if (this.#ring.pending() === 0) return;
    try {
      await deliverPostedWrites(this.#ring, this.#s.index, this.#h.ctx, this.#posted);
    } finally {
      Atomics.notify(this.#s.ctl, CB.RING_HEAD);
    }
  }

  /** Answer the waiting request; true to stop the vCPU. */
  async #answer(): Promise<boolean> {
    const s = this.#s;
    try {
      const kind = Atomics.load(s.ctl, CB.REQUEST);
      if (kind === REQUEST.HALTED || kind === REQUEST.PARKED) return await this.#h.halted(s, kind === REQUEST.PARKED);
      s.halted = false;
      if (handleClaimedIo(s.view, s.run.length, this.#h.ctx, this.#io)) return false;
      const action = await handleExit(decodeExit(s.index, s.run, s.view), this.#h.ctx);
      return action.kind === 'continue' ? false : this.#h.apply(s, action);
    } catch (e) {
      this.#h.fail(e instanceof Error ? e : new Error(String(e)));
      return true;
    }
  }
}

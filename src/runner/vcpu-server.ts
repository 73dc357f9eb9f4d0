/**
 * The main thread's side of the vCPUs: one serve loop per runner ({@link serveAll}) waits on
 * the runner's doorbell and steps every vCPU's {@link VcpuServer} — deliver its posted
 * writes, answer its mailbox request through the exit handler. Claimed port I/O and MMIO are
 * answered synchronously; anything that needs listeners runs asynchronously and parks only
 * its own vCPU. The runner (src/runner/runner.ts) owns the lifecycle and the decisions that
 * span vCPUs (halts).
 */
import { decodeExit } from '../exits.js';
import { newAccess } from '../bus/dispatch.js';
import type { StatsReader } from '../stats.js';
import { BELL, CB, MAIN_WAIT, REQUEST, RING_LAYOUT, RING_POLL_MS, STATUS } from './protocol.js';
import { answerRequest, inlineAccess, requestWaiting, ringBell } from './mailbox.js';
import { BlockPolicy, SpinPolicy } from './handoff.js';
import { hostLoad } from './host-load.js';
import { WriteRing } from './write-ring.js';
import { accessExit, deliverClaimedPostedWrites, deliverPostedWrites, handleClaimedAccess, handleClaimedIo, handleExit, type ExitAction, type ExitContext } from './exit-handler.js';
import type { InoutExit, MmioExit } from '../exits.js';
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

/** What the servers ask of the runner. */
export interface ServerHooks {
  /** Exit handling context (buses, listeners, counters). */
  readonly ctx: ExitContext;
  /** The runner's doorbell. */
  readonly bell: Int32Array;
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

/** Serves one vCPU, a step at a time. */
export class VcpuServer {
  readonly #s: VcpuSlot;
  readonly #h: ServerHooks;
  readonly #ring: WriteRing;
  readonly #io = newAccess();
  readonly #ctlView: DataView;
  readonly #posted = newAccess();
  #busy = false;
  #postedSeen = false;
  /** The worker has finished and everything it sent was handled. */
  done = false;

  constructor(slot: VcpuSlot, hooks: ServerHooks) {
    this.#s = slot;
    this.#h = hooks;
    this.#ring = new WriteRing(slot.ctl, RING_LAYOUT);
    this.#ctlView = new DataView(slot.ctl.buffer);
  }

  /** True while an asynchronous handler of this vCPU is pending (the vCPU waits for it). */
  get busy(): boolean {
    return this.#busy;
  }

  /** True (once) if a step since the last call found posted writes in the ring. */
  takePostedSeen(): boolean {
    const seen = this.#postedSeen;
    this.#postedSeen = false;
    return seen;
  }

  /** Do what this vCPU needs now, synchronously or by starting its asynchronous path; true if there was something. */
  step(): boolean {
    if (this.#busy || this.done) return false;
    const s = this.#s;
    this.#h.status(s, Atomics.load(s.ctl, CB.STATUS));
    const hadPosted = this.#ring.pending() !== 0;
    if (hadPosted) this.#postedSeen = true;
    // the worker pushes before it posts: every earlier write lands before the request is answered
    if (hadPosted && !this.#deliverClaimed()) {
      this.#async(() => this.#deliverThenAnswer());
      return true;
    }
    if (requestWaiting(s.ctl)) {
      if (!this.#answerClaimed()) this.#async(() => this.#answer());
      return true;
    }
    if (s.status === 'finished' || s.taskDone) {
      s.finished ??= s.halted ? 'halted' : 'stopped';
      if (s.status !== 'finished') this.#h.status(s, STATUS.FINISHED);
      this.done = true;
      return true;
    }
    return hadPosted;
  }

  #deliverClaimed(): boolean {
    const all = deliverClaimedPostedWrites(this.#ring, this.#h.ctx, this.#posted);
    Atomics.notify(this.#s.ctl, CB.RING_HEAD);
    return all;
  }

  /** The common exit answered at once: claimed port I/O or MMIO. */
  #answerClaimed(): boolean {
    const s = this.#s;
    const kind = Atomics.load(s.ctl, CB.REQUEST);
    let inline = false;
    if (kind === REQUEST.ACCESS) {
      if (!handleClaimedAccess(inlineAccess(s.ctl, this.#ctlView, this.#io), this.#io, this.#h.ctx)) return false;
      inline = true;
    } else if (kind !== REQUEST.EXIT || !handleClaimedIo(s.view, s.run.length, this.#h.ctx, this.#io)) return false;
    s.halted = false;
    answerRequest(s.ctl, this.#h.stopping(), inline);
    return true;
  }

  #async(fn: () => Promise<void>): void {
    this.#busy = true;
    fn()
      .catch((e: unknown) => this.#h.fail(e instanceof Error ? e : new Error(String(e))))
      .finally(() => {
        this.#busy = false;
        ringBell(this.#h.bell);
      });
  }

  async #deliverThenAnswer(): Promise<void> {
    try {
      await deliverPostedWrites(this.#ring, this.#s.index, this.#h.ctx, this.#posted);
    } finally {
      Atomics.notify(this.#s.ctl, CB.RING_HEAD);
    }
    if (requestWaiting(this.#s.ctl)) await this.#answer();
  }

  /** Answer the waiting request through the exit handler (or the halt decision). */
  async #answer(): Promise<void> {
    const s = this.#s;
    let stop: boolean;
    let inline = false;
    try {
      const kind = Atomics.load(s.ctl, CB.REQUEST);
      inline = kind === REQUEST.ACCESS;
      if (kind === REQUEST.HALTED || kind === REQUEST.PARKED) stop = await this.#h.halted(s, kind === REQUEST.PARKED);
      else {
        s.halted = false;
        const action = await handleExit(inline ? this.#inlineExit() : decodeExit(s.index, s.run, s.view), this.#h.ctx);
        stop = action.kind === 'continue' ? false : this.#h.apply(s, action);
      }
    } catch (e) {
      this.#h.fail(e instanceof Error ? e : new Error(String(e)));
      stop = true;
    }
    answerRequest(s.ctl, stop || this.#h.stopping(), inline);
  }

  /**
   * The exit of an ACCESS request, from its inline description alone (kvm_run need not hold
   * it: the CPL0 engine's accesses never were KVM exits); a read's answer goes inline.
   */
  #inlineExit(): InoutExit | MmioExit {
    const a = this.#io;
    const space = inlineAccess(this.#s.ctl, this.#ctlView, a);
    return accessExit(space, this.#s.index, a, new Uint8Array(this.#s.ctl.buffer, a.offset, a.size));
  }
}

/** A sleeping serve loop re-checks its vCPUs at least this often (ms). */
const SAFETY_WAKE_MS = 250;
/** How long (ms) the serve loop spins for the next event, when spinning pays. */
const MAIN_SPIN_MS = 0.1;
/**
 * How long (ms) the serve loop may block in a futex wait for the next event, when that pays.
 * Longer than the kernel's scheduler tick (4 ms at HZ=250, 10 ms at HZ=100) on purpose: a
 * futex timeout is an hrtimer, and one that expires before the tick is the CPU's earliest
 * timer, so arming and cancelling it reprograms the timer hardware twice per hand-off — on a
 * nested host each such write traps to the outer hypervisor. Measured here with one core
 * busy, a worker↔main hand-off around a KVM exit cost 16 µs untimed, 20–22 µs with a 0.5 ms
 * timeout and 13–18 µs with 5–20 ms. A wait that times out still makes the next ones go to
 * the event loop at once (the shared back-off), so the loop is held this long only once in
 * a while, when a guest stops exiting.
 */
const MAIN_BLOCK_MS = 10;
/** While vCPUs keep it busy, the serve loop still lets the event loop run this often (ms). */
const YIELD_MS = 2;

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * The serve loop of a runner: steps every server until all are done. Between rounds with
 * nothing to do it waits on the doorbell — spinning while that pays, then blocking briefly
 * while that pays, then asynchronously (src/runner/handoff.ts); only asynchronously while
 * `hostWork()` says a device has host work in flight that completes on the event loop. While
 * posted writes keep coming it polls the rings every {@link RING_POLL_MS} instead, and the
 * workers post without ringing ({@link BELL}.MAIN_POLLING). While vCPUs keep it busy it
 * still yields to the event loop every {@link YIELD_MS} (timers, I/O, stop()).
 */
export async function serveAll(servers: readonly VcpuServer[], bell: Int32Array, hostWork: () => boolean = () => false): Promise<void> {
  const spin = new SpinPolicy(MAIN_SPIN_MS, hostLoad.flag);
  const block = new BlockPolicy(MAIN_BLOCK_MS);
  let lastYield = performance.now();
  let posted = false; // posted writes were delivered since the last wait
  let polling = false;
  try {
    for (let round = 1; ; round++) {
      const seen = Atomics.load(bell, BELL.SEQ);
      let worked = false;
      let live = false;
      let busy = false;
      // indexed: an array iterator here is allocated every round (this async function is only
      // ever OSR-compiled), ~13 bytes an exit
      for (let i = 0; i < servers.length; i++) {
        const sv = servers[i];
        if (sv.step()) worked = true;
        if (sv.takePostedSeen()) posted = true;
        if (!sv.done) live = true;
        if (sv.busy) busy = true;
      }
      if (!live) return;
      if ((round & 31) === 0 && performance.now() - lastYield >= YIELD_MS) {
        await yieldToEventLoop();
        lastYield = performance.now();
        continue;
      }
      if (worked) {
        if (busy) await null; // let pending handlers' microtasks run
        continue;
      }
      if (polling !== posted) {
        polling = posted;
        Atomics.store(bell, BELL.MAIN_POLLING, polling ? 1 : 0);
        // a worker that saw the flag still set did not ring: re-read the rings once more
        if (!polling) continue;
      }
      posted = false;
      if (polling) {
        await waitAsync(bell, seen, RING_POLL_MS);
        lastYield = performance.now();
        continue;
      }
      // a device waiting for host I/O completes it on the event loop: do not hold the loop
      if (!busy && !hostWork()) {
        if (spin.spin(bell, BELL.SEQ, seen)) continue;
        spin.startSleep();
        // the wait state is published before the wait re-checks SEQ: a later ring notifies
        Atomics.store(bell, BELL.MAIN_SLEEPING, MAIN_WAIT.BLOCKED);
        const woken = block.wait(bell, BELL.SEQ, seen);
        Atomics.store(bell, BELL.MAIN_SLEEPING, MAIN_WAIT.AWAKE);
        if (woken) {
          spin.endSleep();
          continue;
        }
      }
      // the timeout is a safety net: the loop re-reads everything after any wake-up anyway
      await waitAsync(bell, seen, SAFETY_WAKE_MS);
      lastYield = performance.now();
    }
  } finally {
    Atomics.store(bell, BELL.MAIN_POLLING, 0);
  }
}

/** Wait asynchronously (the event loop runs) for the doorbell to move past `seen`, at most `ms`. */
async function waitAsync(bell: Int32Array, seen: number, ms: number): Promise<void> {
  Atomics.store(bell, BELL.MAIN_SLEEPING, MAIN_WAIT.ASLEEP);
  const w = Atomics.waitAsync(bell, BELL.SEQ, seen, ms);
  if (w.async) await w.value;
  Atomics.store(bell, BELL.MAIN_SLEEPING, MAIN_WAIT.AWAKE);
}

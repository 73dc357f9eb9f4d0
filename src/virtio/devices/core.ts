/**
 * What the device models share: the context of the current activation, an epoch that every
 * reset advances (so asynchronous work started earlier can tell it is stale), and a bounded
 * loop that pops and serves one queue.
 *
 * Guest misbehaviour that the queue reports as a {@link QueueError} (and, defensively, any
 * other exception escaping a device's chain handler) ends the activation: the device calls
 * {@link VirtioContext.needsReset} once and ignores its queues until the next reset. Nothing
 * is thrown back to the transport for it.
 */
import type { DescriptorChain } from '../chain.js';
import type { VirtioContext } from '../device.js';
import { QueueError } from '../errors.js';
import { SplitQueue } from '../queue.js';

/**
 * Serves one popped chain. Returns true if it already returned the chain to the used ring
 * (so the driver needs an interrupt), false if the chain completes later or not at all.
 */
export type ChainHandler = (chain: DescriptorChain, queue: SplitQueue) => boolean;

/** Check that `ctx` looks like a {@link VirtioContext} for a device with `queueCount` queues. */
export function checkContext(ctx: unknown, queueCount: number): VirtioContext {
  if (typeof ctx !== 'object' || ctx === null) throw new TypeError('ctx must be a VirtioContext object');
  const c = ctx as Partial<VirtioContext>;
  if (typeof c.features !== 'bigint') throw new TypeError(`ctx.features must be a bigint, got ${typeof c.features}`);
  if (!Array.isArray(c.queues)) throw new TypeError('ctx.queues must be an array of SplitQueue | undefined');
  if (c.queues.length > queueCount) throw new RangeError(`ctx.queues has ${c.queues.length} entries; the device has ${queueCount} queues`);
  c.queues.forEach((q, i) => {
    if (q !== undefined && !(q instanceof SplitQueue)) throw new TypeError(`ctx.queues[${i}] must be a SplitQueue or undefined`);
  });
  if (typeof c.memory !== 'object' || c.memory === null) throw new TypeError('ctx.memory must be a QueueMemory');
  for (const f of ['interrupt', 'configChanged', 'needsReset'] as const) {
    if (typeof c[f] !== 'function') throw new TypeError(`ctx.${f} must be a function`);
  }
  return ctx as VirtioContext;
}

/** Check a queue `index` argument against `queueCount`. */
export function checkQueueIndex(index: unknown, queueCount: number): number {
  if (typeof index !== 'number') throw new TypeError(`index must be a number, got ${typeof index}`);
  if (!Number.isInteger(index) || index < 0 || index >= queueCount) {
    throw new RangeError(`index must be an integer in [0, ${queueCount - 1}] (the device's queues), got ${index}`);
  }
  return index;
}

/** A device's activation state and queue-serving loop. */
export class DeviceCore {
  /** How many queues the device has. */
  readonly queueCount: number;
  /** needsReset reports made so far (all activations). */
  failures = 0;
  #ctx: VirtioContext | undefined;
  #epoch = 0;
  #failed = false;
  #paused = false;
  readonly #scheduled = new Set<number>();

  /** Plumbing for a device with `queueCount` queues. */
  constructor(queueCount: number) {
    this.queueCount = queueCount;
  }

  /** The current context, or undefined if not activated (or reset since). */
  get ctx(): VirtioContext | undefined {
    return this.#ctx;
  }
  /** Advanced by every activate() and reset(). */
  get epoch(): number {
    return this.#epoch;
  }
  /** True between activate() and reset(), unless needsReset was reported. */
  get serving(): boolean {
    return this.#ctx !== undefined && !this.#failed;
  }
  /** True if this activation reported needsReset (and so stopped serving). */
  get failedActivation(): boolean {
    return this.#failed;
  }
  /** True between pause() (or restore()) and resume(): no chains are popped. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * Stop popping chains until resume(): {@link queue} answers undefined, so every serving
   * loop ends at once. Work already in flight still completes, and interrupts still go out.
   */
  pause(): void {
    this.#paused = true;
  }

  /** Pop chains again (the device then pumps its queues). */
  resume(): void {
    this.#paused = false;
  }

  /**
   * Take up a restored activation with `ctx` (undefined: the driver was not up), paused
   * until resume(), with needsReset already reported if `failed`.
   */
  restore(ctx: VirtioContext | undefined, failed: boolean): void {
    if (ctx === undefined) this.reset();
    else this.activate(ctx);
    this.#failed = ctx !== undefined && failed;
    this.#paused = true;
  }

  /** Start an activation with `ctx` (checked), ending any current one first. */
  activate(ctx: VirtioContext): void {
    const c = checkContext(ctx, this.queueCount);
    this.reset();
    this.#ctx = c;
  }

  /** End the activation: forget the context, drop scheduled work. */
  reset(): void {
    this.#epoch++;
    this.#ctx = undefined;
    this.#failed = false;
    this.#scheduled.clear();
  }

  /** True if `epoch` is the current one and the device is still serving. */
  current(epoch: number): boolean {
    return epoch === this.#epoch && this.serving;
  }

  /** Queue `index` if the device is serving, not paused, and the driver enabled it. */
  queue(index: number): SplitQueue | undefined {
    return this.serving && !this.#paused ? this.#ctx!.queues[index] : undefined;
  }

  /** Interrupt the driver for queue `index` (if serving). */
  interrupt(index: number): void {
    if (this.serving) this.#ctx!.interrupt(index);
  }

  /** Report DEVICE_NEEDS_RESET for `cause` (once per activation) and stop serving. */
  fail(cause: unknown): void {
    if (!this.serving) return;
    this.#failed = true;
    this.failures++;
    const reason = cause instanceof QueueError
      ? `${cause.kind}: ${cause.message}`
      : `device error: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)}`;
    this.#ctx!.needsReset(reason);
  }

  /**
   * Pop and serve chains of queue `index` with `handle`, for at most `budget` turns (then
   * the rest runs from setImmediate, so a driver that keeps adding buffers cannot hold the
   * thread). While `ready` returns false the loop stops and asks the driver not to notify
   * (a later serve() asks again). When the ring is empty it re-enables notifications and
   * picks up buffers that raced with that. Interrupts the driver once if anything reached
   * the used ring, including chains the queue dropped as malformed.
   */
  serve(index: number, budget: number, handle: ChainHandler, ready?: () => boolean): void {
    const q = this.queue(index);
    if (!q) return;
    const usedBefore = q.nextUsed;
    let pushed = false;
    try {
      for (let turn = 0; ; turn++) {
        if (turn >= budget) {
          this.later(index, () => this.serve(index, budget, handle, ready));
          break;
        }
        if (ready && !ready()) {
          q.disableNotifications();
          break;
        }
        const chain = q.pop();
        if (chain) {
          if (handle(chain, q)) pushed = true;
          continue;
        }
        if (!q.enableNotifications()) break;
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    if (pushed || q.nextUsed !== usedBefore) this.interrupt(index);
  }

  /** Run `fn` from setImmediate unless a reset comes first; at most one pending per queue `index`. */
  later(index: number, fn: () => void): void {
    if (this.#scheduled.has(index)) return;
    this.#scheduled.add(index);
    const epoch = this.#epoch;
    setImmediate(() => {
      if (epoch !== this.#epoch) return;
      this.#scheduled.delete(index);
      try {
        fn();
      } catch (e) {
        this.fail(e);
      }
    });
  }
}

/**
 * The adaptive hand-off between a vCPU worker and the main thread.
 *
 * Waking a sleeping thread costs tens of microseconds on nested-virtualization hosts, more
 * than an exit, so while each side has a CPU of its own a short spin before sleeping keeps
 * hot loops fast (0.92× a direct C loop against 0.2× for a plain futex, measured here). When
 * the host is busy the opposite holds: the spinner holds the CPU its peer needs, and a spin
 * cut hand-offs to 0.06–0.19× where sleeping at once kept 0.45× (DESIGN.md §4).
 *
 * So each waiting side keeps a {@link SpinPolicy}: it spins only while the host has a CPU
 * to spare (src/runner/host-load.ts publishes that as a shared flag: the peer then has a CPU
 * of its own) and recent spins paid — the awaited change came before the spin's deadline.
 * A spin that times out means the peer is busy elsewhere (a guest computing between exits):
 * the next hand-offs sleep at once, and the policy probes again after an exponentially
 * growing number of them.
 */
import { native } from '../kvm/native.js';


/** What {@link futexWait} returns. */
export const FUTEX = { WOKEN: 0, NOT_EQUAL: 1, TIMED_OUT: 2, INTERRUPTED: 3 } as const;

/**
 * Sleep while `cells[index] === value`, at most `timeoutUs` µs (0: no limit): the bare futex
 * (V8's Atomics.wait goes through a mutex and a condition variable, which costs extra context
 * switches on a busy host). Only {@link futexWake} wakes it.
 */
export function futexWait(cells: Int32Array, index: number, value: number, timeoutUs: number): number {
  return native().futexWait(cells, index, value, timeoutUs);
}

/** Wake the {@link futexWait} waiters of `cells[index]`. */
export function futexWake(cells: Int32Array, index: number): void {
  native().futexWake(cells, index, 0x7fffffff);
}

/** Looks at the awaited cell before a spin first reads the clock (~20 µs on the project machine). */
const FIRST_CLOCK_LOOKS = 2048;

/** Most hand-offs that sleep at once before the policy probes spinning again. */
const MAX_SKIP = 256;

/**
 * The exponential back-off both policies share: after a wait that did not pay, the next
 * `backoff` waits skip the fast way at once; the back-off doubles with each one that does not
 * pay (up to {@link MAX_SKIP}) and resets when one pays.
 */
class Backoff {
  #skip = 0;
  #backoff = 1;
  /** Waits that paid, did not, or skipped the fast way (diagnostics). */
  readonly stats = { paid: 0, wasted: 0, skipped: 0 };

  /** True (and counted) if this wait must skip the fast way. */
  skipNow(): boolean {
    if (this.#skip === 0) return false;
    this.#skip--;
    this.stats.skipped++;
    return true;
  }

  paid(): void {
    this.stats.paid++;
    this.#backoff = 1;
  }

  wasted(): void {
    this.stats.wasted++;
    this.#skip = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, MAX_SKIP);
  }

  /** The fast way pays again from now on. */
  reset(): void {
    this.#skip = 0;
    this.#backoff = 1;
  }
}

/** When to spin before sleeping, learned from how recent spins went. */
export class SpinPolicy {
  #maxMs: number;
  readonly #spare: Int32Array | undefined;
  readonly #budgetCell: number | undefined;
  readonly #backoff = new Backoff();
  #learning = false;
  #sleepStart: number | undefined;

  /**
   * `maxMs`: the longest spin (ms) before giving up and sleeping. `spare`: the host-load cells
   * (src/runner/host-load.ts; cell 0 is 1 while the host has a CPU to spare); without them,
   * only the spins' success counts. `budgetCell`: a cell of `spare` holding the longest spin
   * in µs, read before each spin (instead of `maxMs`); 0 there means: sleep at once.
   */
  constructor(maxMs: number, spare?: Int32Array, budgetCell?: number) {
    this.#maxMs = maxMs;
    this.#spare = spare;
    this.#budgetCell = budgetCell;
  }

  /** Spins that paid, spins that did not, waits that slept at once (diagnostics). */
  get stats(): Backoff['stats'] {
    return this.#backoff.stats;
  }

  /**
   * True if the last {@link spin} that returned false wants to hear, through {@link slept},
   * how long the sleep took: it skipped or gave up because recent spins did not pay, and a
   * short sleep means they would pay again. False when spinning was off for the host's sake
   * (no CPU to spare, or a budget of 0): the caller need not time the sleep.
   */
  get learning(): boolean {
    return this.#learning;
  }

  /**
   * Wait for `cells[index]` to differ from `value` by spinning, if spinning pays now.
   * Returns true if it changed; false if the caller must sleep.
   */
  spin(cells: Int32Array, index: number, value: number): boolean {
    this.#learning = false;
    if (Atomics.load(cells, index) !== value) return true;
    if (this.#spare) {
      if (Atomics.load(this.#spare, 0) === 0) {
        this.#backoff.stats.skipped++;
        return false;
      }
      if (this.#budgetCell !== undefined) {
        const budget = Atomics.load(this.#spare, this.#budgetCell) / 1000;
        if (budget !== this.#maxMs) this.#maxMs = budget; // written only when it changes
        if (budget === 0) {
          this.#backoff.stats.skipped++;
          return false;
        }
      }
    }
    this.#learning = true;
    if (this.#backoff.skipNow()) return false;
    // The clock is first read after FIRST_CLOCK_LOOKS looks (that read starts the deadline,
    // so a spin lasts up to ~20 µs longer than maxMs) and then every 1024 (~10 µs here).
    // Every performance.now() allocates a heap number (~32 bytes in Node 20), and a scavenge
    // stops this thread for 0.2–1 ms, longer than its peer's spin: a hand-off in a hot loop
    // (a worker's answer comes in ~1 µs, the main thread's next request in ~10) reads no clock.
    let deadline = 0;
    for (let i = 1; ; i++) {
      if (Atomics.load(cells, index) !== value) {
        this.#backoff.paid();
        return true;
      }
      if ((i & 1023) === 0 && i >= FIRST_CLOCK_LOOKS) {
        const now = performance.now();
        if (deadline === 0) deadline = now + this.#maxMs;
        else if (now >= deadline) {
          this.#backoff.wasted();
          return false;
        }
      }
    }
  }

  /**
   * Report how long a wait that did not spin (it slept) took: if a spin would have caught
   * the change, spinning pays again from now on (the peer is active again after a pause).
   */
  slept(ms: number): void {
    if (ms <= this.#maxMs) this.#backoff.reset();
  }

  /**
   * Call before the sleep that follows a {@link spin} that returned false, and
   * {@link endSleep} after it: the sleep is timed (for {@link slept}) only when the policy
   * is {@link learning}, so a hand-off that sleeps for the host's sake reads no clock.
   */
  startSleep(): void {
    this.#sleepStart = this.#learning ? performance.now() : undefined;
  }

  /** The sleep begun by {@link startSleep} is over. */
  endSleep(): void {
    if (this.#sleepStart !== undefined) this.slept(performance.now() - this.#sleepStart);
    this.#sleepStart = undefined;
  }
}

/**
 * When the main thread may block in a short futex wait instead of returning to the event
 * loop: a futex wake-up is much cheaper than the event loop's (an async wait's wake-up is a
 * task posted to the loop), which is what keeps hand-offs fast on a busy host where spinning
 * does not pay. Its waker must use {@link futexWake}. It blocks the event loop for at most
 * `maxMs` per wait, and only while waits pay — the event came before the timeout; a wait that
 * times out makes the next ones go to the event loop at once (the shared back-off).
 */
export class BlockPolicy {
  readonly #maxUs: number;
  readonly #backoff = new Backoff();

  /** `maxMs`: the longest a wait blocks the calling thread. */
  constructor(maxMs: number) {
    this.#maxUs = Math.ceil(maxMs * 1000);
  }

  /** Waits that were woken in time, waits that timed out, waits skipped (diagnostics). */
  get stats(): Backoff['stats'] {
    return this.#backoff.stats;
  }

  /**
   * Block while `cells[index] === value`, if blocking pays now. Returns true if it changed;
   * false if the caller must wait asynchronously.
   */
  wait(cells: Int32Array, index: number, value: number): boolean {
    if (this.#backoff.skipNow()) return false;
    if (futexWait(cells, index, value, this.#maxUs) !== FUTEX.TIMED_OUT) {
      this.#backoff.paid();
      return true;
    }
    this.#backoff.wasted();
    return false;
  }
}

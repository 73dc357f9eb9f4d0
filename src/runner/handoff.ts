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
 * to spare (src/runner/host-load.ts publishes that as a shared flag) and recent spins paid —
 * the awaited change came, and came quickly (the peer was running on another CPU). A spin
 * that times out or only succeeds late means the peer was not running: the next hand-offs
 * sleep at once, and the policy probes again after an exponentially growing number of them.
 */

/** A spin that succeeds later than this (ms) did not pay: the peer was likely descheduled. */
const SLOW_SPIN_MS = 0.03;
/** Most hand-offs that sleep at once before the policy probes spinning again. */
const MAX_SKIP = 256;

/** When to spin before sleeping, learned from how recent spins went. */
export class SpinPolicy {
  readonly #maxMs: number;
  readonly #spare: Int32Array | undefined;
  #skip = 0;
  #backoff = 1;
  /** Spins that paid, spins that did not, waits that slept at once (diagnostics). */
  readonly stats = { paid: 0, wasted: 0, skipped: 0 };

  /**
   * `maxMs`: the longest spin (ms) before giving up and sleeping. `spare`: the host-load flag
   * (cell 0 is 1 while the host has a CPU to spare); without it, only the spins' success counts.
   */
  constructor(maxMs: number, spare?: Int32Array) {
    this.#maxMs = maxMs;
    this.#spare = spare;
  }

  /**
   * Wait for `cells[index]` to differ from `value` by spinning, if spinning pays now.
   * Returns true if it changed; false if the caller must sleep (Atomics.wait / waitAsync).
   */
  spin(cells: Int32Array, index: number, value: number): boolean {
    if (Atomics.load(cells, index) !== value) return true;
    if (this.#spare && Atomics.load(this.#spare, 0) === 0) {
      this.stats.skipped++;
      return false;
    }
    if (this.#skip > 0) {
      this.#skip--;
      this.stats.skipped++;
      return false;
    }
    const start = performance.now();
    const deadline = start + this.#maxMs;
    for (let i = 1; ; i++) {
      if (Atomics.load(cells, index) !== value) {
        if (performance.now() - start <= SLOW_SPIN_MS) this.#paid();
        else this.#wasted();
        return true;
      }
      if ((i & 63) === 0 && performance.now() >= deadline) {
        this.#wasted();
        return false;
      }
    }
  }

  #paid(): void {
    this.stats.paid++;
    this.#backoff = 1;
  }

  #wasted(): void {
    this.stats.wasted++;
    this.#skip = this.#backoff;
    this.#backoff = Math.min(this.#backoff * 2, MAX_SKIP);
  }
}

/**
 * The status line of `vmmapi run`: while the guest has printed nothing for a while (a Linux
 * boot on a PVM host can be silent for minutes), one line on **stderr** says what the VMM is
 * doing — elapsed time, VM exits per second, instructions finished by the userspace fallback,
 * and each vCPU's state. Guest output goes to stdout and never carries it.
 *
 * On a terminal the line is redrawn in place (`\r` + erase to end of line) and erased before
 * the guest prints again; elsewhere (`--status` into a file or pipe) each refresh is a line of
 * its own, at a slower pace.
 */

/** What the status line reads; the platform's runner ({@link Pc.runner}) has this shape. */
export interface StatusSource {
  /** Exits per vCPU so far (reading it also brings the fallback's counts up to date). */
  readonly counters: { readonly exits: readonly number[] };
  /** Each vCPU's state: 'starting' | 'running' | 'paused' | 'finished'. */
  readonly states: readonly string[];
  /** The runner's 'emulated' event: per-vCPU counts of instructions the fallback finished. */
  on(event: 'emulated', listener: (vcpu: number, counts: Record<string, number>) => void): unknown;
  /** Remove an 'emulated' listener. */
  off(event: 'emulated', listener: (vcpu: number, counts: Record<string, number>) => void): unknown;
}

/** Where the line goes: stderr (or any stream with `write`), and whether it is a terminal. */
export interface StatusTarget {
  /** Write text (synchronously for a terminal, as process.stderr does). */
  write(text: string): unknown;
  /** True on a terminal: redraw in place. */
  readonly isTTY?: boolean;
}

/** Options of {@link StatusLine}. */
export interface StatusLineOptions {
  /** Silence (no guest output) before the line appears, ms. Default 2000. */
  quietMs?: number;
  /** Refresh period, ms. Default 1000 on a terminal, 10000 elsewhere. */
  intervalMs?: number;
  /** The clock, ms (default performance.now). */
  now?: () => number;
}

/** "1.2k", "34.5M": a compact count. */
export function compactCount(n: number): string {
  if (n < 1000) return String(Math.round(n));
  if (n < 1e6) return `${(n / 1e3).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(n < 1e7 ? 1 : 0)}M`;
}

/** "7.5 s", "2 min 05 s": elapsed time. */
export function formatElapsed(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${String(Math.floor(s - m * 60)).padStart(2, '0')} s`;
}

/** "2 running, 1 finished": how many vCPUs are in each state (in first-seen order). */
export function summarizeStates(states: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const s of states) counts.set(s, (counts.get(s) ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
}

/**
 * The status line: {@link start} it when the guest starts, call {@link noteOutput} before
 * every write of guest output, {@link stop} it when the run ends.
 */
export class StatusLine {
  readonly #source: StatusSource;
  readonly #target: StatusTarget;
  readonly #tty: boolean;
  readonly #quietMs: number;
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #onEmulated = (_vcpu: number, counts: Record<string, number>): void => {
    for (const n of Object.values(counts)) this.#emulated += n;
  };
  #timer: ReturnType<typeof setInterval> | undefined;
  #startedAt = 0;
  #lastOutput = 0;
  #shown = false;
  #lastShownAt = -Infinity;
  #prevExits = 0;
  #prevAt = 0;
  #emulated = 0;
  #lines = 0;
  #midLine = false;

  /** A status line over `source` (the runner) written to `target` (stderr). */
  constructor(source: StatusSource, target: StatusTarget, opts: StatusLineOptions = {}) {
    if (typeof source !== 'object' || source === null) throw new TypeError('source must be the runner (counters, states, on/off)');
    if (typeof target !== 'object' || target === null || typeof target.write !== 'function') throw new TypeError('target must have write()');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    this.#source = source;
    this.#target = target;
    this.#tty = target.isTTY === true;
    const ms = (v: unknown, name: string, dflt: number): number => {
      if (v === undefined) return dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 1) throw new RangeError(`opts.${name} must be a number of at least 1 (ms), got ${String(v)}`);
      return v;
    };
    this.#quietMs = ms(opts.quietMs, 'quietMs', 2000);
    this.#intervalMs = ms(opts.intervalMs, 'intervalMs', this.#tty ? 1000 : 10_000);
    if (opts.now !== undefined && typeof opts.now !== 'function') throw new TypeError('opts.now must be a function');
    this.#now = opts.now ?? (() => performance.now());
  }

  /** Lines written so far (refreshes of a terminal's line included). */
  get lines(): number {
    return this.#lines;
  }

  /** Begin watching: the quiet period starts now. The timer does not keep the process alive. */
  start(): void {
    if (this.#timer) return;
    this.#startedAt = this.#lastOutput = this.#prevAt = this.#now();
    this.#source.on('emulated', this.#onEmulated);
    this.#timer = setInterval(() => this.tick(), Math.min(this.#intervalMs, this.#quietMs, 1000));
    this.#timer.unref();
  }

  /**
   * The guest is about to print `byte`: erase a line drawn on the terminal and restart the
   * quiet period. (After output that ended mid-line the terminal's line starts one line below,
   * so erasing it never erases the guest's text.)
   */
  noteOutput(byte?: number): void {
    this.#lastOutput = this.#now();
    this.#erase();
    if (byte !== undefined) this.#midLine = byte !== 0x0a;
  }

  /** Show or refresh the line if the guest has been quiet long enough (the timer calls this). */
  tick(): void {
    const now = this.#now();
    const exits = this.#source.counters.exits.reduce((a, b) => a + b, 0); // also syncs 'emulated'
    const rate = now > this.#prevAt ? ((exits - this.#prevExits) * 1000) / (now - this.#prevAt) : 0;
    this.#prevExits = exits;
    this.#prevAt = now;
    if (now - this.#lastOutput < this.#quietMs) return;
    if (!this.#tty && now - this.#lastShownAt < this.#intervalMs) return;
    const text = this.format(now - this.#startedAt, rate, now - this.#lastOutput);
    this.#lastShownAt = now;
    this.#lines++;
    if (this.#tty) {
      this.#target.write(`${this.#midLine ? '\n' : ''}\r\x1b[K${text}`);
      this.#midLine = false;
      this.#shown = true;
    } else {
      this.#target.write(`${text}\n`);
    }
  }

  /** The line's text. */
  format(elapsedMs: number, exitsPerSecond: number, quietMs: number): string {
    const parts = [
      `vmmapi: ${formatElapsed(elapsedMs)}`,
      `no guest output for ${formatElapsed(quietMs)}`,
      `${compactCount(exitsPerSecond)} exits/s`,
      `fallback finished ${compactCount(this.#emulated)} instructions`,
      `vCPUs: ${summarizeStates(this.#source.states)}`,
    ];
    return parts.join(' | ');
  }

  /** Stop and erase the line from the terminal. */
  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#source.off('emulated', this.#onEmulated);
    this.#erase();
  }

  #erase(): void {
    if (!this.#shown) return;
    this.#shown = false;
    this.#target.write('\r\x1b[K');
  }
}

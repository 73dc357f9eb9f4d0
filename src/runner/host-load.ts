/**
 * Whether the host has a CPU to spare for spinning: the other half of the adaptive
 * hand-off (src/runner/handoff.ts). A spin pays only while the peer thread runs on another
 * CPU; when other processes keep the CPUs busy, the spinner holds the CPU its peer needs.
 *
 * The main thread samples, every {@link SAMPLE_MS}, how much CPU the rest of the host used
 * (all CPUs' busy time from /proc/stat, minus this process's own CPU time) and publishes
 * one shared flag that every vCPU worker reads before it spins. With `n` CPUs, spinning is
 * allowed while the others leave at least about 1.5 CPUs idle (a worker and the main thread
 * each spinning on a CPU of their own), with hysteresis.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** How often (ms) the host's load is sampled. */
const SAMPLE_MS = 100;
/** Weight of the newest sample in the moving average. */
const ALPHA = 0.5;
/** Linux reports /proc/stat in USER_HZ ticks: 100 per second on x86. */
const MS_PER_TICK = 10;

/** Sum of the busy and total ticks of all CPUs (first line of /proc/stat), or undefined. */
function cpuTicks(): { busy: number; total: number } | undefined {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'latin1');
  } catch {
    return undefined;
  }
  const line = text.slice(0, text.indexOf('\n'));
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((x) => !Number.isFinite(x))) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const idle = f[3] + (f[4] ?? 0);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** The shared "a spin may pay" flag, kept up to date by one sampler per process. */
export class HostLoad {
  /** 1 while the host has a CPU to spare for spinning, 0 while it is busy. Shared with workers. */
  readonly flag = new Int32Array(new SharedArrayBuffer(4));
  readonly #cpus = availableParallelism();
  #timer: NodeJS.Timeout | undefined;
  #users = 0;
  #last: { busy: number; own: number; wall: number } | undefined;
  /** CPUs kept busy by other processes (moving average). */
  others = 0;

  constructor() {
    Atomics.store(this.flag, 0, 1);
  }

  /** Start sampling (reference-counted: one timer for every runner in the process). */
  acquire(): void {
    if (this.#users++ > 0) return;
    this.#last = undefined;
    this.sample();
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.#timer.unref();
  }

  /** Stop sampling once the last runner is done. */
  release(): void {
    if (--this.#users > 0) return;
    this.#users = 0;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** Take one sample and update the flag. */
  sample(): void {
    const t = cpuTicks();
    if (!t) return; // no /proc/stat: keep the last decision (spinning allowed by default)
    const u = process.cpuUsage();
    const now = { busy: t.busy * MS_PER_TICK, own: (u.user + u.system) / 1000, wall: performance.now() };
    const last = this.#last;
    this.#last = now;
    if (!last || now.wall - last.wall < 1) return;
    const others = Math.max(0, now.busy - last.busy - (now.own - last.own)) / (now.wall - last.wall);
    this.others = ALPHA * others + (1 - ALPHA) * this.others;
    const spare = this.#cpus - this.others;
    const allowed = Atomics.load(this.flag, 0) === 1;
    if (allowed && spare < 1.4) Atomics.store(this.flag, 0, 0);
    else if (!allowed && spare > 1.6) Atomics.store(this.flag, 0, 1);
  }
}

/** The process's sampler. */
export const hostLoad = new HostLoad();

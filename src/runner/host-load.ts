/**
 * Whether the host has a CPU to spare for spinning: the other half of the adaptive
 * hand-off (src/runner/handoff.ts). A spin pays only while the peer thread runs on another
 * CPU; when other processes keep the CPUs busy, the spinner holds the CPU its peer needs.
 *
 * The main thread samples, every {@link SAMPLE_MS}, how much CPU the rest of the host used
 * (all CPUs' busy time from /proc/stat, minus this process's own CPU time) and publishes two
 * shared cells that every vCPU worker reads before it spins:
 * - {@link SPARE.MAIN}: 1 while the others leave about 1.5 CPUs idle (the main thread and a
 *   worker each spinning on a CPU of their own), with hysteresis; else 0, and nobody spins.
 * - {@link SPARE.WORKER_SPIN_US}: how long a worker may spin for its answer. While this
 *   process's running vCPUs plus the main thread fit the idle CPUs, long enough for the main
 *   thread to answer after a wake-up; when they do not (more vCPUs than spare CPUs), only
 *   briefly — a spinning worker then holds a CPU that the main thread or another vCPU needs.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Cells of {@link HostLoad.flag}. */
export const SPARE = { MAIN: 0, WORKER_SPIN_US: 1 } as const;
/** A worker's spin (µs) while its peers have CPUs of their own, and while they do not. */
const WORKER_SPIN_LONG_US = 100;
const WORKER_SPIN_SHORT_US = 10;

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
  /** The shared cells ({@link SPARE}). */
  readonly flag = new Int32Array(new SharedArrayBuffer(8));
  readonly #cpus = availableParallelism();
  #timer: NodeJS.Timeout | undefined;
  #users = 0;
  /** vCPUs of the runners that hold this sampler. */
  #vcpus = 0;
  #last: { busy: number; own: number; wall: number } | undefined;
  /** CPUs kept busy by other processes (moving average). */
  others = 0;

  constructor() {
    Atomics.store(this.flag, SPARE.MAIN, 1);
    Atomics.store(this.flag, SPARE.WORKER_SPIN_US, WORKER_SPIN_LONG_US);
  }

  /** Start sampling for a runner of `vcpus` vCPUs (one timer for every runner in the process). */
  acquire(vcpus: number): void {
    this.#vcpus += vcpus;
    this.#publish();
    if (this.#users++ > 0) return;
    this.#last = undefined;
    this.sample();
    this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
    this.#timer.unref();
  }

  /** A runner of `vcpus` vCPUs is done; sampling stops with the last one. */
  release(vcpus: number): void {
    this.#vcpus = Math.max(0, this.#vcpus - vcpus);
    this.#publish();
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
    this.#publish();
  }

  #publish(): void {
    const spare = this.#cpus - this.others;
    const allowed = Atomics.load(this.flag, SPARE.MAIN) === 1;
    if (allowed && spare < 1.4) Atomics.store(this.flag, SPARE.MAIN, 0);
    else if (!allowed && spare > 1.6) Atomics.store(this.flag, SPARE.MAIN, 1);
    const fits = this.#vcpus + 1 <= spare + 0.25;
    Atomics.store(this.flag, SPARE.WORKER_SPIN_US, fits ? WORKER_SPIN_LONG_US : WORKER_SPIN_SHORT_US);
  }
}

/** The process's sampler. */
export const hostLoad = new HostLoad();

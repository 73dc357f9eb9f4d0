/**
 * Whether the host has a CPU to spare for spinning: the other half of the adaptive
 * hand-off (src/runner/handoff.ts). A spin pays only while the peer thread runs on another
 * CPU; when other processes keep the CPUs busy, the spinner holds the CPU its peer needs.
 *
 * The main thread samples, every {@link SAMPLE_MS}, how much CPU the rest of the host used
 * (all CPUs' busy time from /proc/stat, steal excluded ({@link busyTicks}), minus this
 * process's own CPU time) and publishes two shared cells that every vCPU worker reads before
 * it spins:
 * - {@link SPARE.MAIN}: 1 while the others leave about 1.5 CPUs idle (the main thread and a
 *   worker each spinning on a CPU of their own); else 0, and nobody spins.
 * - {@link SPARE.WORKER_SPIN_US}: how long a worker may spin for its answer. While this
 *   process's running vCPUs plus the main thread fit the idle CPUs (to half a CPU), long
 *   enough for the main thread to answer after a wake-up; when they do not (more vCPUs than
 *   spare CPUs), 0: the worker sleeps at once — a spinning worker then holds a CPU that the
 *   main thread or another vCPU needs (2 vCPUs answered by the main thread on 2 idle cores,
 *   measured here: 11.5 µs per exit with a 10 µs spin, 9.9 µs sleeping at once).
 *
 * Both decisions have hysteresis ({@link HYSTERESIS}): a sample counts whole 10 ms ticks per
 * CPU, so on an idle 2-CPU host single samples read up to ~0.3 CPUs of load that is not
 * there (measured: 20 ms windows), and a threshold without a band flipped 1-vCPU workers to
 * sleeping at once for a sample period in 2 of 5 bench rounds (6000–8400 of 50000 hand-offs).
 */
import { openSync, readSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Cells of {@link HostLoad.flag}. */
export const SPARE = { MAIN: 0, WORKER_SPIN_US: 1 } as const;
/** A worker's spin (µs) while its peers have CPUs of their own, and while they do not (none). */
const WORKER_SPIN_LONG_US = 100;
const WORKER_SPIN_OVERSUBSCRIBED_US = 0;

/** How often (ms) the host's load is sampled. */
const SAMPLE_MS = 100;
/**
 * When sampling starts (the first runner of a quiet spell), the first sample comes after this
 * many ms and replaces the estimate outright: an estimate from an earlier run is stale (the
 * bench, say, alternates an idle and a busy host), and deciding on it for the first
 * {@link SAMPLE_MS}s of a run — spinning on a busy host, or sleeping on an idle one — costs
 * more than the first sample's coarseness (/proc/stat counts 10 ms ticks).
 */
const FIRST_SAMPLE_MS = 20;
/** Weight of the newest sample in the moving average. */
const ALPHA = 0.5;
/** Linux reports /proc/stat in USER_HZ ticks: 100 per second on x86. */
const MS_PER_TICK = 10;

/** The first line of /proc/stat ("cpu  user nice system idle iowait irq softirq steal ..."), read into a reused buffer. */
const statBuffer = Buffer.alloc(256);
let statFd: number | undefined;

/**
 * The busy ticks of all CPUs (first line of /proc/stat), or undefined. It runs on the main
 * thread between hand-offs, so it keeps the file open and parses the bytes in place: no file
 * open, no strings (a full read and split cost ~0.3 ms there).
 */
function cpuBusyTicks(): number | undefined {
  let n: number;
  try {
    statFd ??= openSync('/proc/stat', 'r');
    n = readSync(statFd, statBuffer, 0, statBuffer.length, 0);
  } catch {
    return undefined;
  }
  return busyTicks(statBuffer, n);
}

/**
 * The busy ticks in the first `n` bytes of /proc/stat ("cpu  user nice system idle iowait irq
 * softirq steal ..."): user, nice, system, irq and softirq — the time this machine's CPUs ran
 * something (guest time is already in user). Steal is not busy here: it is time the
 * hypervisor under this machine kept a runnable CPU from running, and a runner that sleeps
 * makes it itself — on a nested host every wake-up of an idle CPU is counted as steal (0.6–1
 * CPU of it while the hand-offs slept, none while they spun, measured here), which read as
 * load from other processes and kept spinning off on an idle host. Undefined if the bytes do
 * not start with the "cpu" line.
 */
export function busyTicks(bytes: Uint8Array, n: number): number | undefined {
  const fields: number[] = [];
  let i = 3; // after "cpu"
  while (i < n && bytes[i] !== 0x0a && fields.length < 8) {
    while (i < n && bytes[i] === 0x20) i++;
    let v = 0;
    let digits = 0;
    for (; i < n && bytes[i] >= 0x30 && bytes[i] <= 0x39; i++, digits++) v = v * 10 + (bytes[i] - 0x30);
    if (digits === 0) break;
    fields.push(v);
  }
  if (bytes[0] !== 0x63 || bytes[1] !== 0x70 || bytes[2] !== 0x75 || bytes[3] !== 0x20 || fields.length < 4) return undefined; // "cpu "
  const [user, nice, system, , , irq = 0, softirq = 0] = fields;
  return user + nice + system + irq + softirq;
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
  /** The next sample is the first of a new spell: it replaces the estimate. */
  #fresh = false;
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
    this.#fresh = true;
    this.#timer = setTimeout(() => {
      this.sample();
      this.#timer = setInterval(() => this.sample(), SAMPLE_MS);
      this.#timer.unref();
    }, FIRST_SAMPLE_MS);
    this.#timer.unref();
  }

  /** A runner of `vcpus` vCPUs is done; sampling stops with the last one. */
  release(vcpus: number): void {
    this.#vcpus = Math.max(0, this.#vcpus - vcpus);
    this.#publish();
    if (--this.#users > 0) return;
    this.#users = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Take one sample and update the flag. */
  sample(): void {
    const busy = cpuBusyTicks();
    if (busy === undefined) return; // no /proc/stat: keep the last decision (spinning allowed by default)
    const u = process.cpuUsage();
    const now = { busy: busy * MS_PER_TICK, own: (u.user + u.system) / 1000, wall: performance.now() };
    const last = this.#last;
    this.#last = now;
    if (!last || now.wall - last.wall < 1) return;
    const others = Math.max(0, now.busy - last.busy - (now.own - last.own)) / (now.wall - last.wall);
    this.others = this.#fresh ? others : ALPHA * others + (1 - ALPHA) * this.others;
    this.#fresh = false;
    this.#publish();
  }

  #publish(): void {
    const spare = this.#cpus - this.others;
    const allowed = Atomics.load(this.flag, SPARE.MAIN) === 1;
    const allow = spinsMayPay(allowed, spare);
    if (allow !== allowed) Atomics.store(this.flag, SPARE.MAIN, allow ? 1 : 0);
    const fitted = Atomics.load(this.flag, SPARE.WORKER_SPIN_US) !== WORKER_SPIN_OVERSUBSCRIBED_US;
    const fits = vcpusFit(fitted, this.#vcpus, spare);
    // written only when it changes: the workers read this cell before every spin
    if (fits !== fitted) Atomics.store(this.flag, SPARE.WORKER_SPIN_US, fits ? WORKER_SPIN_LONG_US : WORKER_SPIN_OVERSUBSCRIBED_US);
  }
}

/** Half the width (CPUs) of the band around each threshold inside which a decision stays as it was. */
export const HYSTERESIS = 0.1;

/**
 * Whether spinning may pay ({@link SPARE.MAIN}) with `spare` CPUs left idle by other
 * processes: about 1.5 are needed (the main thread and a worker each spinning on a CPU of
 * its own). `allowed`: the current decision, kept while `spare` is within
 * {@link HYSTERESIS} of the threshold.
 */
export function spinsMayPay(allowed: boolean, spare: number): boolean {
  return spare > 1.5 + (allowed ? -HYSTERESIS : HYSTERESIS);
}

/**
 * Whether `vcpus` running vCPUs and the main thread fit the `spare` idle CPUs, to half a
 * CPU: then workers spin for their answers, else they sleep at once. `fitted`: the current
 * decision, kept while the margin is within {@link HYSTERESIS} of half a CPU.
 */
export function vcpusFit(fitted: boolean, vcpus: number, spare: number): boolean {
  return vcpus + 1 <= spare + 0.5 + (fitted ? HYSTERESIS : -HYSTERESIS);
}

/** The process's sampler. */
export const hostLoad = new HostLoad();

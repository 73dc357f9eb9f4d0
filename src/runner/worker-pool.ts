/**
 * The vCPU worker threads: where their script is, how their pool is configured, pools
 * started ahead of a run, and warm pools kept between runs.
 *
 * A worker thread takes tens of milliseconds to boot Node and load its modules. A program that
 * knows early how many vCPUs it will run (the CLI, right after parsing its arguments) can call
 * {@link prestartVcpuWorkers}, so that the threads boot while it loads the rest of itself, the
 * guest image and the VM; the next runner with that many vCPUs then takes the booted pool.
 *
 * A fresh thread is also slow for its first few thousand exits: V8 compiles the hot exit path
 * on background threads, which take CPU from the vCPU and the main thread (on the 2-core
 * project machine, ~130 ms of background CPU and 20–40 µs per exit over the first ~3000
 * exits, against ~10.5 µs after). So a runner that ends cleanly hands its pool back
 * ({@link releaseVcpuPool}), and the next runner with as many vCPUs takes those warm threads.
 * Idle pools are destroyed after {@link WARM_IDLE_MS}; they never keep the process alive.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { packageRoot } from '../kvm/native.js';
import { RunnerError } from './errors.js';
import { WORKER_LOADED, type VcpuTask, type VcpuTaskResult } from './protocol.js';

/** A pool of vCPU worker threads: one thread per vCPU, one task (a vCPU's whole run) each. */
export type VcpuPool = Piscina<VcpuTask, VcpuTaskResult>;

let prestarted: { count: number; pool: VcpuPool } | undefined;

/** How long (ms) a pool handed back by a finished runner stays warm for the next one. */
export const WARM_IDLE_MS = 10_000;
/** At most this many idle threads are kept warm, in all pools together. */
const WARM_MAX_THREADS = 16;

interface WarmPool {
  readonly count: number;
  readonly pool: VcpuPool;
  readonly timer: NodeJS.Timeout;
}
/** Idle pools of finished runners, oldest first. */
const warm: WarmPool[] = [];

/** The compiled vCPU worker script; a RunnerError when it is not built. */
export function vcpuWorkerPath(): string {
  const path = join(packageRoot(), 'dist', 'workers', 'vcpu-worker.js');
  if (!existsSync(path)) throw new RunnerError(`the vCPU worker is not built (${path}): run \`npm run build\``);
  return path;
}

/** Per pool: settles once each of its threads has loaded its modules. */
const loadedThreads = new WeakMap<VcpuPool, Promise<void>>();

function newPool(count: number): VcpuPool {
  const pool = new Piscina<VcpuTask, VcpuTaskResult>({
    filename: vcpuWorkerPath(),
    minThreads: count,
    maxThreads: count,
    idleTimeout: 1000,
    concurrentTasksPerWorker: 1,
  });
  let waiting = count;
  loadedThreads.set(
    pool,
    new Promise<void>((resolve) => {
      const onMessage = (m: unknown): void => {
        if (m !== WORKER_LOADED || --waiting > 0) return;
        pool.off('message', onMessage);
        resolve();
      };
      pool.on('message', onMessage);
    }),
  );
  return pool;
}

/**
 * Destroy `pool` once its threads have loaded (terminating a thread mid-load aborts Node), or
 * after `graceMs` whatever they are doing; resolves when it is destroyed or `graceMs` passed.
 */
async function retire(pool: VcpuPool, graceMs = 2000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
  const gone = (async () => {
    await Promise.race([loadedThreads.get(pool), grace]);
    await pool.destroy();
  })();
  await Promise.race([gone.catch(() => undefined), grace]);
  clearTimeout(timer);
}

/**
 * Start `count` vCPU worker threads now, for the next `VcpuRunner` with `count` vCPUs
 * to take (optional: a runner without a started pool starts its own). Idle threads do not keep
 * the process alive; a second call replaces the first call's pool.
 *
 * @param count number of vCPUs of the run to come, 1-255.
 */
export function prestartVcpuWorkers(count: number): void {
  if (typeof count !== 'number') throw new TypeError(`count must be a number, got ${typeof count}`);
  if (!Number.isInteger(count) || count < 1 || count > 255) throw new RangeError(`count must be an integer in [1, 255], got ${count}`);
  const old = prestarted;
  prestarted = { count, pool: newPool(count) };
  if (old) void retire(old.pool);
}

/**
 * The pool for a run with `count` vCPUs: the started one if it has that many threads,
 * otherwise a new one (a started pool of another size is destroyed).
 */
export function takeVcpuPool(count: number): VcpuPool {
  const p = prestarted;
  prestarted = undefined;
  if (p?.count === count) return p.pool;
  if (p) void retire(p.pool);
  for (let i = warm.length - 1; i >= 0; i--) {
    if (warm[i].count !== count) continue;
    const [w] = warm.splice(i, 1);
    clearTimeout(w.timer);
    return w.pool;
  }
  return newPool(count);
}

/**
 * A runner is done with `pool` (`count` threads, every task settled). If `reusable` — no
 * thread was terminated, failed or pinned to a CPU — it is kept warm for the next runner with
 * as many vCPUs, for {@link WARM_IDLE_MS}; otherwise, or when {@link WARM_MAX_THREADS} would
 * be exceeded (the oldest go first), pools are destroyed. Resolves once destroyed pools are.
 */
export async function releaseVcpuPool(pool: VcpuPool, count: number, reusable: boolean): Promise<void> {
  if (!reusable || count > WARM_MAX_THREADS) return retire(pool);
  const gone: Promise<void>[] = [];
  let threads = count;
  for (const w of warm) threads += w.count;
  while (threads > WARM_MAX_THREADS) {
    const w = warm.shift()!;
    clearTimeout(w.timer);
    threads -= w.count;
    gone.push(retire(w.pool));
  }
  const timer = setTimeout(() => {
    const i = warm.findIndex((w) => w.pool === pool);
    if (i >= 0) void retire(warm.splice(i, 1)[0].pool);
  }, WARM_IDLE_MS);
  timer.unref();
  warm.push({ count, pool, timer });
  await Promise.all(gone);
}

/**
 * Destroy every pool this module holds (the prestarted one and the warm ones) and resolve
 * once their threads have ended, or after `graceMs` at most. Call it before `process.exit()`
 * in a program that prestarted workers: exiting while a worker thread is still loading its
 * modules aborts Node 20 (a V8 fatal error, SIGABRT), which a program that prestarts and then
 * fails early (say, /dev/kvm cannot be opened) would otherwise do now and then.
 *
 * @param graceMs the longest wait, per pool, for its threads to load and end.
 */
export async function closeVcpuWorkers(graceMs = 2000): Promise<void> {
  const pools: VcpuPool[] = [];
  if (prestarted) pools.push(prestarted.pool);
  prestarted = undefined;
  for (const w of warm.splice(0)) {
    clearTimeout(w.timer);
    pools.push(w.pool);
  }
  await Promise.all(pools.map((p) => retire(p, graceMs)));
}

/**
 * The vCPU worker threads: where their script is, how their pool is configured, and pools
 * started ahead of a run.
 *
 * A worker thread takes tens of milliseconds to boot Node and load its modules. A program that
 * knows early how many vCPUs it will run (the CLI, right after parsing its arguments) can call
 * {@link prestartVcpuWorkers}, so that the threads boot while it loads the rest of itself, the
 * guest image and the VM; the next runner with that many vCPUs then takes the booted pool.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Piscina } from 'piscina';
import { packageRoot } from '../kvm/native.js';
import { RunnerError } from './errors.js';
import type { VcpuTask, VcpuTaskResult } from './protocol.js';

/** A pool of vCPU worker threads: one thread per vCPU, one task (a vCPU's whole run) each. */
export type VcpuPool = Piscina<VcpuTask, VcpuTaskResult>;

let prestarted: { count: number; pool: VcpuPool } | undefined;

/** The compiled vCPU worker script; a RunnerError when it is not built. */
export function vcpuWorkerPath(): string {
  const path = join(packageRoot(), 'dist', 'workers', 'vcpu-worker.js');
  if (!existsSync(path)) throw new RunnerError(`the vCPU worker is not built (${path}): run \`npm run build\``);
  return path;
}

function newPool(count: number): VcpuPool {
  return new Piscina<VcpuTask, VcpuTaskResult>({
    filename: vcpuWorkerPath(),
    minThreads: count,
    maxThreads: count,
    idleTimeout: 1000,
    concurrentTasksPerWorker: 1,
  });
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
  if (old) void old.pool.destroy();
}

/**
 * The pool for a run with `count` vCPUs: the started one if it has that many threads,
 * otherwise a new one (a started pool of another size is destroyed).
 */
export function takeVcpuPool(count: number): VcpuPool {
  const p = prestarted;
  prestarted = undefined;
  if (p?.count === count) return p.pool;
  if (p) void p.pool.destroy();
  return newPool(count);
}

/**
 * The vCPU worker's entry: the piscina task that adopts one vCPU, loads the worker-side
 * devices and runs the loop (workers/vcpu-loop.ts). A failure comes back as a
 * {@link WorkerFailure} so the main thread can rethrow it with its class and errno intact.
 */
import { pathToFileURL } from 'node:url';
import { parentPort } from 'node:worker_threads';
import { native } from '../src/kvm/native.js';
import { Bus, MmioBus, PioBus } from '../src/bus/bus.js';
import type { Device } from '../src/devices/device.js';
import { toWorkerFailure } from '../src/runner/errors.js';
import { WORKER_LOADED, type VcpuTask, type VcpuTaskResult } from '../src/runner/protocol.js';
import { VcpuLoop, type WorkerBuses } from './vcpu-loop.js';

/** Marks a posted MMIO range on the worker's marker bus (never called: the device lives on the main thread). */
const POSTED_MARKER: Device = { read: () => 0, write: () => {} };

async function loadDevices(task: VcpuTask, space: 'pio' | 'mmio', bus: Bus): Promise<void> {
  for (const d of task.workerDevices.filter((x) => x.space === space)) {
    const url = d.module.startsWith('file:') ? d.module : pathToFileURL(d.module).href;
    const mod = (await import(url)) as Record<string, new (o: unknown) => Device>;
    const Cls = mod[d.export];
    if (typeof Cls !== 'function') throw new TypeError(`worker device: ${d.module} has no export '${d.export}'`);
    bus.register(d.base, d.length, new Cls(d.options), d.export);
  }
}

async function workerBuses(task: VcpuTask): Promise<WorkerBuses> {
  const pio = new PioBus();
  const mmio = new MmioBus();
  await loadDevices(task, 'pio', pio);
  await loadDevices(task, 'mmio', mmio);
  const postedMmio = new MmioBus();
  for (const r of task.postedMmio) postedMmio.register(r.base, r.length, POSTED_MARKER, 'posted');
  return { pio, mmio, postedPorts: new Uint8Array(task.postedPorts), postedMmio };
}

/**
 * The piscina task: run vCPU `task.vcpu` until told to stop. A thread may run several such
 * tasks in turn (src/runner/worker-pool.ts keeps pools warm between runners): everything of
 * a run lives in its task's objects, and a thread pinned to a CPU is not reused.
 */
export default async function runVcpu(task: VcpuTask): Promise<VcpuTaskResult> {
  const n = native();
  let vcpu;
  try {
    vcpu = new n.VcpuFd(task.fd);
    if (task.pin >= 0) n.setThreadAffinity(task.pin);
    const loop = new VcpuLoop(task, vcpu, await workerBuses(task));
    return { vcpu: task.vcpu, reason: loop.run(), reusable: task.pin < 0 };
  } catch (e) {
    return { vcpu: task.vcpu, reason: 'failed', failure: toWorkerFailure(e), reusable: false };
  } finally {
    vcpu?.close();
  }
}

// the pool destroys this thread only after this: terminating it mid-load aborts Node
parentPort?.postMessage(WORKER_LOADED);

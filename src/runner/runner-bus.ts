/**
 * `RunnerBus`: a port-I/O or MMIO bus as the runner's users see it. Main-thread devices are
 * registered on the underlying {@link Bus}; posted ranges and worker-side devices are also
 * recorded here, for the vCPU workers.
 */
import { MmioBus, PioBus, type BusRange } from '../bus/bus.js';
import type { Device } from '../devices/device.js';
import { RunnerError } from './errors.js';
import type { WorkerDeviceRange, WorkerDeviceSpec } from './protocol.js';
import type { RegisterOptions } from './types.js';

/** What a RunnerBus asks of its runner. */
export interface RunnerBusOwner {
  /** True once start() was called. */
  readonly started: boolean;
}

/** A bus bound to the runner: `register(base, len, device | { worker })`. */
export class RunnerBus {
  readonly #bus: PioBus | MmioBus;
  readonly #runner: RunnerBusOwner;
  readonly #space: 'pio' | 'mmio';
  /** @internal */
  readonly posted: { base: number; length: number }[] = [];
  /** @internal */
  readonly workerDevices: WorkerDeviceRange[] = [];

  /** @internal */
  constructor(runner: RunnerBusOwner, space: 'pio' | 'mmio') {
    this.#runner = runner;
    this.#space = space;
    this.#bus = space === 'pio' ? new PioBus() : new MmioBus();
  }

  /** The underlying bus (lookups, counters). */
  get bus(): PioBus | MmioBus {
    return this.#bus;
  }

  /**
   * Register a main-thread `device` over `[base, base + length)`, or a worker device
   * (`{ worker: { module, export, options } }`) that each vCPU worker loads and runs without
   * a hop to the main thread. Overlapping, zero-length and wrapping ranges throw RangeError.
   */
  register(base: number, length: number, device: Device | { worker: WorkerDeviceSpec }, opts: RegisterOptions = {}): BusRange {
    if (typeof device !== 'object' || device === null) throw new TypeError(`device must be a Device or { worker: { module, export } }, got ${device === null ? 'null' : typeof device}`);
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    if (opts.name !== undefined && typeof opts.name !== 'string') throw new TypeError('opts.name must be a string');
    if (opts.posted !== undefined && typeof opts.posted !== 'boolean') throw new TypeError('opts.posted must be a boolean');
    if ('worker' in device && device.worker !== undefined) return this.#registerWorker(base, length, device.worker, opts);
    if (opts.posted && this.#runner.started) throw new RunnerError('posted devices must be registered before start()');
    const r = this.#bus.register(base, length, device as Device, opts.name);
    if (opts.posted) this.posted.push({ base, length });
    return r;
  }

  #registerWorker(base: number, length: number, spec: WorkerDeviceSpec, opts: RegisterOptions): BusRange {
    if (this.#runner.started) throw new RunnerError('worker devices must be registered before start()');
    if (typeof spec !== 'object' || spec === null) throw new TypeError('device.worker must be { module, export, options? }');
    if (typeof spec.module !== 'string' || typeof spec.export !== 'string') throw new TypeError('device.worker.module and device.worker.export must be strings');
    if (opts.posted) throw new RangeError('opts.posted: a worker device answers in the worker, it cannot also be posted');
    const r = this.#bus.register(base, length, WORKER_STUB, opts.name ?? `${spec.export} (worker)`);
    this.workerDevices.push({ space: this.#space, base, length, ...spec });
    return r;
  }
}

/** Stands in on the main thread's bus for a device that lives in the workers. */
const WORKER_STUB: Device = {
  read: () => {
    throw new RunnerError('worker device reached on the main thread');
  },
  write: () => {
    throw new RunnerError('worker device reached on the main thread');
  },
};

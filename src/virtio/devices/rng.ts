/**
 * virtio-rng, the entropy device (virtio 1.2 §5.4): one queue whose device-writable
 * buffers the device fills with bytes from crypto.randomFillSync.
 *
 * Each chain gets min(writable bytes, {@link VirtioRng.maxBytesPerRequest}) bytes (the used
 * length says how many); a chain without writable bytes is returned with length 0 and
 * counted; readable buffers are ignored. No features, no configuration space.
 *
 * Snapshots: the state is only the queue's (the transport's) and the failed flag.
 */
import { randomFillSync } from 'node:crypto';
import type { DescriptorChain } from '../chain.js';
import { VIRTIO_DEVICE_TYPE, type VirtioContext, type VirtioDevice } from '../device.js';
import type { SplitQueue } from '../queue.js';
import { checkConfigAccess, type ConfigAccessSize } from './config-space.js';
import { DeviceCore, checkContext, checkQueueIndex, type ChainHandler } from './core.js';
import { checkOptions, intOption, queueSizeOption } from './options.js';
import { checkDeviceState, checkNothingInFlight, type DeviceStateBase } from './state.js';

/** The state of a {@link VirtioRng}: nothing but the activation's failed flag (its queue is the transport's). */
export type VirtioRngState = DeviceStateBase;

/** Options of {@link VirtioRng}. */
export interface VirtioRngOptions {
  /** The queue's maximum size: a power of two in [1, 32768] (default 64). */
  readonly queueSize?: number;
  /** The most bytes given per chain, in [1, 1 MiB] (default 64 KiB). */
  readonly maxBytesPerRequest?: number;
}

/** Counters of a {@link VirtioRng} (cumulative across resets). */
export interface RngStats {
  /** Chains served. */
  requests: number;
  /** Random bytes handed out. */
  bytes: number;
  /** Chains without writable bytes (returned with length 0). */
  empty: number;
}

/** Chains served per turn before the rest is deferred to setImmediate. */
const TURN_BUDGET = 64;

/** The virtio entropy device. */
export class VirtioRng implements VirtioDevice {
  /** {@link VIRTIO_DEVICE_TYPE}.ENTROPY. */
  readonly deviceType: number = VIRTIO_DEVICE_TYPE.ENTROPY;
  /** No device-specific features. */
  readonly features: bigint = 0n;
  /** One request queue. */
  readonly queueSizes: readonly number[];
  /** No configuration space. */
  readonly configSize: number = 0;
  /** The most bytes given per chain. */
  readonly maxBytesPerRequest: number;
  /** Counters. */
  readonly stats: RngStats = { requests: 0, bytes: 0, empty: 0 };
  readonly #core = new DeviceCore(1);
  readonly #scratch: Uint8Array;
  readonly #handle: ChainHandler = (chain, q) => this.#fill(chain, q);

  /** An entropy device; TypeError / RangeError naming a bad option. */
  constructor(options?: VirtioRngOptions) {
    const o = checkOptions<VirtioRngOptions>(options, true);
    this.queueSizes = [queueSizeOption(o.queueSize, 1, 64)];
    this.maxBytesPerRequest = intOption('maxBytesPerRequest', o.maxBytesPerRequest, 1, 1024 * 1024, 64 * 1024);
    this.#scratch = new Uint8Array(this.maxBytesPerRequest);
  }

  /** There is no configuration space: every access is a RangeError. */
  readConfig(offset: number, size: ConfigAccessSize): number {
    checkConfigAccess(0, offset, size);
    return 0;
  }

  /** There is no configuration space: every access is a RangeError. */
  writeConfig(offset: number, size: ConfigAccessSize, _value: number): void {
    checkConfigAccess(0, offset, size);
  }

  /** Start serving queue 0 (and fill what the driver already posted). */
  activate(ctx: VirtioContext): void {
    this.#core.activate(ctx);
    this.#pump();
  }

  /** The driver posted buffers on queue 0. */
  notify(index: number): void {
    checkQueueIndex(index, 1);
    this.#pump();
  }

  /** Stop serving. */
  reset(): void {
    this.#core.reset();
  }

  /** Stop filling buffers (nothing is ever in flight). */
  quiesce(): Promise<void> {
    this.#core.pause();
    return Promise.resolve();
  }

  /** Fill buffers again, starting with those posted meanwhile. */
  resume(): void {
    this.#core.resume();
    this.#pump();
  }

  /** The device's state (see {@link VirtioRngState}). */
  snapshot(): VirtioRngState {
    return { failed: this.#core.failedActivation };
  }

  /** Check `state` and return the function that takes up the restored activation `ctx` (see VirtioDevice.prepareRestore). */
  prepareRestore(state: VirtioRngState, ctx: VirtioContext | undefined): () => void {
    const s = checkDeviceState(state);
    if (ctx) checkContext(ctx, 1);
    checkNothingInFlight(ctx);
    return () => this.#core.restore(ctx, s.failed);
  }

  #pump(): void {
    this.#core.serve(0, TURN_BUDGET, this.#handle);
  }

  #fill(chain: DescriptorChain, q: SplitQueue): boolean {
    this.stats.requests++;
    const n = Math.min(chain.writableBytes, this.maxBytesPerRequest);
    if (n === 0) {
      this.stats.empty++;
      return q.pushUsed(chain, 0);
    }
    const bytes = this.#scratch.subarray(0, n);
    randomFillSync(bytes);
    const written = chain.writeBytes(bytes);
    this.stats.bytes += written;
    return q.pushUsed(chain, written);
  }
}

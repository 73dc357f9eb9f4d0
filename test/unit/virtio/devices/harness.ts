/**
 * Test plumbing for the device models: a VirtioContext that records what the device asks of
 * the transport, and activation over GuestDriver queues (one GuestDriver, with its own
 * memory, per queue: chains carry their memory, so the device never needs ctx.memory).
 */
import type { QueueMemory, SplitQueue, VirtioContext, VirtioDevice } from '../../../../src/virtio/index.js';
import { GuestDriver, type DriverOptions } from '../driver.js';

/** A VirtioContext recording interrupts, configuration changes and needsReset reports. */
export class FakeContext implements VirtioContext {
  readonly interrupts: number[] = [];
  configChanges = 0;
  readonly resets: string[] = [];
  constructor(readonly features: bigint, readonly queues: (SplitQueue | undefined)[], readonly memory: QueueMemory) {}
  interrupt(index: number): void {
    this.interrupts.push(index);
  }
  configChanged(): void {
    this.configChanges++;
  }
  needsReset(reason: string): void {
    this.resets.push(reason);
  }
}

/** Enable each driver's queue (a missing one stays disabled) and activate `device` with `features`. */
export function activate(device: VirtioDevice, drivers: (GuestDriver | undefined)[], features = device.features): FakeContext {
  const queues = drivers.map((d) => d?.enable());
  const ctx = new FakeContext(features, queues, drivers.find((d) => d)!.mem);
  device.activate(ctx);
  return ctx;
}

/** One GuestDriver per queue of `device`, sized as the device offers unless `opts.size` says otherwise. */
export function driversFor(device: VirtioDevice, opts: Partial<DriverOptions> = {}): GuestDriver[] {
  return device.queueSizes.map((size) => new GuestDriver({ ramBytes: 0x40000, ...opts, size: opts.size ?? size }));
}

/** Let setImmediate callbacks (deferred serving) and pending I/O callbacks run. */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Encode a string as bytes. */
export const text = (s: string): Uint8Array => new TextEncoder().encode(s);
/** Decode bytes as a string. */
export const str = (b: Uint8Array): string => new TextDecoder().decode(b);

/** A deterministic PRNG (mulberry32) for hostile-input tests. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

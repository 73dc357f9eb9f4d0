/**
 * Helpers for the snapshot/restore tests: move a test driver onto a copy of its guest
 * memory (what a restorer provides: the saved memory, already holding the rings) and
 * scribble over the original, so a restored device that still looked at the old memory
 * would fail.
 */
import type { GuestMemory } from '../../../src/memory/guest-memory.js';
import { SplitQueue, type SplitQueueState, type VirtioDevice } from '../../../src/virtio/index.js';
import { FakeContext } from './devices/harness.js';
import { TestRam, type GuestDriver } from './driver.js';

/** A copy of `ram` (same base, same bytes, new buffer); the original is overwritten with 0xee. */
export function copyRam(ram: TestRam): TestRam {
  const copy = new TestRam(ram.length, ram.base, ram.guard);
  copy.ram.set(ram.ram);
  ram.ram.fill(0xee);
  return copy;
}

/** Something driving guest memory: a GuestDriver, or a Vring (its `mem`). */
interface MemoryUser {
  mem: GuestMemory;
  ram?: TestRam;
}

/**
 * Point each of `users` (drivers or vrings sharing `ram`) at a copy of it (see
 * {@link copyRam}); returns the copy. Their ring and buffer addresses stay valid.
 */
export function moveToCopy(ram: TestRam, ...users: object[]): TestRam {
  const copy = copyRam(ram);
  for (const u of users as MemoryUser[]) {
    u.mem = copy.mem;
    if (u.ram) u.ram = copy;
  }
  return copy;
}

/** A JSON round trip, as a snapshot file would do. */
export function viaJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

/** What a device-level snapshot holds in these tests: each queue's state and the device's. */
export interface DeviceSnapshot {
  queues: (SplitQueueState | undefined)[];
  device: unknown;
}

/** Quiesce `device`, then take its queues' and its own state (through JSON). */
export async function snapshotDevice(device: VirtioDevice, drivers: (GuestDriver | undefined)[]): Promise<DeviceSnapshot> {
  await device.quiesce?.();
  return viaJson({ queues: drivers.map((d) => d?.queue.snapshot()), device: device.snapshot!() });
}

/**
 * Restore `snap` into the fresh device `fresh`, as a transport would: each driver moves to
 * a copy of its memory (the old one is scribbled over), gets a new SplitQueue restored
 * there, and `fresh` takes up the activation (when `features` is given) and is resumed.
 */
export function restoreDevice(
  fresh: VirtioDevice, drivers: (GuestDriver | undefined)[], snap: DeviceSnapshot, features: bigint | undefined, overrides?: unknown,
): FakeContext | undefined {
  const queues = drivers.map((d, i) => {
    if (!d) return undefined;
    moveToCopy(d.ram, d);
    const q = new SplitQueue(d.mem, { maxSize: d.queue.maxSize });
    q.restore(snap.queues[i]!);
    Object.assign(d, { queue: q });
    return q.enabled ? q : undefined;
  });
  const ctx = features === undefined ? undefined : new FakeContext(features, queues, drivers.find((d) => d)!.mem);
  fresh.prepareRestore!(snap.device, ctx, overrides)();
  fresh.resume?.();
  return ctx;
}

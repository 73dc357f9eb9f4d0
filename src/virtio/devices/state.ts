/**
 * What the device models' snapshot states share: the activation's failed flag, and the
 * checks that tie a device's held chains to its restored queues (a chain in flight in a
 * queue must be one the device holds, or the guest would wait for it forever).
 */
import { stateArray, stateBool, stateObject } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';
import type { VirtioContext } from '../device.js';
import type { SplitQueue } from '../queue.js';

/** What every device model's state holds. */
export interface DeviceStateBase {
  /** The activation reported needsReset and stopped serving (until the driver resets it). */
  failed: boolean;
}

/** `state` as an object with a boolean `failed`. */
export function checkDeviceState(state: unknown): Record<string, unknown> & DeviceStateBase {
  const s = stateObject(state, 'state');
  stateBool(s.failed, 'state.failed');
  return s as Record<string, unknown> & DeviceStateBase;
}

/**
 * `heads` (a state field `name`): the chains of queue `index` the device held, in its
 * order. They must be exactly the queue's restored in-flight chains (none without `ctx`).
 */
export function checkHeldChains(heads: unknown, name: string, ctx: VirtioContext | undefined, index: number): number[] {
  const q: SplitQueue | undefined = ctx?.queues[index];
  const inFlight = q?.unreclaimed ?? [];
  const list = stateArray(heads, name, inFlight.length).map((h, i) => checkInt(h, `${name}[${i}]`, 0, 0xffff));
  const sorted = [...list].sort((a, b) => a - b);
  if (sorted.length !== inFlight.length || sorted.some((h, i) => h !== inFlight[i])) {
    throw new RangeError(`${name} (${list.join(', ')}) must be the queue's in-flight chains (${inFlight.join(', ')})`);
  }
  return list;
}

/** A restore's `overrides` argument: an object, or undefined for none. */
export function checkOverrides<T extends object>(overrides: unknown): Partial<T> {
  return overrides === undefined ? {} : (stateObject(overrides, 'overrides') as Partial<T>);
}

/** Every queue of `ctx` except those in `held` must have nothing in flight: the device holds no chains there. */
export function checkNothingInFlight(ctx: VirtioContext | undefined, held: readonly number[] = []): void {
  ctx?.queues.forEach((q, i) => {
    if (q && !held.includes(i) && q.unreclaimed.length > 0) {
      throw new RangeError(`queue ${i} has chains in flight (${q.unreclaimed.join(', ')}) that the device does not hold: a state taken without quiesce()?`);
    }
  });
}

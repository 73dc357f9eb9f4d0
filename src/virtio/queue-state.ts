/**
 * The snapshot state of a {@link SplitQueue} and its checks. The rings themselves are in
 * guest memory, which the snapshot holds separately: the state is the registers and the
 * device's positions in the rings, enough for a queue over a copy of that memory to go on
 * exactly where the saved one stopped.
 */
import { stateArray, stateBool, stateHex, stateObject, stateOneOf, stateString } from '../pci/state-check.js';
import { checkInt, hex } from '../pci/util.js';
import { MAX_QUEUE_SIZE, RING_ALIGN, ringBytes } from './constants.js';
import { QUEUE_ERROR_KINDS, QueueError, type QueueErrorKind } from './errors.js';
import { guestWritable, inMemory, type QueueMemory } from './memory.js';

/** The state of one {@link SplitQueue} (see the module comment). */
export interface SplitQueueState {
  /** queue_size as last written (a u16; a power of two ≤ the maximum when enabled). */
  size: number;
  /** queue_desc, a hex string. */
  descAddr: string;
  /** queue_driver (the available ring), a hex string. */
  availAddr: string;
  /** queue_device (the used ring), a hex string. */
  usedAddr: string;
  /** queue_enable. */
  enabled: boolean;
  /** VIRTIO_F_EVENT_IDX was negotiated for the queue. */
  eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated for the queue. */
  indirectDesc: boolean;
  /** The device's next available-ring index (u16). */
  nextAvail: number;
  /** The last avail.idx the device read (u16, at most `size` ahead of nextAvail). */
  availSeen: number;
  /** The device's next used-ring index: the used.idx it last wrote (u16). */
  nextUsed: number;
  /** used.idx when the device last asked whether to interrupt (u16). */
  signalled: number;
  /** Used elements written since then. */
  pushedSinceSignal: number;
  /** Notifications are enabled (the device is not polling). */
  notificationsEnabled: boolean;
  /** Head indices of the chains popped and not yet returned, ascending. */
  inFlight: number[];
  /** The error that stopped the queue, or null. */
  error: { kind: QueueErrorKind; message: string } | null;
}

/**
 * A checked {@link SplitQueueState}: the same fields (see there), with numbers for the
 * addresses (`desc`, `avail`, `used`), `notify` for notificationsEnabled and a QueueError.
 */
export interface CheckedQueueState {
  /** queue_size. */
  readonly size: number;
  /** Descriptor table address. */
  readonly desc: number;
  /** Available ring address. */
  readonly avail: number;
  /** Used ring address. */
  readonly used: number;
  /** queue_enable. */
  readonly enabled: boolean;
  /** EVENT_IDX negotiated. */
  readonly eventIdx: boolean;
  /** INDIRECT_DESC negotiated. */
  readonly indirectDesc: boolean;
  /** Next available index. */
  readonly nextAvail: number;
  /** Last avail.idx read. */
  readonly availSeen: number;
  /** Next used index. */
  readonly nextUsed: number;
  /** used.idx at the last needsNotification(). */
  readonly signalled: number;
  /** Used elements since. */
  readonly pushedSinceSignal: number;
  /** Notifications enabled. */
  readonly notify: boolean;
  /** In-flight heads, ascending. */
  readonly inFlight: readonly number[];
  /** The stopping error, if any. */
  readonly error: QueueError | undefined;
}

const U64_MAX = 2n ** 64n - 1n;
const MESSAGE_MAX = 1000;

/** A 64-bit address field as the number the queue keeps (inexact past 2^53, like the registers it models). */
function address(v: unknown, name: string): number {
  return Number(stateHex(v, name, U64_MAX));
}

/**
 * Check `state` for a queue of at most `maxSize` entries over `mem`: types and ranges, and
 * for an enabled, running queue a valid size, aligned rings that lie in guest memory (the
 * used ring writable), positions within the size, and in-flight heads below it.
 * TypeError/RangeError naming the field.
 */
export function checkQueueState(state: unknown, maxSize: number, mem: QueueMemory): CheckedQueueState {
  const s = stateObject(state, 'state');
  const u16 = (k: string) => checkInt(s[k], `state.${k}`, 0, 0xffff);
  const c: CheckedQueueState = {
    size: u16('size'),
    desc: address(s.descAddr, 'state.descAddr'),
    avail: address(s.availAddr, 'state.availAddr'),
    used: address(s.usedAddr, 'state.usedAddr'),
    enabled: stateBool(s.enabled, 'state.enabled'),
    eventIdx: stateBool(s.eventIdx, 'state.eventIdx'),
    indirectDesc: stateBool(s.indirectDesc, 'state.indirectDesc'),
    nextAvail: u16('nextAvail'),
    availSeen: u16('availSeen'),
    nextUsed: u16('nextUsed'),
    signalled: u16('signalled'),
    pushedSinceSignal: checkInt(s.pushedSinceSignal, 'state.pushedSinceSignal', 0, Number.MAX_SAFE_INTEGER),
    notify: stateBool(s.notificationsEnabled, 'state.notificationsEnabled'),
    inFlight: checkHeads(s.inFlight),
    error: checkError(s.error),
  };
  if (c.enabled && !c.error) checkRunning(c, maxSize, mem);
  else if (c.inFlight.length > 0) throw new RangeError('state.inFlight must be empty for a queue that is not running');
  return c;
}

function checkHeads(v: unknown): number[] {
  const heads = stateArray(v, 'state.inFlight', MAX_QUEUE_SIZE).map((h, i) => checkInt(h, `state.inFlight[${i}]`, 0, MAX_QUEUE_SIZE - 1));
  heads.forEach((h, i) => {
    if (i > 0 && h <= heads[i - 1]) throw new RangeError(`state.inFlight must be ascending without repeats (at ${i})`);
  });
  return heads;
}

function checkError(v: unknown): QueueError | undefined {
  if (v === null) return undefined;
  const e = stateObject(v, 'state.error');
  const kind = stateOneOf(e.kind, 'state.error.kind', QUEUE_ERROR_KINDS);
  return new QueueError(kind, stateString(e.message, 'state.error.message', MESSAGE_MAX));
}

function checkRunning(c: CheckedQueueState, maxSize: number, mem: QueueMemory): void {
  const size = c.size;
  if ((size & (size - 1)) !== 0 || size < 1 || size > maxSize) {
    throw new RangeError(`state.size must be a power of two in [1, ${maxSize}] for an enabled queue, got ${size}`);
  }
  const bytes = ringBytes(size);
  const rings = [['descAddr', c.desc, bytes.desc, RING_ALIGN.desc], ['availAddr', c.avail, bytes.avail, RING_ALIGN.avail], ['usedAddr', c.used, bytes.used, RING_ALIGN.used]] as const;
  for (const [name, gpa, len, align] of rings) {
    if (gpa % align !== 0) throw new RangeError(`state.${name} ${hex(gpa)} is not ${align}-byte aligned`);
    if (!inMemory(mem, gpa, len)) throw new RangeError(`state.${name}: ${hex(gpa)}+${hex(len)} is not in guest memory`);
  }
  if (!guestWritable(mem, c.used, bytes.used)) throw new RangeError(`state.usedAddr: ${hex(c.used)} is in read-only memory`);
  if (((c.availSeen - c.nextAvail) & 0xffff) > size) throw new RangeError(`state.availSeen ${c.availSeen} is more than ${size} ahead of state.nextAvail ${c.nextAvail}`);
  if (c.inFlight.length > 0 && c.inFlight[c.inFlight.length - 1] >= size) throw new RangeError(`state.inFlight heads must be below the queue size ${size}`);
}

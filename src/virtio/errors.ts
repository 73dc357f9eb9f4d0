/**
 * How a virtqueue reports guest misbehaviour. There are exactly two outcomes:
 *
 * - A **dropped request**: one chain is malformed (see {@link DropReason}). The queue
 *   consumes its available-ring entry, counts it in {@link QueueErrors}, and — when the
 *   head index is usable — returns the head to the used ring with length 0 so that the
 *   driver gets its descriptors back. The queue keeps working.
 * - A {@link QueueError}: the rings themselves cannot be trusted (see
 *   {@link QueueErrorKind}). The queue stops (it returns no more chains and ignores
 *   completions) until it is reset; the device should set DEVICE_NEEDS_RESET.
 *
 * | guest behaviour                                             | outcome                       |
 * |-------------------------------------------------------------|-------------------------------|
 * | descriptor loop / chain longer than the queue size          | drop `chainLength`, returned  |
 * | loop or chain longer than the indirect table                | drop `chainLength`, returned  |
 * | `next` ≥ queue size (or ≥ indirect table entries)           | drop `descIndex`, returned    |
 * | buffer outside guest memory, or address ≥ 2^53              | drop `address`, returned      |
 * | device-writable buffer in a ROM                             | drop `readOnly`, returned     |
 * | total length over the cap (sums never wrap: JS numbers)     | drop `byteCap`, returned      |
 * | readable descriptor after a writable one                    | drop `order`, returned        |
 * | bad indirect descriptor (feature, NEXT, nesting, length, RAM) | drop `indirect`, returned   |
 * | available-ring head ≥ queue size                            | drop `headIndex`, not returned |
 * | available-ring head the device still holds                  | drop `headInFlight`, not returned |
 * | avail.idx more than the queue size ahead (or moved back)    | QueueError `avail-idx`        |
 * | size not a power of two ≤ maxSize, misaligned ring          | QueueError `bad-config`       |
 * | ring outside guest memory, used ring in a ROM               | QueueError `ring-unmapped`    |
 * | ring size/address register changed while enabled           | QueueError `ring-moved`       |
 * | memory removed or detached under a validated ring or buffer | QueueError `memory` (or `ring-unmapped` from remap) |
 *
 * Rings overlapping each other or the buffers are allowed: every access stays inside
 * guest memory, and a chain's descriptors are read once, when it is popped.
 */

/** Why a queue stopped; see {@link QueueError}. */
export type QueueErrorKind =
  /** enable() with a size that is not a power of two in [1, maxSize], or a misaligned ring address. */
  | 'bad-config'
  /**
   * A ring area is not (or no longer, after a memory-map change) backed by guest memory,
   * or the used ring lies in read-only memory.
   */
  | 'ring-unmapped'
  /** The transport tried to change a ring's size or address while the queue was enabled. */
  | 'ring-moved'
  /** The available index ran more than the queue size ahead of the device's position. */
  | 'avail-idx'
  /** Guest memory vanished under a ring or a buffer the queue had already validated. */
  | 'memory';

/** Every {@link QueueErrorKind}. */
export const QUEUE_ERROR_KINDS: readonly QueueErrorKind[] = ['bad-config', 'ring-unmapped', 'ring-moved', 'avail-idx', 'memory'];

/**
 * The rings of a queue cannot be trusted; the device should report DEVICE_NEEDS_RESET.
 * Once thrown, the queue stays stopped until {@link SplitQueue.reset}.
 */
export class QueueError extends Error {
  /** What went wrong. */
  readonly kind: QueueErrorKind;
  /** An error of `kind`, described by `message`; `cause` is the underlying host error, if any. */
  constructor(kind: QueueErrorKind, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'QueueError';
    this.kind = kind;
  }
}

/** Why a single request was dropped; each reason is a counter in {@link QueueErrors}. */
export type DropReason =
  /** An available-ring entry named a head ≥ the queue size (consumed, not returned). */
  | 'headIndex'
  /** An available-ring entry named a head the device still holds (consumed, not returned). */
  | 'headInFlight'
  /** A `next` field ≥ the queue size, or ≥ the entry count of an indirect table. */
  | 'descIndex'
  /** More descriptors than the queue size (or the indirect table) holds: a loop. */
  | 'chainLength'
  /** A buffer not entirely inside guest memory (or at an address ≥ 2^53). */
  | 'address'
  /** A device-writable buffer in read-only memory (a ROM). */
  | 'readOnly'
  /** The chain's total length (readable plus writable) exceeds the queue's byte cap. */
  | 'byteCap'
  /** A device-readable descriptor after a device-writable one. */
  | 'order'
  /**
   * A bad indirect descriptor: INDIRECT without the negotiated feature, together with
   * NEXT, inside an indirect table, or a table that is empty, not a multiple of 16 bytes,
   * larger than the queue's indirect limit, or not in guest memory.
   */
  | 'indirect';

/** Every {@link DropReason}, in a fixed order. */
export const DROP_REASONS: readonly DropReason[] = [
  'headIndex', 'headInFlight', 'descIndex', 'chainLength', 'address', 'readOnly', 'byteCap', 'order', 'indirect',
];

/** Counters of dropped requests: the total and one per {@link DropReason}. */
export type QueueErrors = { dropped: number } & Record<DropReason, number>;

/** A fresh {@link QueueErrors}, all zero. */
export function newQueueErrors(): QueueErrors {
  const e = { dropped: 0 } as QueueErrors;
  for (const r of DROP_REASONS) e[r] = 0;
  return e;
}

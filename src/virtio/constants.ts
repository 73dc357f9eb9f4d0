/**
 * Split-virtqueue layout and flag values from the virtio 1.x specification (§2.7).
 *
 * All ring fields are little-endian. For a queue of `size` entries:
 *
 * | area             | align | bytes          | fields                                              |
 * |------------------|-------|----------------|-----------------------------------------------------|
 * | descriptor table | 16    | 16 * size      | { addr u64, len u32, flags u16, next u16 }[size]    |
 * | available ring   | 2     | 6 + 2 * size   | flags u16, idx u16, ring u16[size], used_event u16  |
 * | used ring        | 4     | 6 + 8 * size   | flags u16, idx u16, { id u32, len u32 }[size], avail_event u16 |
 */

/** The largest split-queue size the specification allows (queue sizes are powers of two). */
export const MAX_QUEUE_SIZE = 32768;

/** Bytes per descriptor in a descriptor table (direct or indirect). */
export const DESC_SIZE = 16;

/** Descriptor flag: the `next` field continues the chain. */
export const VIRTQ_DESC_F_NEXT = 1;
/** Descriptor flag: the buffer is device-writable (otherwise device-readable). */
export const VIRTQ_DESC_F_WRITE = 2;
/** Descriptor flag: the buffer holds an indirect descriptor table. */
export const VIRTQ_DESC_F_INDIRECT = 4;

/** Available-ring flag: the driver asks not to be interrupted (ignored with EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Used-ring flag: the device asks not to be notified (ignored with EVENT_IDX). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Feature bit number of VIRTIO_F_INDIRECT_DESC (indirect descriptor tables). */
export const VIRTIO_F_INDIRECT_DESC = 28;
/** Feature bit number of VIRTIO_F_EVENT_IDX (used_event / avail_event suppression). */
export const VIRTIO_F_EVENT_IDX = 29;

/** Required guest-physical alignment of each ring area (virtio 1.x, §2.7 table). */
export const RING_ALIGN = { desc: 16, avail: 2, used: 4 } as const;

/** The byte lengths of the three areas of a split queue of `size` entries. */
export function ringBytes(size: number): { desc: number; avail: number; used: number } {
  if (typeof size !== 'number') throw new TypeError(`size must be a number, got ${typeof size}`);
  if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE) {
    throw new RangeError(`size must be an integer in [1, ${MAX_QUEUE_SIZE}], got ${size}`);
  }
  return { desc: DESC_SIZE * size, avail: 6 + 2 * size, used: 6 + 8 * size };
}

/** The ring features a queue honours, as negotiated between driver and device. */
export interface QueueFeatures {
  /** VIRTIO_F_EVENT_IDX was negotiated: use used_event / avail_event instead of the flags. */
  readonly eventIdx: boolean;
  /** VIRTIO_F_INDIRECT_DESC was negotiated: descriptors may point at indirect tables. */
  readonly indirectDesc: boolean;
}

/** The {@link QueueFeatures} in a negotiated 64-bit feature word (`driver_features & device_features`). */
export function queueFeatures(negotiated: bigint): QueueFeatures {
  if (typeof negotiated !== 'bigint') throw new TypeError(`negotiated must be a bigint, got ${typeof negotiated}`);
  return {
    eventIdx: ((negotiated >> BigInt(VIRTIO_F_EVENT_IDX)) & 1n) === 1n,
    indirectDesc: ((negotiated >> BigInt(VIRTIO_F_INDIRECT_DESC)) & 1n) === 1n,
  };
}

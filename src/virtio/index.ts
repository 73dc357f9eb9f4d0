/**
 * Virtio 1.x split virtqueues over guest memory, for virtio transports and devices.
 * Pure code: no KVM, testable over a plain buffer.
 * @packageDocumentation
 */
export { SplitQueue } from './queue.js';
export type { SplitQueueOptions, QueueStart } from './queue.js';
export { DescriptorChain, walkChain } from './chain.js';
export type { BufferSegment, ChainLimits, ChainOwner, WalkedChain } from './chain.js';
export { QueueError, DROP_REASONS, newQueueErrors } from './errors.js';
export type { QueueErrorKind, DropReason, QueueErrors } from './errors.js';
export { DescriptorTable, inMemory, guestWritable } from './memory.js';
export type { QueueMemory, QueueSegment, RawDescriptor } from './memory.js';
export {
  MAX_QUEUE_SIZE, DESC_SIZE, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_DESC_F_INDIRECT, VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_USED_F_NO_NOTIFY, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, RING_ALIGN, ringBytes, queueFeatures,
} from './constants.js';
export type { QueueFeatures } from './constants.js';
export { VIRTIO_DEVICE_TYPE, VIRTIO_F_VERSION_1 } from './device.js';
export type { VirtioDevice, VirtioContext } from './device.js';

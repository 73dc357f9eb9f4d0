/**
 * Virtio 1.x split virtqueues over guest memory, for virtio transports and devices.
 * Pure code: no KVM, testable over a plain buffer.
 * @packageDocumentation
 */
export { SplitQueue } from './queue.js';
export type { SplitQueueOptions, QueueStart } from './queue.js';
export type { SplitQueueState } from './queue-state.js';
export { DescriptorChain, walkChain } from './chain.js';
export type { BufferSegment, ChainLimits, ChainOwner, WalkedChain } from './chain.js';
export { QueueError, DROP_REASONS, QUEUE_ERROR_KINDS, newQueueErrors } from './errors.js';
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
export {
  VirtioPciFunction, VIRTIO_PCI_TRANSPORT_FEATURES, virtioPciLayout, VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_MULTIPLIER, VIRTIO_PCI_PAGE,
  VIRTIO_PCI_MAX_QUEUES, VIRTIO_PCI_MAX_CONFIG_SIZE, VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_MAX_DEVICE_TYPE,
  VIRTIO_PCI_REVISION_ID, VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID, PCI_CAP_ID_VENDOR, VIRTIO_PCI_CAP, VIRTIO_PCI_CAP_LEN,
  VIRTIO_PCI_NOTIFY_CAP_LEN, VIRTIO_PCI_CFG_CAP_LEN, VirtioCapReg, CommonCfg, COMMON_CFG_SIZE, VIRTIO_STATUS, VIRTIO_ISR,
  VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_UNSUPPORTED_FEATURES, virtioPciClassCode,
} from './pci/index.js';
export type {
  VirtioPciOptions, VirtioPciCounters, VirtioPciNotifyRegion, InterruptCounters, VirtioPciLayout, VirtioPciRegion,
  VirtioPciCapabilityOffsets, VirtioPciFunctionState, QueueSlotState, FeatureNegotiationState,
} from './pci/index.js';
export * from './devices/index.js';

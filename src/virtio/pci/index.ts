/**
 * The modern virtio-pci transport (virtio 1.2 §4.1): {@link VirtioPciFunction} puts a
 * {@link VirtioDevice} on the PCI bus. Pure code: no KVM.
 *
 * Wiring, for the platform: add the function to a {@link PciBus}; when its config space
 * reports BAR 0 mapped ({@link PciConfigSpace.onBarChange}), register
 * `barDevice(fn, 0)` at that address on the MMIO bus (optionally give the notify
 * structure, {@link VirtioPciFunction.notifyRegion}, a posted-write or ioeventfd path that
 * calls {@link VirtioPciFunction.notifyQueue}); back the {@link MsiSink} with
 * KVM_SIGNAL_MSI and the INTx {@link IrqLine} with KVM_IRQ_LINE.
 * @packageDocumentation
 */
export { VirtioPciFunction } from './function.js';
export { VIRTIO_PCI_TRANSPORT_FEATURES } from './options.js';
export type { VirtioPciOptions, VirtioPciCounters, VirtioPciNotifyRegion } from './options.js';
export type { InterruptCounters } from './interrupts.js';
export type { VirtioPciFunctionState } from './state.js';
export type { QueueSlotState } from './queue-slot.js';
export type { FeatureNegotiationState } from './features.js';
export { virtioPciLayout, VIRTIO_PCI_BAR, VIRTIO_PCI_NOTIFY_MULTIPLIER, VIRTIO_PCI_PAGE, VIRTIO_PCI_MAX_QUEUES, VIRTIO_PCI_MAX_CONFIG_SIZE } from './layout.js';
export type { VirtioPciLayout, VirtioPciRegion } from './layout.js';
export type { VirtioPciCapabilityOffsets } from './capabilities.js';
export {
  VIRTIO_PCI_VENDOR_ID, VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_MAX_DEVICE_TYPE, VIRTIO_PCI_REVISION_ID, VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID,
  PCI_CAP_ID_VENDOR, VIRTIO_PCI_CAP, VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_NOTIFY_CAP_LEN, VIRTIO_PCI_CFG_CAP_LEN, VirtioCapReg, CommonCfg,
  COMMON_CFG_SIZE, VIRTIO_STATUS, VIRTIO_ISR, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_UNSUPPORTED_FEATURES, virtioPciClassCode,
} from './constants.js';

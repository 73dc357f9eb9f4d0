/**
 * The numbers of the modern virtio-pci transport (virtio 1.2 §4.1): PCI identity, the
 * vendor-specific capability types, the common configuration register offsets, device
 * status bits and ISR bits.
 */
import { VIRTIO_DEVICE_TYPE } from '../device.js';

/** PCI vendor id of every virtio device (and the subsystem vendor id vmmapi uses). */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** A modern (non-transitional) virtio-pci function's device id is this plus the virtio device type. */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
/** The highest virtio device type a modern device id can carry (0x1040 + 0x3f = 0x107f). */
export const VIRTIO_PCI_MAX_DEVICE_TYPE = 0x3f;
/** Revision id of a non-transitional device (the spec asks for 1 or higher). */
export const VIRTIO_PCI_REVISION_ID = 1;
/** Default subsystem id: the value virtio drivers of other hypervisors (notably Windows' virtio-win INFs) match on. */
export const VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID = 0x1100;

/** PCI capability id of a vendor-specific capability, the kind every virtio structure uses. */
export const PCI_CAP_ID_VENDOR = 0x09;

/** `cfg_type` of a virtio structure capability (virtio 1.2 §4.1.4). */
export const VIRTIO_PCI_CAP = {
  /** Common configuration. */
  COMMON_CFG: 1,
  /** Notifications. */
  NOTIFY_CFG: 2,
  /** ISR status. */
  ISR_CFG: 3,
  /** Device-specific configuration. */
  DEVICE_CFG: 4,
  /** PCI configuration access (a window onto the BARs through configuration space). */
  PCI_CFG: 5,
} as const;

/** Bytes of a `virtio_pci_cap` (cap_len of the common, ISR and device capabilities). */
export const VIRTIO_PCI_CAP_LEN = 16;
/** Bytes of the notify capability (the cap plus notify_off_multiplier). */
export const VIRTIO_PCI_NOTIFY_CAP_LEN = 20;
/** Bytes of the PCI configuration access capability (the cap plus pci_cfg_data[4]). */
export const VIRTIO_PCI_CFG_CAP_LEN = 20;

/** Offsets in a virtio structure capability, from its first byte. */
export const VirtioCapReg = {
  /** cap_vndr (0x09). */
  VNDR: 0,
  /** cap_next. */
  NEXT: 1,
  /** cap_len. */
  LEN: 2,
  /** cfg_type. */
  CFG_TYPE: 3,
  /** bar. */
  BAR: 4,
  /** id (to tell several structures of one type apart; 0 here). */
  ID: 5,
  /** offset within the BAR (le32). */
  OFFSET: 8,
  /** length of the structure (le32). */
  LENGTH: 12,
  /** notify_off_multiplier (le32), notify capability only. */
  NOTIFY_OFF_MULTIPLIER: 16,
  /** pci_cfg_data[4], PCI configuration access capability only. */
  PCI_CFG_DATA: 16,
} as const;

/** Register offsets of the common configuration structure (`virtio_pci_common_cfg`). */
export const CommonCfg = {
  /** le32, read-write: which 32-bit word of device_feature to show. */
  DEVICE_FEATURE_SELECT: 0x00,
  /** le32, read-only: the offered feature bits, word device_feature_select. */
  DEVICE_FEATURE: 0x04,
  /** le32, read-write: which 32-bit word of driver_feature to access. */
  DRIVER_FEATURE_SELECT: 0x08,
  /** le32, read-write: the accepted feature bits, word driver_feature_select. */
  DRIVER_FEATURE: 0x0c,
  /** le16, read-write: MSI-X vector of configuration-change interrupts. */
  CONFIG_MSIX_VECTOR: 0x10,
  /** le16, read-only: number of queues. */
  NUM_QUEUES: 0x12,
  /** u8, read-write: device status. */
  DEVICE_STATUS: 0x14,
  /** u8, read-only: configuration generation. */
  CONFIG_GENERATION: 0x15,
  /** le16, read-write: the queue the queue_* registers show. */
  QUEUE_SELECT: 0x16,
  /** le16, read-write: queue size (0 for a queue that does not exist). */
  QUEUE_SIZE: 0x18,
  /** le16, read-write: MSI-X vector of the queue's interrupts. */
  QUEUE_MSIX_VECTOR: 0x1a,
  /** le16, read-write: 1 once the queue is enabled. */
  QUEUE_ENABLE: 0x1c,
  /** le16, read-only: the queue's offset in the notify structure, in multiplier units. */
  QUEUE_NOTIFY_OFF: 0x1e,
  /** le64, read-write: descriptor table address. */
  QUEUE_DESC: 0x20,
  /** le64, read-write: available (driver) ring address. */
  QUEUE_DRIVER: 0x28,
  /** le64, read-write: used (device) ring address. */
  QUEUE_DEVICE: 0x30,
  /** le16, read-only: notification data (here the queue index). */
  QUEUE_NOTIFY_DATA: 0x38,
  /** le16: queue reset (VIRTIO_F_RING_RESET, not offered: reads 0). */
  QUEUE_RESET: 0x3a,
} as const;

/** Bytes of the common configuration structure (virtio 1.2, through queue_reset). */
export const COMMON_CFG_SIZE = 0x3c;

/** Device status bits (virtio 1.2 §2.1). */
export const VIRTIO_STATUS = {
  /** The guest found the device. */
  ACKNOWLEDGE: 0x01,
  /** The guest has a driver for it. */
  DRIVER: 0x02,
  /** The driver is ready: the device may serve its queues. */
  DRIVER_OK: 0x04,
  /** Feature negotiation is complete (the device clears it again to refuse the features). */
  FEATURES_OK: 0x08,
  /** The device hit an error it cannot recover from without a reset (set by the device). */
  DEVICE_NEEDS_RESET: 0x40,
  /** The driver gave up on the device. */
  FAILED: 0x80,
} as const;

/** ISR status bits. */
export const VIRTIO_ISR = {
  /** A queue has new used buffers. */
  QUEUE: 0x1,
  /** The device configuration changed. */
  CONFIG: 0x2,
} as const;

/** MSI-X vector register value meaning "no vector". */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** Reserved transport feature bits the transport does not implement: a device offering one is refused. */
export const VIRTIO_PCI_UNSUPPORTED_FEATURES: readonly { bit: number; name: string }[] = [
  { bit: 34, name: 'VIRTIO_F_RING_PACKED' },
  { bit: 37, name: 'VIRTIO_F_SR_IOV' },
  { bit: 38, name: 'VIRTIO_F_NOTIFICATION_DATA' },
  { bit: 39, name: 'VIRTIO_F_NOTIF_CONFIG_DATA' },
  { bit: 40, name: 'VIRTIO_F_RING_RESET' },
  { bit: 41, name: 'VIRTIO_F_ADMIN_VQ' },
];

/**
 * The PCI class code (base class << 16 | sub-class << 8 | prog-if) of a virtio device type:
 * network controller for net, "other mass storage" for block, "other communication" for
 * console, "other" for entropy, and "unassigned" (0xff) for the rest.
 */
export function virtioPciClassCode(deviceType: number): number {
  switch (deviceType) {
    case VIRTIO_DEVICE_TYPE.NET:
      return 0x020000;
    case VIRTIO_DEVICE_TYPE.BLOCK:
      return 0x018000;
    case VIRTIO_DEVICE_TYPE.CONSOLE:
      return 0x078000;
    case VIRTIO_DEVICE_TYPE.ENTROPY:
      return 0x00ff00;
    default:
      return 0xff0000;
  }
}

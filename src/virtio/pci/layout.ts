/**
 * Where the virtio structures and the MSI-X table live: everything in one 64-bit,
 * non-prefetchable memory BAR (BAR 0, which also takes slot 1 for its upper half), each
 * structure on its own 4 KiB page so the platform can give the notify page a fast path
 * (posted writes, KVM_IOEVENTFD) without catching the others:
 *
 * | BAR 0 offset | length                 | structure                                      |
 * |--------------|------------------------|------------------------------------------------|
 * | 0x0000       | 0x3c                   | common configuration                           |
 * | 0x1000       | 1                      | ISR status (read clears)                       |
 * | 0x2000       | configSize (≤ 0x1000)  | device-specific configuration (absent if 0)    |
 * | 0x3000       | 4 × num_queues (≥ 4)   | notify: queue i at 0x3000 + 4 i (multiplier 4) |
 * | 0x4000       | 16 × vectors           | MSI-X table                                    |
 * | after table  | 8 × ⌈vectors / 64⌉     | MSI-X PBA, on the page after the table         |
 *
 * The BAR's size is the smallest power of two holding it all (32 KiB for up to 256
 * vectors). Non-prefetchable because reading ISR has a side effect.
 */
import { checkInt } from '../../pci/util.js';
import { MSIX_ENTRY_SIZE, MSIX_MAX_VECTORS } from '../../pci/msix.js';
import { COMMON_CFG_SIZE } from './constants.js';

/** The BAR index holding every structure. */
export const VIRTIO_PCI_BAR = 0;
/** Bytes between two queues' notify addresses (notify_off_multiplier). */
export const VIRTIO_PCI_NOTIFY_MULTIPLIER = 4;
/** Bytes of one structure's page. */
export const VIRTIO_PCI_PAGE = 0x1000;
/** Most queues the notify page holds (4 KiB / multiplier). */
export const VIRTIO_PCI_MAX_QUEUES = VIRTIO_PCI_PAGE / VIRTIO_PCI_NOTIFY_MULTIPLIER;
/** Most bytes of device-specific configuration (one page). */
export const VIRTIO_PCI_MAX_CONFIG_SIZE = VIRTIO_PCI_PAGE;

/** A structure's place in the BAR. */
export interface VirtioPciRegion {
  /** Offset from the BAR's base. */
  readonly offset: number;
  /** Bytes. */
  readonly length: number;
}

/** The BAR layout of one function (see the module comment). */
export interface VirtioPciLayout {
  /** The BAR index (0). */
  readonly bar: number;
  /** The BAR's size in bytes (a power of two). */
  readonly barSize: number;
  /** Common configuration. */
  readonly common: VirtioPciRegion;
  /** ISR status. */
  readonly isr: VirtioPciRegion;
  /** Device-specific configuration; length 0 when the device has none (no capability then). */
  readonly device: VirtioPciRegion;
  /** Notify structure. */
  readonly notify: VirtioPciRegion;
  /** MSI-X table, or undefined without MSI-X. */
  readonly msixTable: VirtioPciRegion | undefined;
  /** MSI-X pending bit array, or undefined without MSI-X. */
  readonly msixPba: VirtioPciRegion | undefined;
}

/**
 * The layout for a device with `queues` queues (0-1024), `configSize` bytes of device
 * configuration (0-4096) and `msixVectors` MSI-X vectors (0 for none, up to 2048).
 * RangeError naming the argument when one is out of range.
 */
export function virtioPciLayout(queues: number, configSize: number, msixVectors: number): VirtioPciLayout {
  checkInt(queues, 'queues', 0, VIRTIO_PCI_MAX_QUEUES);
  checkInt(configSize, 'configSize', 0, VIRTIO_PCI_MAX_CONFIG_SIZE);
  checkInt(msixVectors, 'msixVectors', 0, MSIX_MAX_VECTORS);
  const page = VIRTIO_PCI_PAGE;
  let end = 4 * page;
  let msixTable: VirtioPciRegion | undefined;
  let msixPba: VirtioPciRegion | undefined;
  if (msixVectors > 0) {
    const tableLength = msixVectors * MSIX_ENTRY_SIZE;
    msixTable = Object.freeze({ offset: end, length: tableLength });
    const pbaOffset = end + Math.ceil(tableLength / page) * page;
    msixPba = Object.freeze({ offset: pbaOffset, length: Math.ceil(msixVectors / 64) * 8 });
    end = pbaOffset + msixPba.length;
  }
  let barSize = page;
  while (barSize < end) barSize *= 2;
  return Object.freeze({
    bar: VIRTIO_PCI_BAR,
    barSize,
    common: Object.freeze({ offset: 0, length: COMMON_CFG_SIZE }),
    isr: Object.freeze({ offset: page, length: 1 }),
    device: Object.freeze({ offset: 2 * page, length: configSize }),
    notify: Object.freeze({ offset: 3 * page, length: VIRTIO_PCI_NOTIFY_MULTIPLIER * Math.max(queues, 1) }),
    msixTable,
    msixPba,
  });
}

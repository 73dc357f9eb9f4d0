/**
 * The virtio structure capabilities (virtio 1.2 §4.1.4): vendor-specific capabilities
 * (id 0x09) telling the driver which BAR and offset holds each structure.
 *
 * Every one starts with the 16-byte `virtio_pci_cap`: cap_vndr, cap_next, cap_len,
 * cfg_type, bar, id, two padding bytes, le32 offset, le32 length. The notify capability
 * adds le32 notify_off_multiplier; the PCI configuration access capability adds
 * pci_cfg_data[4], and its bar, offset and length fields are writable by the driver: they
 * select the BAR access a read or write of pci_cfg_data performs (see {@link addPciCfgCapability}).
 */
import type { AccessSize } from '../../devices/device.js';
import type { PciConfigSpace } from '../../pci/config-space.js';
import {
  PCI_CAP_ID_VENDOR, VIRTIO_PCI_CAP, VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CFG_CAP_LEN, VIRTIO_PCI_NOTIFY_CAP_LEN, VirtioCapReg,
} from './constants.js';
import type { VirtioPciLayout, VirtioPciRegion } from './layout.js';
import { VIRTIO_PCI_NOTIFY_MULTIPLIER } from './layout.js';

/** Where each capability was placed in configuration space (offsets of their first byte). */
export interface VirtioPciCapabilityOffsets {
  /** COMMON_CFG. */
  readonly common: number;
  /** NOTIFY_CFG. */
  readonly notify: number;
  /** ISR_CFG. */
  readonly isr: number;
  /** DEVICE_CFG, or undefined when the device has no configuration space. */
  readonly device: number | undefined;
  /** PCI_CFG. */
  readonly pciCfg: number;
}

/** BAR access used by the PCI configuration access capability. */
export interface BarAccess {
  /** Read `size` bytes at `offset` of BAR `bar`. */
  readBar(bar: number, offset: number, size: AccessSize): number | bigint;
  /** Write `size` bytes at `offset` of BAR `bar`. */
  writeBar(bar: number, offset: number, size: AccessSize, value: number | bigint): void;
}

function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
}

/** The body (bytes from cap_len on) of a virtio_pci_cap. */
function capBody(capLen: number, cfgType: number, bar: number, region: VirtioPciRegion, extra: number[] = []): number[] {
  return [capLen, cfgType, bar, 0, 0, 0, ...le32(region.offset), ...le32(region.length), ...extra];
}

/**
 * Add the COMMON, NOTIFY, ISR, DEVICE (when the device has configuration) and PCI_CFG
 * capabilities for `layout` to `config`, in that order; `bars` serves the PCI_CFG window.
 */
export function addVirtioCapabilities(config: PciConfigSpace, layout: VirtioPciLayout, bars: BarAccess): VirtioPciCapabilityOffsets {
  const add = (body: number[]) => config.addCapability({ id: PCI_CAP_ID_VENDOR, body });
  const bar = layout.bar;
  const common = add(capBody(VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CAP.COMMON_CFG, bar, layout.common));
  const notify = add(capBody(VIRTIO_PCI_NOTIFY_CAP_LEN, VIRTIO_PCI_CAP.NOTIFY_CFG, bar, layout.notify, le32(VIRTIO_PCI_NOTIFY_MULTIPLIER)));
  const isr = add(capBody(VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CAP.ISR_CFG, bar, layout.isr));
  const device = layout.device.length > 0 ? add(capBody(VIRTIO_PCI_CAP_LEN, VIRTIO_PCI_CAP.DEVICE_CFG, bar, layout.device)) : undefined;
  const pciCfg = addPciCfgCapability(config, bars);
  return Object.freeze({ common, notify, isr, device, pciCfg });
}

/**
 * Add the PCI configuration access capability (`virtio_pci_cfg_cap`): the driver writes
 * cap.bar, cap.offset and cap.length (1, 2 or 4), then
 * - reading pci_cfg_data performs a read of cap.length bytes at cap.offset of cap.bar and
 *   shows the result there (zero-extended);
 * - writing pci_cfg_data writes its first cap.length bytes there.
 * The access is made only when cap.length is 1, 2 or 4 and cap.offset is a multiple of it;
 * otherwise a read shows 0 and a write is ignored. The bar, offset and length fields start
 * as 0. Returns the capability's offset.
 */
export function addPciCfgCapability(config: PciConfigSpace, bars: BarAccess): number {
  const body = capBody(VIRTIO_PCI_CFG_CAP_LEN, VIRTIO_PCI_CAP.PCI_CFG, 0, { offset: 0, length: 0 }, [0, 0, 0, 0]);
  // Writable: bar (body byte 2), offset and length (6-13), pci_cfg_data (14-17).
  const writable = new Array<number>(body.length).fill(0);
  writable[VirtioCapReg.BAR - 2] = 0xff;
  for (let i = VirtioCapReg.OFFSET - 2; i < body.length; i++) writable[i] = 0xff;
  let at = -1;
  const dataTouched = (offset: number, size: number) => offset < VIRTIO_PCI_CFG_CAP_LEN && offset + size > VirtioCapReg.PCI_CFG_DATA;
  const target = (): { bar: number; offset: number; size: 1 | 2 | 4 } | undefined => {
    const size = config.peek(at + VirtioCapReg.LENGTH, 4);
    const offset = config.peek(at + VirtioCapReg.OFFSET, 4);
    if ((size !== 1 && size !== 2 && size !== 4) || offset % size !== 0) return undefined;
    return { bar: config.peek(at + VirtioCapReg.BAR, 1), offset, size };
  };
  at = config.addCapability({
    id: PCI_CAP_ID_VENDOR,
    body,
    writable,
    onRead: (offset, size) => {
      if (!dataTouched(offset, size)) return;
      const t = target();
      const v = t ? Number(bars.readBar(t.bar, t.offset, t.size)) : 0;
      config.poke(at + VirtioCapReg.PCI_CFG_DATA, 4, t ? v >>> 0 : 0);
    },
    onWrite: (offset, size) => {
      if (!dataTouched(offset, size)) return;
      const t = target();
      if (!t) return;
      const data = config.peek(at + VirtioCapReg.PCI_CFG_DATA, 4);
      bars.writeBar(t.bar, t.offset, t.size, t.size === 4 ? data : data & (2 ** (8 * t.size) - 1));
    },
  });
  return at;
}

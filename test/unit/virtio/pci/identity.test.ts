/** What a guest finds when it enumerates a virtio-pci function: identity, the BAR, the capability list. */
import { describe, expect, it } from 'vitest';
import { RecordingIrqLine } from '../../../../src/devices/device.js';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import { PciReg } from '../../../../src/pci/registers.js';
import {
  COMMON_CFG_SIZE, VIRTIO_PCI_CAP, VirtioPciFunction, type VirtioPciOptions,
} from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { EchoDevice, type EchoOptions } from './echo-device.js';
import { PciGuest } from './guest.js';

function make(dev: EchoOptions = {}, opts: Partial<VirtioPciOptions> = {}) {
  const ram = new TestRam(0x10000);
  const device = new EchoDevice(dev);
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: new RecordingMsiSink(), ...opts });
  return { fn, device, guest: new PciGuest(fn) };
}

describe('PCI identity', () => {
  it('vendor 0x1af4, device 0x1040 + type, revision 1, subsystem 0x1af4:0x1100, no interrupt pin without INTx', () => {
    const { guest } = make({ deviceType: 4 });
    expect(guest.cfg(PciReg.VENDOR_ID, 2)).toBe(0x1af4);
    expect(guest.cfg(PciReg.DEVICE_ID, 2)).toBe(0x1044);
    expect(guest.cfg(PciReg.REVISION_ID, 1)).toBe(1);
    expect(guest.cfg(PciReg.SUBSYSTEM_VENDOR_ID, 2)).toBe(0x1af4);
    expect(guest.cfg(PciReg.SUBSYSTEM_ID, 2)).toBe(0x1100);
    expect(guest.cfg(PciReg.INTERRUPT_PIN, 1)).toBe(0);
    expect(guest.cfg(PciReg.HEADER_TYPE, 1)).toBe(0);
  });

  it('class code by device type', () => {
    const cls = (deviceType: number) => make({ deviceType }).guest.cfg(PciReg.REVISION_ID, 4) >>> 8;
    expect(cls(1)).toBe(0x020000); // net
    expect(cls(2)).toBe(0x018000); // block
    expect(cls(3)).toBe(0x078000); // console
    expect(cls(4)).toBe(0x00ff00); // entropy
    expect(cls(19)).toBe(0xff0000); // vsock: other
  });

  it('subsystem id and INTA# when asked', () => {
    const { guest } = make({}, { subsystemId: 0x4242, intx: new RecordingIrqLine() });
    expect(guest.cfg(PciReg.SUBSYSTEM_ID, 2)).toBe(0x4242);
    expect(guest.cfg(PciReg.INTERRUPT_PIN, 1)).toBe(1);
  });
});

describe('BAR 0', () => {
  it('is one 64-bit non-prefetchable memory BAR, 32 KiB by default; BARs 2-5 are absent', () => {
    const { guest, fn } = make();
    expect(guest.cfg(PciReg.BAR0, 4) & 0xf).toBe(0x4);
    expect(guest.enumerate()).toBe(0x8000);
    for (let i = 2; i < 6; i++) {
      guest.cfgWrite(PciReg.BAR0 + 4 * i, 4, 0xffff_ffff);
      expect(guest.cfg(PciReg.BAR0 + 4 * i, 4)).toBe(0);
    }
    expect(fn.config.bar(0)?.mapped).toBe(0x10_0000_0000);
    expect(guest.mmio.find(0x10_0000_0000)?.length).toBe(0x8000);
  });

  it('grows with the MSI-X table (2048 vectors: 64 KiB)', () => {
    const { fn } = make({}, { msixVectors: 2048 });
    expect(fn.layout.barSize).toBe(0x10000);
    expect(fn.layout.msixTable).toEqual({ offset: 0x4000, length: 0x8000 });
    expect(fn.layout.msixPba).toEqual({ offset: 0xc000, length: 256 });
  });
});

describe('capabilities', () => {
  it('COMMON, NOTIFY, ISR, DEVICE, PCI_CFG vendor capabilities then MSI-X, each well formed', () => {
    const { guest, fn } = make({ queueSizes: [8, 16, 4], configSize: 16 });
    guest.enumerate();
    const caps = guest.caps();
    expect(caps.map((c) => c.id)).toEqual([0x09, 0x09, 0x09, 0x09, 0x09, 0x11]);
    const byType = Object.fromEntries(caps.filter((c) => c.id === 9).map((c) => [c.cfgType, c]));
    const T = VIRTIO_PCI_CAP;
    expect(byType[T.COMMON_CFG]).toMatchObject({ capLen: 16, bar: 0, offset: 0, length: COMMON_CFG_SIZE });
    expect(byType[T.NOTIFY_CFG]).toMatchObject({ capLen: 20, bar: 0, offset: 0x3000, length: 12, multiplier: 4 });
    expect(byType[T.ISR_CFG]).toMatchObject({ capLen: 16, bar: 0, offset: 0x1000, length: 1 });
    expect(byType[T.DEVICE_CFG]).toMatchObject({ capLen: 16, bar: 0, offset: 0x2000, length: 16 });
    expect(byType[T.PCI_CFG]).toMatchObject({ capLen: 20, bar: 0, offset: 0, length: 0 });
    // The spec's alignment rules, and every structure inside the BAR, on its own page.
    const barSize = fn.layout.barSize;
    for (const c of caps.filter((x) => x.id === 9 && x.cfgType !== T.PCI_CFG)) {
      expect(c.offset! % 4).toBe(0);
      expect(c.offset! + c.length!).toBeLessThanOrEqual(barSize);
      expect(c.at % 4).toBe(0);
    }
    // Every queue's notify address plus 2 bytes fits the notify structure (the driver checks this).
    for (let q = 0; q < 3; q++) {
      guest.cw(0x16, 2, q);
      expect(guest.c(0x1e, 2) * 4 + 2).toBeLessThanOrEqual(byType[T.NOTIFY_CFG].length!);
    }
    // MSI-X: 4 vectors (3 queues + config), table and PBA in BAR 0, away from the virtio pages.
    const msix = guest.msixCap();
    expect(guest.cfg(msix + 2, 2) & 0x7ff).toBe(3);
    expect(guest.cfg(msix + 4, 4)).toBe(0x4000);
    expect(guest.cfg(msix + 8, 4)).toBe(0x5000);
    expect(fn.capabilities).toMatchObject({ common: caps[0].at, notify: caps[1].at, isr: caps[2].at, device: caps[3].at, pciCfg: caps[4].at });
  });

  it('no DEVICE capability without configuration space; no MSI-X with msixVectors 0', () => {
    const { guest, fn } = make({ configSize: 0 }, { msixVectors: 0, intx: new RecordingIrqLine() });
    const caps = guest.caps();
    expect(caps.map((c) => c.cfgType)).toEqual([1, 2, 3, 5]);
    expect(fn.msix).toBeUndefined();
    expect(fn.capabilities.device).toBeUndefined();
  });

  it('capability bytes are read-only to the guest, except the PCI_CFG window fields', () => {
    const { guest, fn } = make();
    const before = [...Array(0x100).keys()].map((r) => guest.cfg(r, 1));
    for (let r = 0x40; r < 0x100; r++) guest.cfgWrite(r, 1, 0x5a);
    const pc = fn.capabilities.pciCfg;
    const msix = guest.msixCap();
    for (let r = 0x40; r < 0x100; r++) {
      const windowField = r === pc + 4 || (r >= pc + 8 && r < pc + 20);
      const msixControl = r === msix + 3;
      if (!windowField && !msixControl) expect(guest.cfg(r, 1), `reg 0x${r.toString(16)}`).toBe(before[r]);
    }
  });
});

describe('constructor checks', () => {
  const ram = new TestRam(0x1000);
  const msi = new RecordingMsiSink();
  const bad = (dev: Partial<EchoDevice>, opts: Partial<VirtioPciOptions> = {}) => () =>
    new VirtioPciFunction(Object.assign(new EchoDevice(), dev), { memory: ram.mem, msi, ...opts });
  it('name the bad argument', () => {
    expect(bad({ deviceType: 0 } as never)).toThrow(/device\.deviceType/);
    expect(bad({ deviceType: 0x40 } as never)).toThrow(/device\.deviceType/);
    expect(bad({ features: 1n << 34n } as never)).toThrow(/RING_PACKED/);
    expect(bad({ features: -1n } as never)).toThrow(/device\.features/);
    expect(bad({ queueSizes: [8, 12] } as never)).toThrow(/device\.queueSizes\[1\]/);
    expect(bad({ queueSizes: new Array(1025).fill(8) } as never)).toThrow(/device\.queueSizes/);
    expect(bad({ configSize: 0x1001 } as never)).toThrow(/device\.configSize/);
    expect(bad({}, { msixVectors: 2049 })).toThrow(/opts\.msixVectors/);
    expect(bad({}, { msixVectors: 0 })).toThrow(/opts\.intx/);
    expect(bad({}, { msi: {} as never })).toThrow(/opts\.msi/);
    expect(bad({}, { memory: undefined as never })).toThrow(/opts\.memory/);
    expect(bad({}, { subsystemId: 0x10000 })).toThrow(/opts\.subsystemId/);
    expect(bad({}, { onError: 1 as never })).toThrow(/opts\.onError/);
  });
});

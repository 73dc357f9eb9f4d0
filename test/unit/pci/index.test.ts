import { describe, expect, it } from 'vitest';
import * as pci from '../../../src/pci/index.js';

describe('pci index', () => {
  it('re-exports the public pieces', () => {
    for (const name of ['PciConfigSpace', 'Msix', 'RecordingMsiSink', 'PciBus', 'PciHostBridge', 'PciConfigIo', 'PciEcam', 'BarAllocator', 'barDevice', 'formatPciAddress']) {
      expect(typeof (pci as Record<string, unknown>)[name]).toBe('function');
    }
    expect(pci.PciReg.CAPABILITIES_POINTER).toBe(0x34);
    expect(pci.MSIX_CAPABILITY_ID).toBe(0x11);
    expect(pci.PCI_CONFIG_ADDRESS_PORT).toBe(0xcf8);
    expect(pci.PCI_ECAM_BUS_SIZE).toBe(0x10_0000);
  });

  it('internal helpers stay internal', () => {
    expect((pci as Record<string, unknown>).checkInt).toBeUndefined();
    expect((pci as Record<string, unknown>).toUintN).toBeUndefined();
  });
});

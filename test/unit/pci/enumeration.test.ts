import { describe, expect, it } from 'vitest';
import { MmioBus, PioBus, type Bus } from '../../../src/bus/bus.js';
import type { AccessSize } from '../../../src/devices/device.js';
import { barDevice, PciBus, type PciFunction } from '../../../src/pci/bus.js';
import { PciConfigSpace, type PciBarChange } from '../../../src/pci/config-space.js';
import { PCI_CONFIG_ADDRESS_PORT, PCI_CONFIG_DATA_PORT, PciConfigIo, PciEcam, PciHostBridge } from '../../../src/pci/host-bridge.js';
import { Msix, RecordingMsiSink } from '../../../src/pci/msix.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';

/** A function with an MSI-X table in BAR 1 and a scratch register file in BAR 0. */
class ScratchFunction implements PciFunction {
  readonly config = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1040 + 9, classCode: 0xff0000 });
  readonly regs = new Uint32Array(16);
  readonly sink = new RecordingMsiSink();
  readonly msix: Msix;
  constructor() {
    this.config.setBar(0, { kind: 'io', size: 0x40 });
    this.config.setBar(1, { kind: 'mem64', size: 0x4000 });
    this.msix = new Msix(this.config, { vectors: 2, table: { bar: 1, offset: 0 }, pba: { bar: 1, offset: 0x2000 }, sink: this.sink });
  }
  readBar(bar: number, offset: number, size: AccessSize): number | bigint {
    if (bar === 1) return this.msix.read(bar, offset, size) ?? 0;
    return this.regs[(offset >>> 2) & 15];
  }
  writeBar(bar: number, offset: number, size: AccessSize, value: number | bigint): void {
    if (bar === 1) this.msix.write(bar, offset, size, value);
    else this.regs[(offset >>> 2) & 15] = Number(value);
  }
}

/** What the platform does: keep every BAR's device registered where it is decoded. */
function wire(fn: PciFunction, pio: Bus, mmio: Bus): void {
  fn.config.onBarChange((e: PciBarChange) => {
    const bus = e.kind === 'io' ? pio : mmio;
    if (e.previous !== undefined) bus.unregister(e.previous);
    if (e.address !== undefined) bus.register(e.address, e.size, barDevice(fn, e.bar), `BAR${e.bar}`);
  });
}

describe('a guest enumerating the bus', () => {
  it('finds the functions, sizes and places BARs, and reaches them and MSI-X through the buses', () => {
    const pci = new PciBus();
    pci.add(0, 0, new PciHostBridge());
    const fn = new ScratchFunction();
    pci.add(2, 0, fn);
    const pio = new PioBus();
    const mmio = new MmioBus();
    const cfg = new PciConfigIo(pci);
    pio.register(PCI_CONFIG_ADDRESS_PORT, 1, cfg.address, 'pci-address');
    pio.register(PCI_CONFIG_DATA_PORT, 4, cfg.data, 'pci-data');
    mmio.register(0xe000_0000, 1 << 20, new PciEcam(pci), 'ecam');
    wire(fn, pio, mmio);

    const rd = (d: number, reg: number): number => {
      pio.write(0xcf8, 4, 0x8000_0000 | (d << 11) | (reg & 0xfc));
      return pio.read(0xcfc + (reg & 3), 4) as number;
    };
    const wr = (d: number, reg: number, size: AccessSize, v: number): void => {
      pio.write(0xcf8, 4, 0x8000_0000 | (d << 11) | (reg & 0xfc));
      pio.write(0xcfc + (reg & 3), size, v);
    };

    // Scan: vendor ids.
    const found = [];
    for (let d = 0; d < 32; d++) if ((rd(d, 0) & 0xffff) !== 0xffff) found.push(d);
    expect(found).toEqual([0, 2]);

    // Size every BAR with decode off, then place I/O at 0xc000 and memory at 64 GiB.
    const sizes: Record<number, number | bigint> = {};
    for (let i = 0; i < 6; i++) {
      const reg = PciReg.BAR0 + 4 * i;
      const old = rd(2, reg);
      wr(2, reg, 4, 0xffff_ffff);
      const mask = rd(2, reg);
      wr(2, reg, 4, old);
      if (mask === 0) continue;
      if (mask & 1) sizes[i] = ((~(mask & ~3) >>> 0) & 0xffff) + 1;
      else if ((mask & 6) === 4) {
        const hiOld = rd(2, reg + 4);
        wr(2, reg + 4, 4, 0xffff_ffff);
        const hi = rd(2, reg + 4);
        wr(2, reg + 4, 4, hiOld);
        sizes[i] = ((~((BigInt(hi) << 32n) | BigInt(mask & ~0xf)) & 0xffff_ffff_ffff_ffffn) + 1n);
        i++;
      }
    }
    expect(sizes).toEqual({ 0: 0x40, 1: 0x4000n });
    wr(2, PciReg.BAR0, 4, 0xc000);
    wr(2, PciReg.BAR0 + 4, 4, 0);
    wr(2, PciReg.BAR0 + 8, 4, 0x10);
    expect(pio.find(0xc000)).toBeUndefined();
    wr(2, PciReg.COMMAND, 2, PciCommand.IO | PciCommand.MEMORY | PciCommand.BUS_MASTER);
    expect(pio.find(0xc000)?.name).toBe('BAR0');
    expect(mmio.find(0x10_0000_0000)?.name).toBe('BAR1');

    // BAR 0 registers through the port bus.
    pio.write(0xc008, 4, 0x1234_5678);
    expect(fn.regs[2]).toBe(0x1234_5678);
    expect(pio.read(0xc008, 4)).toBe(0x1234_5678);

    // MSI-X through ECAM and the MMIO bus.
    const cap = fn.msix.capabilityOffset;
    const ecam = (reg: number) => 0xe000_0000 + (2 << 15) + reg;
    expect(mmio.read(ecam(cap), 1)).toBe(0x11);
    mmio.write(ecam(cap + 2), 2, 0xc000);
    mmio.write(0x10_0000_0010, 8, 0x0000_0000_fee0_1000n);
    mmio.write(0x10_0000_0018, 8, 0x0000_0000_0000_4051n); // data 0x4051, unmasked
    expect(fn.msix.signal(1)).toBe('pending');
    expect(mmio.read(0x10_0000_2000, 8)).toBe(2n);
    mmio.write(ecam(cap + 2), 2, 0x8000);
    expect(fn.sink.messages).toEqual([{ addressLo: 0xfee0_1000, addressHi: 0, data: 0x4051 }]);

    // Moving a BAR moves its region; disabling decode removes it.
    wr(2, PciReg.BAR0, 4, 0xd000);
    expect(pio.find(0xc000)).toBeUndefined();
    expect(pio.read(0xd008, 4)).toBe(0x1234_5678);
    wr(2, PciReg.COMMAND, 2, 0);
    expect(pio.find(0xd000)).toBeUndefined();
    expect(mmio.find(0x10_0000_0000)).toBeUndefined();
  });
});

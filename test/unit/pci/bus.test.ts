import { describe, expect, it } from 'vitest';
import { PioBus, MmioBus } from '../../../src/bus/bus.js';
import { ResetPort } from '../../../src/devices/reset-port.js';
import type { AccessSize } from '../../../src/devices/device.js';
import { barDevice, formatPciAddress, PciBus, type PciFunction } from '../../../src/pci/bus.js';
import { PciConfigSpace } from '../../../src/pci/config-space.js';
import { PciReg } from '../../../src/pci/registers.js';
import {
  PCI_CONFIG_ADDRESS_PORT,
  PCI_CONFIG_DATA_PORT,
  PCI_HOST_BRIDGE_DEVICE_ID,
  PCI_HOST_BRIDGE_VENDOR_ID,
  PciConfigIo,
  PciEcam,
  PciHostBridge,
} from '../../../src/pci/host-bridge.js';

class TestFunction implements PciFunction {
  readonly config: PciConfigSpace;
  readonly writes: [number, number, number, number | bigint][] = [];
  constructor(deviceId: number) {
    this.config = new PciConfigSpace({ vendorId: 0x1af4, deviceId, classCode: 0x010000, interruptPin: 1 });
  }
  readBar(bar: number, offset: number, size: AccessSize): number {
    return (bar << 16) | offset | (size << 12);
  }
  writeBar(bar: number, offset: number, size: AccessSize, value: number | bigint): void {
    this.writes.push([bar, offset, size, value]);
  }
}

function machine() {
  const bus = new PciBus();
  bus.add(0, 0, new PciHostBridge());
  const blk = new TestFunction(0x1042);
  bus.add(3, 0, blk);
  const io = new PciConfigIo(bus);
  const ecam = new PciEcam(bus);
  /** Mechanism #1 as a guest uses it: outl the address, then in/out on 0xcfc + (reg & 3). */
  const cf8 = (b: number, d: number, f: number, reg: number) => io.write(0, 4, 0x8000_0000 | (b << 16) | (d << 11) | (f << 8) | (reg & 0xfc));
  const cfgRead = (d: number, f: number, reg: number, size: AccessSize) => {
    cf8(0, d, f, reg);
    return io.read(4 + (reg & 3), size);
  };
  const cfgWrite = (d: number, f: number, reg: number, size: AccessSize, v: number) => {
    cf8(0, d, f, reg);
    io.write(4 + (reg & 3), size, v);
  };
  const ecamAt = (b: number, d: number, f: number, reg: number) => (b << 20) | (d << 15) | (f << 12) | reg;
  return { bus, blk, io, ecam, cf8, cfgRead, cfgWrite, ecamAt };
}

describe('PciBus', () => {
  it('holds functions by device and function; absent ones read all-ones', () => {
    const { bus, blk } = machine();
    expect(bus.get(3, 0)).toBe(blk);
    expect(bus.get(3, 1)).toBeUndefined();
    expect(bus.get(3, 0, 1)).toBeUndefined();
    expect(bus.get(32, 0)).toBeUndefined();
    expect(bus.readConfig(0, 3, 0, 0, 4)).toBe(0x1042_1af4);
    expect(bus.readConfig(0, 4, 0, 0, 4)).toBe(0xffff_ffff);
    expect(bus.readConfig(0, 4, 0, 0, 8)).toBe(0xffff_ffff_ffff_ffffn);
    expect(bus.readConfig(1, 3, 0, 0, 2)).toBe(0xffff);
    bus.writeConfig(0, 9, 0, 4, 2, 7);
    expect(bus.counters).toEqual({ configReads: 1, configWrites: 0, absentReads: 3, absentWrites: 1 });
    expect(bus.entries().map((e) => formatPciAddress(e.address))).toEqual(['00:00.0', '00:03.0']);
  });

  it('add/addDevice/remove check slots and keep the multi-function bit', () => {
    const { bus, blk } = machine();
    expect(() => bus.add(3, 0, new TestFunction(1))).toThrow(/already taken/);
    expect(() => bus.add(3, 1, blk)).toThrow(/already on this bus/);
    expect(() => bus.add(32, 0, new TestFunction(1))).toThrow(RangeError);
    expect(() => bus.add(1, 8, new TestFunction(1))).toThrow(RangeError);
    expect(() => bus.add(1, 0, {} as PciFunction)).toThrow(TypeError);
    const f2 = new TestFunction(0x1043);
    bus.add(3, 2, f2);
    expect(blk.config.multiFunction).toBe(true);
    expect(bus.readConfig(0, 3, 0, PciReg.HEADER_TYPE, 1)).toBe(0x80);
    expect(bus.remove(3, 2)).toBe(f2);
    expect(blk.config.multiFunction).toBe(false);
    expect(bus.addDevice(new TestFunction(5))).toEqual({ bus: 0, device: 1, function: 0 });
    expect(bus.addDevice(new TestFunction(6))).toEqual({ bus: 0, device: 2, function: 0 });
    expect(bus.addDevice(new TestFunction(7))).toEqual({ bus: 0, device: 4, function: 0 });
    for (let d = 5; d < 32; d++) bus.addDevice(new TestFunction(d));
    expect(() => bus.addDevice(new TestFunction(99))).toThrow(/no free PCI device number/);
    expect(bus.remove(31, 0)).toBeDefined();
    expect(bus.remove(31, 0)).toBeUndefined();
  });

  it('host bridge identity at 00:00.0', () => {
    const { bus } = machine();
    expect(bus.readConfig(0, 0, 0, 0, 4)).toBe((PCI_HOST_BRIDGE_DEVICE_ID << 16) | PCI_HOST_BRIDGE_VENDOR_ID);
    expect(bus.readConfig(0, 0, 0, PciReg.REVISION_ID, 4)).toBe(0x0600_0000);
    expect(bus.readConfig(0, 0, 0, PciReg.HEADER_TYPE, 1)).toBe(0);
    const q35 = new PciHostBridge({ vendorId: 0x8086, deviceId: 0x29c0 });
    expect(q35.config.read(0, 4)).toBe(0x29c0_8086);
    expect(q35.config.bars()).toEqual([]);
  });

  it('barDevice forwards BAR accesses to the function', () => {
    const { blk } = machine();
    const dev = barDevice(blk, 2);
    expect(dev.read(0x10, 4)).toBe(0x2_4010);
    dev.write(8, 2, 0xbeef);
    expect(blk.writes).toEqual([[2, 8, 2, 0xbeef]]);
    const bare = barDevice({ config: blk.config }, 0);
    expect(bare.read(0, 2)).toBe(0xffff);
    expect(() => bare.write(0, 4, 1)).not.toThrow();
    expect(() => barDevice(blk, 6)).toThrow(RangeError);
  });
});

describe('PCI configuration mechanism #1 (0xcf8/0xcfc)', () => {
  it('CONFIG_ADDRESS keeps enable, bus, device, function, register; low and reserved bits read 0', () => {
    const { io } = machine();
    io.write(0, 4, 0xffff_ffff);
    expect(io.read(0, 4)).toBe(0x80ff_fffc);
    expect(io.configAddress).toBe(0x80ff_fffc);
    io.write(0, 2, 0); // narrow accesses do not reach it
    io.write(1, 1, 0);
    expect(io.read(0, 4)).toBe(0x80ff_fffc);
    expect(io.read(0, 2)).toBe(0xffff);
    expect(io.read(1, 1)).toBe(0xff);
    io.write(0, 4, 0x8000_0000);
    expect(io.read(0, 4)).toBe(0x8000_0000); // Linux's type-1 probe
  });

  it('byte, word and dword reads pick the byte by the port offset', () => {
    const { cfgRead } = machine();
    expect(cfgRead(3, 0, 0x00, 4)).toBe(0x1042_1af4);
    expect(cfgRead(3, 0, 0x00, 2)).toBe(0x1af4);
    expect(cfgRead(3, 0, 0x02, 2)).toBe(0x1042);
    expect(cfgRead(3, 0, 0x01, 1)).toBe(0x1a);
    expect(cfgRead(3, 0, 0x03, 1)).toBe(0x10);
    expect(cfgRead(3, 0, 0x0b, 1)).toBe(0x01);
    expect(cfgRead(3, 0, 0x3d, 1)).toBe(1);
    expect(cfgRead(0, 0, 0x0a, 2)).toBe(0x0600);
  });

  it('byte and word writes land in the right byte', () => {
    const { cfgWrite, cfgRead, blk } = machine();
    cfgWrite(3, 0, 0x3c, 1, 0x0b);
    expect(blk.config.interruptLine).toBe(0x0b);
    cfgWrite(3, 0, 0x04, 2, 0x0006);
    expect(blk.config.command).toBe(6);
    cfgWrite(3, 0, 0x0c, 1, 0x10);
    expect(cfgRead(3, 0, 0x0c, 4)).toBe(0x10);
  });

  it('absent functions, other buses and a clear enable bit read all-ones', () => {
    const { io, cfgRead, cf8 } = machine();
    expect(cfgRead(4, 0, 0, 4)).toBe(0xffff_ffff);
    expect(cfgRead(3, 1, 0, 2)).toBe(0xffff);
    expect(cfgRead(31, 7, 0xfc, 1)).toBe(0xff);
    cf8(1, 3, 0, 0);
    expect(io.read(4, 4)).toBe(0xffff_ffff);
    io.write(0, 4, (3 << 11) | 0x00); // enable bit clear
    expect(io.read(4, 4)).toBe(0xffff_ffff);
    io.write(0, 4, (3 << 11) | 0x3c);
    io.write(4, 1, 9);
    io.write(0, 4, 0x8000_0000 | (3 << 11) | 0x3c);
    expect(io.read(4, 1)).toBe(0); // the write with enable clear was dropped
  });

  it('works from a PioBus next to the 0xcf9 reset port', () => {
    const { io } = machine();
    const pio = new PioBus();
    const resets: string[] = [];
    pio.register(PCI_CONFIG_ADDRESS_PORT, 1, io.address, 'pci-address');
    pio.register(0xcf9, 1, new ResetPort({ onReset: (k) => resets.push(k) }), 'reset');
    pio.register(PCI_CONFIG_DATA_PORT, 4, io.data, 'pci-data');
    pio.write(0xcf8, 4, 0x8000_1800);
    expect(pio.read(0xcfc, 4)).toBe(0x1042_1af4);
    expect(pio.read(0xcfe, 2)).toBe(0x1042);
    expect(pio.read(0xcff, 1)).toBe(0x10);
    pio.write(0xcf9, 1, 0x06);
    expect(resets).toEqual(['hard']);
    expect(pio.read(0xcf8, 4)).toBe(0x8000_1800);
  });
});

describe('PCI ECAM', () => {
  it('routes bus/device/function/register, including extended registers', () => {
    const { ecam, ecamAt, blk } = machine();
    expect(ecam.length).toBe(1 << 20);
    expect(ecam.read(ecamAt(0, 3, 0, 0), 4)).toBe(0x1042_1af4);
    expect(ecam.read(ecamAt(0, 3, 0, 2), 2)).toBe(0x1042);
    expect(ecam.read(ecamAt(0, 3, 0, 0x0b), 1)).toBe(0x01);
    expect(ecam.read(ecamAt(0, 3, 0, 0), 8)).toBe((BigInt(blk.config.read(4, 4) as number) << 32n) | 0x1042_1af4n);
    blk.config.addExtendedCapability({ id: 0x23, version: 1, body: [0xaa, 0, 0, 0] });
    expect(ecam.read(ecamAt(0, 3, 0, 0x100), 4)).toBe(0x0001_0023);
    expect(ecam.read(ecamAt(0, 3, 0, 0x104), 1)).toBe(0xaa);
    ecam.write(ecamAt(0, 3, 0, 0x3c), 1, 0x0a);
    expect(blk.config.interruptLine).toBe(0x0a);
    ecam.write(ecamAt(0, 3, 0, 0x04), 2, 0x2);
    expect(blk.config.memoryEnabled).toBe(true);
  });

  it('absent functions and offsets past the window read all-ones', () => {
    const { ecam, ecamAt } = machine();
    expect(ecam.read(ecamAt(0, 3, 1, 0), 4)).toBe(0xffff_ffff);
    expect(ecam.read(ecamAt(0, 17, 0, 0), 2)).toBe(0xffff);
    expect(ecam.read(1 << 20, 4)).toBe(0xffff_ffff);
    expect(ecam.read(-4, 4)).toBe(0xffff_ffff);
    expect(() => ecam.write(1 << 20, 4, 0)).not.toThrow();
    const wide = new PciEcam(new PciBus(), { buses: 256 });
    expect(wide.length).toBe(256 << 20);
    expect(wide.read(ecamAt(255, 31, 7, 0xffc), 4)).toBe(0xffff_ffff);
    expect(() => new PciEcam(new PciBus(), { buses: 0 })).toThrow(/buses/);
    expect(() => new PciEcam({} as PciBus)).toThrow(TypeError);
  });

  it('works from an MmioBus', () => {
    const { ecam, ecamAt } = machine();
    const mmio = new MmioBus();
    mmio.register(0xe000_0000, ecam.length, ecam, 'ecam');
    expect(mmio.read(0xe000_0000 + ecamAt(0, 3, 0, 0), 4)).toBe(0x1042_1af4);
    expect(mmio.read(0xe000_0000 + ecamAt(0, 5, 0, 0), 4)).toBe(0xffff_ffff);
  });
});

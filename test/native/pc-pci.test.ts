/**
 * The PC's PCI bus against real KVM, without running guest code: Vm.raiseMsi, and a
 * createPc machine whose config ports, ECAM and BARs are reached through the runner's buses
 * the way the guest's accesses would be; the tables a Linux boot gets (MCFG, E820).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { KvmError, Vm } from '../../src/index.js';
import type { AccessSize } from '../../src/devices/device.js';
import type { PciFunction } from '../../src/pci/bus.js';
import { PciConfigSpace } from '../../src/pci/config-space.js';
import { PciCommand, PciReg } from '../../src/pci/registers.js';
import { createPc, type Pc } from '../../src/platform/index.js';
import { fixture, uniqueName } from '../helpers.js';

const MiB = 2 ** 20;
const vms: Vm[] = [];
const pcs: Pc[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) vm.destroy();
  for (const pc of pcs.splice(0)) pc.destroy();
});

/** A dummy function: 1af4:10ff, a 4 KiB mem32 BAR 0 and a 32-port I/O BAR 1 that echo their offsets. */
class Dummy implements PciFunction {
  readonly config = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x10ff, classCode: 0xff0000 });
  readonly writes: [number, number, number | bigint][] = [];
  constructor() {
    this.config.setBar(0, { kind: 'mem32', size: 0x1000 });
    this.config.setBar(1, { kind: 'io', size: 0x20 });
  }
  readBar(bar: number, offset: number, _size: AccessSize): number {
    return 0xa000 | (bar << 8) | offset;
  }
  writeBar(bar: number, offset: number, _size: AccessSize, value: number | bigint): void {
    this.writes.push([bar, offset, value]);
  }
}

describe('Vm.raiseMsi', () => {
  it('signals an MSI through KVM_SIGNAL_MSI and says whether a local APIC took it', () => {
    const vm = Vm.create(uniqueName('msi'), { vcpus: 2 });
    vms.push(vm);
    vm.vcpuFdNumber(0); // create the vCPUs (and their local APICs)
    vm.vcpuFdNumber(1);
    // NMI (delivery mode 4) and fixed messages to APIC id 0; whether a reset-state APIC accepts
    // them is KVM's business (a software-disabled APIC drops fixed interrupts)
    expect(typeof vm.raiseMsi(0xfee0_0000, 0, 4 << 8)).toBe('boolean');
    expect(typeof vm.raiseMsi(0xfee0_0000, 0, 0x30)).toBe('boolean');
    // no vCPU has APIC id 7: nobody takes it
    expect(vm.raiseMsi(0xfee0_7000, 0, 4 << 8)).toBe(false);
  });

  it('checks its arguments, needs the in-kernel irqchip, and refuses once destroyed', () => {
    const vm = Vm.create(uniqueName('msi'), { vcpus: 1 });
    vms.push(vm);
    expect(() => vm.raiseMsi('0xfee00000' as never, 0, 0)).toThrow(/^addressLo must be a number/);
    expect(() => vm.raiseMsi(0xfee0_0000, -1, 0)).toThrow(RangeError);
    expect(() => vm.raiseMsi(0xfee0_0000, 0, 2 ** 32)).toThrow(/^data must be an integer/);
    expect(() => vm.raiseMsi(0x1000, 0, 0x30)).toThrow(/addressLo must be in the MSI range 0xfee00000-0xfeefffff, got 0x1000/);
    const bare = Vm.create(uniqueName('msi'), { vcpus: 1, irqchip: false });
    vms.push(bare);
    let err: unknown;
    try {
      bare.raiseMsi(0xfee0_0000, 0, 0x30);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KvmError);
    expect((err as KvmError).code).toBe('ENXIO');
    expect((err as KvmError).message).toMatch(/irqchip/);
    vm.destroy();
    expect(() => vm.raiseMsi(0xfee0_0000, 0, 0x30)).toThrow(KvmError);
  });
});

describe('createPc: the PCI bus', () => {
  it('finds the host bridge and an added function through 0xcf8/0xcfc and ECAM, with the BARs it assigned, mapped', () => {
    const pc = createPc({ memory: 64 * MiB });
    pcs.push(pc);
    const fn = new Dummy();
    const added = pc.addPciDevice(fn, { slot: 3 });
    expect(added.slot).toBe(3);
    const pio = pc.runner.pio.bus;
    const mmio = pc.runner.mmio.bus;
    const cfg = (dev: number, reg: number): number => {
      pio.write(0xcf8, 4, (0x8000_0000 | (dev << 11) | reg) >>> 0);
      return pio.read(0xcfc, 4) as number;
    };
    const ecam = (dev: number, reg: number): number => mmio.read(0xe000_0000 + (dev << 15) + reg, 4) as number;
    // enumeration: vendor/device ids of every device number
    const found = [...Array(32).keys()].filter((d) => (cfg(d, 0) & 0xffff) !== 0xffff);
    expect(found).toEqual([0, 3]);
    expect(cfg(0, 0)).toBe(0x0008_1b36);
    expect(ecam(0, 0)).toBe(0x0008_1b36);
    expect(cfg(3, 0)).toBe(0x10ff_1af4);
    expect(ecam(3, 0)).toBe(0x10ff_1af4);
    expect(ecam(3, PciReg.BAR0)).toBe(0xc000_0000);
    expect(cfg(3, PciReg.BAR0 + 4)).toBe(0xc000 | 1);
    expect(cfg(3, PciReg.COMMAND) & 0xffff).toBe(PciCommand.IO | PciCommand.MEMORY);
    expect(added.bars.map((b) => [b.bar, b.window, b.address])).toEqual([
      [0, 'mmio32', 0xc000_0000],
      [1, 'io', 0xc000],
    ]);
    // the BARs answer on the runner's buses
    expect(mmio.read(0xc000_0010, 4)).toBe(0xa010);
    expect(pio.read(0xc004, 2)).toBe(0xa104);
    pio.write(0xc008, 1, 0x5a);
    expect(fn.writes).toEqual([[1, 8, 0x5a]]);
    // 0xcf9 still belongs to the reset control register
    expect(pio.find(0xcf9)?.name).toBe('reset control');
    expect(pio.find(0xcf8)?.name).toBe('PCI CONFIG_ADDRESS');
    // a guest move through ECAM moves the region
    mmio.write(0xe000_0000 + (3 << 15) + PciReg.BAR0, 4, 0xd000_0000);
    expect(mmio.find(0xc000_0000)).toBeUndefined();
    expect(mmio.read(0xd000_0020, 4)).toBe(0xa020);
  });

  it('backs Pc.msi with KVM_SIGNAL_MSI and never throws for what a guest can program', () => {
    const pc = createPc({ memory: 16 * MiB });
    pcs.push(pc);
    pc.vm.vcpuFdNumber(0);
    pc.msi.signal(0xfee0_0000, 0, 4 << 8);
    pc.msi.signal(0x1234_0000, 0, 0x30);
    expect(pc.pci.counters.msiDropped).toBe(1);
    pc.destroy();
    expect(() => pc.msi.signal(0xfee0_0000, 0, 0x30)).not.toThrow();
    expect(pc.pci.counters.msiDropped).toBe(2);
  });

  it('gives a Linux boot an MCFG for the ECAM and reserves the ECAM in the zero page E820', () => {
    const pc = createPc({ memory: 64 * MiB });
    pcs.push(pc);
    const state = pc.loadLinux(fixture('bz-tiny.bin'));
    const mem = pc.memory;
    const zp = state.linux.zeroPageAt;
    const rsdp = Number(mem.readU64(zp + 0x70));
    expect(String.fromCharCode(...mem.readBytes(rsdp, 8))).toBe('RSD PTR ');
    const xsdt = Number(mem.readU64(rsdp + 24));
    const entries = (mem.readU32(xsdt + 4) - 36) / 8;
    const sigs = [...Array(entries).keys()].map((i) => {
      const at = Number(mem.readU64(xsdt + 36 + 8 * i));
      return [String.fromCharCode(...mem.readBytes(at, 4)), at] as const;
    });
    expect(sigs.map(([s]) => s)).toEqual(['FACP', 'APIC', 'MCFG']);
    const mcfg = sigs[2][1];
    expect(mem.readU64(mcfg + 44)).toBe(0xe000_0000n);
    expect([mem.readU8(mcfg + 54), mem.readU8(mcfg + 55)]).toEqual([0, 0]);
    const n = mem.readU8(zp + 0x1e8);
    const e820 = [...Array(n).keys()].map((i) => ({
      addr: Number(mem.readU64(zp + 0x2d0 + 20 * i)),
      size: Number(mem.readU64(zp + 0x2d0 + 20 * i + 8)),
      type: mem.readU32(zp + 0x2d0 + 20 * i + 16),
    }));
    expect(e820).toContainEqual({ addr: 0xe000_0000, size: MiB, type: 2 });
  });
});

import { describe, expect, it } from 'vitest';
import type { AccessSize } from '../../../src/devices/device.js';
import { ResetPort, type ResetKind } from '../../../src/devices/reset-port.js';
import type { PciFunction } from '../../../src/pci/bus.js';
import { PciConfigSpace, type PciBarSpec } from '../../../src/pci/config-space.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';
import { RunnerBus } from '../../../src/runner/runner-bus.js';
import { pciLayout, PORTS, ramRanges } from '../../../src/platform/layout.js';
import { PcPci, type PciBusHost } from '../../../src/platform/pci.js';

const MiB = 2 ** 20;

/** A function with a scratch register file in each BAR. */
class Scratch implements PciFunction {
  readonly config: PciConfigSpace;
  readonly writes: [number, number, number, number | bigint][] = [];
  constructor(bars: [number, PciBarSpec][], deviceId = 0x1000) {
    this.config = new PciConfigSpace({ vendorId: 0x1af4, deviceId, classCode: 0xff0000, interruptPin: 1 });
    for (const [i, spec] of bars) this.config.setBar(i, spec);
  }
  readBar(bar: number, offset: number, size: AccessSize): number {
    return ((bar << 24) | offset) & (size === 1 ? 0xff : size === 2 ? 0xffff : 0xffff_ffff);
  }
  writeBar(bar: number, offset: number, size: AccessSize, value: number | bigint): void {
    this.writes.push([bar, offset, size, value]);
  }
}

interface Rig {
  pci: PcPci;
  host: PciBusHost & { started: boolean };
  msi: [number, number, number][];
  ram: { base: number; size: number }[];
  msiResult: { value: boolean | 'throw' };
}

function rig(memory = 64 * MiB): Rig {
  const owner = { started: false };
  const host = {
    pio: new RunnerBus(owner, 'pio'),
    mmio: new RunnerBus(owner, 'mmio'),
    get started() {
      return owner.started;
    },
    set started(v: boolean) {
      owner.started = v;
    },
  };
  const msi: [number, number, number][] = [];
  const ram = ramRanges(memory).map((r) => ({ base: r.gpa, size: r.length }));
  const msiResult: { value: boolean | 'throw' } = { value: true };
  const pci = new PcPci(host, {
    layout: pciLayout(memory),
    raiseMsi: (lo, hi, data) => {
      if (msiResult.value === 'throw') throw new Error('VM is gone');
      msi.push([lo, hi, data]);
      return msiResult.value;
    },
    memoryOverlaps: (gpa, len) => ram.some((r) => gpa < r.base + r.size && r.base < gpa + len),
  });
  return { pci, host, msi, ram, msiResult };
}

/** Config mechanism #1 through the port bus. */
function cf8(host: PciBusHost) {
  const pio = host.pio.bus;
  const addr = (dev: number, reg: number, fn = 0): number => (0x8000_0000 | (dev << 11) | (fn << 8) | (reg & 0xfc)) >>> 0;
  return {
    read: (dev: number, reg: number, size: AccessSize = 4): number => {
      pio.write(0xcf8, 4, addr(dev, reg));
      return pio.read(0xcfc + (reg & 3), size) as number;
    },
    write: (dev: number, reg: number, size: AccessSize, v: number): void => {
      pio.write(0xcf8, 4, addr(dev, reg));
      pio.write(0xcfc + (reg & 3), size, v);
    },
  };
}

describe('PcPci: the bus and its config mechanisms', () => {
  it('puts the host bridge at 00:00.0 and answers 0xcf8/0xcfc and ECAM; absent functions read all-ones', () => {
    const { pci, host } = rig();
    const c = cf8(host);
    expect(c.read(0, 0)).toBe(0x0008_1b36);
    expect(c.read(0, 8) >>> 8).toBe(0x060000);
    expect(c.read(1, 0)).toBe(0xffff_ffff);
    const mmio = host.mmio.bus;
    expect(mmio.find(0xe000_0000)?.name).toBe('PCI ECAM');
    expect(mmio.find(0xe00f_ffff)?.name).toBe('PCI ECAM');
    expect(mmio.find(0xe010_0000)).toBeUndefined();
    expect(mmio.read(0xe000_0000, 4)).toBe(0x0008_1b36);
    expect(mmio.read(0xe000_0000 + (5 << 15), 2)).toBe(0xffff);
    expect(pci.bus.get(0, 0)).toBe(pci.hostBridge);
    // CONFIG_ADDRESS reads back (what Linux's type 1 probe checks)
    host.pio.bus.write(0xcf8, 4, 0x8000_0000);
    expect(host.pio.bus.read(0xcf8, 4)).toBe(0x8000_0000);
  });

  it('leaves 0xcf9 to the reset register: byte accesses there reset, dword accesses at 0xcf8 do not', () => {
    const { host } = rig();
    const resets: ResetKind[] = [];
    host.pio.register(PORTS.reset.base, PORTS.reset.length, new ResetPort({ onReset: (k) => resets.push(k) }), { name: 'reset control' });
    host.pio.bus.write(0xcf8, 4, 0x8000_0000 | 0x0600);
    expect(resets).toEqual([]);
    host.pio.bus.write(0xcf9, 1, 0x02);
    host.pio.bus.write(0xcf9, 1, 0x06);
    expect(resets).toEqual(['hard']);
    expect(host.pio.bus.find(0xcf8)?.name).toBe('PCI CONFIG_ADDRESS');
    expect([0xcfc, 0xcfd, 0xcfe, 0xcff].map((p) => host.pio.bus.find(p)?.name)).toEqual(Array(4).fill('PCI CONFIG_DATA'));
    expect(host.pio.bus.find(0xcfa)).toBeUndefined();
  });
});

describe('PcPci.add: placing and wiring BARs', () => {
  const bars: [number, PciBarSpec][] = [
    [0, { kind: 'io', size: 0x40 }],
    [1, { kind: 'mem32', size: 0x1000 }],
    [2, { kind: 'mem64', size: 0x4000, prefetchable: true }],
  ];

  it('places the BARs in the windows, enables decode and maps each BAR on its bus', () => {
    const { pci, host } = rig();
    const fn = new Scratch(bars);
    const r = pci.add(fn);
    expect(r.slot).toBe(1);
    expect(r.address).toEqual({ bus: 0, device: 1, function: 0 });
    const at = Object.fromEntries(r.bars.map((b) => [b.bar, b]));
    expect(at[0]).toMatchObject({ window: 'io', address: 0xc000 });
    expect(at[1]).toMatchObject({ window: 'mmio32', address: 0xc000_0000 });
    expect(at[2]).toMatchObject({ window: 'mmio64', address: 2 ** 32 });
    expect(fn.config.command & (PciCommand.IO | PciCommand.MEMORY)).toBe(PciCommand.IO | PciCommand.MEMORY);
    expect(fn.config.command & PciCommand.BUS_MASTER).toBe(0);
    expect(host.pio.bus.find(0xc000)?.name).toBe('PCI 00:01.0 BAR0');
    expect(host.mmio.bus.find(0xc000_0fff)?.name).toBe('PCI 00:01.0 BAR1');
    expect(host.mmio.bus.find(2 ** 32 + 0x3fff)?.name).toBe('PCI 00:01.0 BAR2');
    expect(host.mmio.bus.read(0xc000_0010, 4)).toBe((1 << 24) | 0x10);
    host.mmio.bus.write(2 ** 32 + 8, 8, 0x1234n);
    host.pio.bus.write(0xc004, 2, 0xbeef);
    expect(fn.writes).toEqual([[2, 8, 8, 0x1234n], [0, 4, 2, 0xbeef]]);
    // the guest sees the placement through the config space
    const c = cf8(host);
    expect(c.read(1, PciReg.BAR0)).toBe(0xc001);
    expect(c.read(1, PciReg.BAR0 + 4)).toBe(0xc000_0000);
    expect([c.read(1, PciReg.BAR0 + 8), c.read(1, PciReg.BAR0 + 12)]).toEqual([0x0000_000c, 1]);
    expect(host.mmio.bus.read(0xe000_0000 + (1 << 15) + PciReg.BAR0 + 4, 4)).toBe(0xc000_0000);
  });

  it('honours opts.slot and refuses taken or bad slots and options, leaving nothing behind', () => {
    const { pci } = rig();
    expect(pci.add(new Scratch([]), { slot: 7 }).slot).toBe(7);
    expect(pci.add(new Scratch([])).slot).toBe(1);
    expect(() => pci.add(new Scratch(bars), { slot: 7 })).toThrow(/00:07\.0 is already taken/);
    expect(() => pci.add(new Scratch([]), { slot: 0 })).toThrow(/opts\.slot must be in \[1, 31\]/);
    expect(() => pci.add(new Scratch([]), { slot: 1.5 })).toThrow(TypeError);
    expect(() => pci.add({} as never)).toThrow(/fn must be a PciFunction/);
    expect(() => pci.add(new Scratch(bars), { posted: [{ bar: 3, offset: 0, length: 4 }] })).toThrow(/opts\.posted\[0\]\.bar: the function declares no BAR 3/);
    expect(() => pci.add(new Scratch(bars), { posted: [{ bar: 1, offset: 0xffc, length: 8 }] })).toThrow(/opts\.posted\[0\]\.length must be in \[1, 4\]/);
    expect(() => pci.add(new Scratch(bars), { posted: [{ bar: 1, offset: 0, length: 8 }, { bar: 1, offset: 4, length: 8 }] })).toThrow(/opts\.posted\[1\] overlaps/);
    expect(() => pci.add(new Scratch(bars), { posted: 'all' as never })).toThrow(TypeError);
    expect(pci.bus.entries().map((e) => e.address.device)).toEqual([0, 1, 7]);
    expect(pci.allocator.free('mmio32')).toBe(0x2000_0000);
  });

  it('throws RangeError when the BARs do not fit, and when a BAR cannot be mapped where it was placed, undoing it all', () => {
    const { pci, host } = rig();
    expect(() => pci.add(new Scratch([[0, { kind: 'mem32', size: 2 ** 31 }]]))).toThrow(/no room for a mem32 BAR/);
    host.mmio.register(0xc000_0000, 0x1000, { read: () => 0, write: () => {} }, { name: 'by hand' });
    const fn = new Scratch([[0, { kind: 'mem32', size: 0x1000 }]]);
    // the allocator does not know the hand-made device: its first choice overlaps it
    expect(() => pci.add(fn)).toThrow(/PCI 00:01\.0: BAR0 at 0xc0000000\+0x1000 overlaps by hand/);
    expect(pci.bus.get(1, 0)).toBeUndefined();
    expect(fn.config.command).toBe(0);
    expect(fn.config.bar(0)?.address).toBe(0);
    expect(pci.allocator.free('mmio32')).toBe(0x2000_0000);
    expect(pci.counters.barConflicts).toBe(0);
  });

  it('refuses to add once the vCPUs started', () => {
    const { pci, host } = rig();
    host.started = true;
    expect(() => pci.add(new Scratch([]))).toThrow(/before the vCPUs start/);
  });
});

describe('PcPci: BARs the guest moves', () => {
  it('moves a region when the guest reprograms the BAR, drops it while decode is off', () => {
    const { pci, host } = rig();
    const fn = new Scratch([[0, { kind: 'mem32', size: 0x1000 }], [1, { kind: 'io', size: 0x20 }]]);
    pci.add(fn, { slot: 3 });
    const c = cf8(host);
    // Linux sizing a BAR: decode off, all-ones, restore, decode on
    c.write(3, PciReg.COMMAND, 2, 0);
    expect(host.mmio.bus.find(0xc000_0000)).toBeUndefined();
    expect(host.pio.bus.find(0xc000)).toBeUndefined();
    c.write(3, PciReg.BAR0, 4, 0xffff_ffff);
    expect(c.read(3, PciReg.BAR0)).toBe(0xffff_f000);
    c.write(3, PciReg.BAR0, 4, 0xc000_0000);
    c.write(3, PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.IO);
    expect(host.mmio.bus.find(0xc000_0000)?.name).toBe('PCI 00:03.0 BAR0');
    // a move to a free spot in the window
    c.write(3, PciReg.BAR0, 4, 0xd000_0000);
    expect(host.mmio.bus.find(0xc000_0000)).toBeUndefined();
    expect(host.mmio.bus.read(0xd000_0004, 4)).toBe(4);
    c.write(3, PciReg.BAR0 + 4, 4, 0xe000);
    expect(host.pio.bus.find(0xe000)?.name).toBe('PCI 00:03.0 BAR1');
    expect(host.pio.bus.find(0xc000)).toBeUndefined();
    expect(pci.counters.barConflicts).toBe(0);
  });

  it('leaves a mapping over another device, RAM, KVM ranges or the ECAM unmapped and counts it, without throwing', () => {
    const r = rig();
    const { pci, host } = r;
    const a = new Scratch([[0, { kind: 'mem32', size: 0x1000 }], [1, { kind: 'io', size: 0x10 }]]);
    const b = new Scratch([[0, { kind: 'mem32', size: 0x1000 }]], 0x1001);
    pci.add(a, { slot: 1 });
    pci.add(b, { slot: 2 });
    const c = cf8(host);
    const bBase = b.config.bar(0)!.address;
    for (const [addr, n] of [[bBase, 1], [0x10_0000, 2], [0xfee0_0000, 3], [0xfec0_0000, 4], [0xe000_0000, 5], [0xfeff_c000, 6]] as const) {
      expect(() => c.write(1, PciReg.BAR0, 4, addr)).not.toThrow();
      expect(a.config.bar(0)?.mapped).toBe(addr); // the function decodes it ...
      expect(host.mmio.bus.find(addr)?.name, `0x${addr.toString(16)}`).not.toBe('PCI 00:01.0 BAR0'); // ... the platform does not map it
      expect(pci.counters.barConflicts).toBe(n);
    }
    expect(host.mmio.bus.find(bBase)?.name).toBe('PCI 00:02.0 BAR0');
    // I/O BARs: the in-kernel PIT and the platform's own ports are taken
    c.write(1, PciReg.BAR0 + 4, 4, 0x40);
    c.write(1, PciReg.BAR0 + 4, 4, 0xcf0);
    expect(host.pio.bus.find(0x40)).toBeUndefined();
    expect(host.pio.bus.find(0xcf8)?.name).toBe('PCI CONFIG_ADDRESS');
    expect(pci.counters.barConflicts).toBe(8);
  });

  it('maps a refused BAR once the one in its way moves off', () => {
    const { pci, host } = rig();
    const a = new Scratch([[0, { kind: 'mem32', size: 0x1000 }]]);
    const b = new Scratch([[0, { kind: 'mem32', size: 0x1000 }]], 0x1001);
    pci.add(a, { slot: 1 });
    pci.add(b, { slot: 2 });
    const c = cf8(host);
    const [x, y] = [a.config.bar(0)!.address, b.config.bar(0)!.address];
    // a guest swapping the two BARs one write at a time
    c.write(1, PciReg.BAR0, 4, y); // a over b: refused
    expect(pci.counters.barConflicts).toBe(1);
    c.write(2, PciReg.BAR0, 4, x); // b leaves: a maps at y; b goes to x (free now)
    expect(host.mmio.bus.find(y)?.name).toBe('PCI 00:01.0 BAR0');
    expect(host.mmio.bus.find(x)?.name).toBe('PCI 00:02.0 BAR0');
    expect(pci.counters.barConflicts).toBe(1);
  });

  it('takes an intermediate 64-bit move (low dword first) in its stride', () => {
    const { pci, host } = rig(5 * 2 ** 30);
    const fn = new Scratch([[0, { kind: 'mem64', size: 0x4000 }]]);
    const r = pci.add(fn);
    expect(r.bars[0].address).toBe(6 * 2 ** 30);
    const c = cf8(host);
    // 6 GiB = 0x1_8000_0000 -> 0x2_4000_0000, low dword first
    c.write(1, PciReg.BAR0, 4, 0x4000_0000 | 0xc); // 0x1_4000_0000: inside the RAM at 4-6 GiB: refused
    expect(fn.config.bar(0)?.mapped).toBe(0x1_4000_0000);
    expect(pci.counters.barConflicts).toBe(1);
    c.write(1, PciReg.BAR0 + 4, 4, 2); // 0x2_4000_0000: above RAM, free
    expect(host.mmio.bus.find(0x2_4000_0000)?.name).toBe('PCI 00:01.0 BAR0');
    expect(host.mmio.bus.find(6 * 2 ** 30)).toBeUndefined();
  });
});

describe('PcPci: posted sub-ranges', () => {
  const notify = { bar: 0, offset: 0x3000, length: 0x10 };

  it('splits the BAR around the posted range; preparePosted makes it posted at the current address', () => {
    const { pci, host } = rig();
    const fn = new Scratch([[0, { kind: 'mem64', size: 0x4000 }], [2, { kind: 'io', size: 0x20 }]]);
    const r = pci.add(fn, { posted: [notify, { bar: 2, offset: 0x10, length: 4 }] });
    const base = r.bars[0].address;
    const mmio = host.mmio.bus;
    expect(mmio.find(base)?.name).toBe('PCI 00:01.0 BAR0+0x0');
    expect(mmio.find(base + 0x3000)).toMatchObject({ base: base + 0x3000, length: 0x10, name: 'PCI 00:01.0 BAR0+0x3000' });
    expect(mmio.find(base + 0x3010)).toMatchObject({ base: base + 0x3010, length: 0xff0 });
    expect(host.mmio.posted).toEqual([]); // not yet: the workers learn posted ranges at start
    // the pieces see BAR offsets
    expect(mmio.read(base + 0x3008, 4)).toBe(0x3008);
    mmio.write(base + 0x3004, 2, 7);
    mmio.write(base + 0x3ffc, 4, 9);
    expect(fn.writes).toEqual([[0, 0x3004, 2, 7], [0, 0x3ffc, 4, 9]]);
    pci.preparePosted();
    expect(host.mmio.posted).toEqual([{ base: base + 0x3000, length: 0x10 }]);
    expect(host.pio.posted).toEqual([{ base: 0xc010, length: 4 }]);
    expect(mmio.find(base + 0x3000)?.name).toBe('PCI 00:01.0 BAR0+0x3000 (posted)');
    pci.preparePosted(); // once only
    expect(host.mmio.posted).toHaveLength(1);
    expect(mmio.read(base + 0x3008, 4)).toBe(0x3008);
  });

  it('after the start, a moved BAR is mapped with its sub-ranges not posted, and back at the old place it works again', () => {
    const { pci, host } = rig();
    const fn = new Scratch([[0, { kind: 'mem32', size: 0x4000 }]]);
    const base = pci.add(fn, { posted: [notify] }).bars[0].address;
    pci.preparePosted();
    host.started = true;
    const c = cf8(host);
    expect(() => c.write(1, PciReg.BAR0, 4, 0xd000_0000)).not.toThrow();
    expect(host.mmio.bus.find(0xd000_3000)?.name).toBe('PCI 00:01.0 BAR0+0x3000'); // not posted here
    expect(host.mmio.posted).toEqual([{ base: base + 0x3000, length: 0x10 }]); // unchanged: fixed at start
    expect(host.mmio.bus.find(base)).toBeUndefined();
    c.write(1, PciReg.BAR0, 4, base);
    expect(host.mmio.bus.find(base + 0x3000)?.base).toBe(base + 0x3000);
    host.mmio.bus.write(base + 0x3000, 4, 1);
    expect(fn.writes).toEqual([[0, 0x3000, 4, 1]]);
  });
});

describe('PcPci.msi', () => {
  it('delivers through raiseMsi; drops (and counts) non-interrupt addresses and failures; counts blocked ones; never throws', () => {
    const { pci, msi, msiResult } = rig();
    pci.msi.signal(0xfee0_1000, 0, 0x4051);
    expect(msi).toEqual([[0xfee0_1000, 0, 0x4051]]);
    pci.msi.signal(0x1000_0000, 0, 0x41);
    expect(pci.counters.msiDropped).toBe(1);
    msiResult.value = false;
    pci.msi.signal(0xfee0_0000, 0, 0x30);
    expect(pci.counters.msiBlocked).toBe(1);
    msiResult.value = 'throw';
    expect(() => pci.msi.signal(0xfee0_0000, 0, 0x30)).not.toThrow();
    expect(pci.counters).toMatchObject({ msiDropped: 2, msiBlocked: 1 });
  });
});

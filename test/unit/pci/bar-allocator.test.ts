import { describe, expect, it } from 'vitest';
import { BarAllocator } from '../../../src/pci/bar-allocator.js';
import { PciConfigSpace, type PciBarChange } from '../../../src/pci/config-space.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';

const windows = () => ({
  mmio32: { base: 0xc000_0000, size: 0x1000_0000 },
  mmio64: { base: 0x100_0000_0000, size: 0x10_0000_0000 },
  io: { base: 0xc000, size: 0x1000 },
});

describe('BarAllocator', () => {
  it('places BARs naturally aligned, lowest fit first, filling alignment holes', () => {
    const a = new BarAllocator(windows());
    expect(a.allocate('mem32', 0x1000)).toEqual({ window: 'mmio32', address: 0xc000_0000 });
    expect(a.allocate('mem32', 0x10_0000)).toEqual({ window: 'mmio32', address: 0xc010_0000 });
    expect(a.allocate('mem32', 0x2000)).toEqual({ window: 'mmio32', address: 0xc000_2000 }); // in the hole
    expect(a.allocate('mem32', 16)).toEqual({ window: 'mmio32', address: 0xc000_1000 }); // its own page
    expect(a.allocate('mem32', 16)).toEqual({ window: 'mmio32', address: 0xc000_4000 });
    expect(a.allocate('mem64', 0x4000)).toEqual({ window: 'mmio64', address: 0x100_0000_0000 });
    expect(a.allocate('mem64', 2 ** 34)).toEqual({ window: 'mmio64', address: 0x104_0000_0000 });
    expect(a.allocate('io', 0x20)).toEqual({ window: 'io', address: 0xc000 });
    expect(a.allocate('io', 4)).toEqual({ window: 'io', address: 0xc020 });
    expect(a.allocate('io', 0x100)).toEqual({ window: 'io', address: 0xc100 });
    for (const [w, addr, size] of [
      ['mmio32', 0xc010_0000, 0x10_0000],
      ['mmio64', 0x104_0000_0000, 2 ** 34],
      ['io', 0xc100, 0x100],
    ] as const) {
      expect(addr % size).toBe(0);
      expect(a.release(w, addr)).toBe(true);
      expect(a.release(w, addr)).toBe(false);
    }
  });

  it('a natural alignment larger than the window base is honoured', () => {
    const a = new BarAllocator({ mmio32: { base: 0xe000_1000, size: 0x1000_0000 } });
    expect(a.allocate('mem32', 0x1000_0000 / 2).address).toBe(0xe800_0000);
    expect(a.allocateIn('mmio32', 0x1000)).toBe(0xe000_1000);
  });

  it('exhaustion is a RangeError naming the window', () => {
    const a = new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x4000 }, io: { base: 0x1000, size: 0x10 } });
    a.allocate('mem32', 0x2000);
    a.allocate('mem32', 0x1000);
    expect(() => a.allocate('mem32', 0x2000)).toThrow(/no room for a mem32 BAR of 0x2000 bytes in the mmio32 window 0xc0000000-0xc0003fff \(0x1000 bytes free\)/);
    expect(a.free('mmio32')).toBe(0x1000);
    expect(a.allocate('mem64', 0x1000)).toEqual({ window: 'mmio32', address: 0xc000_3000 }); // no 64-bit window: falls back
    expect(() => a.allocate('mem64', 0x1000)).toThrow(/mmio32 window/);
    a.allocate('io', 0x10);
    expect(() => a.allocate('io', 4)).toThrow(/io window/);
    const noIo = new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x1000 } });
    expect(() => noIo.allocate('io', 4)).toThrow(/no io window/);
    expect(() => noIo.allocateIn('mmio64', 0x1000)).toThrow(RangeError);
    expect(noIo.free('io')).toBe(0);
  });

  it('a full 64-bit window falls back to the 32-bit one', () => {
    const a = new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x10_0000 }, mmio64: { base: 2 ** 40, size: 0x1000 } });
    expect(a.allocate('mem64', 0x1000).window).toBe('mmio64');
    expect(a.allocate('mem64', 0x1000)).toEqual({ window: 'mmio32', address: 0xc000_0000 });
  });

  it('never hands out address 0', () => {
    const a = new BarAllocator({ mmio32: { base: 0, size: 0x10_0000 }, io: { base: 0, size: 0x100 } });
    expect(a.allocate('io', 0x10).address).toBe(0x10);
    expect(a.allocate('mem32', 0x1000).address).toBe(0x1000);
  });

  it('validates windows and sizes', () => {
    expect(() => new BarAllocator({ mmio32: { base: 0xf000_0000, size: 0x2000_0000 } })).toThrow(/mmio32.*end at or below/);
    expect(() => new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0 } })).toThrow(/mmio32.size/);
    expect(() => new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x1000 }, io: { base: 0xff00, size: 0x200 } })).toThrow(/io/);
    expect(() => new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x1000 }, mmio64: { base: 0xc000_0000, size: 0x1000 } })).toThrow(/overlaps/);
    expect(() => new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x1000 }, minMemoryAlign: 3000 })).toThrow(/minMemoryAlign/);
    expect(() => new BarAllocator({} as never)).toThrow(TypeError);
    const a = new BarAllocator(windows());
    expect(() => a.allocate('mem32', 0x3000)).toThrow(/power of two/);
    expect(() => a.allocate('io', 512)).toThrow(RangeError);
    expect(() => a.allocate('rom' as 'io', 16)).toThrow(TypeError);
    expect(a.window('mmio64')).toEqual({ base: 0x100_0000_0000, size: 0x10_0000_0000 });
  });

  it('assign() places and programs every BAR of a function, largest first', () => {
    const c = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
    c.setBar(0, { kind: 'io', size: 0x40 });
    c.setBar(1, { kind: 'mem32', size: 0x1000 });
    c.setBar(2, { kind: 'mem64', size: 0x4000, prefetchable: true });
    c.setBar(4, { kind: 'mem32', size: 0x10_0000 });
    const a = new BarAllocator(windows());
    const placed = a.assign(c);
    expect(placed).toEqual([
      { bar: 0, kind: 'io', size: 0x40, window: 'io', address: 0xc000 },
      { bar: 1, kind: 'mem32', size: 0x1000, window: 'mmio32', address: 0xc010_0000 },
      { bar: 2, kind: 'mem64', size: 0x4000, window: 'mmio64', address: 0x100_0000_0000 },
      { bar: 4, kind: 'mem32', size: 0x10_0000, window: 'mmio32', address: 0xc000_0000 },
    ]);
    expect(c.read(PciReg.BAR0, 4)).toBe(0xc001);
    expect(c.read(PciReg.BAR0 + 8, 4)).toBe(0x0000_000c);
    expect(c.read(PciReg.BAR0 + 12, 4)).toBe(0x100);
    const changes: PciBarChange[] = [];
    c.onBarChange((e) => changes.push(e));
    c.write(PciReg.COMMAND, 2, PciCommand.IO | PciCommand.MEMORY);
    expect(changes.map((e) => [e.bar, e.address])).toEqual([
      [0, 0xc000],
      [1, 0xc010_0000],
      [2, 0x100_0000_0000],
      [4, 0xc000_0000],
    ]);
  });

  it('assign() releases what it placed when a BAR does not fit', () => {
    const c = new PciConfigSpace({ vendorId: 1, deviceId: 2, classCode: 0 });
    c.setBar(0, { kind: 'mem32', size: 0x1000 });
    c.setBar(1, { kind: 'io', size: 0x10 });
    const a = new BarAllocator({ mmio32: { base: 0xc000_0000, size: 0x10_0000 } });
    expect(() => a.assign(c)).toThrow(/io window/);
    expect(a.free('mmio32')).toBe(0x10_0000);
    expect(c.bar(0)?.address).toBe(0);
  });
});

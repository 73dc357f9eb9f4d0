import { describe, expect, it } from 'vitest';
import { PciConfigSpace, type PciBarChange } from '../../../src/pci/config-space.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';

const BAR = (n: number) => PciReg.BAR0 + 4 * n;

function make() {
  const c = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
  const changes: PciBarChange[] = [];
  c.onBarChange((e) => changes.push(e));
  return { c, changes };
}

/** What a guest's sizing routine does: save, write all-ones, read, restore. */
function size32(c: PciConfigSpace, off: number): number {
  const old = c.read(off, 4) as number;
  c.write(off, 4, 0xffff_ffff);
  const mask = c.read(off, 4) as number;
  c.write(off, 4, old);
  return mask;
}

describe('PCI BARs', () => {
  it('32-bit memory BAR: sizing reads the size mask with the flags; writes are masked to the alignment', () => {
    const { c } = make();
    c.setBar(0, { kind: 'mem32', size: 0x4000 });
    c.setBar(1, { kind: 'mem32', size: 16, prefetchable: true });
    expect(c.read(BAR(0), 4)).toBe(0);
    expect(size32(c, BAR(0))).toBe(0xffff_c000);
    expect(size32(c, BAR(1))).toBe(0xffff_fff8);
    expect(((~(size32(c, BAR(0)) & ~0xf) >>> 0) + 1) >>> 0).toBe(0x4000);
    c.write(BAR(0), 4, 0xfebf_1234);
    expect(c.read(BAR(0), 4)).toBe(0xfebf_0000);
    c.write(BAR(0) + 1, 1, 0xff); // a byte write: bits 8-13 stay 0
    expect(c.read(BAR(0), 4)).toBe(0xfebf_c000);
    expect(c.bar(0)).toMatchObject({ kind: 'mem32', size: 0x4000, address: 0xfebf_c000, mapped: undefined });
  });

  it('64-bit memory BAR: both halves size and program; the upper slot is not a BAR of its own', () => {
    const { c } = make();
    c.setBar(2, { kind: 'mem64', size: 0x10_0000, prefetchable: true });
    expect(c.read(BAR(2), 4)).toBe(0xc);
    expect(size32(c, BAR(2))).toBe(0xfff0_000c);
    expect(size32(c, BAR(3))).toBe(0xffff_ffff);
    c.write(BAR(2), 4, 0x8000_0000);
    c.write(BAR(3), 4, 0x1);
    expect(c.bar(2)?.address).toBe(0x1_8000_0000);
    expect(c.bar(3)).toBeUndefined();
    expect(() => c.setBar(3, { kind: 'mem32', size: 16 })).toThrow(/slot 3/);
  });

  it('64-bit BARs larger than 4 GiB mask the upper dword too', () => {
    const { c } = make();
    c.setBar(0, { kind: 'mem64', size: 2 ** 34 });
    expect(size32(c, BAR(0))).toBe(0x0000_0004);
    expect(size32(c, BAR(1))).toBe(0xffff_fffc);
    c.programBar(0, 2 ** 36);
    expect(c.read(BAR(1), 4)).toBe(0x10);
    expect(c.read(BAR(0), 8)).toBe(0x10_0000_0004n);
  });

  it('I/O BAR: bit 0 set, low bits masked', () => {
    const { c } = make();
    c.setBar(4, { kind: 'io', size: 0x20 });
    expect(c.read(BAR(4), 4)).toBe(1);
    expect(size32(c, BAR(4))).toBe(0xffff_ffe1);
    c.write(BAR(4), 4, 0xc07f);
    expect(c.read(BAR(4), 4)).toBe(0xc061);
    expect(c.bar(4)?.address).toBe(0xc060);
    c.programBar(4, 0xc040);
    expect(c.read(BAR(4), 4)).toBe(0xc041);
  });

  it('undeclared BARs read 0 and ignore writes', () => {
    const { c } = make();
    for (let i = 0; i < 6; i++) {
      c.write(BAR(i), 4, 0xffff_ffff);
      expect(c.read(BAR(i), 4)).toBe(0);
    }
    expect(c.bars()).toEqual([]);
  });

  it('mapping follows the command decode bits and address changes', () => {
    const { c, changes } = make();
    c.setBar(0, { kind: 'mem32', size: 0x1000 });
    c.setBar(1, { kind: 'io', size: 0x40 });
    c.setBar(2, { kind: 'mem64', size: 0x4000 });
    c.write(BAR(0), 4, 0xc000_0000);
    c.write(BAR(1), 4, 0xc000);
    c.write(BAR(2), 4, 0x0);
    c.write(BAR(3), 4, 0x10);
    expect(changes).toEqual([]); // decode off
    c.write(PciReg.COMMAND, 2, PciCommand.MEMORY);
    expect(changes).toEqual([
      { bar: 0, kind: 'mem32', size: 0x1000, prefetchable: false, previous: undefined, address: 0xc000_0000 },
      { bar: 2, kind: 'mem64', size: 0x4000, prefetchable: false, previous: undefined, address: 0x10_0000_0000 },
    ]);
    changes.length = 0;
    c.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.IO);
    expect(changes).toEqual([{ bar: 1, kind: 'io', size: 0x40, prefetchable: false, previous: undefined, address: 0xc000 }]);
    changes.length = 0;
    c.write(BAR(0), 4, 0xc000_1000); // moved while decoding
    expect(changes).toEqual([{ bar: 0, kind: 'mem32', size: 0x1000, prefetchable: false, previous: 0xc000_0000, address: 0xc000_1000 }]);
    changes.length = 0;
    c.write(BAR(0), 4, 0xc000_1fff); // same address after masking: no event
    expect(changes).toEqual([]);
    c.write(PciReg.COMMAND, 2, 0);
    expect(changes.map((e) => [e.bar, e.previous, e.address])).toEqual([
      [0, 0xc000_1000, undefined],
      [1, 0xc000, undefined],
      [2, 0x10_0000_0000, undefined],
    ]);
  });

  it('the sizing pattern, address 0 and unreachable addresses are never mapped', () => {
    const { c, changes } = make();
    c.setBar(0, { kind: 'mem32', size: 0x1000 });
    c.setBar(1, { kind: 'io', size: 0x100 });
    c.setBar(2, { kind: 'mem64', size: 0x1000 });
    c.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.IO);
    for (const i of [0, 1, 2, 3]) c.write(BAR(i), 4, 0xffff_ffff);
    expect(c.bars().map((b) => b.mapped)).toEqual([undefined, undefined, undefined]);
    c.write(BAR(1), 4, 0x1_0000); // beyond the port space
    c.write(BAR(3), 4, 0x0010_0000); // 2^52: beyond the MMIO bus
    expect(changes).toEqual([]);
    c.write(BAR(3), 4, 0x000f_ffff);
    expect(c.bar(2)?.mapped).toBe(0xf_ffff_ffff_f000); // ends exactly at 2^52: fits
    c.write(BAR(2), 4, 0);
    expect(c.bar(2)?.mapped).toBe(0xf_ffff_0000_0000);
  });

  it('reset unmaps every BAR', () => {
    const { c, changes } = make();
    c.setBar(0, { kind: 'mem32', size: 0x1000 });
    c.programBar(0, 0xd000_0000);
    c.write(PciReg.COMMAND, 2, PciCommand.MEMORY);
    expect(c.bar(0)?.mapped).toBe(0xd000_0000);
    c.reset();
    expect(c.bar(0)).toMatchObject({ address: 0, mapped: undefined });
    expect(changes.at(-1)).toMatchObject({ bar: 0, previous: 0xd000_0000, address: undefined });
    expect(c.read(BAR(0), 4)).toBe(0);
  });

  it('setBar and programBar validate their arguments', () => {
    const { c } = make();
    expect(() => c.setBar(6, { kind: 'mem32', size: 16 })).toThrow(RangeError);
    expect(() => c.setBar(5, { kind: 'mem64', size: 16 })).toThrow(/two slots/);
    expect(() => c.setBar(0, { kind: 'mem32', size: 8 })).toThrow(/power of two/);
    expect(() => c.setBar(0, { kind: 'mem32', size: 0x3000 })).toThrow(/power of two/);
    expect(() => c.setBar(0, { kind: 'mem32', size: 2 ** 32 })).toThrow(RangeError);
    expect(() => c.setBar(0, { kind: 'io', size: 512 })).toThrow(RangeError);
    expect(() => c.setBar(0, { kind: 'io', size: 16, prefetchable: true })).toThrow(/prefetchable/);
    expect(() => c.setBar(0, { kind: 'rom' as 'io', size: 16 })).toThrow(TypeError);
    c.setBar(0, { kind: 'mem64', size: 0x1000 });
    expect(() => c.setBar(0, { kind: 'mem32', size: 16 })).toThrow(/already in use/);
    expect(() => c.setBar(1, { kind: 'mem32', size: 16 })).toThrow(/already in use/);
    c.setBar(2, { kind: 'mem32', size: 16 });
    expect(() => c.setBar(1, { kind: 'mem64', size: 16 })).toThrow(/already in use/);
    expect(() => c.programBar(0, 0x1800)).toThrow(/aligned/);
    expect(() => c.programBar(0, 2 ** 52)).toThrow(RangeError);
    expect(() => c.programBar(3, 0)).toThrow(/no BAR/);
    expect(() => c.programBar(2, 2 ** 32)).toThrow(RangeError);
  });
});

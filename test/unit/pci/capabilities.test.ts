import { describe, expect, it } from 'vitest';
import { PciConfigSpace } from '../../../src/pci/config-space.js';
import { PciReg, PciStatus } from '../../../src/pci/registers.js';

function make() {
  return new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000 });
}

/** Walk the capability list as Linux's pci_find_capability does (dword-masked pointers, loop guard). */
function walk(c: PciConfigSpace): { id: number; at: number }[] {
  const out: { id: number; at: number }[] = [];
  if (((c.read(PciReg.STATUS, 2) as number) & PciStatus.CAPABILITIES_LIST) === 0) return out;
  let at = (c.read(PciReg.CAPABILITIES_POINTER, 1) as number) & ~3;
  for (let ttl = 48; at >= 0x40 && ttl > 0; ttl--) {
    const hdr = c.read(at, 2) as number;
    out.push({ id: hdr & 0xff, at });
    at = (hdr >> 8) & ~3;
  }
  return out;
}

/** Walk the extended list from 0x100. */
function walkExtended(c: PciConfigSpace): { id: number; version: number; at: number }[] {
  const out: { id: number; version: number; at: number }[] = [];
  let at = 0x100;
  for (let ttl = 960; at >= 0x100 && ttl > 0; ttl--) {
    const hdr = c.read(at, 4) as number;
    if (hdr === 0 || hdr === 0xffff_ffff) break;
    out.push({ id: hdr & 0xffff, version: (hdr >>> 16) & 0xf, at });
    at = (hdr >>> 20) & ~3;
  }
  return out;
}

describe('PCI capability list', () => {
  it('no capabilities: status bit 4 clear, pointer 0', () => {
    const c = make();
    expect(c.status & PciStatus.CAPABILITIES_LIST).toBe(0);
    expect(c.read(PciReg.CAPABILITIES_POINTER, 1)).toBe(0);
    expect(walk(c)).toEqual([]);
  });

  it('capabilities are linked in order, 4-byte aligned, and a guest walk finds each', () => {
    const c = make();
    expect(c.addCapability({ id: 0x09, body: [3, 0xaa] })).toBe(0x40); // 4 bytes
    expect(c.addCapability({ id: 0x09, body: [14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14] })).toBe(0x44); // 17 bytes
    expect(c.addCapability({ id: 0x11, body: new Uint8Array(10) })).toBe(0x58);
    expect(c.addCapability({ id: 0x05, body: [] })).toBe(0x64);
    expect(c.status & PciStatus.CAPABILITIES_LIST).toBe(PciStatus.CAPABILITIES_LIST);
    expect(walk(c)).toEqual([
      { id: 0x09, at: 0x40 },
      { id: 0x09, at: 0x44 },
      { id: 0x11, at: 0x58 },
      { id: 0x05, at: 0x64 },
    ]);
    expect(c.read(0x42, 2)).toBe(0xaa03);
    expect(c.read(0x55, 1)).toBe(0); // padding
    expect(c.capabilities.map((k) => [k.id, k.offset, k.length])).toEqual([
      [0x09, 0x40, 4],
      [0x09, 0x44, 17],
      [0x11, 0x58, 12],
      [0x05, 0x64, 2],
    ]);
    expect(c.findCapability(0x11)?.offset).toBe(0x58);
    expect(c.findCapability(0x10)).toBeUndefined();
  });

  it('the list pointers and undeclared capability bytes are read-only', () => {
    const c = make();
    c.addCapability({ id: 0x09, body: [4, 0x11, 0x22] });
    c.addCapability({ id: 0x09, body: [4, 0x33, 0x44] });
    c.write(PciReg.CAPABILITIES_POINTER, 1, 0x80);
    c.write(0x40, 4, 0);
    c.write(0x48, 4, 0xffff_ffff);
    expect(walk(c).map((k) => k.at)).toEqual([0x40, 0x48]); // 5 bytes at 0x40: the next starts aligned at 0x48
    expect(c.read(0x40, 4)).toBe(0x1104_4809);
    expect(c.read(0x44, 1)).toBe(0x22);
    expect(c.read(0x48, 4)).toBe(0x3304_0009);
  });

  it('declared writable bits are guest-writable; hooks see the touched part', () => {
    const writes: [number, number][] = [];
    const c = make();
    c.addCapability({ id: 0x09, body: [4, 0] });
    const at = c.addCapability({ id: 0x05, body: [0x00, 0x00, 0, 0, 0, 0], writable: [0x01, 0x00, 0xfc, 0xff, 0xff, 0xff], onWrite: (o, s) => writes.push([o, s]) });
    expect(at).toBe(0x44);
    c.write(at, 4, 0xffff_ffff); // id/next read-only, control bit 0 writable
    expect(c.read(at, 4)).toBe(0x0001_0005);
    c.write(at + 4, 4, 0xfee0_0003);
    expect(c.read(at + 4, 4)).toBe(0xfee0_0000);
    c.write(at - 2, 4, 0); // straddles the previous capability and this one
    expect(c.read(at, 4)).toBe(0x0001_0005);
    expect(writes).toEqual([
      [0, 4],
      [4, 4],
      [0, 2],
    ]);
  });

  it('onRead hooks run before a guest read and may refresh the bytes', () => {
    const reads: [number, number][] = [];
    const c = make();
    let counter = 0;
    const at = c.addCapability({
      id: 0x09,
      body: [8, 0, 0, 0, 0, 0],
      onRead: (o, s) => {
        reads.push([o, s]);
        c.poke(at + 4, 4, ++counter);
      },
    });
    expect(c.read(at + 4, 4)).toBe(1);
    expect(c.read(at + 4, 2)).toBe(2);
    expect(c.read(at - 1, 2)).toBe(0x0900); // max latency (0) and the capability id
    expect(c.read(0, 4)).toBe(0x1041_1af4); // untouched: no hook
    expect(reads).toEqual([
      [4, 4],
      [4, 2],
      [0, 1],
    ]);
  });

  it('reset restores capability bytes and runs onReset', () => {
    let resets = 0;
    const c = make();
    const at = c.addCapability({ id: 0x09, body: [4, 0x5a], writable: [0, 0xff], onReset: () => resets++ });
    c.write(at + 3, 1, 0x11);
    expect(c.read(at + 3, 1)).toBe(0x11);
    c.reset();
    expect(c.read(at + 3, 1)).toBe(0x5a);
    expect(resets).toBe(1);
    expect(walk(c)).toEqual([{ id: 0x09, at }]);
  });

  it('a capability that does not fit below 0x100 is a RangeError; bad specs are TypeErrors', () => {
    const c = make();
    c.addCapability({ id: 0x09, body: new Uint8Array(0xb0) }); // 0x40..0xf2
    expect(() => c.addCapability({ id: 0x09, body: new Uint8Array(12) })).toThrow(/does not fit/);
    expect(c.addCapability({ id: 0x09, body: new Uint8Array(10) })).toBe(0xf4);
    expect(() => c.addCapability({ id: 0x100, body: [] })).toThrow(RangeError);
    expect(() => c.addCapability({ id: 1, body: [256] })).toThrow(RangeError);
    expect(() => c.addCapability({ id: 1, body: 'x' as unknown as number[] })).toThrow(TypeError);
    expect(() => c.addCapability({ id: 1, body: [1], writable: [1, 1] })).toThrow(/longer/);
    expect(() => c.addCapability({ id: 1, body: [], onWrite: 5 as unknown as () => void })).toThrow(TypeError);
  });

  it('extended capabilities chain from 0x100 with id, version and next', () => {
    const c = make();
    expect(walkExtended(c)).toEqual([]);
    expect(c.addExtendedCapability({ id: 0x000b, version: 1, body: [1, 2, 3, 4, 5] })).toBe(0x100);
    expect(c.addExtendedCapability({ id: 0x0023, version: 2, body: [0, 0, 0, 0], writable: [0xff] })).toBe(0x10c);
    expect(walkExtended(c)).toEqual([
      { id: 0x000b, version: 1, at: 0x100 },
      { id: 0x0023, version: 2, at: 0x10c },
    ]);
    c.write(0x100, 4, 0);
    c.write(0x110, 4, 0xffff_ffff);
    expect(c.read(0x110, 4)).toBe(0xff);
    expect(walkExtended(c).length).toBe(2);
    expect(c.findCapability(0x23, true)?.offset).toBe(0x10c);
    expect(() => c.addExtendedCapability({ id: 1, version: 16, body: [] })).toThrow(/version/);
    expect(() => c.addExtendedCapability({ id: 1, version: 1, body: new Uint8Array(0x1000) })).toThrow(/does not fit/);
  });
});

import { describe, expect, it } from 'vitest';
import { buildE820, buildFirmwareE820, E820Type, e820ToBytes, inRam, LOW_MEMORY_END, ramRanges } from '../../../src/boot/e820.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

describe('buildE820', () => {
  it('builds the standard PC map for RAM below the hole', () => {
    expect(buildE820(512 * MiB)).toEqual([
      { addr: 0, size: 0x9fc00, type: E820Type.RAM },
      { addr: 0x9fc00, size: 0x400, type: E820Type.RESERVED },
      { addr: 0xf0000, size: 0x10000, type: E820Type.RESERVED },
      { addr: 0x100000, size: 511 * MiB, type: E820Type.RAM },
    ]);
  });

  it('relocates RAM beyond LOW_MEMORY_END to 4 GiB', () => {
    expect(LOW_MEMORY_END).toBe(0xc000_0000);
    const map = buildE820(8 * GiB);
    expect(map[3]).toEqual({ addr: 0x100000, size: LOW_MEMORY_END - 0x100000, type: E820Type.RAM });
    expect(map[4]).toEqual({ addr: 4 * GiB, size: 8 * GiB - LOW_MEMORY_END, type: E820Type.RAM });
    expect(map).toHaveLength(5);
  });

  it('honours a custom lowMemEnd', () => {
    const map = buildE820(3 * GiB, { lowMemEnd: 2 * GiB });
    expect(map.at(-2)).toEqual({ addr: 0x100000, size: 2 * GiB - 0x100000, type: E820Type.RAM });
    expect(map.at(-1)).toEqual({ addr: 4 * GiB, size: GiB, type: E820Type.RAM });
  });

  it('lays reserved ranges over the map, carving RAM, and keeps it sorted', () => {
    const map = buildE820(64 * MiB, {
      reserved: [
        { addr: 0xe0000, size: 0x10000, type: E820Type.ACPI },
        { addr: 32 * MiB, size: MiB, type: E820Type.NVS },
      ],
    });
    expect(map).toEqual([
      { addr: 0, size: 0x9fc00, type: 1 },
      { addr: 0x9fc00, size: 0x400, type: 2 },
      { addr: 0xe0000, size: 0x10000, type: 3 },
      { addr: 0xf0000, size: 0x10000, type: 2 },
      { addr: 0x100000, size: 31 * MiB, type: 1 },
      { addr: 32 * MiB, size: MiB, type: 4 },
      { addr: 33 * MiB, size: 31 * MiB, type: 1 },
    ]);
    for (let i = 1; i < map.length; i++) expect(map[i].addr).toBeGreaterThanOrEqual(map[i - 1].addr + map[i - 1].size);
  });

  it('rejects bad arguments', () => {
    expect(() => buildE820(512 * 1024)).toThrow(RangeError);
    expect(() => buildE820('1' as unknown as number)).toThrow(TypeError);
    expect(() => buildE820(MiB * 64, { lowMemEnd: 5 * GiB })).toThrow(/lowMemEnd/);
    expect(() => buildE820(MiB * 64, { reserved: [{ addr: -1, size: 1, type: 2 }] })).toThrow(/reserved\[0\]\.addr/);
    expect(() => buildE820(MiB * 64, { reserved: [{ addr: 2 ** 52, size: 2 ** 52, type: 2 }] })).toThrow(RangeError);
  });
});

describe('buildFirmwareE820', () => {
  it('is the RAM only: low RAM from 0, the rest at 4 GiB', () => {
    expect(buildFirmwareE820(64 * MiB)).toEqual([{ addr: 0, size: 64 * MiB, type: E820Type.RAM }]);
    expect(buildFirmwareE820(4 * GiB)).toEqual([
      { addr: 0, size: LOW_MEMORY_END, type: E820Type.RAM },
      { addr: 4 * GiB, size: 4 * GiB - LOW_MEMORY_END, type: E820Type.RAM },
    ]);
    expect(buildFirmwareE820(3 * GiB, { lowMemEnd: 2 * GiB })).toEqual([
      { addr: 0, size: 2 * GiB, type: E820Type.RAM },
      { addr: 4 * GiB, size: GiB, type: E820Type.RAM },
    ]);
  });

  it('covers the same RAM as buildE820 plus the holes firmware reserves itself', () => {
    const os = buildE820(8 * GiB);
    for (const [s, e] of ramRanges(os)) expect(inRam(buildFirmwareE820(8 * GiB), s, e - s)).toBe(true);
  });

  it('rejects bad arguments like buildE820', () => {
    expect(() => buildFirmwareE820(512 * 1024)).toThrow(/ramBytes/);
    expect(() => buildFirmwareE820('1' as unknown as number)).toThrow(TypeError);
    expect(() => buildFirmwareE820(64 * MiB, { lowMemEnd: 5 * GiB })).toThrow(/lowMemEnd/);
  });
});

describe('e820ToBytes', () => {
  it('encodes 20-byte little-endian entries', () => {
    const bytes = e820ToBytes([
      { addr: 0x1_0000_0000, size: 0x2000, type: 1 },
      { addr: 0x9fc00, size: 0x400, type: 2 },
    ]);
    expect(bytes.length).toBe(40);
    const v = new DataView(bytes.buffer);
    expect(v.getBigUint64(0, true)).toBe(0x1_0000_0000n);
    expect(v.getBigUint64(8, true)).toBe(0x2000n);
    expect(v.getUint32(16, true)).toBe(1);
    expect(v.getBigUint64(20, true)).toBe(0x9fc00n);
    expect(v.getUint32(36, true)).toBe(2);
  });
});

describe('ramRanges / inRam', () => {
  it('finds RAM ranges', () => {
    const map = buildE820(64 * MiB);
    expect(ramRanges(map)).toEqual([
      [0, 0x9fc00],
      [0x100000, 64 * MiB],
    ]);
    expect(inRam(map, 0x100000, 63 * MiB)).toBe(true);
    expect(inRam(map, 0x9f000, 0x2000)).toBe(false);
    expect(inRam(map, 63 * MiB, 2 * MiB)).toBe(false);
  });
});

import { describe, expect, it } from 'vitest';
import {
  BOOT_CS,
  BOOT_DS,
  buildGdt,
  buildIdentityPageTables,
  GDT_CODE32,
  GDT_CODE64,
  GDT_DATA,
  segmentFromDescriptor,
  writeGdt,
} from '../../../src/boot/paging.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { translate } from './images.js';

describe('buildIdentityPageTables', () => {
  it('identity-maps the first 4 GiB with 2 MiB pages', () => {
    const mem = bufferMemory(0x20000);
    mem.fill(0, 0x20000, 0xee); // garbage must be cleared
    const { cr3, end } = buildIdentityPageTables(mem, 0x9000, { gigabytes: 4 });
    expect(cr3).toBe(0x9000n);
    expect(end).toBe(0x9000 + 6 * 0x1000);
    for (const va of [0n, 0x1234n, 0x200000n + 0x1234n, 0x1000000n, 3n * 2n ** 30n + 5n, 0xffff_ffffn]) {
      expect(translate(mem, cr3, va)).toBe(va);
    }
    expect(translate(mem, cr3, 4n * 2n ** 30n)).toBeUndefined();
    expect(translate(mem, cr3, 2n ** 39n)).toBeUndefined();
    // Entry format: PD entries are present, writable, PS.
    expect(mem.readU64(0xb000 + 8)).toBe(0x200000n | 0x83n);
    expect(mem.readU64(0x9000)).toBe(0xa000n | 0x3n);
    expect(mem.readU64(0x9008)).toBe(0n);
  });

  it('defaults to 4 GiB and supports 1 GiB', () => {
    const mem = bufferMemory(0x10000);
    expect(buildIdentityPageTables(mem, 0x1000).end).toBe(0x7000);
    expect(buildIdentityPageTables(mem, 0x1000, { gigabytes: 1 }).end).toBe(0x4000);
  });

  it('rejects misuse', () => {
    const mem = bufferMemory(0x10000);
    expect(() => buildIdentityPageTables(mem, 0x1800)).toThrow(/4 KiB aligned/);
    expect(() => buildIdentityPageTables(mem, 0x1000, { gigabytes: 0 })).toThrow(RangeError);
    expect(() => buildIdentityPageTables(mem, 0x1000, { gigabytes: 513 })).toThrow(RangeError);
    expect(() => buildIdentityPageTables(mem, 0xc000)).toThrow(/not backed/);
    expect(() => buildIdentityPageTables(mem, -4096)).toThrow(RangeError);
    expect(() => buildIdentityPageTables(mem, '0' as unknown as number)).toThrow(TypeError);
  });
});

describe('GDT', () => {
  it('writes the Linux boot GDT', () => {
    const mem = bufferMemory(0x1000);
    const gdt = buildGdt(mem, 0x500);
    expect(gdt).toEqual({ base: 0x500n, limit: 39 });
    expect(mem.readU64(0x500)).toBe(0n);
    expect(mem.readU64(0x508)).toBe(0n);
    expect(mem.readU64(0x500 + BOOT_CS)).toBe(GDT_CODE64);
    expect(mem.readU64(0x500 + BOOT_DS)).toBe(GDT_DATA);
    expect(mem.readU64(0x520)).toBe(GDT_CODE32);
  });

  it('decodes descriptors into VMX segment state', () => {
    expect(segmentFromDescriptor(0x10, GDT_CODE64)).toEqual({ selector: 0x10, base: 0n, limit: 0xffffffff, access: 0xa09b });
    expect(segmentFromDescriptor(0x18, GDT_DATA)).toEqual({ selector: 0x18, base: 0n, limit: 0xffffffff, access: 0xc093 });
    expect(segmentFromDescriptor(0x08, GDT_CODE32).access).toBe(0xc09b);
    // base 0x12345678, limit 0x5ffff bytes (G clear), 16-bit data.
    const d = 0x12_05_93_345678_ffffn;
    expect(segmentFromDescriptor(0x20, d)).toEqual({ selector: 0x20, base: 0x12345678n, limit: 0x5ffff, access: 0x93 });
  });

  it('rejects bad tables', () => {
    const mem = bufferMemory(0x100);
    expect(() => writeGdt(mem, 0, [])).toThrow(RangeError);
    expect(() => writeGdt(mem, 0xf8, [0n, 0n])).toThrow(/not backed/);
    expect(() => writeGdt(mem, 0, [1 as unknown as bigint])).toThrow(TypeError);
  });
});

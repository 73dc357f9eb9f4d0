import { describe, expect, it } from 'vitest';
import { BootImageError } from '../../../src/boot/errors.js';
import { loadFlat } from '../../../src/boot/flat.js';
import { GDT_CODE32, GDT_CODE64 } from '../../../src/boot/paging.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { pattern, translate } from './images.js';

describe('loadFlat', () => {
  it('loads a real-mode image within the first 64 KiB with segments 0 and IP = the load address (linked there)', () => {
    const mem = bufferMemory(0x100000);
    const img = pattern(0x200);
    const s = loadFlat(mem, img, 0x7c00);
    expect(mem.readBytes(0x7c00, 0x200)).toEqual(img);
    expect(s.mode).toBe('real');
    expect(s.segments!.cs).toEqual({ selector: 0, base: 0n, limit: 0xffff, access: 0x9b });
    expect(s.segments!.ds).toEqual({ selector: 0, base: 0n, limit: 0xffff, access: 0x93 });
    expect(s.segments!.ss).toEqual({ selector: 0, base: 0n, limit: 0xffff, access: 0x93 });
    expect(s.regs.rip).toBe(0x7c00n);
    expect(s.regs.rflags).toBe(2n);
    expect(s.regs.rsp).toBeUndefined();
    const odd = loadFlat(mem, img, 0x1005, { entry: 0x1105, stack: 0xfffe });
    expect(odd.segments!.cs!.selector).toBe(0);
    expect(odd.regs.rip).toBe(0x1105n);
    expect(odd.regs.rsp).toBe(0xfffen);
  });

  it('loads a real-mode image beyond 64 KiB with CS:IP derived from the load address (linked at offset 0)', () => {
    const mem = bufferMemory(0x100000);
    const s = loadFlat(mem, pattern(0x200), 0x20000);
    expect(s.segments!.cs).toEqual({ selector: 0x2000, base: 0x20000n, limit: 0xffff, access: 0x9b });
    expect(s.segments!.ds!.selector).toBe(0x2000);
    expect(s.regs.rip).toBe(0n);
    const straddling = loadFlat(mem, pattern(0x200), 0xff00, { entry: 0xff10 });
    expect(straddling.segments!.cs!.selector).toBe(0xff0);
    expect(straddling.regs.rip).toBe(0x10n);
  });

  it('loads a protected-mode image with a flat GDT', () => {
    const mem = bufferMemory(0x400000);
    const s = loadFlat(mem, pattern(0x100), 0x100000, { mode: 'protected', entry: 0x100010 });
    expect(s.mode).toBe('protected');
    expect(s.cr0).toBe(1n);
    expect(s.regs.rip).toBe(0x100010n);
    expect(s.segments!.cs).toEqual({ selector: 0x08, base: 0n, limit: 0xffffffff, access: 0xc09b });
    expect(s.gdt).toEqual({ base: 0x500n, limit: 23 });
    expect(mem.readU64(0x508)).toBe(GDT_CODE32);
  });

  it('loads a long-mode image with identity page tables', () => {
    const mem = bufferMemory(0x400000);
    const s = loadFlat(mem, pattern(0x100), 0x200000, { mode: 'long', stack: 0x1ff000 });
    expect(s.mode).toBe('long');
    expect(s.efer).toBe(0x500n);
    expect(s.cr3).toBe(0x9000n);
    expect(s.segments!.cs!.access).toBe(0xa09b);
    expect(s.regs.rsp).toBe(0x1ff000n);
    expect(mem.readU64(0x510)).toBe(GDT_CODE64);
    expect(translate(mem, s.cr3!, 0x200000n)).toBe(0x200000n);
    expect(translate(mem, s.cr3!, 0x3ffff000n)).toBe(0x3ffff000n);
  });

  it('rejects empty and oversized images', () => {
    const mem = bufferMemory(0x10000);
    expect(() => loadFlat(mem, new Uint8Array(0), 0x1000)).toThrow('flat: image is empty');
    expect(() => loadFlat(mem, new Uint8Array(0x100), 0xff80)).toThrow(BootImageError);
    expect(() => loadFlat(mem, new Uint8Array(0x100), 0xff80)).toThrow('flat: 0x100 bytes at 0xff80 do not fit in guest memory');
    expect(() => loadFlat(mem, new Uint8Array(0x100), Number.MAX_SAFE_INTEGER)).toThrow(BootImageError);
  });

  it('rejects misuse', () => {
    const mem = bufferMemory(0x200000);
    expect(() => loadFlat(mem, new Uint8Array(16), 0x100000)).toThrow(/below 1 MiB in real mode/);
    expect(() => loadFlat(mem, new Uint8Array(16), 0x1000, { entry: 0x20000 })).toThrow(/not within 64 KiB/);
    expect(() => loadFlat(mem, new Uint8Array(16), 0x500, { mode: 'protected' })).toThrow(/overlaps the GDT/);
    expect(() => loadFlat(mem, new Uint8Array(16), 0xa000, { mode: 'long' })).toThrow(/overlaps the page tables/);
    expect(() => loadFlat(mem, new Uint8Array(16), 0x1000, { mode: 'v86' as 'real' })).toThrow(RangeError);
    expect(() => loadFlat(mem, [1] as unknown as Uint8Array, 0x1000)).toThrow(TypeError);
    expect(() => loadFlat(mem, new Uint8Array(16), '0x1000' as unknown as number)).toThrow(TypeError);
  });
});

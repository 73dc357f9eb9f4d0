import { describe, expect, it } from 'vitest';
import { loadElfSegments, parseElf, PT_LOAD } from '../../../src/boot/elf.js';
import { BootImageError } from '../../../src/boot/errors.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { elfImage, pattern, phdrField } from './images.js';

function set32(img: Uint8Array, off: number, v: number): void {
  new DataView(img.buffer).setUint32(off, v, true);
}
function set64(img: Uint8Array, off: number, v: bigint): void {
  new DataView(img.buffer).setBigUint64(off, v, true);
}

describe('parseElf', () => {
  it('parses ELF32 program headers', () => {
    const img = elfImage(
      [
        { paddr: 0x100000, vaddr: 0xc0100000, data: pattern(0x40), memsz: 0x80 },
        { paddr: 0, data: new Uint8Array(0), type: 4 },
      ],
      { entry: 0xc0100010 },
    );
    const elf = parseElf(img);
    expect(elf.bits).toBe(32);
    expect(elf.machine).toBe(3);
    expect(elf.entry).toBe(0xc0100010n);
    expect(elf.segments).toHaveLength(2);
    expect(elf.segments[0]).toMatchObject({ type: PT_LOAD, offset: 0x100, vaddr: 0xc0100000n, paddr: 0x100000, filesz: 0x40, memsz: 0x80 });
    expect(elf.segments[1].type).toBe(4);
  });

  it('parses ELF64 program headers', () => {
    const img = elfImage([{ paddr: 0x200000, vaddr: 0xffffffff80200000n, data: pattern(0x20) }], {
      bits: 64,
      entry: 0x200000,
    });
    const elf = parseElf(img);
    expect(elf.bits).toBe(64);
    expect(elf.machine).toBe(62);
    expect(elf.segments[0]).toMatchObject({ paddr: 0x200000, filesz: 0x20, memsz: 0x20 });
  });

  it('rejects truncated and wrong-magic files', () => {
    const good = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    expect(() => parseElf(good.subarray(0, 10))).toThrow(BootImageError);
    expect(() => parseElf(good.subarray(0, 10))).toThrow(/^kernel: truncated/);
    expect(() => parseElf(good.subarray(0, 40))).toThrow(/truncated: ELF header/);
    expect(() => parseElf(good.subarray(0, 60))).toThrow(/program header table .* extends beyond the end of the file/);
    const bad = good.slice();
    bad[1] = 0x46;
    expect(() => parseElf(bad)).toThrow('kernel: not an ELF file (no \\x7fELF magic at 0x0)');
    const be = good.slice();
    be[5] = 2;
    expect(() => parseElf(be)).toThrow(/not little-endian/);
    const cls = good.slice();
    cls[4] = 3;
    expect(() => parseElf(cls)).toThrow(/ELF class 3/);
  });

  it('rejects a PT_LOAD whose file range exceeds the file', () => {
    const img = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    set32(img, phdrField(32, 0, 16), 0x11); // filesz one past the end
    set32(img, phdrField(32, 0, 20), 0x11);
    expect(() => parseElf(img, 'guest')).toThrow(/^guest: ELF program header 0 \(PT_LOAD\): file range 0x100\+0x11 extends beyond the end of the file/);
    const img2 = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    set32(img2, phdrField(32, 0, 4), 0xffffffff); // offset
    expect(() => parseElf(img2)).toThrow(BootImageError);
  });

  it('rejects filesz > memsz and address wrap-around', () => {
    const img = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    set32(img, phdrField(32, 0, 20), 0x8);
    expect(() => parseElf(img)).toThrow(/p_filesz 0x10 exceeds p_memsz 0x8/);
    const wrap = elfImage([{ paddr: 0xfffff000, data: pattern(0x10), memsz: 0x2000 }], { entry: 0xfffff000 });
    expect(() => parseElf(wrap)).toThrow(/wraps around/);
  });

  it('rejects overflowing ELF64 sizes', () => {
    const img = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { bits: 64, entry: 0x1000 });
    const huge = img.slice();
    set64(huge, phdrField(64, 0, 8), 1n << 63n); // p_offset
    expect(() => parseElf(huge)).toThrow(/p_offset 0x8000000000000000 is too large/);
    const sum = img.slice();
    set64(sum, phdrField(64, 0, 8), BigInt(Number.MAX_SAFE_INTEGER)); // offset + filesz overflows 2^53
    expect(() => parseElf(sum)).toThrow(/extends beyond the end of the file/);
    const addr = img.slice();
    set64(addr, phdrField(64, 0, 24), BigInt(Number.MAX_SAFE_INTEGER) - 4n); // paddr + memsz overflows
    expect(() => parseElf(addr)).toThrow(/overflows/);
    const phoff = img.slice();
    set64(phoff, 32, 0xffff_ffff_ffff_fff0n);
    expect(() => parseElf(phoff)).toThrow(BootImageError);
  });

  it('rejects bad program header tables', () => {
    const img = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    const none = img.slice();
    new DataView(none.buffer).setUint16(44, 0, true);
    expect(() => parseElf(none)).toThrow(/no program headers/);
    const small = img.slice();
    new DataView(small.buffer).setUint16(42, 16, true);
    expect(() => parseElf(small)).toThrow(/e_phentsize 16/);
    const many = img.slice();
    new DataView(many.buffer).setUint16(44, 0x1000, true);
    expect(() => parseElf(many)).toThrow(/truncated/);
  });

  it('rejects non-Uint8Array input with a TypeError', () => {
    expect(() => parseElf([1, 2, 3] as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('loadElfSegments', () => {
  it('copies file bytes and zeroes bss', () => {
    const data = pattern(0x30, 5);
    const img = elfImage([{ paddr: 0x2000, data, memsz: 0x100 }], { entry: 0x2000 });
    const mem = bufferMemory(0x10000);
    mem.fill(0, 0x10000, 0xff);
    const ext = loadElfSegments(mem, parseElf(img), img);
    expect(ext).toEqual({ start: 0x2000, end: 0x2100 });
    expect(mem.readBytes(0x2000, 0x30)).toEqual(data);
    expect(mem.readBytes(0x2030, 0xd0).every((b) => b === 0)).toBe(true);
    expect(mem.readU8(0x2100)).toBe(0xff);
  });

  it('rejects segments outside guest memory or overlapping reserved ranges', () => {
    const img = elfImage([{ paddr: 0xff00, data: pattern(0x10), memsz: 0x200 }], { entry: 0xff00 });
    const mem = bufferMemory(0x10000);
    expect(() => loadElfSegments(mem, parseElf(img), img)).toThrow('kernel: ELF segment 0 [0xff00, 0x10100) does not fit in guest memory');
    const img2 = elfImage([{ paddr: 0x1000, data: pattern(0x10) }], { entry: 0x1000 });
    expect(() => loadElfSegments(mem, parseElf(img2), img2, 'kernel', [{ what: 'GDT', start: 0x1008, length: 8 }])).toThrow(
      /overlaps the GDT at 0x1008/,
    );
  });
});

describe('parseElf virtual addresses', () => {
  it('keeps high-half ELF64 addresses exact and rejects wrap-around', () => {
    const img = elfImage([{ paddr: 0x1000, vaddr: 0xffffffff81000000n, data: pattern(0x10) }], { bits: 64, entry: 0xffffffff81000008n });
    const elf = parseElf(img);
    expect(elf.entry).toBe(0xffffffff81000008n);
    expect(elf.segments[0].vaddr).toBe(0xffffffff81000000n);
    const wrap = elfImage([{ paddr: 0x1000, vaddr: 0xfffffffffffff000n, data: pattern(0x10), memsz: 0x2000 }], { bits: 64, entry: 0x1000 });
    expect(() => parseElf(wrap)).toThrow(/wraps around the 64-bit address space/);
  });
});

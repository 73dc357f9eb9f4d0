import { describe, expect, it } from 'vitest';
import { buildE820 } from '../../../src/boot/e820.js';
import { BootImageError } from '../../../src/boot/errors.js';
import {
  findMultibootHeader,
  loadMultiboot,
  MULTIBOOT_GDT_AT,
  MultibootInfoFlags,
  type MultibootOptions,
} from '../../../src/boot/multiboot.js';
import { GDT_CODE32, GDT_DATA } from '../../../src/boot/paging.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { elfImage, multibootHeader, pattern, phdrField, readCString } from './images.js';

const MiB = 1024 * 1024;
const RAM = 32 * MiB;

/** An ELF32 multiboot kernel: text at 0x100000 (linked at 0xc0100000) with the header first, plus bss. */
function mbElf(opts: { flags?: number; bits?: 32 | 64; machine?: number } = {}): { image: Uint8Array; text: Uint8Array } {
  const text = new Uint8Array(0x200);
  text.set(multibootHeader(opts.flags ?? 0x3));
  text.set(pattern(0x100, 3), 0x40);
  const image = elfImage(
    [
      { paddr: 0x100000, vaddr: opts.bits === 64 ? 0x100000 : 0xc0100000, data: text },
      { paddr: 0x101000, vaddr: opts.bits === 64 ? 0x101000 : 0xc0101000, data: pattern(0x80, 4), memsz: 0x2000 },
    ],
    { entry: opts.bits === 64 ? 0x100040 : 0xc0100040, bits: opts.bits, machine: opts.machine },
  );
  return { image, text };
}

function load(image: Uint8Array, opts: Partial<MultibootOptions> = {}) {
  const mem = bufferMemory(RAM);
  mem.fill(0, RAM, 0xaa);
  const state = loadMultiboot(mem, image, { cmdline: 'kernel --verbose', ramBytes: RAM, ...opts });
  return { mem, state };
}

describe('findMultibootHeader', () => {
  it('finds a 4-byte aligned header with a valid checksum in the first 8 KiB', () => {
    const { image } = mbElf();
    expect(findMultibootHeader(image)).toEqual({ offset: 0x100, flags: 3 });
    const late = new Uint8Array(0x3000);
    late.set(multibootHeader(0), 0x2000);
    expect(findMultibootHeader(late)).toBeUndefined();
    const edge = new Uint8Array(0x3000);
    edge.set(multibootHeader(0), 0x1ff4);
    expect(findMultibootHeader(edge)?.offset).toBe(0x1ff4);
    const unaligned = new Uint8Array(0x100);
    unaligned.set(multibootHeader(0), 0x12);
    expect(findMultibootHeader(unaligned)).toBeUndefined();
  });

  it('parses address and video fields', () => {
    const img = new Uint8Array(0x100);
    const addr = { headerAddr: 0x100010, loadAddr: 0x100000, loadEndAddr: 0, bssEndAddr: 0, entryAddr: 0x100040 };
    img.set(multibootHeader(0x10000, addr), 0x10);
    expect(findMultibootHeader(img)).toEqual({ offset: 0x10, flags: 0x10000, address: addr });
  });

  it('reports a header cut off by the end of the file', () => {
    const img = new Uint8Array(0x108);
    img.set(multibootHeader(0).subarray(0, 8), 0x100);
    expect(() => findMultibootHeader(img)).toThrow(/^kernel: truncated: Multiboot header at 0x100/);
    const aout = new Uint8Array(0x110);
    aout.set(multibootHeader(0x10000, { headerAddr: 0, loadAddr: 0, loadEndAddr: 0, bssEndAddr: 0, entryAddr: 0 }).subarray(0, 16), 0x100);
    expect(() => findMultibootHeader(aout)).toThrow(/truncated: Multiboot header address fields/);
  });
});

describe('loadMultiboot (ELF)', () => {
  it('loads PT_LOAD segments by physical address and zeroes bss', () => {
    const { image, text } = mbElf();
    const { mem, state } = load(image);
    expect(mem.readBytes(0x100000, text.length)).toEqual(text);
    expect(mem.readBytes(0x101000, 0x80)).toEqual(pattern(0x80, 4));
    expect(mem.readBytes(0x101080, 0x2000 - 0x80).every((b) => b === 0)).toBe(true);
    expect(mem.readU8(0x103000)).toBe(0xaa);
    expect(state.multiboot.kernelStart).toBe(0x100000);
    expect(state.multiboot.kernelEnd).toBe(0x103000);
  });

  it('enters in flat 32-bit protected mode per the spec', () => {
    const { mem, state } = load(mbElf().image);
    expect(state.mode).toBe('protected');
    expect(state.regs.rax).toBe(0x2badb002n);
    expect(state.regs.rbx).toBe(0x9000n);
    expect(state.regs.rip).toBe(0x100040n); // virtual entry translated to physical
    expect(state.regs.rflags).toBe(2n);
    expect(state.cr0).toBe(1n);
    expect(state.segments!.cs).toEqual({ selector: 0x08, base: 0n, limit: 0xffffffff, access: 0xc09b });
    for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const)
      expect(state.segments![s]).toEqual({ selector: 0x10, base: 0n, limit: 0xffffffff, access: 0xc093 });
    expect(state.gdt).toEqual({ base: BigInt(MULTIBOOT_GDT_AT), limit: 23 });
    expect(mem.readU64(MULTIBOOT_GDT_AT)).toBe(0n);
    expect(mem.readU64(MULTIBOOT_GDT_AT + 8)).toBe(GDT_CODE32);
    expect(mem.readU64(MULTIBOOT_GDT_AT + 16)).toBe(GDT_DATA);
  });

  it('writes multiboot_info with memory, command line, modules and mmap', () => {
    const modules = [
      { data: pattern(0x1800, 7), cmdline: 'initrd.img' },
      { data: pattern(0x10, 8), cmdline: 'second module arg=1' },
    ];
    const { mem, state } = load(mbElf().image, { modules });
    const info = 0x9000;
    const flags = mem.readU32(info);
    for (const f of [MultibootInfoFlags.MEMORY, MultibootInfoFlags.CMDLINE, MultibootInfoFlags.MODS, MultibootInfoFlags.MEM_MAP])
      expect(flags & f).toBe(f);
    expect(mem.readU32(info + 4)).toBe(639);
    expect(mem.readU32(info + 8)).toBe((RAM - MiB) / 1024);
    expect(readCString(mem, mem.readU32(info + 16))).toBe('kernel --verbose');
    expect(readCString(mem, mem.readU32(info + 64))).toBe('vmmapi');
    // Modules: page aligned after the kernel, in order, with their strings.
    expect(mem.readU32(info + 20)).toBe(2);
    const mods = mem.readU32(info + 24);
    const m0 = { start: mem.readU32(mods), end: mem.readU32(mods + 4), str: readCString(mem, mem.readU32(mods + 8)) };
    const m1 = { start: mem.readU32(mods + 16), end: mem.readU32(mods + 20), str: readCString(mem, mem.readU32(mods + 24)) };
    expect(m0).toEqual({ start: 0x103000, end: 0x104800, str: 'initrd.img' });
    expect(m1).toEqual({ start: 0x105000, end: 0x105010, str: 'second module arg=1' });
    expect(mem.readBytes(m0.start, 0x1800)).toEqual(modules[0].data);
    expect(mem.readBytes(m1.start, 0x10)).toEqual(modules[1].data);
    expect(state.multiboot.modules).toEqual([
      { start: 0x103000, end: 0x104800 },
      { start: 0x105000, end: 0x105010 },
    ]);
    // Memory map: size field 20, entries equal to the E820 map.
    const e820 = buildE820(RAM);
    const mmapLen = mem.readU32(info + 44);
    const mmapAddr = mem.readU32(info + 48);
    expect(mmapLen).toBe(e820.length * 24);
    const got = [];
    for (let p = mmapAddr; p < mmapAddr + mmapLen; ) {
      const size = mem.readU32(p);
      expect(size).toBe(20);
      got.push({ addr: Number(mem.readU64(p + 4)), size: Number(mem.readU64(p + 12)), type: mem.readU32(p + 20) });
      p += size + 4;
    }
    expect(got).toEqual(e820);
    // The info area does not overlap the kernel or modules.
    expect(state.multiboot.infoEnd).toBeLessThanOrEqual(0x100000);
  });

  it('places the info area where no segment or module is: a kernel with a segment over 0x9000 loads', () => {
    const text = new Uint8Array(0x1000);
    text.set(multibootHeader(0x3));
    // one segment [0x8000, 0xa86c) (the kernel), data at 0x9000 the loader must keep
    const data = pattern(0x800, 5);
    text.set(data.subarray(0, 0x800), 0x1000 - 0x800);
    const image = elfImage([{ paddr: 0x8000, data: Uint8Array.from([...text, ...pattern(0x1000, 6)]), memsz: 0x286c }], { entry: 0x8040 });
    const modules = [{ data: pattern(0x1800, 7), cmdline: 'mod a' }];
    const { mem, state } = load(image, { modules });
    const info = Number(state.regs.rbx);
    const segEnd = 0xa86c;
    const outside = (a: number, len = 1): boolean => a >= segEnd || a + len <= 0x8000;
    expect(state.multiboot.infoAt).toBe(info);
    expect(outside(info, state.multiboot.infoEnd - info)).toBe(true);
    // the module goes page aligned after the kernel (0xb000), the info area after the module
    expect(state.multiboot.modules).toEqual([{ start: 0xb000, end: 0xc800 }]);
    expect(info).toBe(0xd000);
    for (const field of [16, 24, 48, 64]) expect(outside(mem.readU32(info + field))).toBe(true);
    const mods = mem.readU32(info + 24);
    expect(readCString(mem, mem.readU32(mods + 8))).toBe('mod a');
    expect(readCString(mem, mem.readU32(info + 16))).toBe('kernel --verbose');
    expect(readCString(mem, mem.readU32(info + 64))).toBe('vmmapi');
    expect(mem.readU32(info + 44)).toBe(buildE820(RAM).length * 24);
    expect(mem.readBytes(0x9000, 0x1000)).toEqual(pattern(0x1000, 6)); // the segment's bytes at 0x9000 are intact
  });

  it('moves the info area above 1 MiB when low memory is taken', () => {
    const text = new Uint8Array(0x100);
    text.set(multibootHeader(0x3));
    const image = elfImage([{ paddr: 0x1000, data: text, memsz: 0x9e800 }], { entry: 0x1040 }); // [0x1000, 0x9f800): no room below the EBDA
    const { state } = load(image);
    expect(state.regs.rbx).toBe(0x100000n);
  });

  it('honours infoAt and a custom memory map', () => {
    const e820 = buildE820(RAM, { reserved: [{ addr: 16 * MiB, size: MiB, type: 2 }] });
    const { mem, state } = load(mbElf().image, { infoAt: 0x20000, e820 });
    expect(state.regs.rbx).toBe(0x20000n);
    expect(mem.readU32(0x20000 + 8)).toBe(15 * 1024); // mem_upper stops at the first hole
    expect(mem.readU32(0x20000 + 44)).toBe(e820.length * 24);
  });

  it('rejects ramBytes larger than the memory that exists, before writing anything', () => {
    const mem = bufferMemory(RAM);
    expect(() => loadMultiboot(mem, mbElf().image, { cmdline: '', ramBytes: 2 * RAM })).toThrow(RangeError);
    expect(() => loadMultiboot(mem, mbElf().image, { cmdline: '', ramBytes: 2 * RAM })).toThrow(/^opts\.ramBytes \(67108864 bytes\) describes RAM \[0x100000, 0x4000000\)/);
    expect(() => loadMultiboot(mem, mbElf().image, { cmdline: '', ramBytes: RAM, e820: buildE820(2 * RAM) })).toThrow(/^opts\.e820 describes RAM/);
    expect(mem.readBytes(0, RAM).every((b) => b === 0)).toBe(true);
  });

  it('loads ELF64 multiboot kernels', () => {
    const { image } = mbElf({ bits: 64 });
    const { state } = load(image);
    expect(state.regs.rip).toBe(0x100040n);
  });

  it('rejects hostile ELF images', () => {
    const { image } = mbElf();
    const beyond = image.slice();
    new DataView(beyond.buffer).setUint32(phdrField(32, 1, 16), 0x1000, true); // filesz past EOF
    expect(() => load(beyond)).toThrow(/^kernel: ELF program header 1 \(PT_LOAD\): file range .* extends beyond the end of the file/);
    const outside = image.slice();
    new DataView(outside.buffer).setUint32(phdrField(32, 1, 12), 0x4000000, true); // paddr beyond RAM
    expect(() => load(outside)).toThrow('kernel: ELF segment 1 [0x4000000, 0x4002000) does not fit in guest memory');
    const low = image.slice();
    new DataView(low.buffer).setUint32(phdrField(32, 1, 12), 0x9000, true); // over an info area placed at 0x9000
    expect(() => load(low, { infoAt: 0x9000 })).toThrow(/ELF segment 1 \[0x9000, 0xb000\) overlaps the multiboot info at 0x9000/);
    const overflow = image.slice();
    new DataView(overflow.buffer).setUint32(phdrField(32, 1, 20), 0xffffffff, true); // memsz wraps
    expect(() => load(overflow)).toThrow(/wraps around the 32-bit address space/);
    const entry = image.slice();
    new DataView(entry.buffer).setUint32(24, 0x12345678, true);
    expect(() => load(entry)).toThrow('kernel: ELF entry point 0x12345678 is not inside any PT_LOAD segment');
    expect(() => load(mbElf({ machine: 40 }).image)).toThrow(/e_machine 40 is not EM_386/);
    expect(() => load(image.subarray(0, 0x180))).toThrow(/^kernel: ELF program header 0 \(PT_LOAD\).*beyond the end of the file/);
  });

  it('rejects images without a valid header', () => {
    const none = elfImage([{ paddr: 0x100000, data: pattern(0x100) }], { entry: 0x100000 });
    expect(() => load(none)).toThrow(BootImageError);
    expect(() => load(none)).toThrow('kernel: no Multiboot header (magic 0x1badb002) in the first 8192 bytes');
    const { image } = mbElf();
    const bad = image.slice();
    bad[0x108] ^= 1;
    expect(() => load(bad)).toThrow('kernel: Multiboot header at 0x100 has a bad checksum');
    expect(() => load(new Uint8Array(3))).toThrow(/no Multiboot header/);
    expect(() => load(mbElf({ flags: 0x8 }).image)).toThrow(/unsupported features \(flags 0x8\)/);
    const raw = new Uint8Array(0x100);
    raw.set(multibootHeader(0));
    expect(() => load(raw)).toThrow(/not an ELF file/);
  });

  it('rejects modules that do not fit and bad options', () => {
    expect(() => load(mbElf().image, { modules: [{ data: new Uint8Array(RAM), cmdline: '' }] })).toThrow(/^module 0: 0x2000000 bytes do not fit/);
    expect(() => load(mbElf().image, { modules: [{ data: 'x' as unknown as Uint8Array, cmdline: '' }] })).toThrow(TypeError);
    expect(() => load(mbElf().image, { cmdline: 1 as unknown as string })).toThrow(TypeError);
    expect(() => load(mbElf().image, { infoAt: 0x502 })).toThrow(/4-byte aligned/);
    expect(() => load(mbElf().image, { infoAt: 0x4f0 })).toThrow(/overlaps the GDT/);
    expect(() => load(mbElf().image, { infoAt: RAM - 8 })).toThrow(/not backed/);
  });
});

describe('loadMultiboot (address fields)', () => {
  const base = 0x200000;
  function aout(over: Partial<{ headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number }> = {}) {
    const img = new Uint8Array(0x400);
    img.set(pattern(0x400, 2));
    img.set(
      multibootHeader(0x10003, { headerAddr: base + 0x20, loadAddr: base, loadEndAddr: base + 0x300, bssEndAddr: base + 0x1000, entryAddr: base + 0x60, ...over }),
      0x20,
    );
    return img;
  }

  it('loads by header_addr/load_addr/load_end_addr/bss_end_addr', () => {
    const img = aout();
    const { mem, state } = load(img);
    expect(mem.readBytes(base, 0x300)).toEqual(img.subarray(0, 0x300));
    expect(mem.readBytes(base + 0x300, 0xd00).every((b) => b === 0)).toBe(true);
    expect(mem.readU8(base + 0x1000)).toBe(0xaa);
    expect(state.regs.rip).toBe(BigInt(base + 0x60));
    expect(state.multiboot.kernelEnd).toBe(base + 0x1000);
  });

  it('loads to the end of the file when load_end_addr is 0', () => {
    const img = aout({ loadEndAddr: 0, bssEndAddr: 0 });
    const { mem, state } = load(img);
    expect(mem.readBytes(base, 0x400)).toEqual(img);
    expect(state.multiboot.kernelEnd).toBe(base + 0x400);
  });

  it('rejects inconsistent address fields', () => {
    expect(() => load(aout({ loadEndAddr: base + 0x800 }))).toThrow(/^kernel: truncated: Multiboot load range/);
    expect(() => load(aout({ loadAddr: base + 0x40 }))).toThrow(/load_addr 0x200040 is above header_addr/);
    expect(() => load(aout({ headerAddr: base + 0x40 }))).toThrow(/reaches before the start of the file/);
    expect(() => load(aout({ bssEndAddr: base + 0x100 }))).toThrow(/bss_end_addr 0x200100 is below/);
    expect(() => load(aout({ loadEndAddr: base - 0x10 }))).toThrow(/load_end_addr .* is below load_addr/);
    expect(() => load(aout({ entryAddr: base + 0x900 }))).toThrow(/entry_addr 0x200900 is outside the loaded image/);
    expect(() => load(aout({ headerAddr: 0x7ffff020, loadAddr: 0x7ffff000, loadEndAddr: 0x7ffff300, bssEndAddr: 0, entryAddr: 0x7ffff060 }))).toThrow(
      /load range \[0x7ffff000, 0x7ffff300\) does not fit in guest memory/,
    );
  });
});

import { describe, expect, it } from 'vitest';
import { buildE820, E820Type, type E820Entry } from '../../../src/boot/e820.js';
import { BootImageError } from '../../../src/boot/errors.js';
import {
  BootParams,
  LINUX_GDT_AT,
  LINUX_PAGE_TABLES_AT,
  loadBzImage,
  parseBzImageHeader,
  type LinuxOptions,
} from '../../../src/boot/linux.js';
import { BOOT_CS, BOOT_DS, GDT_CODE64, GDT_DATA } from '../../../src/boot/paging.js';
import { bufferMemory, GuestMemory } from '../../../src/memory/guest-memory.js';
import { fakeBzImage, pattern, readCString, translate } from './images.js';

const MiB = 1024 * 1024;
const RAM = 64 * MiB;

function load(kernel = fakeBzImage(), opts: Partial<LinuxOptions> = {}, ram = RAM) {
  const mem = bufferMemory(ram);
  const state = loadBzImage(mem, kernel, { cmdline: 'console=ttyS0 panic=-1', ramBytes: ram, ...opts });
  return { mem, state };
}

function e820FromZeroPage(mem: GuestMemory, zp: number): E820Entry[] {
  const n = mem.readU8(zp + BootParams.E820_ENTRIES);
  const out: E820Entry[] = [];
  for (let i = 0; i < n; i++) {
    const o = zp + BootParams.E820_TABLE + i * 20;
    out.push({ addr: Number(mem.readU64(o)), size: Number(mem.readU64(o + 8)), type: mem.readU32(o + 16) });
  }
  return out;
}

describe('parseBzImageHeader', () => {
  it('parses the setup header', () => {
    const h = parseBzImageHeader(fakeBzImage());
    expect(h).toMatchObject({
      setupSects: 4,
      setupBytes: 0xa00,
      version: 0x020f,
      relocatable: true,
      kernelAlignment: 0x200000,
      minAlignment: 21,
      cmdlineSize: 2047,
      prefAddress: 0x1000000,
      initSize: 0x400000,
      initrdAddrMax: 0x7fffffff,
      kernelSize: 0x1000,
      headerEnd: 0x268,
    });
  });

  it('treats setup_sects 0 as 4', () => {
    const img = fakeBzImage({ setupSects: 0 });
    expect(parseBzImageHeader(img).setupSects).toBe(4);
    expect(parseBzImageHeader(fakeBzImage({ setupSects: 27 })).setupBytes).toBe(28 * 512);
  });

  it('rejects a wrong magic with a clear message', () => {
    const img = fakeBzImage();
    img[0x202] = 0x58;
    expect(() => parseBzImageHeader(img)).toThrow(BootImageError);
    expect(() => parseBzImageHeader(img)).toThrow("kernel: not a bzImage (no 'HdrS' magic at 0x202)");
    const flag = fakeBzImage();
    flag[0x1fe] = 0;
    expect(() => parseBzImageHeader(flag)).toThrow(/boot_flag at 0x1fe is 0xaa00, expected 0xaa55/);
    const elf = new Uint8Array(0x1000);
    elf.set([0x7f, 0x45, 0x4c, 0x46]);
    expect(() => parseBzImageHeader(elf)).toThrow('kernel: is an ELF file (vmlinux), not a bzImage');
  });

  it('rejects truncated images', () => {
    const img = fakeBzImage();
    expect(() => parseBzImageHeader(img.subarray(0, 0x100))).toThrow(/^kernel: truncated: 256 bytes is too short/);
    expect(() => parseBzImageHeader(img.subarray(0, 0x240))).toThrow(/^kernel: truncated: setup header/);
    expect(() => parseBzImageHeader(img.subarray(0, 0x800))).toThrow(/truncated: setup code is 0xa00 bytes/);
    expect(() => parseBzImageHeader(img.subarray(0, 0xa00 + 0x800))).toThrow(/truncated: syssize 0x100 says at least 0xff1 bytes of protected-mode code, the file has 0x800/);
    // one byte short of syssize's rounding is real truncation
    expect(() => parseBzImageHeader(img.subarray(0, 0xa00 + 0x1000 - 16))).toThrow(/truncated: syssize 0x100 says at least 0xff1 bytes/);
    expect(() => parseBzImageHeader(fakeBzImage({ payloadSize: 0x100 }))).toThrow(/too short to contain the 64-bit entry/);
    expect(() => parseBzImageHeader(new Uint8Array(0))).toThrow(BootImageError);
  });

  it('accepts syssize rounded up to a whole paragraph (up to 15 bytes past the end of the file)', () => {
    for (const payloadSize of [0x1001, 0x1008, 0x100f]) {
      const img = fakeBzImage({ payloadSize }); // syssize = ceil(payloadSize / 16) = 0x101
      const h = parseBzImageHeader(img);
      expect(h.syssize).toBe(0x101);
      expect(h.kernelSize).toBe(payloadSize);
    }
    // syssize 0x101 (0x1010 bytes) over 0x1000 bytes of code: 16 bytes missing
    expect(() => parseBzImageHeader(fakeBzImage({ payloadSize: 0x1000, syssize: 0x101 }))).toThrow(/truncated: syssize 0x101 says at least 0x1001 bytes/);
  });

  it('rejects kernels without a 64-bit entry point or with bad fields', () => {
    expect(() => parseBzImageHeader(fakeBzImage({ version: 0x020b }))).toThrow('kernel: boot protocol 2.11 is too old (2.12+ needed for 64-bit entry)');
    expect(() => parseBzImageHeader(fakeBzImage({ xloadflags: 0x2 }))).toThrow(/XLF_KERNEL_64/);
    expect(() => parseBzImageHeader(fakeBzImage({ loadflags: 0 }))).toThrow(/LOADED_HIGH/);
    expect(() => parseBzImageHeader(fakeBzImage({ kernelAlignment: 0x300000 }))).toThrow(/kernel_alignment 0x300000/);
    expect(() => parseBzImageHeader(fakeBzImage({ kernelAlignment: 0 }))).toThrow(/kernel_alignment/);
    expect(() => parseBzImageHeader(fakeBzImage({ prefAddress: 1n << 60n }))).toThrow(/pref_address .* too large/);
    expect(() => parseBzImageHeader('x' as unknown as Uint8Array)).toThrow(TypeError);
  });
});

describe('loadBzImage', () => {
  it('loads the kernel at pref_address and enters it in long mode', () => {
    const kernel = fakeBzImage();
    const { mem, state } = load(kernel);
    expect(state.linux.kernelAt).toBe(0x1000000);
    expect(mem.readBytes(0x1000000, 0x1000)).toEqual(kernel.subarray(0xa00));
    expect(state.mode).toBe('long');
    expect(state.regs.rip).toBe(0x1000200n);
    expect(state.regs.rsi).toBe(0x7000n);
    expect(state.regs.rflags).toBe(2n);
    expect(state.regs.rsp).toBe(0x8ff0n);
    expect(state.cr0! & 0x8000_0001n).toBe(0x8000_0001n);
    expect(state.cr4! & 0x20n).toBe(0x20n);
    expect(state.efer).toBe(0x500n);
    expect(state.cr3).toBe(BigInt(LINUX_PAGE_TABLES_AT));
    expect(state.segments!.cs).toEqual({ selector: BOOT_CS, base: 0n, limit: 0xffffffff, access: 0xa09b });
    for (const s of ['ds', 'es', 'ss'] as const) expect(state.segments![s]).toEqual({ selector: BOOT_DS, base: 0n, limit: 0xffffffff, access: 0xc093 });
    expect(state.segments!.tr!.access).toBe(0x8b);
    expect(state.gdt).toEqual({ base: BigInt(LINUX_GDT_AT), limit: 39 });
    expect(mem.readU64(LINUX_GDT_AT + BOOT_CS)).toBe(GDT_CODE64);
    expect(mem.readU64(LINUX_GDT_AT + BOOT_DS)).toBe(GDT_DATA);
    // The identity map covers the entry point, the zero page and the command line.
    for (const va of [state.regs.rip!, 0x7000n, 0x20000n]) expect(translate(mem, state.cr3!, va)).toBe(va);
  });

  it('fills the zero page', () => {
    const kernel = fakeBzImage();
    const { mem, state } = load(kernel, { acpiRsdp: 0xe0000 });
    const zp = 0x7000;
    // Setup header copied, up to its end only.
    expect(mem.readU32(zp + 0x202)).toBe(0x53726448);
    expect(mem.readU16(zp + 0x206)).toBe(0x020f);
    expect(mem.readU16(zp + 0x1fe)).toBe(0xaa55);
    expect(mem.readU32(zp + 0x230)).toBe(0x200000);
    expect(mem.readU8(zp + 0x280)).toBe(0);
    expect(mem.readU8(zp + BootParams.TYPE_OF_LOADER)).toBe(0xff);
    expect(mem.readU8(zp + BootParams.LOADFLAGS) & 0x81).toBe(0x81);
    expect(mem.readU16(zp + BootParams.HEAP_END_PTR)).toBe(0xfe00);
    expect(mem.readU32(zp + BootParams.CMD_LINE_PTR)).toBe(0x20000);
    expect(mem.readU32(zp + BootParams.EXT_CMD_LINE_PTR)).toBe(0);
    expect(readCString(mem, 0x20000)).toBe('console=ttyS0 panic=-1');
    expect(mem.readU64(zp + BootParams.ACPI_RSDP_ADDR)).toBe(0xe0000n);
    expect(mem.readU32(zp + BootParams.RAMDISK_IMAGE)).toBe(0);
    expect(mem.readU32(zp + BootParams.RAMDISK_SIZE)).toBe(0);
    expect(mem.readU8(zp + BootParams.SENTINEL)).toBe(0);
    expect(e820FromZeroPage(mem, zp)).toEqual(buildE820(RAM));
    expect(state.linux.zeroPageAt).toBe(zp);
  });

  it('passes a custom E820 map and places boot data where asked', () => {
    const e820 = buildE820(RAM, { reserved: [{ addr: 0xe0000, size: 0x10000, type: E820Type.ACPI }] });
    const { mem } = load(fakeBzImage(), { e820, zeroPageAt: 0x10000, cmdlineAt: 0x30000, cmdline: 'root=/dev/vda' });
    expect(e820FromZeroPage(mem, 0x10000)).toEqual(e820);
    expect(mem.readU32(0x10000 + BootParams.CMD_LINE_PTR)).toBe(0x30000);
    expect(readCString(mem, 0x30000)).toBe('root=/dev/vda');
  });

  it('places the initrd page aligned at the top of RAM, outside the kernel', () => {
    const initrd = pattern(0x12345, 9);
    const { mem, state } = load(fakeBzImage(), { initrd });
    const at = state.linux.initrdAt;
    expect(at % 0x1000).toBe(0);
    expect(at + initrd.length).toBeLessThanOrEqual(RAM);
    expect(RAM - (at + initrd.length)).toBeLessThan(0x1000);
    expect(mem.readBytes(at, initrd.length)).toEqual(initrd);
    expect(mem.readU32(0x7000 + BootParams.RAMDISK_IMAGE)).toBe(at);
    expect(mem.readU32(0x7000 + BootParams.RAMDISK_SIZE)).toBe(initrd.length);
    expect(mem.readU32(0x7000 + BootParams.EXT_RAMDISK_IMAGE)).toBe(0);
    expect(at >= state.linux.kernelEnd || at + initrd.length <= state.linux.kernelAt).toBe(true);
  });

  it('keeps the initrd below initrd_addr_max and initrdMax, skipping the kernel', () => {
    const initrd = pattern(0x3000);
    const a = load(fakeBzImage({ initrdAddrMax: 0x2ffffff }), { initrd });
    expect(a.state.linux.initrdAt + initrd.length).toBeLessThanOrEqual(0x3000000);
    expect(a.state.linux.initrdAt).toBe(0x3000000 - 0x3000);
    // A limit inside the kernel's init_size span pushes the initrd below the kernel.
    const b = load(fakeBzImage(), { initrd, initrdMax: 0x11fffff });
    expect(b.state.linux.initrdAt + initrd.length).toBeLessThanOrEqual(0x1000000);
    expect(b.state.linux.initrdAt).toBe(0x1000000 - 0x3000);
  });

  it('rejects an initrd that does not fit', () => {
    expect(() => load(fakeBzImage(), { initrd: new Uint8Array(RAM) })).toThrow(/^initrd: 0x4000000 bytes do not fit in guest RAM/);
    expect(() => load(fakeBzImage(), { initrd: new Uint8Array(0) })).toThrow('initrd: is empty');
  });

  it('falls back to a lower aligned address when pref_address does not fit', () => {
    const { mem, state } = load(fakeBzImage({ initSize: 0x800000 }), {}, 16 * MiB);
    expect(state.linux.kernelAt).toBe(0x200000);
    expect(state.regs.rip).toBe(0x200200n);
    expect(mem.readU8(0x200000)).toBe(3);
  });

  it('honours an explicit kernelAt, rounded to the minimum alignment', () => {
    const { state } = load(fakeBzImage(), { kernelAt: 0x300000 });
    expect(state.linux.kernelAt).toBe(0x400000);
    expect(() => load(fakeBzImage({ relocatable: false }), { kernelAt: 0x400000 })).toThrow(/not relocatable/);
    expect(() => load(fakeBzImage(), { kernelAt: 0x3e00000 })).toThrow(/opts\.kernelAt/);
  });

  it('rejects a non-relocatable kernel whose pref_address does not fit', () => {
    expect(() => load(fakeBzImage({ relocatable: false }), {}, 16 * MiB)).toThrow(BootImageError);
    expect(() => load(fakeBzImage({ relocatable: false }), {}, 16 * MiB)).toThrow(/not relocatable .* pref_address 0x1000000/);
    expect(() => load(fakeBzImage({ initSize: 0x10000000 }), {}, 16 * MiB)).toThrow(/do not fit anywhere in guest RAM/);
  });

  it('works across several memory segments', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new Uint8Array(0xa0000));
    mem.addSegment(0x100000, new Uint8Array(RAM - 0x100000));
    const initrd = pattern(0x2000);
    const state = loadBzImage(mem, fakeBzImage(), { cmdline: 'quiet', ramBytes: RAM, initrd });
    expect(state.linux.kernelAt).toBe(0x1000000);
    expect(mem.readBytes(state.linux.initrdAt, 0x2000)).toEqual(initrd);
    expect(readCString(mem, 0x20000)).toBe('quiet');
  });

  it('validates the command line and options', () => {
    expect(() => load(fakeBzImage({ cmdlineSize: 8 }), { cmdline: 'console=ttyS0' })).toThrow(
      'opts.cmdline is 13 bytes; the kernel accepts at most 8 (cmdline_size)',
    );
    expect(() => load(fakeBzImage({ cmdlineSize: 13 }), { cmdline: 'console=ttyS0' })).not.toThrow();
    expect(() => load(fakeBzImage(), { cmdline: 'a\0b' })).toThrow(/NUL/);
    expect(() => load(fakeBzImage(), { cmdline: 5 as unknown as string })).toThrow(TypeError);
    expect(() => load(fakeBzImage(), { initrd: [1] as unknown as Uint8Array })).toThrow(TypeError);
    expect(() => load(fakeBzImage(), { zeroPageAt: 0x7100 })).toThrow(/4 KiB aligned/);
    expect(() => load(fakeBzImage(), { zeroPageAt: 0x9000 })).toThrow(/overlaps the page tables/);
    expect(() => load(fakeBzImage(), { cmdlineAt: 0x7800 })).toThrow(/command line at 0x7800 overlaps the zero page/);
    expect(() => load(fakeBzImage(), { ramBytes: -1 })).toThrow(RangeError);
    const many = Array.from({ length: 129 }, (_, i) => ({ addr: 0x100000 + i * 0x1000, size: 0x1000, type: 1 }));
    expect(() => load(fakeBzImage(), { e820: many })).toThrow(/at most 128/);
  });

  it('rejects ramBytes (or an e820 map) promising more RAM than the memory backs, before writing anything', () => {
    const mem = bufferMemory(RAM);
    const opts = { cmdline: '', ramBytes: 2 * RAM };
    expect(() => loadBzImage(mem, fakeBzImage(), opts)).toThrow(RangeError);
    expect(() => loadBzImage(mem, fakeBzImage(), opts)).toThrow(
      `opts.ramBytes (${2 * RAM} bytes) describes RAM [0x100000, 0x8000000) that guest memory does not back`,
    );
    const e820 = buildE820(RAM + 0x1000);
    expect(() => loadBzImage(mem, fakeBzImage(), { cmdline: '', ramBytes: RAM, e820 })).toThrow(/^opts\.e820 describes RAM/);
    expect(() => loadBzImage(mem, fakeBzImage(), { cmdline: '', ramBytes: 512 * 1024 })).toThrow(/^opts\.ramBytes must be at least 1 MiB/);
    expect(mem.readBytes(0, RAM).every((b) => b === 0)).toBe(true);
    expect(() => loadBzImage(mem, fakeBzImage(), { cmdline: '', ramBytes: RAM })).not.toThrow();
  });

  it('rejects malformed kernels before touching memory', () => {
    const mem = bufferMemory(RAM);
    const bad = fakeBzImage();
    bad[0x203] = 0;
    expect(() => loadBzImage(mem, bad, { cmdline: '', ramBytes: RAM })).toThrow("kernel: not a bzImage (no 'HdrS' magic at 0x202)");
    expect(() => loadBzImage(mem, fakeBzImage().subarray(0, 0x1000), { cmdline: '', ramBytes: RAM })).toThrow(/^kernel: truncated/);
    expect(mem.readBytes(0, RAM).every((b) => b === 0)).toBe(true);
  });
});

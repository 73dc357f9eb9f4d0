import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BootImageError } from '../../../src/boot/errors.js';
import { BootParams, HDRS_MAGIC } from '../../../src/boot/linux.js';
import { LZ4_LEGACY_MAGIC } from '../../../src/boot/lz4.js';
import { extractVmlinux, loadBzImageDecompressed, loadVmlinux, payloadFormat } from '../../../src/boot/vmlinux.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { elfImage, fakeBzImage, pattern, readCString } from './images.js';

const MiB = 1024 * 1024;
const RAM = 64 * MiB;
const TEXT = pattern(0x3000, 3);
const DATA = pattern(0x800, 9);

/** A vmlinux-shaped ELF: text at 16 MiB (linked high), data after it with a bss tail; entry = physical startup_64. */
function vmlinux(entry: number | bigint = 0x1000000): Uint8Array {
  return elfImage(
    [
      { paddr: 0x1000000, vaddr: 0xffffffff81000000n, data: TEXT },
      { paddr: 0x1200000, vaddr: 0xffffffff81200000n, data: DATA, memsz: 0x2000 },
    ],
    { bits: 64, entry },
  );
}

/** A bzImage whose payload (at payload_offset 0x100) is `payload`. */
function bzWith(payload: Uint8Array, cmdlineSize = 2047): Uint8Array {
  const img = fakeBzImage({ payloadSize: Math.max(0x400, (0x100 + payload.length + 0x1f) & ~0xf), cmdlineSize });
  const setupBytes = 5 * 512;
  img.set(payload, setupBytes + 0x100);
  const v = new DataView(img.buffer);
  v.setUint32(BootParams.PAYLOAD_OFFSET, 0x100, true);
  v.setUint32(BootParams.PAYLOAD_LENGTH, payload.length, true);
  return img;
}

/** An LZ4 legacy frame of literal-only blocks (valid LZ4, no compression). */
function lz4Stored(data: Uint8Array): Uint8Array {
  const blocks: number[] = [];
  for (let at = 0; at < data.length; at += 0x10000) {
    const chunk = [...data.subarray(at, at + 0x10000)];
    const ext: number[] = [];
    let rest = chunk.length - 15;
    while (rest >= 255) {
      ext.push(255);
      rest -= 255;
    }
    ext.push(rest);
    const block = [0xf0, ...ext, ...chunk];
    blocks.push(block.length & 0xff, (block.length >> 8) & 0xff, (block.length >> 16) & 0xff, 0, ...block);
  }
  const out = new Uint8Array(4 + blocks.length + 4);
  new DataView(out.buffer).setUint32(0, LZ4_LEGACY_MAGIC, true);
  out.set(blocks, 4);
  new DataView(out.buffer).setUint32(4 + blocks.length, data.length, true); // the kernel's size trailer
  return out;
}

describe('loadVmlinux', () => {
  it('loads each segment at its physical address and enters startup_64 with RSI = zero page', () => {
    const mem = bufferMemory(RAM);
    const initrd = pattern(0x1800, 5);
    const s = loadVmlinux(mem, vmlinux(), { cmdline: 'console=ttyS0 panic=-1', ramBytes: RAM, initrd, acpiRsdp: 0xe0000 });
    expect(s.mode).toBe('long');
    expect(s.regs.rip).toBe(0x1000000n);
    expect(s.regs.rsi).toBe(BigInt(s.linux.zeroPageAt));
    expect(s.linux.entry).toBe(0x1000000);
    expect(s.linux.kernelAt).toBe(0x1000000);
    expect(s.linux.kernelEnd).toBe(0x1202000);
    expect(mem.readBytes(0x1000000, TEXT.length)).toEqual(TEXT);
    expect(mem.readBytes(0x1200000, DATA.length)).toEqual(DATA);
    const zp = s.linux.zeroPageAt;
    expect(mem.readU16(zp + BootParams.BOOT_FLAG)).toBe(0xaa55);
    expect(mem.readU32(zp + BootParams.HEADER)).toBe(HDRS_MAGIC);
    expect(mem.readU16(zp + BootParams.VERSION)).toBeGreaterThanOrEqual(0x020c);
    expect(mem.readU8(zp + BootParams.TYPE_OF_LOADER)).toBe(0xff);
    expect(readCString(mem, mem.readU32(zp + BootParams.CMD_LINE_PTR))).toBe('console=ttyS0 panic=-1');
    expect(mem.readU32(zp + BootParams.RAMDISK_SIZE)).toBe(initrd.length);
    const initrdAt = mem.readU32(zp + BootParams.RAMDISK_IMAGE);
    expect(initrdAt).toBe(s.linux.initrdAt);
    expect(mem.readBytes(initrdAt, initrd.length)).toEqual(initrd);
    expect(initrdAt >= 0x1202000 || initrdAt + initrd.length <= 0x1000000).toBe(true);
    expect(mem.readU64(zp + BootParams.ACPI_RSDP_ADDR)).toBe(0xe0000n);
    expect(mem.readU8(zp + BootParams.E820_ENTRIES)).toBeGreaterThan(0);
  });

  it('accepts an entry given as a virtual address inside a segment', () => {
    const s = loadVmlinux(bufferMemory(RAM), vmlinux(0xffffffff81000040n), { cmdline: '', ramBytes: RAM });
    expect(s.regs.rip).toBe(0x1000040n);
  });

  it('rejects what is not a loadable x86-64 kernel, before writing anything', () => {
    const opts = { cmdline: '', ramBytes: RAM };
    const cases: [string, () => unknown, RegExp][] = [
      ['32-bit ELF', () => loadVmlinux(bufferMemory(RAM), elfImage([{ paddr: 0x100000, data: TEXT }], { entry: 0x100000 }), opts), /not an x86-64 executable/],
      ['entry outside', () => loadVmlinux(bufferMemory(RAM), vmlinux(0x5000000), opts), /entry point 0x5000000 is outside every loadable segment/],
      ['beyond RAM', () => loadVmlinux(bufferMemory(16 * MiB), vmlinux(), { cmdline: '', ramBytes: 16 * MiB }), /not in usable RAM/],
      ['not ELF', () => loadVmlinux(bufferMemory(RAM), fakeBzImage(), opts), /not an ELF file/],
    ];
    for (const [what, f, msg] of cases) {
      expect(f, what).toThrow(BootImageError);
      expect(f, what).toThrow(msg);
    }
    const mem = bufferMemory(RAM);
    expect(() => loadVmlinux(mem, vmlinux(0x5000000), opts)).toThrow(BootImageError);
    expect(mem.readBytes(0x1000000, 16)).toEqual(new Uint8Array(16)); // nothing half-done
    expect(() => loadVmlinux(mem, vmlinux(), { ...opts, kernelAt: 0x2000000 })).toThrow(RangeError);
    expect(() => loadVmlinux(mem, vmlinux(), { cmdline: 'x'.repeat(3000), ramBytes: RAM })).toThrow(/at most 2047/);
    expect(() => loadVmlinux(mem, vmlinux(), { cmdline: '', ramBytes: 2 * RAM })).toThrow(/^opts\.ramBytes \(\d+ bytes\) describes RAM .* that guest memory does not back/);
    expect(mem.readBytes(0x1000000, 16)).toEqual(new Uint8Array(16));
  });
});

describe('extractVmlinux / loadBzImageDecompressed', () => {
  it('names payload formats by their magic', () => {
    expect(payloadFormat(gzipSync(Buffer.from('x')))).toBe('gzip');
    expect(payloadFormat(lz4Stored(new Uint8Array(20)))).toBe('lz4');
    expect(payloadFormat(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))).toBe('xz');
    expect(payloadFormat(new Uint8Array([0x28, 0xb5, 0x2f, 0xfd]))).toBe('zstd');
    expect(payloadFormat(new Uint8Array([1, 2, 3, 4]))).toBe('unknown');
  });

  it('decompresses gzip and lz4 payloads to the ELF they hold', () => {
    const elf = vmlinux();
    for (const payload of [gzipSync(elf), lz4Stored(elf)]) {
      const x = extractVmlinux(bzWith(payload));
      expect(x.vmlinux).toEqual(elf);
      expect(x.header.payloadLength).toBe(payload.length);
    }
  });

  it('boots the payload directly, keeping the bzImage header (its cmdline_size applies)', () => {
    const mem = bufferMemory(RAM);
    const bz = bzWith(lz4Stored(vmlinux()), 100);
    const s = loadBzImageDecompressed(mem, bz, { cmdline: 'console=ttyS0', ramBytes: RAM });
    expect(s.regs.rip).toBe(0x1000000n);
    expect(mem.readBytes(0x1000000, TEXT.length)).toEqual(TEXT);
    expect(mem.readU32(s.linux.zeroPageAt + BootParams.CMDLINE_SIZE)).toBe(100);
    expect(() => loadBzImageDecompressed(bufferMemory(RAM), bz, { cmdline: 'x'.repeat(101), ramBytes: RAM })).toThrow(/at most 100/);
  });

  it('gives a clear error for other formats, corrupt payloads and payloads outside the file', () => {
    expect(() => extractVmlinux(bzWith(new Uint8Array([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00, 1, 2])))).toThrow(
      /payload is xz-compressed; the host decompresses gzip and lz4/,
    );
    const gz = gzipSync(vmlinux());
    expect(() => extractVmlinux(bzWith(gz.subarray(0, gz.length - 40)))).toThrow(/gzip payload does not decompress/);
    expect(() => extractVmlinux(bzWith(gzipSync(Buffer.from('not an elf'))))).toThrow(/did not decompress to an ELF file/);
    const outside = bzWith(gz);
    new DataView(outside.buffer).setUint32(BootParams.PAYLOAD_LENGTH, 0x100000, true);
    expect(() => extractVmlinux(outside)).toThrow(/lies outside the file/);
    expect(() => extractVmlinux(fakeBzImage())).toThrow(BootImageError);
  });
});

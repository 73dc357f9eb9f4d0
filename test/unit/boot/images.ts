/** Synthetic boot images for the boot loader tests (not a test file itself). */
import type { GuestMemoryAccess } from '../../../src/memory/access.js';

/** Options for {@link fakeBzImage}. */
export interface FakeBzOptions {
  setupSects?: number;
  version?: number;
  payloadSize?: number;
  syssize?: number;
  initSize?: number;
  prefAddress?: bigint;
  kernelAlignment?: number;
  minAlignment?: number;
  relocatable?: boolean;
  cmdlineSize?: number;
  initrdAddrMax?: number;
  loadflags?: number;
  xloadflags?: number;
}

/**
 * A tiny bzImage: a setup header with the given fields, `setupSects` sectors of setup code,
 * and a protected-mode payload whose byte i is (i * 7 + 3) & 0xff.
 */
export function fakeBzImage(o: FakeBzOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const effSects = setupSects === 0 ? 4 : setupSects;
  const setupBytes = (effSects + 1) * 512;
  const payloadSize = o.payloadSize ?? 0x1000;
  const img = new Uint8Array(setupBytes + payloadSize);
  const v = new DataView(img.buffer);
  img[0x1f1] = setupSects;
  v.setUint32(0x1f4, o.syssize ?? Math.ceil(payloadSize / 16), true);
  v.setUint16(0x1fa, 0xffff, true);
  v.setUint16(0x1fe, 0xaa55, true);
  img[0x200] = 0xeb;
  img[0x201] = 0x66; // header ends at 0x268
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, o.version ?? 0x020f, true);
  img[0x211] = o.loadflags ?? 0x01;
  v.setUint32(0x214, 0x100000, true);
  v.setUint32(0x22c, o.initrdAddrMax ?? 0x7fffffff, true);
  v.setUint32(0x230, o.kernelAlignment ?? 0x200000, true);
  img[0x234] = (o.relocatable ?? true) ? 1 : 0;
  img[0x235] = o.minAlignment ?? 21;
  v.setUint16(0x236, o.xloadflags ?? 0x03, true);
  v.setUint32(0x238, o.cmdlineSize ?? 2047, true);
  v.setBigUint64(0x258, o.prefAddress ?? 0x1000000n, true);
  v.setUint32(0x260, o.initSize ?? 0x400000, true);
  // Something recognisable beyond the header end that must not be copied into the zero page.
  img[0x280] = 0xcc;
  for (let i = 0; i < payloadSize; i++) img[setupBytes + i] = (i * 7 + 3) & 0xff;
  return img;
}

/** One segment for {@link elfImage}. */
export interface FakeSegment {
  paddr: number;
  vaddr?: number | bigint;
  data: Uint8Array;
  memsz?: number;
  type?: number;
}

/** Options for {@link elfImage}. */
export interface FakeElfOptions {
  bits?: 32 | 64;
  machine?: number;
  type?: number;
  entry: number | bigint;
  /** File offset where segment data starts (default 0x100). */
  dataAt?: number;
}

/** A little-endian ELF executable with the given segments laid out back to back from `dataAt`. */
export function elfImage(segments: FakeSegment[], o: FakeElfOptions): Uint8Array {
  const bits = o.bits ?? 32;
  const ehsize = bits === 32 ? 52 : 64;
  const phentsize = bits === 32 ? 32 : 56;
  const dataAt = o.dataAt ?? 0x100;
  if (ehsize + phentsize * segments.length > dataAt) throw new Error('too many segments for dataAt');
  const total = dataAt + segments.reduce((n, s) => n + s.data.length, 0);
  const img = new Uint8Array(total);
  const v = new DataView(img.buffer);
  img.set([0x7f, 0x45, 0x4c, 0x46, bits === 32 ? 1 : 2, 1, 1]);
  v.setUint16(16, o.type ?? 2, true);
  v.setUint16(18, o.machine ?? (bits === 32 ? 3 : 62), true);
  v.setUint32(20, 1, true);
  if (bits === 32) {
    v.setUint32(24, Number(o.entry), true);
    v.setUint32(28, ehsize, true);
    v.setUint16(40, ehsize, true);
    v.setUint16(42, phentsize, true);
    v.setUint16(44, segments.length, true);
  } else {
    v.setBigUint64(24, BigInt(o.entry), true);
    v.setBigUint64(32, BigInt(ehsize), true);
    v.setUint16(52, ehsize, true);
    v.setUint16(54, phentsize, true);
    v.setUint16(56, segments.length, true);
  }
  let off = dataAt;
  segments.forEach((s, i) => {
    const p = ehsize + i * phentsize;
    const memsz = s.memsz ?? s.data.length;
    const vaddr = s.vaddr ?? s.paddr;
    if (bits === 32) {
      v.setUint32(p, s.type ?? 1, true);
      v.setUint32(p + 4, off, true);
      v.setUint32(p + 8, Number(vaddr), true);
      v.setUint32(p + 12, s.paddr, true);
      v.setUint32(p + 16, s.data.length, true);
      v.setUint32(p + 20, memsz, true);
      v.setUint32(p + 24, 5, true);
      v.setUint32(p + 28, 0x1000, true);
    } else {
      v.setUint32(p, s.type ?? 1, true);
      v.setUint32(p + 4, 5, true);
      v.setBigUint64(p + 8, BigInt(off), true);
      v.setBigUint64(p + 16, BigInt(vaddr), true);
      v.setBigUint64(p + 24, BigInt(s.paddr), true);
      v.setBigUint64(p + 32, BigInt(s.data.length), true);
      v.setBigUint64(p + 40, BigInt(memsz), true);
      v.setBigUint64(p + 48, 0x1000n, true);
    }
    img.set(s.data, off);
    off += s.data.length;
  });
  return img;
}

/** Offset of program header `i`'s field at `fieldOff` in an image built by {@link elfImage}. */
export function phdrField(bits: 32 | 64, i: number, fieldOff: number): number {
  return (bits === 32 ? 52 + i * 32 : 64 + i * 56) + fieldOff;
}

/** A Multiboot header (12 bytes, or 32 with address fields) with a valid checksum. */
export function multibootHeader(
  flags: number,
  addr?: { headerAddr: number; loadAddr: number; loadEndAddr: number; bssEndAddr: number; entryAddr: number },
): Uint8Array {
  const out = new Uint8Array(addr ? 32 : 12);
  const v = new DataView(out.buffer);
  v.setUint32(0, 0x1badb002, true);
  v.setUint32(4, flags >>> 0, true);
  v.setUint32(8, (-(0x1badb002 + flags) >>> 0) >>> 0, true);
  if (addr) {
    v.setUint32(12, addr.headerAddr, true);
    v.setUint32(16, addr.loadAddr, true);
    v.setUint32(20, addr.loadEndAddr, true);
    v.setUint32(24, addr.bssEndAddr, true);
    v.setUint32(28, addr.entryAddr, true);
  }
  return out;
}

/** Bytes 0..n-1 with a pattern seeded by `seed`. */
export function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 13 + seed * 31) & 0xff;
  return out;
}

/** Sum of bytes mod 256. */
export function byteSum(bytes: Uint8Array): number {
  let s = 0;
  for (const b of bytes) s = (s + b) & 0xff;
  return s;
}

/** ASCII text of bytes. */
export function ascii(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes);
}

/** Read a NUL-terminated string from memory-like `readU8`. */
export function readCString(mem: { readU8(gpa: number): number }, at: number, max = 4096): string {
  let s = '';
  for (let i = 0; i < max; i++) {
    const c = mem.readU8(at + i);
    if (c === 0) return s;
    s += String.fromCharCode(c);
  }
  throw new Error('unterminated string');
}

/** Walk 4-level page tables; returns the physical address or undefined if not present. */
export function translate(mem: GuestMemoryAccess, cr3: bigint, va: bigint): bigint | undefined {
  const idx = (shift: bigint): bigint => (va >> shift) & 0x1ffn;
  const pml4e = mem.readU64(Number(cr3 + idx(39n) * 8n));
  if (!(pml4e & 1n)) return undefined;
  const pdpte = mem.readU64(Number((pml4e & 0x000f_ffff_ffff_f000n) + idx(30n) * 8n));
  if (!(pdpte & 1n)) return undefined;
  if (pdpte & 0x80n) return (pdpte & 0x000f_ffff_c000_0000n) | (va & 0x3fff_ffffn);
  const pde = mem.readU64(Number((pdpte & 0x000f_ffff_ffff_f000n) + idx(21n) * 8n));
  if (!(pde & 1n)) return undefined;
  if (pde & 0x80n) return (pde & 0x000f_ffff_ffe0_0000n) | (va & 0x1f_ffffn);
  const pte = mem.readU64(Number((pde & 0x000f_ffff_ffff_f000n) + idx(12n) * 8n));
  if (!(pte & 1n)) return undefined;
  return (pte & 0x000f_ffff_ffff_f000n) | (va & 0xfffn);
}


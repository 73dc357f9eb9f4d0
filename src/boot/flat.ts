/**
 * A loader for flat binaries: raw bytes copied to one guest-physical address, entered in
 * real, protected or long mode.
 *
 * - `real` (default): `at` must be below 1 MiB. An image that ends within the first 64 KiB
 *   runs with CS = DS = ES = FS = GS = SS = 0 and IP = `entry`: it is linked at the address it
 *   is loaded at (`ld -Ttext 0x1000`, `org 0x7c00`), as a boot sector is. A larger or higher
 *   image gets segments `at >> 4` (base `at` rounded down to 16) and IP = `entry - base`
 *   (below 64 KiB): it is linked at offset 0. Control registers keep their reset values.
 * - `protected`: a flat GDT at `gdtAt` (0x08 32-bit code, 0x10 data), CR0.PE, paging off.
 * - `long`: the Linux-style GDT at `gdtAt` (0x10 64-bit code, 0x18 data) and identity page
 *   tables at `pageTablesAt` mapping `identityGigabytes` GiB.
 *
 * RSP is set only when `stack` is given (an offset into SS in real mode, an address otherwise).
 * RFLAGS is 2 (interrupts off).
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { defaultLdtRegister, defaultTaskRegister, type BootState, type SegmentState } from './boot-state.js';
import { BootImageError } from './errors.js';
import {
  BOOT_CS,
  BOOT_DS,
  buildGdt,
  buildIdentityPageTables,
  GDT_CODE32,
  GDT_CODE64,
  GDT_DATA,
  GDT_NULL,
  LONG_MODE_CR0,
  LONG_MODE_CR4,
  LONG_MODE_EFER,
  segmentFromDescriptor,
  writeGdt,
} from './paging.js';
import { findOverlap, hex, requireAddress, requireBytes, type PlacedRange } from './util.js';

/** Default GDT address for protected and long mode. */
export const FLAT_GDT_AT = 0x500;
/** Default page-table address for long mode. */
export const FLAT_PAGE_TABLES_AT = 0x9000;

/** Options for {@link loadFlat}. */
export interface FlatOptions {
  /** CPU mode to enter in. Default `'real'`. */
  mode?: 'real' | 'protected' | 'long';
  /** Entry address (guest-physical). Default `at`. */
  entry?: number;
  /** Initial stack pointer (see module docs); unset by default. */
  stack?: number;
  /** GDT address (protected/long). Default 0x500. */
  gdtAt?: number;
  /** PML4 address (long). Default 0x9000. */
  pageTablesAt?: number;
  /** GiB to identity-map (long), 1-512. Default 1. */
  identityGigabytes?: number;
}

const FOUR_GIB = 0x1_0000_0000;

/**
 * Copy `image` to `at` and return the entry state.
 *
 * @throws BootImageError if the image is empty or does not fit in guest memory;
 *   TypeError/RangeError for bad options (e.g. `at` not below 1 MiB in real mode, or the
 *   image overlapping the GDT or page tables).
 */
export function loadFlat(mem: GuestMemoryAccess, image: Uint8Array, at: number, opts: FlatOptions = {}): BootState {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  requireBytes(image, 'image');
  requireAddress(at, 'at');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const mode = opts.mode ?? 'real';
  if (mode !== 'real' && mode !== 'protected' && mode !== 'long') throw new RangeError(`opts.mode must be 'real', 'protected' or 'long', got ${String(mode)}`);
  const entry = opts.entry === undefined ? at : requireAddress(opts.entry, 'opts.entry');
  const stack = opts.stack === undefined ? undefined : requireAddress(opts.stack, 'opts.stack');
  if (image.length === 0) throw new BootImageError('flat', 'image is empty');
  if (!Number.isSafeInteger(at + image.length) || !mem.isBacked(at, image.length))
    throw new BootImageError('flat', `${hex(image.length)} bytes at ${hex(at)} do not fit in guest memory`);

  const regs: BootState['regs'] = { rip: 0n, rflags: 2n };
  if (stack !== undefined) regs.rsp = BigInt(stack);

  if (mode === 'real') {
    if (at >= 0x100000) throw new RangeError(`at must be below 1 MiB in real mode, got ${hex(at)}`);
    // linked at its load address when that fits a 16-bit offset, else at offset 0 of its segment
    const selector = at + image.length <= 0x10000 && entry <= 0xffff ? 0 : Math.floor(at / 16);
    const base = selector * 16;
    const ip = entry - base;
    if (ip < 0 || ip > 0xffff) throw new RangeError(`opts.entry ${hex(entry)} is not within 64 KiB of the segment base ${hex(base)}`);
    if (stack !== undefined && stack > 0xffff) throw new RangeError(`opts.stack must be a 16-bit offset in real mode, got ${hex(stack)}`);
    mem.writeBytes(at, image);
    regs.rip = BigInt(ip);
    const seg = (access: number): SegmentState => ({ selector, base: BigInt(base), limit: 0xffff, access });
    return {
      mode,
      regs,
      segments: { cs: seg(0x9b), ds: seg(0x93), es: seg(0x93), fs: seg(0x93), gs: seg(0x93), ss: seg(0x93), tr: defaultTaskRegister(), ldtr: defaultLdtRegister() },
    };
  }

  if (entry >= FOUR_GIB && mode === 'protected') throw new RangeError(`opts.entry must be below 4 GiB in protected mode, got ${hex(entry)}`);
  const gdtAt = opts.gdtAt === undefined ? FLAT_GDT_AT : requireAddress(opts.gdtAt, 'opts.gdtAt');
  const reserved: PlacedRange[] = [{ what: 'GDT', start: gdtAt, length: mode === 'long' ? 40 : 24 }];
  let ptAt = 0;
  let gigabytes = 1;
  if (mode === 'long') {
    ptAt = opts.pageTablesAt === undefined ? FLAT_PAGE_TABLES_AT : requireAddress(opts.pageTablesAt, 'opts.pageTablesAt');
    gigabytes = opts.identityGigabytes ?? 1;
    if (typeof gigabytes !== 'number' || !Number.isInteger(gigabytes) || gigabytes < 1 || gigabytes > 512)
      throw new RangeError(`opts.identityGigabytes must be an integer in [1, 512], got ${String(gigabytes)}`);
    reserved.push({ what: 'page tables', start: ptAt, length: (2 + gigabytes) * 0x1000 });
    if (findOverlap(reserved.slice(0, 1), ptAt, (2 + gigabytes) * 0x1000))
      throw new RangeError(`opts.pageTablesAt ${hex(ptAt)} overlaps the GDT at ${hex(gdtAt)}`);
  }
  const hit = findOverlap(reserved, at, image.length);
  if (hit) throw new RangeError(`at: image [${hex(at)}, ${hex(at + image.length)}) overlaps the ${hit.what} at ${hex(hit.start)}`);

  if (mode === 'protected') {
    const gdt = writeGdt(mem, gdtAt, [GDT_NULL, GDT_CODE32, GDT_DATA]);
    mem.writeBytes(at, image);
    regs.rip = BigInt(entry);
    const data = (): SegmentState => segmentFromDescriptor(0x10, GDT_DATA);
    return {
      mode,
      regs,
      cr0: 1n,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
      segments: { cs: segmentFromDescriptor(0x08, GDT_CODE32), ds: data(), es: data(), fs: data(), gs: data(), ss: data(), tr: defaultTaskRegister(), ldtr: defaultLdtRegister() },
      gdt,
      idt: { base: 0n, limit: 0 },
    };
  }

  const gdt = buildGdt(mem, gdtAt);
  const pt = buildIdentityPageTables(mem, ptAt, { gigabytes });
  mem.writeBytes(at, image);
  regs.rip = BigInt(entry);
  const data = (): SegmentState => segmentFromDescriptor(BOOT_DS, GDT_DATA);
  return {
    mode,
    regs,
    cr0: LONG_MODE_CR0,
    cr3: pt.cr3,
    cr4: LONG_MODE_CR4,
    efer: LONG_MODE_EFER,
    segments: { cs: segmentFromDescriptor(BOOT_CS, GDT_CODE64), ds: data(), es: data(), fs: data(), gs: data(), ss: data(), tr: defaultTaskRegister(), ldtr: defaultLdtRegister() },
    gdt,
    idt: { base: 0n, limit: 0 },
  };
}

/**
 * Early-boot x86-64 structures a loader writes for a guest entered directly in protected or
 * long mode: identity-mapped 4-level page tables with 2 MiB pages, and flat GDTs.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import type { DescriptorTableState, SegmentState } from './boot-state.js';
import { hex, requireAddress } from './util.js';

/** Options for {@link buildIdentityPageTables}. */
export interface IdentityMapOptions {
  /** How many GiB to identity-map from address 0 (1-512). Default 4. */
  gigabytes?: number;
}

/** Result of {@link buildIdentityPageTables}. */
export interface PageTables {
  /** The value for CR3: the PML4's address. */
  cr3: bigint;
  /** First byte after the last page-table page. */
  end: number;
}

/** Page-table entry bits. */
export const PTE_PRESENT = 1n << 0n;
/** Writable. */
export const PTE_WRITE = 1n << 1n;
/** Page size: a 2 MiB (in a PD) or 1 GiB (in a PDPT) leaf. */
export const PTE_PS = 1n << 7n;

const PAGE = 0x1000;
const GIB = 2 ** 30;
const TWO_MIB = 2 ** 21;

/**
 * Identity-map `[0, gigabytes GiB)` with 2 MiB pages: the PML4 at `at`, the PDPT at
 * `at + 0x1000`, and one page directory per GiB from `at + 0x2000`. All pages are zeroed
 * first, entries are present + writable (supervisor).
 *
 * @param at 4 KiB-aligned guest-physical address; `[at, end)` must be backed.
 * @throws RangeError if `at` is misaligned, `gigabytes` is out of range or memory is not backed.
 */
export function buildIdentityPageTables(mem: GuestMemoryAccess, at: number, opts: IdentityMapOptions = {}): PageTables {
  requireAddress(at, 'at');
  if (at % PAGE !== 0) throw new RangeError(`at must be 4 KiB aligned, got ${hex(at)}`);
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const gigabytes = opts.gigabytes ?? 4;
  if (typeof gigabytes !== 'number') throw new TypeError('opts.gigabytes must be a number');
  if (!Number.isInteger(gigabytes) || gigabytes < 1 || gigabytes > 512)
    throw new RangeError(`opts.gigabytes must be an integer in [1, 512], got ${gigabytes}`);
  const pml4 = at;
  const pdpt = at + PAGE;
  const pd0 = at + 2 * PAGE;
  const end = pd0 + gigabytes * PAGE;
  if (!mem.isBacked(at, end - at)) throw new RangeError(`at: page tables [${hex(at)}, ${hex(end)}) are not backed by guest memory`);
  mem.fill(at, end - at, 0);
  mem.writeU64(pml4, BigInt(pdpt) | PTE_PRESENT | PTE_WRITE);
  // Build each PD in a buffer, then write it in one go.
  const pd = new Uint8Array(PAGE);
  const view = new DataView(pd.buffer);
  for (let g = 0; g < gigabytes; g++) {
    const pdAt = pd0 + g * PAGE;
    mem.writeU64(pdpt + g * 8, BigInt(pdAt) | PTE_PRESENT | PTE_WRITE);
    for (let i = 0; i < 512; i++) {
      view.setBigUint64(i * 8, BigInt(g * GIB + i * TWO_MIB) | PTE_PRESENT | PTE_WRITE | PTE_PS, true);
    }
    mem.writeBytes(pdAt, pd);
  }
  return { cr3: BigInt(pml4), end };
}

/** Null descriptor. */
export const GDT_NULL = 0n;
/** Flat 64-bit code: base 0, limit 0xfffff pages, P, DPL 0, execute/read accessed, L, G. */
export const GDT_CODE64 = 0x00af9b000000ffffn;
/** Flat 32-bit code: base 0, 4 GiB, P, execute/read accessed, D, G. */
export const GDT_CODE32 = 0x00cf9b000000ffffn;
/** Flat data: base 0, 4 GiB, P, read/write accessed, B, G. */
export const GDT_DATA = 0x00cf93000000ffffn;

/** Linux boot protocol `__BOOT_CS`: the 64-bit code selector in {@link buildGdt}'s GDT. */
export const BOOT_CS = 0x10;
/** Linux boot protocol `__BOOT_DS`: the data selector in {@link buildGdt}'s GDT. */
export const BOOT_DS = 0x18;
/** A flat 32-bit code selector also present in {@link buildGdt}'s GDT. */
export const BOOT_CS32 = 0x20;

/**
 * Write `descriptors` (8 bytes each) as a GDT at `at` and return the GDTR value.
 *
 * @throws RangeError if the table is empty, longer than 8192 entries, or not backed.
 */
export function writeGdt(mem: GuestMemoryAccess, at: number, descriptors: readonly bigint[]): DescriptorTableState {
  requireAddress(at, 'at');
  if (!Array.isArray(descriptors) || descriptors.some((d) => typeof d !== 'bigint'))
    throw new TypeError('descriptors must be an array of bigints');
  if (descriptors.length < 1 || descriptors.length > 8192) throw new RangeError('descriptors must hold 1 to 8192 entries');
  const size = descriptors.length * 8;
  if (!mem.isBacked(at, size)) throw new RangeError(`at: GDT [${hex(at)}, ${hex(at + size)}) is not backed by guest memory`);
  descriptors.forEach((d, i) => mem.writeU64(at + i * 8, d));
  return { base: BigInt(at), limit: size - 1 };
}

/**
 * Write the GDT the Linux boot protocol expects: entry 0 and 1 null, entry 2 (0x10,
 * `__BOOT_CS`) flat 64-bit code, entry 3 (0x18, `__BOOT_DS`) flat data, entry 4 (0x20)
 * flat 32-bit code. 40 bytes at `at`.
 */
export function buildGdt(mem: GuestMemoryAccess, at: number): DescriptorTableState {
  return writeGdt(mem, at, [GDT_NULL, GDT_NULL, GDT_CODE64, GDT_DATA, GDT_CODE32]);
}

/**
 * The hidden segment state a CPU loads from `descriptor` for `selector`: base, byte-granular
 * limit and the VMX access rights (descriptor bits 40-55 without the limit's high nibble).
 */
export function segmentFromDescriptor(selector: number, descriptor: bigint): SegmentState {
  const d = BigInt.asUintN(64, descriptor);
  const base = ((d >> 16n) & 0xffffffn) | (((d >> 56n) & 0xffn) << 24n);
  const rawLimit = Number((d & 0xffffn) | (((d >> 48n) & 0xfn) << 16n));
  const access = Number((d >> 40n) & 0xf0ffn);
  const granular = (access & 0x8000) !== 0;
  const limit = granular ? rawLimit * 0x1000 + 0xfff : rawLimit;
  return { selector, base, limit, access };
}

/** CR0 for long mode: PE | ET | NE | PG. */
export const LONG_MODE_CR0 = 0x8000_0031n;
/** CR4 for long mode: PAE. */
export const LONG_MODE_CR4 = 0x20n;
/** EFER for long mode: LME | LMA. */
export const LONG_MODE_EFER = 0x500n;

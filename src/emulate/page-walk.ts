/**
 * The guest page-table walk (Intel SDM Vol. 3 chapter 4): 32-bit (4 KiB/4 MiB pages, PSE-36),
 * PAE, 4-level and 5-level paging (4 KiB/2 MiB/1 GiB pages), with the access-rights checks
 * of §4.6 (R/W with CR0.WP, U/S, XD with EFER.NXE, SMEP, SMAP with RFLAGS.AC) and the
 * reserved-bit checks of §4.5. The walk is side-effect free: the accessed/dirty-bit updates
 * it implies are returned for the caller to apply once the whole access is known to succeed.
 * Protection keys (CR4.PKE/PKS) and CET shadow-stack checks are not modelled.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { CR0, CR4, EFER, hasBit } from './flags.js';

/** The control-register state a translation depends on. */
export interface PagingContext {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
  /** Current privilege level (0-3). A supervisor access (`user: false`) at CPL 3 is an implicit one (SMAP ignores AC). */
  cpl: number;
  /** RFLAGS.AC: explicit supervisor accesses to user pages are allowed under SMAP when set. Default false. */
  ac?: boolean;
  /** MAXPHYADDR: physical-address bits; entry address bits at and above it are reserved. Default 52. */
  maxPhysAddr?: number;
  /** Set accessed/dirty bits in the paging structures (default true). */
  setAccessedDirty?: boolean;
}

/** The kind of access being translated. */
export interface PagingAccess {
  write: boolean;
  /** A user-mode access (CPL 3, not an implicit supervisor access). */
  user: boolean;
  /** An instruction fetch. */
  fetch: boolean;
}

/** #PF with its error code and the faulting linear address for CR2. */
export interface PageFault {
  vector: 14;
  errorCode: number;
  cr2: bigint;
}

/** #GP(0): a non-canonical linear address in IA-32e mode. */
export interface GeneralProtectionFault {
  vector: 13;
  errorCode: 0;
}

/** A translation failure. */
export type TranslationFault = PageFault | GeneralProtectionFault;

/** #PF error-code bits (SDM Vol. 3 Figure 4-12). */
export const PF_ERROR = { P: 1, W: 2, U: 4, RSVD: 8, ID: 16 } as const;

/** An accessed/dirty update: OR `bits` into the low dword of the entry at `gpa`. */
export interface AdUpdate {
  gpa: number;
  bits: number;
}

/** The internal result of {@link walk}. */
export type WalkResult = { ok: true; gpa: number; updates: AdUpdate[] } | { ok: false; fault: TranslationFault };

const ACCESSED = 1 << 5;
const DIRTY = 1 << 6;
const MASK32 = 0xffff_ffffn;

/** True if `linear` is canonical for the given linear-address width (48 or 57). */
export function isCanonical(linear: bigint, bits: number): boolean {
  const v = BigInt.asUintN(64, linear);
  return BigInt.asUintN(64, BigInt.asIntN(bits, v)) === v;
}

/** The linear-address width in IA-32e mode for the given CR4. */
export function linearWidth(cr4: bigint): 48 | 57 {
  return hasBit(cr4, CR4.LA57) ? 57 : 48;
}

class Walker {
  readonly updates: AdUpdate[] = [];
  rw = true;
  us = true;
  xd = false;
  readonly maxPhys: bigint;
  constructor(
    readonly mem: GuestMemoryAccess,
    readonly ctx: PagingContext,
    readonly linear: bigint,
    readonly access: PagingAccess,
    readonly paeLike: boolean,
  ) {
    const m = ctx.maxPhysAddr ?? 52;
    this.maxPhys = BigInt(Number.isInteger(m) && m >= 32 && m <= 52 ? m : 52);
  }

  fault(present: boolean, rsvd = false): { ok: false; fault: PageFault } {
    const { access, ctx } = this;
    let code = 0;
    if (present) code |= PF_ERROR.P;
    if (access.write) code |= PF_ERROR.W;
    if (access.user) code |= PF_ERROR.U;
    if (rsvd) code |= PF_ERROR.RSVD;
    const nx = this.paeLike && hasBit(ctx.efer, EFER.NXE);
    if (access.fetch && (nx || hasBit(ctx.cr4, CR4.SMEP))) code |= PF_ERROR.ID;
    return { ok: false, fault: { vector: 14, errorCode: code, cr2: this.linear } };
  }

  /** Read a paging-structure entry; undefined when it is not backed by guest memory. */
  read(gpa: bigint, size: 4 | 8): bigint | undefined {
    const a = Number(gpa);
    if (!this.mem.isBacked(a, size)) return undefined;
    return size === 8 ? this.mem.readU64(a) : BigInt(this.mem.readU32(a));
  }

  /** Bits [maxPhys, 52) of a 64-bit entry, which must be zero. */
  get physReserved(): bigint {
    return ((1n << 52n) - 1n) & ~((1n << this.maxPhys) - 1n);
  }

  accumulate(entry: bigint, gpa: bigint): void {
    if ((entry & 2n) === 0n) this.rw = false;
    if ((entry & 4n) === 0n) this.us = false;
    if (this.paeLike && hasBit(this.ctx.efer, EFER.NXE) && entry >> 63n === 1n) this.xd = true;
    if ((entry & BigInt(ACCESSED)) === 0n) this.updates.push({ gpa: Number(gpa), bits: ACCESSED });
  }

  leaf(entry: bigint, entryGpa: bigint, frame: bigint, pageBits: bigint): WalkResult {
    const { access, ctx } = this;
    if (access.write && (entry & BigInt(DIRTY)) === 0n) {
      const last = this.updates.at(-1);
      if (last && last.gpa === Number(entryGpa)) last.bits |= DIRTY;
      else this.updates.push({ gpa: Number(entryGpa), bits: DIRTY });
    }
    // Access rights (SDM §4.6).
    const smap = hasBit(ctx.cr4, CR4.SMAP);
    const smep = hasBit(ctx.cr4, CR4.SMEP);
    const wp = hasBit(ctx.cr0, CR0.WP);
    let allowed = true;
    if (access.user) {
      if (!this.us) allowed = false;
      if (access.write && !this.rw) allowed = false;
      if (access.fetch && this.xd) allowed = false;
    } else if (access.fetch) {
      if (this.xd) allowed = false;
      if (this.us && smep) allowed = false;
    } else {
      const implicit = ctx.cpl === 3;
      if (this.us && smap && (implicit || !ctx.ac)) allowed = false;
      if (access.write && wp && !this.rw) allowed = false;
    }
    if (!allowed) return this.fault(true);
    const offset = this.linear & ((1n << pageBits) - 1n);
    const gpa = frame | offset;
    return { ok: true, gpa: Number(gpa), updates: ctx.setAccessedDirty === false ? [] : this.updates };
  }
}

/**
 * Walk the guest page tables for one linear address. Pure apart from reading guest memory.
 * Paging-structure entries that are not backed by guest memory fault like entries with
 * reserved bits set (#PF with P and RSVD), which is what reading all-ones would cause.
 */
export function walk(mem: GuestMemoryAccess, linear: bigint, ctx: PagingContext, access: PagingAccess): WalkResult {
  const long = hasBit(ctx.efer, EFER.LMA);
  if (long) {
    if (!isCanonical(linear, linearWidth(ctx.cr4))) return { ok: false, fault: { vector: 13, errorCode: 0 } };
    linear = BigInt.asUintN(64, linear);
  } else linear &= MASK32;
  if (!hasBit(ctx.cr0, CR0.PG)) return { ok: true, gpa: Number(linear), updates: [] };
  const pae = hasBit(ctx.cr4, CR4.PAE);
  const w = new Walker(mem, ctx, linear, access, long || pae);
  if (long) return walkLong(w, linear);
  if (pae) return walkPae(w, linear);
  return walk32(w, linear);
}

const ADDR_4K = ((1n << 52n) - 1n) & ~0xfffn;

function walkLong(w: Walker, linear: bigint): WalkResult {
  const levels = hasBit(w.ctx.cr4, CR4.LA57) ? 5 : 4;
  const nxe = hasBit(w.ctx.efer, EFER.NXE);
  const rsvdCommon = w.physReserved | (nxe ? 0n : 1n << 63n);
  let table = w.ctx.cr3 & ADDR_4K & ~w.physReserved;
  for (let level = levels; level >= 1; level--) {
    const shift = BigInt(12 + 9 * (level - 1));
    const gpa = table + ((linear >> shift) & 511n) * 8n;
    const e = w.read(gpa, 8);
    if (e === undefined) return w.fault(true, true);
    if ((e & 1n) === 0n) return w.fault(false);
    if (e & rsvdCommon) return w.fault(true, true);
    const ps = (e & 0x80n) !== 0n;
    if (ps && level >= 4) return w.fault(true, true); // PS is reserved in PML5E/PML4E
    w.accumulate(e, gpa);
    if (ps && level >= 2) {
      // 1 GiB (PDPTE) or 2 MiB (PDE) page: bits [pageBits-1:13] are reserved.
      const pageBits = shift;
      const rsvd = ((1n << pageBits) - 1n) & ~0x1fffn;
      if (e & rsvd) return w.fault(true, true);
      return w.leaf(e, gpa, e & ADDR_4K & ~((1n << pageBits) - 1n), pageBits);
    }
    if (level === 1) return w.leaf(e, gpa, e & ADDR_4K, 12n);
    table = e & ADDR_4K;
  }
  // Unreachable: level 1 always returns above.
  return w.fault(true, true);
}

function walkPae(w: Walker, linear: bigint): WalkResult {
  const nxe = hasBit(w.ctx.efer, EFER.NXE);
  // PDPTEs: bits 2:1, 8:5 and 63:MAXPHYADDR are reserved (no XD, no access rights).
  const pdptGpa = (w.ctx.cr3 & 0xffff_ffe0n) + ((linear >> 30n) & 3n) * 8n;
  const pdpte = w.read(pdptGpa, 8);
  if (pdpte === undefined) return w.fault(true, true);
  if ((pdpte & 1n) === 0n) return w.fault(false);
  if (pdpte & (0x1e6n | w.physReserved | (1n << 63n))) return w.fault(true, true);
  const rsvdCommon = w.physReserved | (nxe ? 0n : 1n << 63n);
  const pdGpa = (pdpte & ADDR_4K) + ((linear >> 21n) & 511n) * 8n;
  const pde = w.read(pdGpa, 8);
  if (pde === undefined) return w.fault(true, true);
  if ((pde & 1n) === 0n) return w.fault(false);
  if (pde & rsvdCommon) return w.fault(true, true);
  w.accumulate(pde, pdGpa);
  if (pde & 0x80n) {
    if (pde & 0x1fe000n) return w.fault(true, true); // bits 20:13
    return w.leaf(pde, pdGpa, pde & ADDR_4K & ~0x1fffffn, 21n);
  }
  const ptGpa = (pde & ADDR_4K) + ((linear >> 12n) & 511n) * 8n;
  const pte = w.read(ptGpa, 8);
  if (pte === undefined) return w.fault(true, true);
  if ((pte & 1n) === 0n) return w.fault(false);
  if (pte & rsvdCommon) return w.fault(true, true);
  w.accumulate(pte, ptGpa);
  return w.leaf(pte, ptGpa, pte & ADDR_4K, 12n);
}

function walk32(w: Walker, linear: bigint): WalkResult {
  const pdGpa = (w.ctx.cr3 & 0xffff_f000n) + ((linear >> 22n) & 1023n) * 4n;
  const pde = w.read(pdGpa, 4);
  if (pde === undefined) return w.fault(true, true);
  if ((pde & 1n) === 0n) return w.fault(false);
  if ((pde & 0x80n) !== 0n && hasBit(w.ctx.cr4, CR4.PSE)) {
    // 4 MiB page; PSE-36: bits 20:13 hold physical-address bits 39:32, bit 21 is reserved,
    // as are the bits of 20:13 at or above MAXPHYADDR.
    const high = ((pde >> 13n) & 0xffn) << 32n;
    const m = w.maxPhys > 40n ? 40n : w.maxPhys;
    if (pde & (1n << 21n) || high >> m !== 0n) return w.fault(true, true);
    w.accumulate(pde, pdGpa);
    return w.leaf(pde, pdGpa, (pde & 0xffc0_0000n) | high, 22n);
  }
  w.accumulate(pde, pdGpa);
  const ptGpa = (pde & 0xffff_f000n) + ((linear >> 12n) & 1023n) * 4n;
  const pte = w.read(ptGpa, 4);
  if (pte === undefined) return w.fault(true, true);
  if ((pte & 1n) === 0n) return w.fault(false);
  w.accumulate(pte, ptGpa);
  return w.leaf(pte, ptGpa, pte & 0xffff_f000n, 12n);
}

/** Apply accessed/dirty updates returned by {@link walk}. */
export function applyAdUpdates(mem: GuestMemoryAccess, updates: readonly AdUpdate[]): void {
  for (const u of updates) {
    if (!mem.isBacked(u.gpa, 4)) continue;
    const v = mem.readU32(u.gpa);
    if ((v & u.bits) !== u.bits) mem.writeU32(u.gpa, (v | u.bits) >>> 0);
  }
}

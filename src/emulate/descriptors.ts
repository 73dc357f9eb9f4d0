/**
 * System-structure access for control transfers (Intel SDM Vol. 3 §3.4-3.5, §6.10-6.14,
 * §7.2): reading segment descriptors from the GDT/LDT, IDT gates and TSS stack pointers
 * through the guest's page tables (implicit supervisor accesses), converting descriptors to
 * struct kvm_segment, and pushing/popping on a stack segment with its limit checks.
 *
 * Every guest address goes through {@link linearRead}/{@link linearWrite}: a walk failure is a
 * #PF (or #GP for a non-canonical address), memory that is not RAM is {@link Unsupported}.
 */
import type { KvmSegment, KvmSregs } from '../kvm/structs.js';
import { failureToThrowable } from './context.js';
import { Fault, VECTOR } from './fault.js';
import type { EmulatorHost } from './host.js';
import { bytesToBigint, bigintToBytes } from './host.js';
import { linearRead, linearWrite, translateRange, type PagingContext } from './paging.js';

/** #GP/#NP/#TS/#SS vectors with a selector error code. */
export const VECTOR_TS = 10;
/** #NP. */
export const VECTOR_NP = 11;

/** A fault with a selector-style error code (index | TI | EXT, or IDT | index). */
export function selectorFault(vector: number, errorCode: number, reason: string): Fault {
  return new Fault(vector, errorCode & 0xffff, undefined, reason);
}

/** The paging context for implicit supervisor accesses (descriptor tables, TSS, IDT). */
export function systemPaging(sregs: KvmSregs): PagingContext {
  return { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer, cpl: 0, ac: false };
}

/** Read `n` bytes at a linear address as an implicit supervisor access. */
export function readSystem(host: EmulatorHost, sregs: KvmSregs, linear: bigint, n: number): Uint8Array {
  const r = linearRead(host.memory, systemPaging(sregs), linear, n, { user: false });
  if (!r.ok) throw failureToThrowable(r);
  return r.bytes;
}

/** A raw 8-byte segment descriptor, decoded. */
export interface Descriptor {
  raw: bigint;
  base: bigint;
  /** The byte-granular limit (scaled by G). */
  limit: number;
  type: number;
  /** 1: code/data; 0: system. */
  s: number;
  dpl: number;
  present: number;
  avl: number;
  l: number;
  db: number;
  g: number;
}

/** Decode an 8-byte descriptor. */
export function decodeDescriptor(raw: bigint): Descriptor {
  const lo = Number(raw & 0xffff_ffffn);
  const hi = Number(raw >> 32n);
  const base = BigInt(((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff00_0000)) >>> 0);
  const g = (hi >>> 23) & 1;
  const rawLimit = (lo & 0xffff) | (hi & 0xf_0000);
  return {
    raw,
    base,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    type: (hi >>> 8) & 0xf,
    s: (hi >>> 12) & 1,
    dpl: (hi >>> 13) & 3,
    present: (hi >>> 15) & 1,
    avl: (hi >>> 20) & 1,
    l: (hi >>> 21) & 1,
    db: (hi >>> 22) & 1,
    g,
  };
}

/**
 * Read the descriptor a (non-null) selector names from the GDT or LDT. Throws `fault(vector)`
 * with the selector's error code when it lies outside the table's limit.
 *
 * @param vector the exception for a selector beyond the table (#GP or #TS).
 */
export function readDescriptor(host: EmulatorHost, sregs: KvmSregs, selector: number, vector: number): Descriptor {
  const index = selector & 0xfff8;
  let base: bigint;
  let limit: number;
  if (selector & 4) {
    if (sregs.ldt.unusable || !sregs.ldt.present) throw selectorFault(vector, selector & 0xfffc, `selector 0x${selector.toString(16)}: no LDT`);
    base = sregs.ldt.base;
    limit = sregs.ldt.limit >>> 0;
  } else {
    base = sregs.gdt.base;
    limit = sregs.gdt.limit;
  }
  if (index + 7 > limit) throw selectorFault(vector, selector & 0xfffc, `selector 0x${selector.toString(16)} is beyond the descriptor table's limit`);
  return decodeDescriptor(bytesToBigint(readSystem(host, sregs, base + BigInt(index), 8)));
}

/** A code/data descriptor as struct kvm_segment (accessed bit set, as the CPU does on load). */
export function toKvmSegment(d: Descriptor, selector: number): KvmSegment {
  return {
    base: d.base, limit: d.limit, selector, type: d.s ? d.type | 1 : d.type, present: d.present, dpl: d.dpl,
    db: d.db, s: d.s, l: d.l, g: d.g, avl: d.avl, unusable: 0,
  };
}

/**
 * Set the accessed bit of a code/data descriptor in memory if it is clear (the CPU does when it
 * loads the segment register). Nothing is written when the bit is already set.
 */
export function markAccessed(host: EmulatorHost, sregs: KvmSregs, selector: number, d: Descriptor): void {
  if (!d.s || d.type & 1) return;
  const table = selector & 4 ? sregs.ldt.base : sregs.gdt.base;
  const at = table + BigInt(selector & 0xfff8) + 5n;
  const byte = Number((d.raw >> 40n) & 0xffn) | 1;
  const w = linearWrite(host.memory, systemPaging(sregs), at, Uint8Array.of(byte), { user: false });
  if (!w.ok) throw failureToThrowable(w);
}

/** A NULL selector's segment (unusable), keeping the selector value. */
export function nullSegment(selector: number, dpl = 0): KvmSegment {
  return { base: 0n, limit: 0, selector, type: 0, present: 0, dpl, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 };
}

/**
 * A stack pointer in a given stack segment, for a sequence of pushes or pops that is
 * committed only after all of them succeeded (the caller writes `sp` back).
 */
export class StackCursor {
  /** The bytes to write, in order, once every check passed. */
  readonly #writes: { linear: bigint; bytes: Uint8Array }[] = [];

  /**
   * @param sp the stack pointer (full width)
   * @param width 2, 4 or 8: the stack-address size (SS.B, or 8 in 64-bit mode)
   * @param ss the stack segment (limit checks outside 64-bit mode)
   * @param long 64-bit mode: no segmentation, canonical checks by the page walk
   */
  constructor(
    private readonly host: EmulatorHost,
    private readonly sregs: KvmSregs,
    public sp: bigint,
    private readonly width: 2 | 4 | 8,
    private readonly ss: KvmSegment,
    private readonly long: boolean,
    private readonly errorCode = 0,
  ) {}

  #mask(v: bigint): bigint {
    return BigInt.asUintN(this.width * 8, v);
  }

  #linear(offset: bigint, size: number): bigint {
    if (this.long) return BigInt.asUintN(64, offset);
    const ss = this.ss;
    const fault = (why: string) => new Fault(VECTOR.SS, this.errorCode, undefined, `stack: ${why}`);
    if (ss.unusable || !ss.present) throw fault('SS not usable');
    const last = offset + BigInt(size) - 1n;
    const expandDown = (ss.type & 4) !== 0;
    const limit = BigInt(ss.limit >>> 0);
    if (expandDown) {
      const upper = ss.db ? 0xffff_ffffn : 0xffffn;
      if (offset <= limit || last > upper) throw fault('outside the expand-down limit');
    } else if (last > limit) throw fault('outside the limit');
    return (BigInt.asUintN(64, ss.base) + offset) & 0xffff_ffffn;
  }

  /** Queue a push of `size` bytes (checked now, written by {@link commit}). */
  push(value: bigint, size: 2 | 4 | 8): void {
    const sp = this.#mask(this.sp - BigInt(size));
    const linear = this.#linear(sp, size);
    this.#writes.push({ linear, bytes: bigintToBytes(value, size) });
    this.sp = (this.sp & ~((1n << BigInt(this.width * 8)) - 1n)) | sp;
  }

  /** Pop `size` bytes now (a read; faults as the instruction's). */
  pop(size: 2 | 4 | 8): bigint {
    const sp = this.#mask(this.sp);
    const linear = this.#linear(sp, size);
    const r = linearRead(this.host.memory, systemPaging(this.sregs), linear, size, { user: false });
    if (!r.ok) throw failureToThrowable(r);
    this.sp = (this.sp & ~((1n << BigInt(this.width * 8)) - 1n)) | this.#mask(sp + BigInt(size));
    return bytesToBigint(r.bytes);
  }

  /**
   * Check every queued push's pages for writing, then write them. Throws (#PF/#GP/Unsupported)
   * before any byte is written.
   */
  commit(paging: PagingContext): void {
    // every range is checked for writing before the first byte is written
    for (const w of this.#writes) {
      const r = translateRange(this.host.memory, { ...paging, setAccessedDirty: false }, w.linear, w.bytes.length, { write: true, user: false, fetch: false });
      if (!r.ok) throw failureToThrowable(r);
    }
    for (const w of this.#writes) {
      const r = linearWrite(this.host.memory, paging, w.linear, w.bytes, { user: false });
      if (!r.ok) throw failureToThrowable(r);
    }
  }
}

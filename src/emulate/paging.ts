/**
 * Linear-to-guest-physical translation through the guest's page tables, and linear-address
 * reads and writes that split at page boundaries and check every page before touching any
 * (so a faulting write never writes part of its bytes).
 *
 * None of these functions throw for hostile page tables or addresses: failures come back
 * as `{ ok: false }` results.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { EFER, hasBit } from './flags.js';
import { applyAdUpdates, walk, type AdUpdate, type PagingAccess, type PagingContext, type TranslationFault } from './page-walk.js';

export {
  PF_ERROR,
  isCanonical,
  linearWidth,
  type GeneralProtectionFault,
  type PageFault,
  type PagingAccess,
  type PagingContext,
  type TranslationFault,
} from './page-walk.js';

/** The result of {@link translate}. */
export type TranslateResult = { ok: true; gpa: number } | { ok: false; fault: TranslationFault };

/**
 * Translate a linear address. With paging off the linear address is the physical one
 * (truncated to 32 bits outside IA-32e mode). Sets accessed (and, for writes, dirty) bits in
 * the paging structures on success unless `ctx.setAccessedDirty` is false.
 *
 * @returns the guest-physical address, or #PF (error code, CR2) / #GP(0) for a
 *   non-canonical address in IA-32e mode.
 */
export function translate(mem: GuestMemoryAccess, linear: bigint, ctx: PagingContext, access: PagingAccess): TranslateResult {
  const r = safeWalk(mem, linear, ctx, access);
  if (!r.ok) return r;
  applyAdUpdates(mem, r.updates);
  return { ok: true, gpa: r.gpa };
}

function safeWalk(mem: GuestMemoryAccess, linear: bigint, ctx: PagingContext, access: PagingAccess): ReturnType<typeof walk> {
  try {
    return walk(mem, linear, ctx, access);
  } catch {
    // A misbehaving GuestMemoryAccess: report it like an unreadable paging structure.
    return { ok: false, fault: { vector: 14, errorCode: 1 | 8 | (access.write ? 2 : 0) | (access.user ? 4 : 0), cr2: linear } };
  }
}

/** A failed linear access: a fault to deliver, or a guest-physical range that is not RAM (e.g. MMIO). */
export type LinearFailure =
  | { ok: false; fault: TranslationFault; unbackedGpa?: undefined }
  | { ok: false; fault?: undefined; unbackedGpa: number };

/** Optional access attributes for {@link linearRead}/{@link linearWrite}. */
export interface LinearAccessOptions {
  /** A user-mode access; default `ctx.cpl === 3`. */
  user?: boolean;
  /** An instruction fetch (reads only). */
  fetch?: boolean;
}

/** One page-bounded piece of a linear access. */
export interface LinearChunk {
  gpa: number;
  length: number;
}

/**
 * Translate every page of `[linear, linear + length)` without side effects on failure.
 * Outside IA-32e mode linear addresses wrap at 4 GiB.
 */
export function translateRange(
  mem: GuestMemoryAccess,
  ctx: PagingContext,
  linear: bigint,
  length: number,
  access: PagingAccess,
): { ok: true; chunks: LinearChunk[] } | LinearFailure {
  const long = hasBit(ctx.efer, EFER.LMA);
  const chunks: LinearChunk[] = [];
  const updates: AdUpdate[] = [];
  let done = 0;
  while (done < length) {
    let at = linear + BigInt(done);
    at = long ? BigInt.asUintN(64, at) : at & 0xffff_ffffn;
    const inPage = 0x1000 - Number(at & 0xfffn);
    const n = Math.min(inPage, length - done);
    const r = safeWalk(mem, at, ctx, access);
    if (!r.ok) return r;
    if (!mem.isBacked(r.gpa, n)) return { ok: false, unbackedGpa: r.gpa };
    updates.push(...r.updates);
    const last = chunks.at(-1);
    if (last && last.gpa + last.length === r.gpa) last.length += n;
    else chunks.push({ gpa: r.gpa, length: n });
    done += n;
  }
  applyAdUpdates(mem, updates);
  return { ok: true, chunks };
}

/**
 * Read `length` bytes at a linear address. Every page is translated (and checked to be
 * backed by RAM) before anything is read.
 */
export function linearRead(
  mem: GuestMemoryAccess,
  ctx: PagingContext,
  linear: bigint,
  length: number,
  opts: LinearAccessOptions = {},
): { ok: true; bytes: Uint8Array } | LinearFailure {
  const access: PagingAccess = { write: false, user: opts.user ?? ctx.cpl === 3, fetch: opts.fetch ?? false };
  const t = translateRange(mem, ctx, linear, length, access);
  if (!t.ok) return t;
  const out = new Uint8Array(length);
  let o = 0;
  for (const c of t.chunks) {
    out.set(mem.readBytes(c.gpa, c.length), o);
    o += c.length;
  }
  return { ok: true, bytes: out };
}

/**
 * Write `bytes` at a linear address. Every page is translated for writing (and checked to be
 * backed by RAM) before any byte is written: a fault leaves memory unchanged.
 */
export function linearWrite(
  mem: GuestMemoryAccess,
  ctx: PagingContext,
  linear: bigint,
  bytes: Uint8Array,
  opts: LinearAccessOptions = {},
): { ok: true } | LinearFailure {
  const access: PagingAccess = { write: true, user: opts.user ?? ctx.cpl === 3, fetch: false };
  const t = translateRange(mem, ctx, linear, bytes.length, access);
  if (!t.ok) return t;
  let o = 0;
  for (const c of t.chunks) {
    mem.writeBytes(c.gpa, bytes.subarray(o, o + c.length));
    o += c.length;
  }
  return { ok: true };
}

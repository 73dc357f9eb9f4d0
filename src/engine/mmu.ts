/**
 * The CPL0 engine's memory management unit (issue 15): linear-address reads and writes
 * through the guest's page tables with a software TLB in front.
 *
 * ## Translation
 * TLB misses go through the side-effect-free walker of src/emulate/page-walk.ts (32-bit,
 * PAE, 4- and 5-level paging; the SDM's access-rights, reserved-bit and canonical checks),
 * reading paging-structure entries with single-copy-atomic loads. The accessed/dirty updates
 * the walk implies are then applied with compare-and-swap on the entry's low dword: if an
 * entry changed (other than in its A/D bits) since the walk read it, the walk is redone, as
 * a processor's locked A/D update would see the new entry.
 *
 * ## The software TLB
 * Direct-mapped tables of {@link SoftMmuOptions.tlbBits 2^tlbBits} entries each, one for
 * reads, one for writes and one for instruction fetches, in three banks: supervisor,
 * supervisor with RFLAGS.AC=1 under SMAP, and user (CPL 3), so STAC/CLAC and CPL changes
 * switch banks instead of flushing. An entry caches the result of a successful walk for the
 * current access rights; it is keyed by the page's linear base address as a Number (the
 * canonical, sign-extended value: every 4-level address is exact), and holds the DataView
 * of the RAM segment and the page's offset in it, so a hit is a mask, a compare and a
 * DataView access. Large pages are cached as 4 KiB pieces.
 *
 * A write entry is only created by a write walk, which has set the dirty bit: a page first
 * read and then written takes a second walk that sets D. Write entries are never created for
 * pages registered with {@link SoftMmu.watchCode} or for read-only segments (ROMs).
 * Pages not entirely backed by one RAM segment are MMIO: their translations are cached in
 * separate tables that the hit path never consults, and every access goes to the
 * {@link EngineIo}.
 *
 * ## Not modelled
 * Protection keys, CET shadow stacks, PCIDs (CR3's PCID bits are ignored and every CR3
 * change flushes the non-global translations, which is always allowed), PAE's PDPTE
 * registers (the PDPTEs are read on every walk), #AC alignment checks, and memory-type
 * effects. Accesses from other vCPUs or devices to watched code pages are not seen.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { walk, type AdUpdate, type PagingAccess, type PagingContext } from '../emulate/page-walk.js';
import { PhysMap, type PhysSegment } from './mmu-phys.js';
import { ACCESS, GuestException, type AccessKind, type EngineIo, type EngineMmu, type MmuControl } from './types.js';
import type { EngineMmuAtomic } from './atomic.js';

const CR0_PE = 1n;
const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_PGE = 1n << 7n;
const CR4_LA57 = 1n << 12n;
const CR4_PCIDE = 1n << 17n;
const CR4_SMEP = 1n << 20n;
const CR4_SMAP = 1n << 21n;
const EFER_LME = 1n << 8n;
const EFER_LMA = 1n << 10n;
const EFER_NXE = 1n << 11n;

/** Bits whose change flushes the whole TLB (SDM §4.10.4.1). */
const CR0_FLUSH = CR0_PE | CR0_WP | CR0_PG;
const CR4_FLUSH = CR4_PSE | CR4_PAE | CR4_PGE | CR4_LA57 | CR4_PCIDE | CR4_SMEP | CR4_SMAP;
const EFER_FLUSH = EFER_LME | EFER_LMA | EFER_NXE;

const TWO53 = 2 ** 53;
const PAGE = 4096;
/** Walks redone because a paging-structure entry changed under them before A/D are forced. */
const MAX_WALK_RETRIES = 8;

/** Options of {@link SoftMmu}. */
export interface SoftMmuOptions {
  /** MAXPHYADDR: physical-address bits (entry bits at and above it are reserved). Default 52. */
  maxPhysAddr?: number;
  /** log2 of the entries in each TLB table (default 10: 1024 entries, 4 MiB of reach per kind). */
  tlbBits?: number;
}

const DUMMY_VIEW = new DataView(new ArrayBuffer(8));
/** No RAM buffer for compiled code yet. */
const EMPTY_RAM = new Uint8Array(0);
const DUMMY_SEG: PhysSegment = {
  gpa: 0,
  end: 0,
  view: DUMMY_VIEW,
  buffer: DUMMY_VIEW.buffer,
  byteOffset: 0,
  readonly: true,
  i32: [],
  u64: [],
};

/** One direct-mapped TLB table. An entry is valid when its tag is not NaN. */
class Tlb {
  /** The linear base address of the cached page (NaN: invalid). */
  readonly tag: Float64Array;
  /** The RAM segment's DataView and the page's offset in it. */
  readonly view: DataView[];
  readonly off: Float64Array;
  readonly seg: PhysSegment[];
  /** The guest-physical page address. */
  readonly gpa: Float64Array;
  /** 1 if the translation is global (CR4.PGE and G). */
  readonly global: Uint8Array;
  /** For pieces of large pages: the large page's linear base and size (NaN otherwise). */
  readonly lgBase: Float64Array;
  readonly lgSize: Float64Array;
  used = false;
  hasGlobal = false;

  /**
   * The same key as 32-bit halves, for compiled code (src/engine/jit.ts), which forms
   * addresses as (low, high) pairs: the low half's page number (-1: invalid) and the high
   * half (signed). Valid exactly when {@link tag} is.
   */
  readonly keyLo: Int32Array;
  readonly keyHi: Int32Array;
  /** The page's byte offset in the {@link SoftMmu.ram} buffer, or -1 (another buffer: no compiled fast path). */
  readonly host: Int32Array;

  constructor(n: number) {
    this.keyLo = new Int32Array(n).fill(-1);
    this.keyHi = new Int32Array(n);
    this.host = new Int32Array(n).fill(-1);
    this.tag = new Float64Array(n).fill(NaN);
    this.view = new Array<DataView>(n).fill(DUMMY_VIEW);
    this.off = new Float64Array(n);
    this.seg = new Array<PhysSegment>(n).fill(DUMMY_SEG);
    this.gpa = new Float64Array(n);
    this.global = new Uint8Array(n);
    this.lgBase = new Float64Array(n).fill(NaN);
    this.lgSize = new Float64Array(n);
  }

  /** Invalidate entry i. */
  drop(i: number): void {
    this.tag[i] = NaN;
    this.keyLo[i] = -1;
  }

  clear(): void {
    if (!this.used) return;
    this.tag.fill(NaN);
    this.keyLo.fill(-1);
    this.lgBase.fill(NaN);
    this.used = false;
    this.hasGlobal = false;
  }

  clearNonGlobal(): void {
    if (!this.used) return;
    if (!this.hasGlobal) return this.clear();
    const { tag, global } = this;
    for (let i = 0; i < tag.length; i++) if (global[i] === 0) this.drop(i);
  }
}

/** The tables of one access-rights bank: RAM read/write/fetch, then the MMIO ones. */
const T_R = 0;
const T_W = 1;
const T_X = 2;
const T_MMIO = 3;
const TABLES_PER_BANK = 6;
const BANKS = 3;

/**
 * The paging-structure reads of one walk, recorded: the last one is the leaf, their number
 * gives the page size, and their values are what the A/D update checks against. Entries are
 * read with Atomics.load where aligned (single-copy atomic, as the hardware reads them).
 */
class WalkRecorder implements GuestMemoryAccess {
  readonly gpas: number[] = [];
  readonly vals: bigint[] = [];
  constructor(
    readonly phys: PhysMap,
    readonly mem: GuestMemory,
  ) {}
  reset(): void {
    this.gpas.length = 0;
    this.vals.length = 0;
  }
  isBacked(gpa: number, length: number): boolean {
    return this.mem.isBacked(gpa, length);
  }
  readU64(gpa: number): bigint {
    const s = this.phys.find(gpa);
    let v: bigint;
    const a = s === undefined ? undefined : this.phys.u64At(s, gpa);
    if (a !== undefined) v = Atomics.load(a, this.phys.index);
    else v = this.mem.readU64(gpa);
    this.gpas.push(gpa);
    this.vals.push(v);
    return v;
  }
  readU32(gpa: number): number {
    const s = this.phys.find(gpa);
    let v: number;
    const a = s === undefined ? undefined : this.phys.i32At(s, gpa);
    if (a !== undefined) v = Atomics.load(a, this.phys.index) >>> 0;
    else v = this.mem.readU32(gpa);
    this.gpas.push(gpa);
    this.vals.push(BigInt(v));
    return v;
  }
  readU8(gpa: number): number {
    return this.mem.readU8(gpa);
  }
  readU16(gpa: number): number {
    return this.mem.readU16(gpa);
  }
  writeU8(): void {
    throw new Error('the page walker does not write');
  }
  writeU16(): void {
    throw new Error('the page walker does not write');
  }
  writeU32(): void {
    throw new Error('the page walker does not write');
  }
  writeU64(): void {
    throw new Error('the page walker does not write');
  }
  readBytes(gpa: number, length: number): Uint8Array {
    return this.mem.readBytes(gpa, length);
  }
  writeBytes(): void {
    throw new Error('the page walker does not write');
  }
  fill(): void {
    throw new Error('the page walker does not write');
  }
}

/**
 * A software MMU for the CPL0 engine: {@link EngineMmu} over a {@link GuestMemory} whose RAM
 * may be a SharedArrayBuffer shared with other vCPU threads and KVM.
 *
 * Besides the {@link EngineMmu} methods (linear addresses as bigints) it offers atomic
 * read-modify-write helpers for LOCK-prefixed instructions, exact translation, linear
 * byte-range copies, and the RAM buffer and TLB cells compiled code reaches memory through
 * (src/engine/jit.ts FastMmu).
 *
 * Faults throw {@link GuestException}: #PF (vector 14, error code, CR2) and #GP(0) (vector
 * 13) for a non-canonical address. The MMU throws no other #GP, so an engine whose access
 * was SS-relative turns a vector-13 exception from the MMU into #SS(0).
 */
export class SoftMmu implements EngineMmu, EngineMmuAtomic {
  /** See {@link EngineMmu.onCodeWrite}. The page is no longer watched when this is called. */
  onCodeWrite?: (gpaPage: number) => void;

  // The active bank's RAM tables, for the hit paths.
  private rTag!: Float64Array;
  private rView!: DataView[];
  private rOff!: Float64Array;
  private wTag!: Float64Array;
  private wView!: DataView[];
  private wOff!: Float64Array;
  private xTag!: Float64Array;
  private xView!: DataView[];
  private xOff!: Float64Array;

  /**
   * For compiled code (src/engine/jit.ts): the guest RAM buffer it reads and writes directly
   * (the largest segment's at construction, fixed for good; at most its first 2 GiB), and the active bank's
   * read and write tables as (low page, high half) keys and offsets into it (-1: use the
   * methods). Reassigned on a bank switch: compiled code reads them at entry (a block runs
   * no instruction that switches banks).
   */
  ram: Uint8Array = EMPTY_RAM;
  ramView: DataView = new DataView(EMPTY_RAM.buffer);
  rKeyLo!: Int32Array;
  rKeyHi!: Int32Array;
  rHost!: Int32Array;
  wKeyLo!: Int32Array;
  wKeyHi!: Int32Array;
  wHost!: Int32Array;
  /** Entries per table, minus one. */
  readonly tlbMask: number;
  /**
   * Counts the events that may change what a linear address translates to (flushes, INVLPG,
   * bank switches): the engine's links between decoded blocks hold while it is unchanged,
   * as a processor's TLB may keep a translation until such an event.
   */
  fetchEpoch = 0;

  readonly #phys: PhysMap;
  readonly #rec: WalkRecorder;
  readonly #tables: Tlb[] = [];
  readonly #maxPhysAddr: number | undefined;
  #bank = 0;
  #ctl: MmuControl = { cr0: 0n, cr3: 0n, cr4: 0n, efer: 0n, cpl: 0, ac: false };
  #ctx: PagingContext;
  #long = false;
  #paging = false;
  #pge = false;
  #levels = 0;
  #acc: [PagingAccess, PagingAccess, PagingAccess];
  readonly #watched = new Set<number>();
  /** Entries holding pieces of large pages (table index * entries + entry index), possibly stale. */
  #large: Int32Array;
  #largeLen = 0;
  readonly #scratch = new DataView(new ArrayBuffer(8));

  /**
   * An MMU over `memory` (re-read when its segments change; flush after changing what a
   * segment maps, too) with MMIO going to `io`. Starts with paging off at CPL 0.
   */
  constructor(memory: GuestMemory, io: EngineIo, opts: SoftMmuOptions = {}) {
    const bits = opts.tlbBits ?? 10;
    if (!Number.isInteger(bits) || bits < 1 || bits > 20) throw new RangeError(`opts.tlbBits must be an integer in [1, 20], got ${bits}`);
    const n = 1 << bits;
    this.tlbMask = n - 1;
    for (let t = 0; t < BANKS * TABLES_PER_BANK; t++) this.#tables.push(new Tlb(n));
    this.#large = new Int32Array(4 * n);
    this.#maxPhysAddr = opts.maxPhysAddr;
    this.#phys = new PhysMap(memory, io);
    // compiled code's buffer: the largest segment's, fixed for good (a running block holds it)
    let big: PhysSegment | undefined;
    for (const seg of this.#phys.segs) if (!big || seg.end - seg.gpa > big.end - big.gpa) big = seg;
    if (big) {
      const len = Math.min(big.buffer.byteLength, 0x8000_0000);
      this.ram = new Uint8Array(big.buffer, 0, len);
      this.ramView = new DataView(big.buffer, 0, len);
    }
    this.#rec = new WalkRecorder(this.#phys, memory);
    this.#useBank(0);
    this.#ctx = { ...this.#ctl };
    this.#acc = this.#accesses(false);
    this.#apply(this.#ctl);
  }

  #accesses(user: boolean): [PagingAccess, PagingAccess, PagingAccess] {
    return [
      { write: false, user, fetch: false },
      { write: true, user, fetch: false },
      { write: false, user, fetch: true },
    ];
  }

  #apply(c: MmuControl): void {
    this.#ctl = { cr0: c.cr0, cr3: c.cr3, cr4: c.cr4, efer: c.efer, cpl: c.cpl, ac: c.ac };
    this.#ctx = { cr0: c.cr0, cr3: c.cr3, cr4: c.cr4, efer: c.efer, cpl: c.cpl, ac: c.ac, maxPhysAddr: this.#maxPhysAddr, setAccessedDirty: true };
    this.#long = (c.efer & EFER_LMA) !== 0n;
    this.#paging = (c.cr0 & CR0_PG) !== 0n;
    this.#pge = (c.cr4 & CR4_PGE) !== 0n;
    this.#levels = this.#long ? ((c.cr4 & CR4_LA57) !== 0n ? 5 : 4) : (c.cr4 & CR4_PAE) !== 0n ? 3 : 2;
    const user = c.cpl === 3;
    if (this.#acc[0].user !== user) this.#acc = this.#accesses(user);
    const bank = user ? 2 : c.ac && (c.cr4 & CR4_SMAP) !== 0n ? 1 : 0;
    if (bank !== this.#bank) {
      this.fetchEpoch++;
      this.#useBank(bank);
    }
  }

  /** Point the hit paths' fields (the interpreter's and compiled code's) at bank `bank`'s RAM tables. */
  #useBank(bank: number): void {
    this.#bank = bank;
    const t = this.#tables;
    const b = bank * TABLES_PER_BANK;
    [this.rTag, this.rView, this.rOff] = [t[b + T_R].tag, t[b + T_R].view, t[b + T_R].off];
    [this.wTag, this.wView, this.wOff] = [t[b + T_W].tag, t[b + T_W].view, t[b + T_W].off];
    [this.xTag, this.xView, this.xOff] = [t[b + T_X].tag, t[b + T_X].view, t[b + T_X].off];
    [this.rKeyLo, this.rKeyHi, this.rHost] = [t[b + T_R].keyLo, t[b + T_R].keyHi, t[b + T_R].host];
    [this.wKeyLo, this.wKeyHi, this.wHost] = [t[b + T_W].keyLo, t[b + T_W].keyHi, t[b + T_W].host];
  }

  /**
   * Set the translation state. Flushes everything when CR0.PE/PG/WP, CR4.PSE/PAE/PGE/LA57/
   * PCIDE/SMEP/SMAP or EFER.LME/LMA/NXE change, the non-global translations when CR3
   * changes; a CPL or RFLAGS.AC change only selects another bank of the TLB. A MOV to CR3
   * that leaves its value unchanged still flushes on hardware: call {@link flushNonGlobal}.
   */
  setControl(c: MmuControl): void {
    const p = this.#ctl;
    const all = ((p.cr0 ^ c.cr0) & CR0_FLUSH) !== 0n || ((p.cr4 ^ c.cr4) & CR4_FLUSH) !== 0n || ((p.efer ^ c.efer) & EFER_FLUSH) !== 0n;
    const cr3 = p.cr3 !== c.cr3;
    this.#apply(c);
    if (all) this.flushAll();
    else if (cr3) this.flushNonGlobal();
  }

  /** The current translation state (a copy). */
  get control(): MmuControl {
    return { ...this.#ctl };
  }

  /** Drop every translation (including global ones). */
  flushAll(): void {
    this.fetchEpoch++;
    for (const t of this.#tables) t.clear();
    this.#largeLen = 0;
  }

  /** Drop every non-global translation (what a MOV to CR3 does). */
  flushNonGlobal(): void {
    this.fetchEpoch++;
    for (const t of this.#tables) t.clearNonGlobal();
  }

  /** The TLB key of linear address `la`: its page's base as a Number, NaN if that is not exact. */
  #tagOf(la: bigint): number {
    if (this.#long) {
      const v = Number(BigInt.asIntN(64, la & ~0xfffn));
      return v > -TWO53 && v < TWO53 ? v : NaN;
    }
    return Number(la & 0xffff_f000n);
  }

  /** INVLPG: drop the translations of the page containing `la` (all of a large page's). */
  invalidatePage(la: bigint | number): void {
    this.fetchEpoch++;
    const tag = typeof la === 'number' ? la - (la & 4095) : this.#tagOf(la);
    const i = (tag >>> 12) & this.tlbMask;
    for (const t of this.#tables) if (t.tag[i] === tag) t.drop(i);
    if (this.#largeLen === 0) return;
    const n = this.tlbMask + 1;
    const list = this.#large;
    let keep = 0;
    for (let k = 0; k < this.#largeLen; k++) {
      const item = list[k];
      const t = this.#tables[Math.floor(item / n)];
      const j = item % n;
      const base = t.lgBase[j];
      if (Number.isNaN(base) || Number.isNaN(t.tag[j])) continue;
      if (tag >= base && tag < base + t.lgSize[j]) {
        t.drop(j);
        t.lgBase[j] = NaN;
        continue;
      }
      list[keep++] = item;
    }
    this.#largeLen = keep;
  }

  #pushLarge(item: number): void {
    if (this.#largeLen === this.#large.length) {
      // Compact away stale items; if all are live, drop every large-page piece.
      const n = this.tlbMask + 1;
      const list = this.#large;
      let keep = 0;
      for (let k = 0; k < this.#largeLen; k++) {
        const t = this.#tables[Math.floor(list[k] / n)];
        const j = list[k] % n;
        if (!Number.isNaN(t.lgBase[j]) && !Number.isNaN(t.tag[j])) list[keep++] = list[k];
      }
      this.#largeLen = keep;
      if (keep === list.length) {
        for (let k = 0; k < keep; k++) {
          const t = this.#tables[Math.floor(list[k] / n)];
          t.drop(list[k] % n);
          t.lgBase[list[k] % n] = NaN;
        }
        this.#largeLen = 0;
      }
    }
    this.#large[this.#largeLen++] = item;
  }

  /**
   * Apply a walk's A/D updates atomically. False if an entry changed (other than its A/D
   * bits) since the walk read it (the walk must be redone); `force` ORs the bits in anyway.
   */
  #applyAd(updates: readonly AdUpdate[], force: boolean): boolean {
    const phys = this.#phys;
    const rec = this.#rec;
    for (const u of updates) {
      const s = phys.find(u.gpa);
      if (s === undefined || s.readonly || u.gpa + 4 > s.end) continue;
      let exp: number | undefined;
      if (!force) {
        for (let j = rec.gpas.length - 1; j >= 0; j--) {
          if (rec.gpas[j] === u.gpa) {
            exp = Number(rec.vals[j] & 0xffff_ffffn) | 0;
            break;
          }
        }
      }
      const a = phys.i32At(s, u.gpa);
      if (a === undefined) {
        const o = u.gpa - s.gpa;
        const cur = s.view.getUint32(o, true) | 0;
        if (exp !== undefined && ((cur ^ exp) & ~0x60) !== 0) return false;
        s.view.setUint32(o, (cur | u.bits) >>> 0, true);
        continue;
      }
      const idx = phys.index;
      for (;;) {
        const cur = Atomics.load(a, idx);
        if (exp !== undefined && ((cur ^ exp) & ~0x60) !== 0) return false;
        if ((cur & u.bits) === u.bits) break;
        if (Atomics.compareExchange(a, idx, cur, cur | u.bits) === cur) break;
      }
    }
    return true;
  }

  /**
   * Translate `la` for an access of `kind` (0 read, 1 write, 2 fetch) with the checks and A/D
   * updates of the architecture, fill the TLB, and return the guest-physical address.
   */
  #translate(la: bigint, kind: number): number {
    const rec = this.#rec;
    let gpa = 0;
    for (let attempt = 0; ; attempt++) {
      rec.reset();
      const r = walk(rec, la, this.#ctx, this.#acc[kind]);
      if (!r.ok) {
        const f = r.fault;
        if (f.vector === 14) throw new GuestException(14, f.errorCode, f.cr2);
        throw new GuestException(13, 0);
      }
      gpa = r.gpa;
      if (r.updates.length === 0 || this.#applyAd(r.updates, attempt >= MAX_WALK_RETRIES)) break;
    }
    const tag = this.#tagOf(la);
    if (Number.isNaN(tag)) return gpa;
    const gpaPage = gpa - (gpa % PAGE);
    let pageBits = 12;
    let global = false;
    if (this.#paging) {
      const reads = rec.gpas.length;
      pageBits = this.#levels === 2 ? (reads === 1 ? 22 : 12) : 12 + 9 * (this.#levels - reads);
      global = this.#pge && (rec.vals[reads - 1] & 0x100n) !== 0n;
    }
    const s = this.#phys.find(gpaPage);
    const ram = s !== undefined && gpaPage + PAGE <= s.end;
    const bank = this.#bank * TABLES_PER_BANK;
    const seg = ram ? s : DUMMY_SEG;
    if (kind === ACCESS.WRITE) {
      const writable = ram && !s.readonly && !this.#watched.has(gpaPage / PAGE);
      this.#fill(bank + (writable ? T_W : T_MMIO + T_W), tag, seg, gpaPage, global, pageBits);
      this.#fill(bank + (ram ? T_R : T_MMIO + T_R), tag, seg, gpaPage, global, pageBits);
    } else {
      this.#fill(bank + (ram ? 0 : T_MMIO) + (kind === ACCESS.FETCH ? T_X : T_R), tag, seg, gpaPage, global, pageBits);
    }
    return gpa;
  }

  /** Where page `gpaPage` of `seg` is in {@link ram} (-1: not there, or beyond an Int32 offset). */
  #hostOffset(seg: PhysSegment, gpaPage: number): number {
    if (seg === DUMMY_SEG || seg.buffer !== this.ram.buffer) return -1;
    const at = seg.byteOffset + (gpaPage - seg.gpa);
    return at + PAGE <= this.ram.length && at <= 0x7fff_f000 ? at : -1;
  }

  #fill(table: number, tag: number, seg: PhysSegment, gpaPage: number, global: boolean, pageBits: number): void {
    const t = this.#tables[table];
    const i = (tag >>> 12) & this.tlbMask;
    t.tag[i] = tag;
    const hi = Math.floor(tag / 2 ** 32);
    t.keyLo[i] = (tag - hi * 2 ** 32) / PAGE;
    t.keyHi[i] = hi;
    t.view[i] = seg.view;
    t.seg[i] = seg;
    t.off[i] = gpaPage - seg.gpa;
    t.host[i] = this.#hostOffset(seg, gpaPage);
    t.gpa[i] = gpaPage;
    t.global[i] = global ? 1 : 0;
    t.used = true;
    if (global) t.hasGlobal = true;
    if (pageBits > 12) {
      const size = 2 ** pageBits;
      t.lgBase[i] = Math.floor(tag / size) * size;
      t.lgSize[i] = size;
      this.#pushLarge(table * (this.tlbMask + 1) + i);
    } else t.lgBase[i] = NaN;
  }

  /**
   * Translate `la` for `kind` (0 read, 1 write, 2 fetch): from the current bank's RAM or MMIO
   * table if either holds it, else by a walk.
   */
  #gpaOf(la: bigint, kind: number): number {
    if (this.#phys.refresh()) this.flushAll();
    const tag = this.#tagOf(la);
    const i = (tag >>> 12) & this.tlbMask;
    const o = Number(la & 0xfffn);
    const b = this.#bank * TABLES_PER_BANK + kind;
    let t = this.#tables[b];
    if (t.tag[i] === tag) return t.gpa[i] + o;
    t = this.#tables[b + T_MMIO];
    if (t.tag[i] === tag) return t.gpa[i] + o;
    return this.#translate(la, kind);
  }

  #codeWritten(gpa: number): void {
    if (this.#watched.size === 0) return;
    const page = Math.floor(gpa / PAGE);
    if (!this.#watched.delete(page)) return;
    // Its writes went through the MMIO tables while it was watched: let them refill as RAM.
    const g = page * PAGE;
    for (let b = 0; b < BANKS; b++) {
      const t = this.#tables[b * TABLES_PER_BANK + T_MMIO + T_W];
      if (!t.used) continue;
      for (let i = 0; i < t.tag.length; i++) if (t.gpa[i] === g) t.drop(i);
    }
    this.onCodeWrite?.(page);
  }

  #slowRead(la: bigint, size: 1 | 2 | 4 | 8, kind: number): number | bigint {
    const o = Number(la & 0xfffn);
    if (o + size <= PAGE) return this.#phys.read(this.#gpaOf(la, kind), size);
    const n1 = PAGE - o;
    const g1 = this.#gpaOf(la, kind);
    const g2 = this.#gpaOf(la + BigInt(n1), kind);
    const sc = this.#scratch;
    for (let k = 0; k < n1; k++) sc.setUint8(k, this.#phys.readByte(g1 + k));
    for (let k = n1; k < size; k++) sc.setUint8(k, this.#phys.readByte(g2 + k - n1));
    return size === 2 ? sc.getUint16(0, true) : size === 4 ? sc.getUint32(0, true) : sc.getBigUint64(0, true);
  }

  #slowWrite(la: bigint, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    const o = Number(la & 0xfffn);
    const phys = this.#phys;
    if (o + size <= PAGE) {
      const gpa = this.#gpaOf(la, ACCESS.WRITE);
      phys.write(gpa, size, value);
      this.#codeWritten(gpa);
      return;
    }
    const n1 = PAGE - o;
    const g1 = this.#gpaOf(la, ACCESS.WRITE);
    const g2 = this.#gpaOf(la + BigInt(n1), ACCESS.WRITE);
    const sc = this.#scratch;
    if (size === 2) sc.setUint16(0, value as number, true);
    else if (size === 4) sc.setUint32(0, value as number, true);
    else sc.setBigUint64(0, value as bigint, true);
    for (let k = 0; k < n1; k++) phys.writeByte(g1 + k, sc.getUint8(k));
    for (let k = n1; k < size; k++) phys.writeByte(g2 + k - n1, sc.getUint8(k));
    this.#codeWritten(g1);
    this.#codeWritten(g2);
  }

  // ---- EngineMmu accesses, linear address as a bigint ----

  /** Read a byte; `kind` {@link ACCESS.FETCH} checks it as an instruction fetch. */
  read8(la: bigint, kind: AccessKind = ACCESS.READ): number {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (kind !== ACCESS.FETCH) {
      if (this.rTag[i] === n - o) return this.rView[i].getUint8(this.rOff[i] + o);
      return this.#slowRead(la, 1, ACCESS.READ) as number;
    }
    if (this.xTag[i] === n - o) return this.xView[i].getUint8(this.xOff[i] + o);
    return this.#slowRead(la, 1, ACCESS.FETCH) as number;
  }
  /** Read a little-endian 16-bit value. */
  read16(la: bigint): number {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.rTag[i] === n - o && o <= 4094) return this.rView[i].getUint16(this.rOff[i] + o, true);
    return this.#slowRead(la, 2, ACCESS.READ) as number;
  }
  /** Read a little-endian 32-bit value. */
  read32(la: bigint): number {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.rTag[i] === n - o && o <= 4092) return this.rView[i].getUint32(this.rOff[i] + o, true);
    return this.#slowRead(la, 4, ACCESS.READ) as number;
  }
  /** Read a little-endian 64-bit value. */
  read64(la: bigint): bigint {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.rTag[i] === n - o && o <= 4088) return this.rView[i].getBigUint64(this.rOff[i] + o, true);
    return this.#slowRead(la, 8, ACCESS.READ) as bigint;
  }
  /** Write a byte (`v` taken modulo 2^8). */
  write8(la: bigint, v: number): void {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.wTag[i] === n - o) this.wView[i].setUint8(this.wOff[i] + o, v);
    else this.#slowWrite(la, 1, v);
  }
  /** Write a little-endian 16-bit value (`v` taken modulo 2^16). */
  write16(la: bigint, v: number): void {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.wTag[i] === n - o && o <= 4094) this.wView[i].setUint16(this.wOff[i] + o, v, true);
    else this.#slowWrite(la, 2, v);
  }
  /** Write a little-endian 32-bit value (`v` taken modulo 2^32). */
  write32(la: bigint, v: number): void {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.wTag[i] === n - o && o <= 4092) this.wView[i].setUint32(this.wOff[i] + o, v, true);
    else this.#slowWrite(la, 4, v);
  }
  /** Write a little-endian 64-bit value (`v` taken modulo 2^64). */
  write64(la: bigint, v: bigint): void {
    const n = Number(BigInt.asIntN(64, la));
    const o = n & 4095;
    const i = (n >>> 12) & this.tlbMask;
    if (this.wTag[i] === n - o && o <= 4088) this.wView[i].setBigUint64(this.wOff[i] + o, v, true);
    else this.#slowWrite(la, 8, v);
  }

  // ---- Translation ----

  /**
   * The guest-physical address of the start of the 4 KiB code page containing `la`, checked
   * as an instruction fetch (the page may be MMIO: check before decoding from RAM).
   */
  translateFetch(la: bigint): number {
    const n = Number(BigInt.asIntN(64, la));
    const i = (n >>> 12) & this.tlbMask;
    const t = this.#tables[this.#bank * TABLES_PER_BANK + T_X];
    if (t.tag[i] === n - (n & 4095)) return t.gpa[i];
    const gpa = this.#gpaOf(la, ACCESS.FETCH);
    return gpa - (gpa % PAGE);
  }

  /**
   * The guest-physical address `la` translates to for an access of `kind` (default read),
   * with every check and A/D update of that access (a write sets D) and the TLB filled.
   */
  translate(la: bigint | number, kind: AccessKind = ACCESS.READ): number {
    return this.#gpaOf(typeof la === 'bigint' ? la : BigInt(la), kind);
  }

  // ---- Code-page tracking ----

  /** Register guest-physical page `gpaPage` (a page number) as holding decoded code. */
  watchCode(gpaPage: number): void {
    if (this.#watched.has(gpaPage)) return;
    this.#watched.add(gpaPage);
    const g = gpaPage * PAGE;
    for (let b = 0; b < BANKS; b++) {
      const t = this.#tables[b * TABLES_PER_BANK + T_W];
      if (!t.used) continue;
      for (let i = 0; i < t.tag.length; i++) if (t.gpa[i] === g) t.drop(i);
    }
  }

  /** Stop watching `gpaPage`; false if it was not watched. */
  unwatchCode(gpaPage: number): boolean {
    return this.#watched.delete(gpaPage);
  }

  /** True if `gpaPage` is watched. */
  isWatched(gpaPage: number): boolean {
    return this.#watched.has(gpaPage);
  }

  // ---- LOCK-prefixed read-modify-write ----

  /**
   * A locked read-modify-write of `size` bytes at `la`: writes `fn(old)` (taken modulo
   * 2^(8·size)) and returns `old` (unsigned). Atomic (a compare-and-swap loop: `fn` may be
   * called more than once and must be pure) when the access lies within one naturally
   * aligned qword of RAM; otherwise (a split lock across qwords or pages, MMIO, a ROM) it
   * is done as a plain read then write, correct but not atomic. The access is write-checked
   * (D set) even if `fn` returns `old`, as a locked access always writes.
   */
  atomicRmw(la: bigint | number, size: 1 | 2 | 4, fn: (old: number) => number): number {
    const big = typeof la === 'bigint' ? la : BigInt(la);
    const o = Number(big & 0xfffn);
    const mask = size === 4 ? 0xffff_ffff : (1 << (8 * size)) - 1;
    if (o + size > PAGE) {
      const old = this.#slowRead(big, size, ACCESS.READ) as number;
      // Check both pages for writing before anything is written (the read did not).
      this.#gpaOf(big, ACCESS.WRITE);
      this.#gpaOf(big + BigInt(PAGE - o), ACCESS.WRITE);
      this.#slowWrite(big, size, (fn(old) & mask) >>> 0);
      return old;
    }
    const gpa = this.#gpaOf(big, ACCESS.WRITE);
    const phys = this.#phys;
    const s = phys.find(gpa);
    if (s !== undefined && !s.readonly && gpa + size <= s.end) {
      const a = phys.i32Containing(s, gpa, size);
      if (a !== undefined) {
        const idx = phys.index;
        const sh = 8 * phys.shift;
        for (;;) {
          const cur = Atomics.load(a, idx);
          const old = size === 4 ? cur >>> 0 : (cur >>> sh) & mask;
          const nv = fn(old);
          const next = size === 4 ? nv | 0 : (cur & ~(mask << sh)) | ((nv & mask) << sh);
          if (Atomics.compareExchange(a, idx, cur, next) === cur) {
            this.#codeWritten(gpa);
            return old;
          }
        }
      }
      const q = phys.u64Containing(s, gpa, size);
      if (q !== undefined) {
        const idx = phys.index;
        const sh = BigInt(8 * phys.shift);
        const m = BigInt(mask) << sh;
        for (;;) {
          const cur = Atomics.load(q, idx);
          const old = Number((cur & m) >> sh);
          const nv = BigInt((fn(old) & mask) >>> 0);
          if (Atomics.compareExchange(q, idx, cur, (cur & ~m) | (nv << sh)) === cur) {
            this.#codeWritten(gpa);
            return old;
          }
        }
      }
    }
    const old = phys.read(gpa, size) as number;
    phys.write(gpa, size, (fn(old) & mask) >>> 0);
    this.#codeWritten(gpa);
    return old;
  }

  /** {@link atomicRmw} for 8 bytes: writes `fn(old)` (modulo 2^64), returns `old`. */
  atomicRmw64(la: bigint | number, fn: (old: bigint) => bigint): bigint {
    const big = typeof la === 'bigint' ? la : BigInt(la);
    const o = Number(big & 0xfffn);
    if (o + 8 > PAGE) {
      const old = this.#slowRead(big, 8, ACCESS.READ) as bigint;
      this.#gpaOf(big, ACCESS.WRITE);
      this.#gpaOf(big + BigInt(PAGE - o), ACCESS.WRITE);
      this.#slowWrite(big, 8, BigInt.asUintN(64, fn(old)));
      return old;
    }
    const gpa = this.#gpaOf(big, ACCESS.WRITE);
    const phys = this.#phys;
    const s = phys.find(gpa);
    if (s !== undefined && !s.readonly && gpa + 8 <= s.end) {
      const q = phys.u64Containing(s, gpa, 8);
      if (q !== undefined) {
        const idx = phys.index;
        for (;;) {
          const cur = Atomics.load(q, idx);
          if (Atomics.compareExchange(q, idx, cur, BigInt.asUintN(64, fn(cur))) === cur) {
            this.#codeWritten(gpa);
            return cur;
          }
        }
      }
    }
    const old = phys.read(gpa, 8) as bigint;
    phys.write(gpa, 8, BigInt.asUintN(64, fn(old)));
    this.#codeWritten(gpa);
    return old;
  }

  /**
   * LOCK CMPXCHG of `size` bytes at `la`: if the value there equals `expected` it becomes
   * `replacement`. Returns the old value (success iff it equals `expected`). Atomicity as
   * in {@link atomicRmw}; the access is a write either way.
   */
  cmpxchg(la: bigint | number, size: 1 | 2 | 4, expected: number, replacement: number): number {
    return this.atomicRmw(la, size, (old) => (old === expected ? replacement : old));
  }

  /** {@link cmpxchg} for 8 bytes. */
  cmpxchg64(la: bigint | number, expected: bigint, replacement: bigint): bigint {
    const e = BigInt.asUintN(64, expected);
    return this.atomicRmw64(la, (old) => (old === e ? replacement : old));
  }

  /**
   * The engine's locked read-modify-write ({@link EngineMmuAtomic.rmw}): {@link atomicRmw}
   * or {@link atomicRmw64} by size, with the value as a bigint.
   */
  rmw(la: bigint, size: 1 | 2 | 4 | 8, update: (old: bigint) => bigint): bigint {
    if (size === 8) return this.atomicRmw64(la, update);
    const mask = size === 4 ? 0xffffffffn : size === 2 ? 0xffffn : 0xffn;
    return BigInt(this.atomicRmw(la, size, (old) => Number(BigInt.asUintN(64, update(BigInt(old))) & mask)));
  }

  // ---- Byte ranges ----

  /**
   * Copy `length` bytes at linear `la` out of guest memory, every page translated (and
   * checked) first. MMIO bytes are read one at a time.
   */
  readBytes(la: bigint | number, length: number, kind: AccessKind = ACCESS.READ): Uint8Array {
    const big = typeof la === 'bigint' ? la : BigInt(la);
    const gpas = this.#pages(big, length, kind === ACCESS.FETCH ? ACCESS.FETCH : ACCESS.READ);
    const out = new Uint8Array(length);
    let done = 0;
    for (let p = 0; p < gpas.length; p++) {
      const g = gpas[p];
      const n = Math.min(length - done, PAGE - (g % PAGE));
      for (let k = 0; k < n; k++) out[done + k] = this.#phys.readByte(g + k);
      done += n;
    }
    return out;
  }

  /** Copy `bytes` to linear `la`: every page translated and write-checked before any byte is written. */
  writeBytes(la: bigint | number, bytes: Uint8Array): void {
    const big = typeof la === 'bigint' ? la : BigInt(la);
    const gpas = this.#pages(big, bytes.length, ACCESS.WRITE);
    let done = 0;
    for (let p = 0; p < gpas.length; p++) {
      const g = gpas[p];
      const n = Math.min(bytes.length - done, PAGE - (g % PAGE));
      for (let k = 0; k < n; k++) this.#phys.writeByte(g + k, bytes[done + k]);
      this.#codeWritten(g);
      done += n;
    }
  }

  /** The guest-physical address of each page piece of `[la, la + length)`, translated in order. */
  #pages(la: bigint, length: number, kind: number): number[] {
    if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length must be a non-negative safe integer, got ${length}`);
    const gpas: number[] = [];
    let at = la;
    let left = length;
    while (left > 0) {
      const o = Number(at & 0xfffn);
      gpas.push(this.#gpaOf(at, kind));
      const n = Math.min(left, PAGE - o);
      at += BigInt(n);
      left -= n;
    }
    return gpas;
  }
}

/**
 * The CPL0 execution engine (issue 15): a vCPU's register file, lazy flags, the decoded-
 * block cache and the run loop, plus the integer instruction set. System instructions and
 * exception delivery live in src/engine/system.ts, string instructions in
 * src/engine/string.ts; decoding in src/engine/decode.ts, flags in src/engine/flags.ts.
 *
 * Registers are a BigUint64Array (writes truncate to 64 bits for free); values of narrower
 * operands are bigints already truncated to their size. Memory goes through the
 * {@link EngineMmu} (linear addresses; the segment bases of FS/GS are added here).
 */
import type { KvmSegment } from '../kvm/structs.js';
import { hasAtomicRmw, type EngineMmuAtomic } from './atomic.js';
import { decode, Insn } from './decode.js';
import { BITS, F, FOP, lazyFlags, MASK, PARITY, SIGN, STATUS, condition, szp } from './flags.js';
import { compileBlock, isFastMmu, type CompiledBlock, type FastMmu } from './jit.js';
import { execString } from './string.js';
import * as sys from './system.js';
import { ACCESS, GuestException, type EngineIo, type EngineMmu, type EngineMsrs, type EngineState, type EngineStop } from './types.js';
import { UNDEFINED, checkVendor, type CpuVendor, type UndefinedResults } from './vendor.js';

const M64 = 0xffffffffffffffffn;
const M32 = 0xffffffffn;
const SCALE = [1n, 2n, 4n, 8n];
const PAGE = 4096;
/** Most instructions in one decoded block. */
const BLOCK_MAX = 64;

/** A run of decoded instructions starting at one guest-physical address, within one page. */
interface Block {
  insns: Insn[];
  gpaPage: number;
  /** The linear address the block was decoded at, and each instruction's next RIP there. */
  rip0: bigint;
  next: bigint[];
  /** Starts so far (a block is compiled once it has started `jitAfter` times), and its compiled code (null: it cannot be). */
  runs: number;
  fn: CompiledBlock | null | undefined;
  /** Calls of `fn` so far (see {@link JIT_YOUNG_CALLS}). */
  calls: number;
  /** In the cache (a block that crosses a page is decoded afresh each time). */
  cached: boolean;
  /**
   * The blocks that ran after `fn` left by its way out 0 (fall-through) and 1 (branch
   * taken), valid while the engine's code epoch and the MMU's fetch epoch are the ones
   * recorded: following them spares the dispatch loop a fetch translation and a cache lookup.
   */
  links: [Block | undefined, Block | undefined];
  linkCode: number;
  linkFetch: number;
  /**
   * The TLB bank `fn` was compiled for (its write keys: compiled code holds the bank's
   * tables as constants), and the code compiled for another bank, kept for the switch back.
   */
  fnBank?: Int32Array;
  alt?: { fn: CompiledBlock | null; bank: Int32Array };
}

/** A block is compiled (src/engine/jit.ts) when it starts this many times. */
const JIT_AFTER = 8;
/**
 * Compiled code's first {@link JIT_YOUNG_CALLS} calls run at most {@link JIT_YOUNG_SLICE}
 * instructions each, later ones at most {@link JIT_SLICE}. Short first calls get a looping
 * block optimised by V8 for ordinary entry, with every way out of it executed (and so with
 * type feedback) before that: a block whose first call loops for long is first optimised by
 * on-stack replacement, deoptimised at its first way out, and was seen to stay in
 * interpreter-plus-OSR code for good at a third of the speed. A dispatch round costs
 * ~0.2 µs; a long slice ~10-40 µs.
 */
const JIT_YOUNG_CALLS = 4096;
const JIT_YOUNG_SLICE = 256;
const JIT_SLICE = 1 << 14;

/** Options of {@link Cpl0Engine}. */
export interface Cpl0EngineOptions {
  /** CPUID: [eax, ebx, ecx, edx] for a leaf and subleaf (default: all zero). */
  cpuid?: (leaf: number, subleaf: number) => [number, number, number, number];
  /** The TSC RDTSC/RDTSCP read (default: host nanoseconds). */
  tsc?: () => bigint;
  /** Compile hot blocks to JavaScript (src/engine/jit.ts; default true; needs an MMU with the RAM and TLB cells of src/engine/jit.ts FastMmu, as SoftMmu has). */
  jit?: boolean;
  /** Starts of a block before it is compiled (default {@link JIT_AFTER}; 0: at its first, as the differential tests run it). */
  jitAfter?: number;
  /**
   * Whose hardware the results the architecture leaves undefined follow (flags of MUL, DIV,
   * shifts and rotates by counts above 1, 16-bit SHLD/SHRD by counts above 16: the table in
   * src/engine/vendor.ts). Default: this host's CPU (vendor.ts hostVendor(), from
   * /proc/cpuinfo), the one KVM runs the guest on when the engine does not, so the guest
   * sees one CPU either way.
   */
  vendor?: CpuVendor;
}

function isSegment(s: unknown): s is KvmSegment {
  return typeof s === 'object' && s !== null && typeof (s as KvmSegment).base === 'bigint';
}

function copySeg(s: KvmSegment): KvmSegment {
  return { ...s };
}

/**
 * Executes ring-0, 64-bit long-mode x86 code from a vCPU's KVM register state.
 *
 * @example
 * const e = new Cpl0Engine(mmu, io);
 * e.load(state);
 * const stop = e.run(1_000_000);
 * const after = e.save();
 */
export class Cpl0Engine {
  /** @internal General-purpose registers in kvm_regs order (RAX..R15 = 0..15). */
  readonly regs = new BigUint64Array(16);
  /** @internal RIP of the instruction executing (or next to). */
  rip = 0n;
  /** @internal RIP of the instruction after the one executing; branches change it. */
  nextRip = 0n;
  /** @internal RFLAGS bits other than the six status flags (bit 1 always set). */
  rfl = 2;
  /** @internal Lazy flags: operation kind (FOP), size, result, source, destination, aux (carry in / kept CF). */
  fop = 0;
  fsz = 8;
  fres = 0n;
  fsrc = 0n;
  fdst = 0n;
  faux = 0;
  /** @internal Materialised status flags (valid when fop is NONE). */
  fval = 0;
  /** @internal Segment registers, descriptor tables, control registers (mutable copies). */
  sregs!: EngineState['sregs'];
  /** @internal The MSRs outside kvm_sregs. */
  msrs: EngineMsrs = { star: 0n, lstar: 0n, cstar: 0n, fmask: 0n, kernelGsBase: 0n, tscAux: 0n };
  /** @internal The stop an instruction asked for (after it retires), or null. */
  stop: EngineStop | null = null;
  /** @internal A watched code page was written during this block. */
  codeDirty = false;
  /** @internal Compiled code stopped before an instruction it cannot run (src/engine/jit.ts). */
  jitDeopt = false;
  /** @internal The way out compiled code took (src/engine/jit.ts CompiledBlock). */
  jitExit = -1;
  /** @internal Atomic RMW hook of the MMU, if it has one. */
  readonly atomic: EngineMmuAtomic | null;
  /** @internal */
  readonly cpuidFn: (leaf: number, subleaf: number) => [number, number, number, number];
  /** @internal */
  readonly tscFn: () => bigint;
  /** The CPU vendor whose undefined results this engine gives (the `vendor` option). */
  readonly vendor: CpuVendor;
  /** @internal That vendor's answers (src/engine/vendor.ts). */
  readonly undef: Readonly<UndefinedResults>;

  private retiredCount = 0;
  private compiledCount = 0;
  private loaded = false;
  private readonly blocks = new Map<number, Block>();
  /** Counts the drops of decoded blocks (links between blocks hold while it is unchanged). */
  private codeEpoch = 0;
  private readonly pageBlocks = new Map<number, number[]>();
  private readonly fetchBase = { la: 0n };
  /** The register file as 32-bit halves, for compiled code. */
  private readonly regs32 = new Int32Array(this.regs.buffer);
  /** What compiled code reaches of the MMU, if it has it (src/engine/jit.ts FastMmu). */
  private readonly fast: FastMmu | null;
  /** Compile hot blocks (the `jit` option). */
  private readonly jit: boolean;
  private readonly jitAfter: number;

  /**
   * @param mmu linear memory (page tables, TLB, code-write tracking); its `onCodeWrite` is taken over
   * @param io port I/O
   * @param opts CPUID and TSC sources, block compilation, the vendor modelled
   */
  constructor(readonly mmu: EngineMmu, readonly io: EngineIo, opts: Cpl0EngineOptions = {}) {
    if (typeof mmu !== 'object' || mmu === null || typeof mmu.read8 !== 'function' || typeof mmu.translateFetch !== 'function') {
      throw new TypeError('mmu must implement EngineMmu');
    }
    if (typeof io !== 'object' || io === null || typeof io.pioRead !== 'function') throw new TypeError('io must implement EngineIo');
    if (opts.cpuid !== undefined && typeof opts.cpuid !== 'function') throw new TypeError('opts.cpuid must be a function');
    if (opts.tsc !== undefined && typeof opts.tsc !== 'function') throw new TypeError('opts.tsc must be a function');
    if (opts.jit !== undefined && typeof opts.jit !== 'boolean') throw new TypeError('opts.jit must be a boolean');
    if (opts.jitAfter !== undefined && (!Number.isSafeInteger(opts.jitAfter) || opts.jitAfter < 0)) throw new RangeError(`opts.jitAfter must be a non-negative safe integer, got ${opts.jitAfter}`);
    this.vendor = checkVendor(opts.vendor);
    this.undef = UNDEFINED[this.vendor];
    this.cpuidFn = opts.cpuid ?? (() => [0, 0, 0, 0]);
    this.tscFn = opts.tsc ?? (() => process.hrtime.bigint());
    this.atomic = hasAtomicRmw(mmu) ? mmu : null;
    this.fast = isFastMmu(mmu) ? mmu : null;
    this.jit = (opts.jit ?? true) && this.fast !== null;
    this.jitAfter = opts.jitAfter ?? JIT_AFTER;
    mmu.onCodeWrite = (page) => this.invalidateCode(page);
  }

  /** Instructions retired in total. */
  get retired(): number {
    return this.retiredCount;
  }

  /** Instructions of {@link retired} that compiled code ran (src/engine/jit.ts). */
  get retiredCompiled(): number {
    return this.compiledCount;
  }

  /**
   * Take a vCPU's state (copied; the argument is not kept). Decoded code and cached
   * translations are dropped: whoever ran the vCPU meanwhile (KVM, devices, a test harness)
   * may have rewritten code or page tables without this engine's MMU seeing the writes.
   */
  load(state: EngineState): void {
    if (typeof state !== 'object' || state === null || typeof state.regs !== 'object' || typeof state.sregs !== 'object' || typeof state.msrs !== 'object') {
      throw new TypeError('state must be an EngineState {regs, sregs, msrs}');
    }
    const r = state.regs;
    const names = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
    names.forEach((n, i) => {
      if (typeof r[n] !== 'bigint') throw new TypeError(`state.regs.${n} must be a bigint`);
      this.regs[i] = r[n];
    });
    if (typeof r.rip !== 'bigint' || typeof r.rflags !== 'bigint') throw new TypeError('state.regs.rip and .rflags must be bigints');
    this.rip = BigInt.asUintN(64, r.rip);
    this.setRflags(Number(r.rflags & 0xffffffffn));
    const s = state.sregs;
    for (const n of ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const) {
      if (!isSegment(s[n])) throw new TypeError(`state.sregs.${n} must be a KvmSegment`);
    }
    this.sregs = {
      cs: copySeg(s.cs), ds: copySeg(s.ds), es: copySeg(s.es), fs: copySeg(s.fs), gs: copySeg(s.gs), ss: copySeg(s.ss),
      tr: copySeg(s.tr), ldt: copySeg(s.ldt), gdt: { ...s.gdt }, idt: { ...s.idt },
      cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8: s.cr8, efer: s.efer, apicBase: s.apicBase,
      interruptBitmap: [...s.interruptBitmap],
    };
    this.msrs = { ...state.msrs };
    this.loaded = true;
    this.flushCode();
    this.updateMmu();
    this.mmu.flushAll();
  }

  /** Hand the state back (RFLAGS materialised). */
  save(): EngineState {
    if (!this.loaded) throw new Error('save() before load()');
    const R = this.regs;
    const s = this.sregs;
    return {
      regs: {
        rax: R[0], rcx: R[1], rdx: R[2], rbx: R[3], rsp: R[4], rbp: R[5], rsi: R[6], rdi: R[7],
        r8: R[8], r9: R[9], r10: R[10], r11: R[11], r12: R[12], r13: R[13], r14: R[14], r15: R[15],
        rip: this.rip, rflags: BigInt(this.rflags()),
      },
      sregs: {
        cs: copySeg(s.cs), ds: copySeg(s.ds), es: copySeg(s.es), fs: copySeg(s.fs), gs: copySeg(s.gs), ss: copySeg(s.ss),
        tr: copySeg(s.tr), ldt: copySeg(s.ldt), gdt: { ...s.gdt }, idt: { ...s.idt },
        cr0: s.cr0, cr2: s.cr2, cr3: s.cr3, cr4: s.cr4, cr8: s.cr8, efer: s.efer, apicBase: s.apicBase,
        interruptBitmap: [...s.interruptBitmap],
      },
      msrs: { ...this.msrs },
    };
  }

  /** Execute up to `budget` instructions (exception deliveries count against it too). */
  run(budget: number): EngineStop {
    if (!Number.isSafeInteger(budget) || budget < 0) throw new RangeError(`budget must be a non-negative safe integer, got ${budget}`);
    if (!this.loaded) throw new Error('run() before load()');
    const limit = this.retiredCount + budget;
    let events = 0;
    if ((this.sregs.cs.selector & 3) !== 0 || this.sregs.cs.dpl !== 0) return { kind: 'cpl3' };
    if ((this.sregs.efer & 0x400n) === 0n || this.sregs.cs.l !== 1) {
      return { kind: 'unsupported', rip: this.rip, bytes: new Uint8Array(0), reason: 'not in 64-bit long mode' };
    }
    let interpretNext = false;
    /** The next block, found through the last compiled block's link; else where to record the link. */
    let linked: Block | undefined;
    let linkFrom: Block | undefined;
    let linkExit = 0;
    while (this.retiredCount + events < limit) {
      let insns: Insn[];
      let next: bigint[] | null;
      try {
        let b: Block;
        if (linked !== undefined) {
          b = linked;
          linked = undefined;
        } else {
          const from = linkFrom;
          linkFrom = undefined; // a lookup that faults links nothing
          b = this.lookup();
          if (from !== undefined) this.link(from, linkExit, b);
        }
        insns = b.insns;
        next = b.rip0 === this.rip ? b.next : null;
        if (next !== null && this.jit && !interpretNext) {
          if (b.fn === undefined && b.runs++ >= this.jitAfter) {
            b.fn = compileBlock(b.insns, b.rip0, b.next, this.fast!, this.undef);
            b.fnBank = this.fast!.wKeyLo;
            b.calls = 0;
          } else if (b.fn && b.fnBank !== this.fast!.wKeyLo) this.rebank(b);
          const left = limit - this.retiredCount - events;
          if (b.fn && left >= insns.length) {
            this.jitDeopt = false;
            const slice = b.calls++ < JIT_YOUNG_CALLS ? JIT_YOUNG_SLICE : JIT_SLICE;
            const n = b.fn(this, this.regs32, left < slice ? left : slice);
            this.retiredCount += n;
            this.compiledCount += n;
            interpretNext = this.jitDeopt;
            const x = this.jitExit;
            if (!interpretNext && x >= 0) {
              linked = this.linkOf(b, x);
              if (linked === undefined) {
                linkFrom = b;
                linkExit = x;
              }
            }
            continue;
          }
        }
        interpretNext = false;
      } catch (e) {
        if (!(e instanceof GuestException)) return this.hostError(e);
        events++;
        const st = sys.raise(this, e);
        if (st !== null) return st;
        continue;
      }
      let d: Insn | null = null;
      try {
        const n = insns.length;
        this.codeDirty = false;
        for (let k = 0; k < n; k++) {
          if (this.retiredCount + events >= limit) break;
          d = insns[k];
          this.nextRip = next !== null ? next[k] : this.rip + d.lenB;
          if (!this.exec(d)) return this.unsupported(d);
          this.rip = BigInt.asUintN(64, this.nextRip);
          this.retiredCount++;
          if (this.stop !== null) {
            const st = this.stop;
            this.stop = null;
            return st;
          }
          if (this.codeDirty) break;
        }
      } catch (e) {
        if (!(e instanceof GuestException)) return this.hostError(e, d);
        events++;
        const st = sys.raise(this, e);
        if (st !== null) return st;
      }
    }
    return { kind: 'budget' };
  }

  /** The TLB bank changed since `b` was compiled (CPL, or RFLAGS.AC under SMAP): its code for this bank. */
  private rebank(b: Block): void {
    const bank = this.fast!.wKeyLo;
    const prev = { fn: b.fn ?? null, bank: b.fnBank! };
    if (b.alt?.bank === bank) b.fn = b.alt.fn;
    else b.fn = compileBlock(b.insns, b.rip0, b.next, this.fast!, this.undef);
    b.fnBank = bank;
    b.calls = 0;
    b.alt = prev;
  }

  private unsupported(d: Insn): EngineStop {
    return { kind: 'unsupported', rip: this.rip, bytes: this.bytesAt(d.len), reason: d.bad ?? 'not implemented' };
  }

  private hostError(e: unknown, d: Insn | null = null): EngineStop {
    const reason = `engine error: ${e instanceof Error ? e.message : String(e)}`;
    return { kind: 'unsupported', rip: this.rip, bytes: this.bytesAt(d?.len ?? 0), reason };
  }

  private bytesAt(n: number): Uint8Array {
    const out: number[] = [];
    try {
      for (let i = 0; i < Math.max(1, n); i++) out.push(this.mmu.read8(BigInt.asUintN(64, this.rip + BigInt(i)), ACCESS.FETCH));
    } catch {
      /* as many as could be read */
    }
    return Uint8Array.from(out);
  }

  // ---- decoded-block cache ----

  /** The block linked to `b`'s way out `x`, if the link still holds. */
  private linkOf(b: Block, x: number): Block | undefined {
    const fetch = this.fast!.fetchEpoch;
    if (b.linkCode === this.codeEpoch && b.linkFetch === fetch) return b.links[x];
    b.links[0] = b.links[1] = undefined;
    b.linkCode = this.codeEpoch;
    b.linkFetch = fetch;
    return undefined;
  }

  /** Record `to` (just looked up at RIP) as what follows `from`'s way out `x`, if nothing changed meanwhile. */
  private link(from: Block, x: number, to: Block): void {
    if (to.cached && to.rip0 === this.rip && from.linkCode === this.codeEpoch && from.linkFetch === this.fast!.fetchEpoch) from.links[x] = to;
  }

  private lookup(): Block {
    const rip = this.rip;
    const t = this.mmu.translateFetch(rip);
    const off = Number(rip & 0xfffn);
    const gpa = t - (t % PAGE) + off;
    const b = this.blocks.get(gpa);
    if (b !== undefined) return b;
    return this.build(rip, gpa);
  }

  private build(rip: bigint, gpa: number): Block {
    const insns: Insn[] = [];
    const off = Number(rip & 0xfffn);
    let pos = 0;
    let crosses = false;
    const fb = this.fetchBase;
    const fetch = (i: number): number => this.mmu.read8(BigInt.asUintN(64, fb.la + BigInt(i)), ACCESS.FETCH);
    while (insns.length < BLOCK_MAX && off + pos < PAGE) {
      fb.la = rip + BigInt(pos);
      let d: Insn;
      try {
        d = decode(fetch);
      } catch (e) {
        if (insns.length === 0 || !(e instanceof GuestException)) throw e;
        break;
      }
      insns.push(d);
      pos += d.len;
      if (off + pos > PAGE) crosses = true;
      if (d.ends || crosses) break;
    }
    const gpaPage = Math.floor(gpa / PAGE);
    const next: bigint[] = [];
    let at = rip;
    for (const d of insns) { at = BigInt.asUintN(64, at + d.lenB); next.push(at); }
    const block: Block = { insns, gpaPage, rip0: rip, next, runs: 0, fn: undefined, calls: 0, cached: !crosses, links: [undefined, undefined], linkCode: -1, linkFetch: -1 };
    if (!crosses) {
      this.blocks.set(gpa, block);
      let list = this.pageBlocks.get(gpaPage);
      if (list === undefined) {
        list = [];
        this.pageBlocks.set(gpaPage, list);
        this.mmu.watchCode(gpaPage);
      }
      list.push(gpa);
    }
    return block;
  }

  /** Drop the decoded blocks of a guest-physical page (the MMU saw a write to it). */
  invalidateCode(gpaPage: number): void {
    const list = this.pageBlocks.get(gpaPage);
    if (list === undefined) return;
    for (const k of list) this.blocks.delete(k);
    list.length = 0;
    this.codeEpoch++;
    this.codeDirty = true;
  }

  /** Drop every decoded block. */
  flushCode(): void {
    this.blocks.clear();
    for (const l of this.pageBlocks.values()) l.length = 0;
    this.codeEpoch++;
    this.codeDirty = true;
  }

  // ---- state helpers ----

  /** @internal Give the MMU the current translation state. */
  updateMmu(): void {
    const s = this.sregs;
    this.mmu.setControl({ cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer, cpl: s.cs.selector & 3, ac: (this.rfl & F.AC) !== 0 });
  }

  /** @internal The status flags, materialised. */
  flags(): number {
    if (this.fop !== FOP.NONE) {
      this.fval = lazyFlags(this.fop, this.fsz, this.fres, this.fsrc, this.fdst, this.faux);
      this.fop = FOP.NONE;
    }
    return this.fval;
  }

  /** @internal CF alone (0 or 1), without materialising the other flags where the record allows. */
  cf(): number {
    switch (this.fop) {
      case FOP.NONE: return this.fval & 1;
      case FOP.ADD: return this.fres < this.fdst ? 1 : 0;
      case FOP.SUB: return this.fdst < this.fsrc ? 1 : 0;
      case FOP.LOGIC: return 0;
      case FOP.INC: case FOP.DEC: return this.faux & 1;
    }
    return this.flags() & 1;
  }

  /** @internal Set the status flags directly. */
  setFlags(f: number): void {
    this.fop = FOP.NONE;
    this.fval = f & STATUS;
  }

  /** @internal Full RFLAGS as a number. */
  rflags(): number {
    return (this.rfl | this.flags()) >>> 0;
  }

  /** @internal Load RFLAGS (reserved bits forced: bit 1 set, 3/5/15/22+ clear); tells the MMU if AC changed. */
  setRflags(v: number): void {
    const ac = this.rfl & F.AC;
    this.setFlags(v);
    this.rfl = ((v & 0x3f7fd5 & ~STATUS) | 2) >>> 0;
    if (this.loaded && (this.rfl & F.AC) !== ac) this.updateMmu();
  }

  private lazy(op: number, size: number, res: bigint, src: bigint, dst: bigint): void {
    this.fop = op;
    this.fsz = size;
    this.fres = res;
    this.fsrc = src;
    this.fdst = dst;
  }

  /** @internal Evaluate condition code cc. */
  cond(cc: number): boolean {
    if (this.fop === FOP.SUB) {
      const a = this.fdst, b = this.fsrc;
      switch (cc) {
        case 2: return a < b;
        case 3: return a >= b;
        case 4: return a === b;
        case 5: return a !== b;
        case 6: return a <= b;
        case 7: return a > b;
      }
    } else if (this.fop !== FOP.NONE) {
      if (cc === 4) return this.fres === 0n;
      if (cc === 5) return this.fres !== 0n;
    }
    return condition(cc, this.flags());
  }

  /** @internal Read a register of `size` bytes (byte registers 16-19 are AH-BH). */
  getR(size: number, r: number): bigint {
    const R = this.regs;
    switch (size) {
      case 8: return R[r];
      case 4: return R[r] & M32;
      case 2: return R[r] & 0xffffn;
      default: return r < 16 ? R[r] & 0xffn : (R[r - 16] >> 8n) & 0xffn;
    }
  }

  /** @internal Write a register of `size` bytes (`v` already truncated): 32-bit writes zero-extend, 8/16 merge. */
  setR(size: number, r: number, v: bigint): void {
    const R = this.regs;
    switch (size) {
      case 8: R[r] = v; return;
      case 4: R[r] = v & M32; return;
      case 2: R[r] = (R[r] & ~0xffffn) | v; return;
      default:
        if (r < 16) R[r] = (R[r] & ~0xffn) | v;
        else R[r - 16] = (R[r - 16] & ~0xff00n) | (v << 8n);
    }
  }

  /** @internal The effective (linear) address of a memory operand. */
  ea(d: Insn): bigint {
    const a = this.eaRaw(d);
    if (d.seg < 0) return a;
    return BigInt.asUintN(64, a + (d.seg === 3 ? this.sregs.fs.base : this.sregs.gs.base));
  }

  /** @internal The effective address without the segment base (LEA). */
  eaRaw(d: Insn): bigint {
    let a = d.disp;
    if (d.base >= 0) a += this.regs[d.base];
    else if (d.ripRel) a += this.nextRip;
    if (d.index >= 0) a += this.regs[d.index] * SCALE[d.scale];
    return d.asz === 8 ? BigInt.asUintN(64, a) : a & M32;
  }

  /** @internal Read `size` bytes of linear memory. */
  rd(la: bigint, size: number): bigint {
    switch (size) {
      case 1: return BigInt(this.mmu.read8(la));
      case 2: return BigInt(this.mmu.read16(la));
      case 4: return BigInt(this.mmu.read32(la));
      default: return this.mmu.read64(la);
    }
  }

  /** @internal Write `size` bytes of linear memory. */
  wr(la: bigint, size: number, v: bigint): void {
    switch (size) {
      case 1: this.mmu.write8(la, Number(v & 0xffn)); return;
      case 2: this.mmu.write16(la, Number(v & 0xffffn)); return;
      case 4: this.mmu.write32(la, Number(v & M32)); return;
      default: this.mmu.write64(la, v & M64);
    }
  }

  /** @internal Read-modify-write memory (atomically under LOCK when the MMU can); returns the old value. */
  rmw(d: Insn, la: bigint, size: number, f: (old: bigint) => bigint): bigint {
    if (d.lock && this.atomic !== null) return this.atomic.rmw(la, size as 1 | 2 | 4 | 8, f);
    const old = this.rd(la, size);
    this.wr(la, size, f(old));
    return old;
  }

  /** @internal Read the r/m operand. */
  readRM(d: Insn, size: number): bigint {
    return d.mem ? this.rd(this.ea(d), size) : this.getR(size, size === 1 ? d.rmB : d.rm);
  }

  /** @internal Write the r/m operand. */
  writeRM(d: Insn, size: number, v: bigint): void {
    if (d.mem) this.wr(this.ea(d), size, v);
    else this.setR(size, size === 1 ? d.rmB : d.rm, v);
  }

  /** @internal The reg operand. */
  readReg(d: Insn, size: number): bigint {
    return this.getR(size, size === 1 ? d.regB : d.reg);
  }

  /** @internal */
  writeReg(d: Insn, size: number, v: bigint): void {
    this.setR(size, size === 1 ? d.regB : d.reg, v);
  }

  /** @internal Push `size` bytes. */
  push(v: bigint, size = 8): void {
    const sp = BigInt.asUintN(64, this.regs[4] - BigInt(size));
    this.wr(sp, size, v);
    this.regs[4] = sp;
  }

  /** @internal Pop `size` bytes. */
  pop(size = 8): bigint {
    const v = this.rd(this.regs[4], size);
    this.regs[4] += BigInt(size);
    return v;
  }

  // ---- ALU ----

  /** @internal The result of ALU op k (0 add .. 7 cmp) on size-truncated operands; records flags. */
  alu(k: number, size: number, dst: bigint, src: bigint): bigint {
    const m = MASK[size];
    let res: bigint;
    switch (k) {
      case 0: res = (dst + src) & m; this.lazy(FOP.ADD, size, res, src, dst); return res;
      case 1: res = dst | src; this.lazy(FOP.LOGIC, size, res, src, dst); return res;
      case 2: {
        const c = this.cf();
        res = (dst + src + BigInt(c)) & m;
        this.lazy(FOP.ADC, size, res, src, dst);
        this.faux = c;
        return res;
      }
      case 3: {
        const c = this.cf();
        res = (dst - src - BigInt(c)) & m;
        this.lazy(FOP.SBB, size, res, src, dst);
        this.faux = c;
        return res;
      }
      case 4: res = dst & src; this.lazy(FOP.LOGIC, size, res, src, dst); return res;
      case 6: res = dst ^ src; this.lazy(FOP.LOGIC, size, res, src, dst); return res;
      default: res = (dst - src) & m; this.lazy(FOP.SUB, size, res, src, dst); return res;
    }
  }

  /** ALU op k on the r/m operand (destination) and `src`. */
  private aluRM(d: Insn, k: number, size: number, src: bigint): void {
    if (!d.mem) {
      const r = size === 1 ? d.rmB : d.rm;
      const res = this.alu(k, size, this.getR(size, r), src);
      if (k !== 7) this.setR(size, r, res);
      return;
    }
    const a = this.ea(d);
    if (k === 7) { this.alu(7, size, this.rd(a, size), src); return; }
    if (d.lock) {
      const cin = BigInt(this.flags() & 1);
      const m = MASK[size];
      const old = this.rmw(d, a, size, (o) => aluPure(k, m, o, src, cin));
      this.alu(k, size, old, src);
      return;
    }
    const dst = this.rd(a, size);
    const fop = this.fop, fval = this.fval;
    const res = this.alu(k, size, dst, src);
    try {
      this.wr(a, size, res);
    } catch (e) {
      this.fop = fop; this.fval = fval;
      throw e;
    }
  }

  private incDec(d: Insn, size: number, dec: boolean): void {
    const m = MASK[size];
    let old: bigint;
    let res: bigint;
    if (!d.mem) {
      const r = size === 1 ? d.rmB : d.rm;
      old = this.getR(size, r);
      res = (dec ? old - 1n : old + 1n) & m;
      this.setR(size, r, res);
    } else if (d.lock) {
      old = this.rmw(d, this.ea(d), size, (o) => (dec ? o - 1n : o + 1n) & m);
      res = (dec ? old - 1n : old + 1n) & m;
    } else {
      const a = this.ea(d);
      old = this.rd(a, size);
      res = (dec ? old - 1n : old + 1n) & m;
      this.wr(a, size, res);
    }
    const cf = this.cf();
    this.lazy(dec ? FOP.DEC : FOP.INC, size, res, 1n, old);
    this.faux = cf;
  }

  private shiftOp(d: Insn, size: number, count: number, immediate = false): void {
    const k = d.reg & 7;
    const c = count & (size === 8 ? 63 : 31);
    if (c === 0) { this.zeroCount(d, size); return; }
    const a = d.mem ? this.ea(d) : 0n;
    const v = d.mem ? this.rd(a, size) : this.getR(size, size === 1 ? d.rmB : d.rm);
    const [res, f] = shiftCalc(k, size, v, c, this.flags(), immediate && !d.mem, this.undef);
    if (d.mem) this.wr(a, size, res);
    else this.setR(size, size === 1 ? d.rmB : d.rm, res);
    this.setFlags(f);
  }

  /**
   * A shift, rotate or double shift whose masked count is 0: flags and value unchanged, but a
   * 32-bit register destination is still written, so its upper half is cleared (as on hardware).
   */
  private zeroCount(d: Insn, size: number): void {
    const v = this.readRM(d, size);
    if (!d.mem && size === 4) this.setR(4, d.rm, v);
  }

  private group3(d: Insn, size: number): boolean {
    const k = d.reg & 7;
    const m = MASK[size];
    switch (k) {
      case 0: case 1: this.alu(4, size, this.readRM(d, size), d.imm); return true;
      case 2: {
        if (d.mem) this.rmw(d, this.ea(d), size, (o) => ~o & m);
        else { const r = size === 1 ? d.rmB : d.rm; this.setR(size, r, ~this.getR(size, r) & m); }
        return true;
      }
      case 3: {
        let old: bigint;
        if (d.mem) old = this.rmw(d, this.ea(d), size, (o) => -o & m);
        else { const r = size === 1 ? d.rmB : d.rm; old = this.getR(size, r); this.setR(size, r, -old & m); }
        this.lazy(FOP.SUB, size, -old & m, old, 0n);
        return true;
      }
      case 4: case 5: this.mul1(size, this.readRM(d, size), k === 5); return true;
      default: this.div1(size, this.readRM(d, size), k === 7); return true;
    }
  }

  private mul1(size: number, src: bigint, signed: boolean): void {
    const bits = BITS[size];
    const m = MASK[size];
    const a = this.getR(size, 0);
    let lo: bigint, hi: bigint, over: boolean;
    if (signed) {
      const p = BigInt.asIntN(Number(bits), a) * BigInt.asIntN(Number(bits), src);
      lo = p & m;
      hi = (p >> bits) & m;
      over = BigInt.asIntN(Number(bits), lo) !== p;
    } else {
      const p = a * src;
      lo = p & m;
      hi = p >> bits;
      over = hi !== 0n;
    }
    if (size === 1) this.setR(2, 0, (hi << 8n) | lo);
    else { this.setR(size, 0, lo); this.setR(size, 2, hi); }
    this.setFlags(mulFlags(over, lo, size, this.flags(), this.undef));
  }

  private div1(size: number, src: bigint, signed: boolean): void {
    if (src === 0n) throw new GuestException(0);
    const bits = BITS[size];
    const nb = Number(bits);
    const m = MASK[size];
    const dividend = size === 1 ? this.getR(2, 0) : (this.getR(size, 2) << bits) | this.getR(size, 0);
    let q: bigint, r: bigint;
    if (signed) {
      const n = BigInt.asIntN(nb * 2, dividend);
      const s = BigInt.asIntN(nb, src);
      q = n / s;
      r = n % s;
      if (q !== BigInt.asIntN(nb, q)) throw new GuestException(0);
      q &= m;
      r &= m;
    } else {
      q = dividend / src;
      r = dividend % src;
      if (q > m) throw new GuestException(0);
    }
    if (size === 1) this.setR(2, 0, (r << 8n) | q);
    else { this.setR(size, 0, q); this.setR(size, 2, r); }
    const u = this.undef.div;
    this.setFlags((this.flags() & u.keep) | u.set);
  }

  private imul2(size: number, a: bigint, b: bigint): bigint {
    const nb = Number(BITS[size]);
    const p = BigInt.asIntN(nb, a) * BigInt.asIntN(nb, b);
    const lo = p & MASK[size];
    const over = BigInt.asIntN(nb, lo) !== p;
    this.setFlags(mulFlags(over, lo, size, this.flags(), this.undef));
    return lo;
  }

  private group5(d: Insn): boolean {
    const k = d.reg & 7;
    const size = d.osz;
    switch (k) {
      case 0: case 1: this.incDec(d, size, k === 1); return true;
      case 2: { const t = this.readRM(d, 8); this.push(this.nextRip); this.nextRip = t; return true; }
      case 4: this.nextRip = this.readRM(d, 8); return true;
      case 6: {
        const sz = size === 2 ? 2 : 8;
        this.push(this.readRM(d, sz), sz);
        return true;
      }
      case 7: throw new GuestException(6);
      default: d.bad = 'far call/jmp'; return false;
    }
  }

  /** @internal An instruction with `ud` raises #UD; otherwise it is unsupported (returns false). */
  invalid(d: Insn): boolean {
    if (d.ud) throw new GuestException(6);
    return false;
  }

  private bitOp(d: Insn, k: number, size: number, bitSrc: bigint, isImm: boolean): void {
    const bits = BITS[size];
    let a = 0n;
    let bit: bigint;
    if (d.mem) {
      a = this.ea(d);
      if (isImm) bit = bitSrc & (bits - 1n);
      else {
        const off = BigInt.asIntN(Number(bits), bitSrc);
        const byteOff = (off >> 3n) & ~(BigInt(size) - 1n);
        a = BigInt.asUintN(d.asz === 8 ? 64 : 32, a + byteOff);
        bit = BigInt.asUintN(64, off) & (bits - 1n);
      }
    } else bit = bitSrc & (bits - 1n);
    const mask = 1n << bit;
    const f = (o: bigint): bigint => (k === 1 ? o | mask : k === 2 ? o & ~mask : o ^ mask);
    let old: bigint;
    if (k === 0) old = d.mem ? this.rd(a, size) : this.getR(size, d.rm);
    else if (d.mem) old = this.rmw(d, a, size, f);
    else { old = this.getR(size, d.rm); this.setR(size, d.rm, f(old)); }
    this.setFlags((this.flags() & ~F.CF) | ((old & mask) !== 0n ? F.CF : 0));
  }

  private bsfr(d: Insn, size: number, rev: boolean): void {
    const v = this.readRM(d, size);
    if (v === 0n) { this.setFlags(F.ZF | F.PF); return; }
    let n = 0;
    if (rev) n = v.toString(2).length - 1;
    else { let x = v; while ((x & 0xffffffffn) === 0n) { x >>= 32n; n += 32; } let y = Number(x & 0xffffffffn); while ((y & 1) === 0) { y >>>= 1; n++; } }
    this.writeReg(d, size, BigInt(n));
    this.setFlags(PARITY[n]); // Intel and AMD (EPYC here): PF of the index, the other flags clear
  }

  private xchgMem(d: Insn, size: number): void {
    const r = size === 1 ? d.regB : d.reg;
    const rv = this.getR(size, r);
    if (d.mem) {
      const a = this.ea(d);
      // XCHG with memory is always locked.
      const old = this.atomic !== null ? this.atomic.rmw(a, size as 1 | 2 | 4 | 8, () => rv) : this.rd(a, size);
      if (this.atomic === null) this.wr(a, size, rv);
      this.setR(size, r, old);
    } else {
      const m = size === 1 ? d.rmB : d.rm;
      const mv = this.getR(size, m);
      this.setR(size, m, rv);
      this.setR(size, r, mv);
    }
  }

  private xadd(d: Insn, size: number): void {
    const r = size === 1 ? d.regB : d.reg;
    const src = this.getR(size, r);
    const m = MASK[size];
    let old: bigint;
    if (d.mem) old = this.rmw(d, this.ea(d), size, (o) => (o + src) & m);
    else { const rm = size === 1 ? d.rmB : d.rm; old = this.getR(size, rm); this.setR(size, r, old); this.setR(size, rm, (old + src) & m); }
    if (d.mem) this.setR(size, r, old);
    this.alu(0, size, old, src);
  }

  private cmpxchg(d: Insn, size: number): void {
    const acc = this.getR(size, 0);
    const src = this.readReg(d, size);
    let old: bigint;
    if (d.mem) {
      // The destination is written either way (with its own value on failure), as on hardware.
      old = this.rmw(d, this.ea(d), size, (o) => (o === acc ? src : o));
    } else {
      const rm = size === 1 ? d.rmB : d.rm;
      old = this.getR(size, rm);
      if (old === acc) this.setR(size, rm, src);
    }
    this.alu(7, size, acc, old);
    if (old !== acc) this.setR(size, 0, old);
  }

  /** Execute one instruction; false if it is unsupported (nothing changed). */
  private exec(d: Insn): boolean {
    const op = d.op;
    const size = d.osz;
    if (op < 0x40) {
      const k = op >> 3;
      switch (op & 7) {
        case 0: case 1: this.aluRM(d, k, size, this.readReg(d, size)); return true;
        case 2: case 3: {
          const res = this.alu(k, size, this.readReg(d, size), this.readRM(d, size));
          if (k !== 7) this.writeReg(d, size, res);
          return true;
        }
        case 4: case 5: {
          const res = this.alu(k, size, this.getR(size, 0), d.imm);
          if (k !== 7) this.setR(size, 0, res);
          return true;
        }
      }
      return this.invalid(d);
    }
    switch (op) {
      case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57:
        if (size === 2) this.push(this.getR(2, d.rm), 2);
        else this.push(this.regs[d.rm]);
        return true;
      case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f:
        if (size === 2) { const v = this.pop(2); this.setR(2, d.rm, v); }
        else { const v = this.pop(); this.regs[d.rm] = v; }
        return true;
      case 0x63: {
        const v = this.readRM(d, 4);
        this.writeReg(d, size, size === 8 ? BigInt.asUintN(64, BigInt.asIntN(32, v)) : v & MASK[size]);
        return true;
      }
      case 0x68: case 0x6a:
        if (size === 2) this.push(d.imm & 0xffffn, 2);
        else this.push(d.imm);
        return true;
      case 0x69: case 0x6b:
        this.writeReg(d, size, this.imul2(size, this.readRM(d, size), d.imm));
        return true;
      case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
      case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f:
        if (this.cond(op & 15)) this.nextRip += d.imm;
        return true;
      case 0x80: case 0x81: case 0x83:
        this.aluRM(d, d.reg & 7, size, d.imm);
        return true;
      case 0x84: case 0x85:
        this.alu(4, size, this.readRM(d, size), this.readReg(d, size));
        return true;
      case 0x86: case 0x87: this.xchgMem(d, size); return true;
      case 0x88: case 0x89: this.writeRM(d, size, this.readReg(d, size)); return true;
      case 0x8a: case 0x8b: this.writeReg(d, size, this.readRM(d, size)); return true;
      case 0x8c: return sys.movFromSreg(this, d);
      case 0x8d:
        if (!d.mem) throw new GuestException(6);
        this.writeReg(d, size, this.eaRaw(d) & MASK[size]);
        return true;
      case 0x8e: return sys.movToSreg(this, d);
      case 0x8f: {
        if ((d.reg & 7) !== 0) { d.bad = 'XOP'; return false; }
        const sz = size === 2 ? 2 : 8;
        const old = this.regs[4];
        const v = this.rd(old, sz);
        this.regs[4] = old + BigInt(sz);
        try { this.writeRM(d, sz, v); } catch (e) { this.regs[4] = old; throw e; }
        return true;
      }
      case 0x90:
        if (d.rm === 0 || d.rep === 0xf3) return true; // NOP / PAUSE
        this.xchgAcc(d, size); return true;
      case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97:
        this.xchgAcc(d, size); return true;
      case 0x98:
        if (size === 8) this.regs[0] = BigInt.asUintN(64, BigInt.asIntN(32, this.regs[0]));
        else if (size === 4) this.setR(4, 0, BigInt.asUintN(32, BigInt.asIntN(16, this.regs[0])));
        else this.setR(2, 0, BigInt.asUintN(16, BigInt.asIntN(8, this.regs[0])));
        return true;
      case 0x99: {
        const neg = (this.getR(size, 0) & SIGN[size]) !== 0n;
        this.setR(size, 2, neg ? MASK[size] : 0n);
        return true;
      }
      case 0x9b: return true; // FWAIT
      case 0x9c: return sys.pushf(this, d);
      case 0x9d: return sys.popf(this, d);
      case 0x9e: this.setFlags((this.flags() & ~0xd5) | (Number(this.getR(1, 16)) & 0xd5)); return true;
      case 0x9f: this.setR(1, 16, BigInt((this.flags() & 0xd5) | 2)); return true;
      case 0xa0: case 0xa1: { let a = d.imm; if (d.seg >= 0) a = BigInt.asUintN(64, a + (d.seg === 3 ? this.sregs.fs.base : this.sregs.gs.base)); this.setR(size, 0, this.rd(a, size)); return true; }
      case 0xa2: case 0xa3: { let a = d.imm; if (d.seg >= 0) a = BigInt.asUintN(64, a + (d.seg === 3 ? this.sregs.fs.base : this.sregs.gs.base)); this.wr(a, size, this.getR(size, 0)); return true; }
      case 0xa4: case 0xa5: case 0xa6: case 0xa7: case 0xaa: case 0xab: case 0xac: case 0xad: case 0xae: case 0xaf:
      case 0x6c: case 0x6d: case 0x6e: case 0x6f:
        execString(this, d); return true;
      case 0xa8: case 0xa9: this.alu(4, size, this.getR(size, 0), d.imm); return true;
      case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
        this.setR(1, d.rmB, d.imm); return true;
      case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
        this.setR(size, d.rm, d.imm); return true;
      case 0xc0: case 0xc1: this.shiftOp(d, size, d.imm2, true); return true;
      case 0xc2: { const t = this.pop(); this.regs[4] += d.imm; this.nextRip = t; return true; }
      case 0xc3: this.nextRip = this.pop(); return true;
      case 0xc6: case 0xc7:
        if ((d.reg & 7) !== 0) { d.ud = true; return this.invalid(d); }
        this.writeRM(d, size, d.imm); return true;
      case 0xc8: this.enter(d); return true;
      case 0xc9: {
        const bp = this.regs[5];
        const v = this.rd(bp, size === 2 ? 2 : 8);
        if (size === 2) { this.setR(2, 4, bp & 0xffffn); this.setR(2, 5, v); this.regs[4] = bp + 2n; }
        else { this.regs[5] = v; this.regs[4] = bp + 8n; }
        return true;
      }
      case 0xcc: return sys.softInt(this, 3);
      case 0xcd: return sys.softInt(this, d.imm2);
      case 0xcf: return sys.iret(this, d);
      case 0xd0: case 0xd1: this.shiftOp(d, size, 1); return true;
      case 0xd2: case 0xd3: this.shiftOp(d, size, Number(this.regs[1] & 0xffn)); return true;
      case 0xe0: case 0xe1: case 0xe2: case 0xe3: return this.loop(d);
      case 0xe4: case 0xe5: case 0xe6: case 0xe7: case 0xec: case 0xed: case 0xee: case 0xef:
        return sys.inOut(this, d);
      case 0xe8: this.push(this.nextRip); this.nextRip += d.imm; return true;
      case 0xe9: case 0xeb: this.nextRip += d.imm; return true;
      case 0xf4: this.stop = { kind: 'hlt' }; return true;
      case 0xf5: this.setFlags(this.flags() ^ F.CF); return true;
      case 0xf6: case 0xf7: return this.group3(d, size);
      case 0xf8: this.setFlags(this.flags() & ~F.CF); return true;
      case 0xf9: this.setFlags(this.flags() | F.CF); return true;
      case 0xfa: this.rfl &= ~F.IF; return true;
      case 0xfb: this.rfl |= F.IF; return true;
      case 0xfc: this.rfl &= ~F.DF; return true;
      case 0xfd: this.rfl |= F.DF; return true;
      case 0xfe:
        if ((d.reg & 7) > 1) { d.ud = true; return this.invalid(d); }
        this.incDec(d, 1, (d.reg & 7) === 1); return true;
      case 0xff: return this.group5(d);
    }
    if (op >= 0x100) return this.exec0f(d);
    if (op >= 0xd8 && op <= 0xdf) d.bad = 'x87 instruction';
    return this.invalid(d);
  }

  private xchgAcc(d: Insn, size: number): void {
    const a = this.getR(size, 0);
    this.setR(size, 0, this.getR(size, d.rm));
    this.setR(size, d.rm, a);
  }

  private loop(d: Insn): boolean {
    const op = d.op;
    const asz = d.asz;
    let c = asz === 8 ? this.regs[1] : this.regs[1] & M32;
    let take: boolean;
    if (op === 0xe3) take = c === 0n;
    else {
      c = (c - 1n) & MASK[asz];
      this.setR(asz, 1, c);
      take = c !== 0n;
      if (op === 0xe0) take &&= (this.flags() & F.ZF) === 0;
      else if (op === 0xe1) take &&= (this.flags() & F.ZF) !== 0;
    }
    if (take) this.nextRip += d.imm;
    return true;
  }

  private enter(d: Insn): void {
    const frameSize = d.imm;
    const level = d.imm2 & 31;
    const sz = d.osz === 2 ? 2 : 8;
    const szB = BigInt(sz);
    const oldSp = this.regs[4];
    const oldBp = this.regs[5];
    let sp = oldSp;
    const wr = (v: bigint): void => { sp = BigInt.asUintN(64, sp - szB); this.wr(sp, sz, v); };
    wr(this.getR(sz, 5));
    const frame = sp;
    let bp = oldBp;
    if (level > 0) {
      for (let i = 1; i < level; i++) { bp = BigInt.asUintN(64, bp - szB); wr(this.rd(bp, sz)); }
      wr(frame & MASK[sz]);
    }
    this.regs[4] = BigInt.asUintN(64, sp - frameSize);
    if (sz === 2) this.setR(2, 5, frame & 0xffffn);
    else this.regs[5] = frame;
  }

  private exec0f(d: Insn): boolean {
    const op = d.op & 0xff;
    const size = d.osz;
    if (op >= 0x40 && op <= 0x4f) {
      const v = this.readRM(d, size);
      if (this.cond(op & 15)) this.writeReg(d, size, v);
      else if (size === 4) this.writeReg(d, 4, this.readReg(d, 4));
      return true;
    }
    if (op >= 0x80 && op <= 0x8f) { if (this.cond(op & 15)) this.nextRip += d.imm; return true; }
    if (op >= 0x90 && op <= 0x9f) { this.writeRM(d, 1, this.cond(op & 15) ? 1n : 0n); return true; }
    if (op >= 0xc8 && op <= 0xcf) {
      if (size === 2) { this.setR(this.undef.bswap16Write, d.rm, 0n); return true; } // undefined: zeroed (UndefinedResults.bswap16Write)
      const v = this.getR(size, d.rm);
      this.setR(size, d.rm, bswap(v, size));
      return true;
    }
    switch (op) {
      case 0xff: throw new GuestException(6);
      case 0x0d: case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f:
        return true; // hint NOPs / prefetch
      case 0xa3: this.bitOp(d, 0, size, this.readReg(d, size), false); return true;
      case 0xab: this.bitOp(d, 1, size, this.readReg(d, size), false); return true;
      case 0xb3: this.bitOp(d, 2, size, this.readReg(d, size), false); return true;
      case 0xbb: this.bitOp(d, 3, size, this.readReg(d, size), false); return true;
      case 0xba:
        if ((d.reg & 7) < 4) { d.ud = true; return this.invalid(d); }
        this.bitOp(d, (d.reg & 7) - 4, size, d.imm, true); return true;
      case 0xa4: case 0xa5: case 0xac: case 0xad: this.shld(d, size, op === 0xa4 || op === 0xac ? d.imm2 : Number(this.regs[1] & 0xffn), op >= 0xac); return true;
      case 0xaf: this.writeReg(d, size, this.imul2(size, this.readReg(d, size), this.readRM(d, size))); return true;
      case 0xb0: case 0xb1: this.cmpxchg(d, size); return true;
      case 0xb6: this.writeReg(d, size, this.readRM(d, 1)); return true;
      case 0xb7: this.writeReg(d, size, this.readRM(d, 2)); return true;
      case 0xbe: this.writeReg(d, size, BigInt.asUintN(size * 8, BigInt.asIntN(8, this.readRM(d, 1)))); return true;
      case 0xbf: this.writeReg(d, size, BigInt.asUintN(size * 8, BigInt.asIntN(16, this.readRM(d, 2)))); return true;
      case 0xbc: case 0xbd:
        if (d.rep === 0xf3) { d.bad = 'tzcnt/lzcnt'; return false; }
        this.bsfr(d, size, op === 0xbd); return true;
      case 0xc0: case 0xc1: this.xadd(d, size); return true;
      case 0xc7:
        if ((d.reg & 7) === 1 && d.mem) { this.cmpxchg16(d); return true; }
        break;
    }
    return sys.exec0fSystem(this, d);
  }

  private shld(d: Insn, size: number, count: number, right: boolean): void {
    const c = count & (size === 8 ? 63 : 31);
    if (c === 0) { this.zeroCount(d, size); return; }
    const a = d.mem ? this.ea(d) : 0n;
    const dst = d.mem ? this.rd(a, size) : this.getR(size, d.rm);
    const [res, f] = shldCalc(size, dst, this.readReg(d, size), c, right, this.undef);
    if (d.mem) this.wr(a, size, res);
    else this.setR(size, d.rm, res);
    this.setFlags(f);
  }

  private cmpxchg16(d: Insn): void {
    const a = this.ea(d);
    const size = d.osz === 8 ? 8 : 4;
    if (size === 8 && (a & 15n) !== 0n) throw new GuestException(13, 0);
    const sb = BigInt(size);
    const lo = this.rd(a, size), hi = this.rd(BigInt.asUintN(64, a + sb), size);
    const eq = lo === this.getR(size, 0) && hi === this.getR(size, 2);
    if (eq) { this.wr(a, size, this.getR(size, 3)); this.wr(BigInt.asUintN(64, a + sb), size, this.getR(size, 1)); }
    else { this.wr(a, size, lo); this.wr(BigInt.asUintN(64, a + sb), size, hi); this.setR(size, 0, lo); this.setR(size, 2, hi); }
    this.setFlags((this.flags() & ~F.ZF) | (eq ? F.ZF : 0));
  }
}

/** The result of ALU op k without flags. */
function aluPure(k: number, m: bigint, dst: bigint, src: bigint, cin: bigint): bigint {
  switch (k) {
    case 0: return (dst + src) & m;
    case 1: return dst | src;
    case 2: return (dst + src + cin) & m;
    case 3: return (dst - src - cin) & m;
    case 4: return dst & src;
    case 6: return dst ^ src;
    default: return (dst - src) & m;
  }
}

function bswap(v: bigint, size: number): bigint {
  let r = 0n;
  for (let i = 0; i < size; i++) { r = (r << 8n) | (v & 0xffn); v >>= 8n; }
  return r;
}

/**
 * Status flags of MUL/IMUL: CF = OF = `over` (the product did not fit); SF ZF AF PF as the
 * vendor sets them (`u.mul`: kept from the flags before, `f`, or from the low half `lo`).
 */
function mulFlags(over: boolean, lo: bigint, size: number, f: number, u: Readonly<UndefinedResults>): number {
  return (over ? F.CF | F.OF : 0) | (f & u.mul.keep) | (szp(lo, size) & u.mul.fromLow);
}

function ofOf(x: number): number {
  return x !== 0 ? F.OF : 0;
}

/**
 * OF of group-2 operation k (rol ror rcl rcr shl shr sal sar) as a count of 1 sets it,
 * computed on the original operand `v` (`cin`: CF before): Intel's answer for any count.
 */
function ofFromOperand(k: number, v: bigint, size: number, cin: number): number {
  const sign = SIGN[size];
  const b1 = (v & sign) !== 0n ? 1 : 0;
  switch (k) {
    case 1: return ofOf(b1 ^ Number(v & 1n));
    case 3: return ofOf(b1 ^ cin);
    case 5: return ofOf(b1);
    case 7: return 0;
    default: return ofOf(b1 ^ ((v << 1n) & sign ? 1 : 0));
  }
}

/**
 * OF by the count-1 formula applied to a result (AMD's answer for any count): MSB XOR CF
 * after a `left` shift or rotate, MSB XOR the bit below it after a right one.
 */
function ofFromResult(left: boolean, res: bigint, cf: number, size: number): number {
  const sign = SIGN[size];
  const msb = (res & sign) !== 0n ? 1 : 0;
  return ofOf(left ? msb ^ cf : msb ^ ((res << 1n) & sign ? 1 : 0));
}

/**
 * The 48-bit window a 16-bit SHLD/SHRD (`right`) shifts: the destination and the source,
 * continued by a third word for counts above 16 (`fill`, see {@link UndefinedResults.shld16Fill}).
 */
function shld16Window(dst: bigint, src: bigint, right: boolean, fill: bigint): bigint {
  return right ? (fill << 32n) | (src << 16n) | dst : (dst << 32n) | (src << 16n) | fill;
}

/**
 * SHLD/SHRD (`right`) of a `size`-byte destination by a non-zero masked count c:
 * [result, status flags]. What the architecture leaves undefined (16-bit counts above 16,
 * OF for counts above 1, AF) follows the vendor's table `u`.
 */
export function shldCalc(size: number, dst: bigint, src: bigint, c: number, right: boolean, u: Readonly<UndefinedResults>): [bigint, number] {
  const bits = BITS[size];
  const m = MASK[size];
  const cb = BigInt(c);
  let res: bigint, cf: bigint;
  if (size === 2) {
    const wide = shld16Window(dst, src, right, u.shld16Fill === 'dst' ? dst : src);
    if (!right) { res = ((wide << cb) >> 32n) & m; cf = (wide >> (48n - cb)) & 1n; }
    else { res = (wide >> cb) & m; cf = (wide >> (cb - 1n)) & 1n; }
    if (c > 16 && u.shld16Fill === 'src') cf = 0n; // AMD EPYC here: CF clear past the width
  } else if (!right) { res = ((dst << cb) | (src >> (bits - cb))) & m; cf = (dst >> (bits - cb)) & 1n; }
  else { res = ((dst >> cb) | (src << (bits - cb))) & m; cf = (dst >> (cb - 1n)) & 1n; }
  let of: number;
  if (u.shiftOf === 'operand') {
    // the sign change a count of 1 would make
    const top = (dst >> (bits - 1n)) & 1n;
    const next = right ? src & 1n : (dst >> (bits - 2n)) & 1n;
    of = ofOf(Number(top ^ next));
  } else of = ofFromResult(!right, right ? res : (dst << cb) & m, Number(cf), size); // SHLD: the destination's bits alone
  return [res, szp(res, size) | (cf !== 0n ? F.CF : 0) | of | u.shiftAf];
}

/**
 * Shift/rotate group 2 (k = ModRM.reg: rol ror rcl rcr shl shr sal sar) of a `size`-byte value
 * by a non-zero masked count: [result, status flags]. `immediate`: the count is an imm8 and
 * the destination a register. Undefined flags follow the vendor's table `u`: OF for counts
 * above 1 ({@link UndefinedResults.shiftOf}, {@link UndefinedResults.rotateImmKeepsOf}), AF
 * of the shifts ({@link UndefinedResults.shiftAf}), RCL/RCR by a whole turn
 * ({@link UndefinedResults.fullCarryRotateKeepsFlags}).
 */
export function shiftCalc(k: number, size: number, v: bigint, c: number, f: number, immediate: boolean, u: Readonly<UndefinedResults>): [bigint, number] {
  const bits = BITS[size];
  const nb = Number(bits);
  const m = MASK[size];
  const cb = BigInt(c);
  let res: bigint, cf: number;
  switch (k) {
    case 0: case 1: {
      const r = BigInt(c % nb);
      res = (k === 0 ? (v << r) | (v >> (bits - r)) : (v >> r) | (v << (bits - r))) & m;
      cf = k === 0 ? Number(res & 1n) : (res & SIGN[size]) !== 0n ? 1 : 0;
      break;
    }
    case 2: case 3: {
      const r = size < 4 ? c % (nb + 1) : c;
      if (r === 0 && u.fullCarryRotateKeepsFlags) return [v, f];
      // a rotate of the (bits + 1)-bit CF:value by r (r = 0: the value and CF as they were)
      const wide = (BigInt(f & 1) << bits) | v;
      const w = bits + 1n;
      const rb = BigInt(r);
      const rot = (k === 2 ? (wide << rb) | (wide >> (w - rb)) : (wide >> rb) | (wide << (w - rb))) & ((1n << w) - 1n);
      res = rot & m;
      cf = Number(rot >> bits);
      break;
    }
    case 4: case 6:
      res = (v << cb) & m;
      cf = c <= nb ? Number((v >> (bits - cb)) & 1n) : 0;
      break;
    case 5:
      res = v >> cb;
      cf = Number((v >> (cb - 1n)) & 1n);
      break;
    default: {
      const sv = BigInt.asIntN(nb, v);
      res = (sv >> cb) & m;
      cf = Number((sv >> (cb - 1n)) & 1n);
    }
  }
  let of: number;
  if (k < 2 && immediate && c > 1 && u.rotateImmKeepsOf) of = f & F.OF;
  else of = u.shiftOf === 'operand' ? ofFromOperand(k, v, size, f & 1) : ofFromResult((k & 1) === 0, res, cf, size);
  if (k < 4) return [res, (f & ~(F.CF | F.OF)) | cf | of];
  return [res, szp(res, size) | cf | of | u.shiftAf];
}

/** Shared fixtures for the emulator tests: register state, page-table builders, a host. */
import { FPU, SIZEOF, type KvmRegs, type KvmSegment, type KvmSregs } from '../../../src/kvm/structs.js';
import type { GuestMemoryAccess } from '../../../src/memory/access.js';
import { bufferMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import type { CpuState, EmulatorHost } from '../../../src/emulate/host.js';

export const P = 1n;
export const W = 2n;
export const U = 4n;
export const A = 1n << 5n;
export const D = 1n << 6n;
export const PS = 1n << 7n;
export const NX = 1n << 63n;

export const CR0_PE = 1n;
export const CR0_MP = 2n;
export const CR0_EM = 4n;
export const CR0_TS = 8n;
export const CR0_NE = 0x20n;
export const CR0_WP = 1n << 16n;
export const CR0_AM = 1n << 18n;
export const CR0_PG = 1n << 31n;
export const CR4_PSE = 1n << 4n;
export const CR4_PAE = 1n << 5n;
export const CR4_OSFXSR = 1n << 9n;
export const CR4_LA57 = 1n << 12n;
export const CR4_SMEP = 1n << 20n;
export const CR4_SMAP = 1n << 21n;
export const EFER_LME = 1n << 8n;
export const EFER_LMA = 1n << 10n;
export const EFER_NXE = 1n << 11n;
export const RF_CF = 1n;
export const RF_PF = 4n;
export const RF_AF = 0x10n;
export const RF_ZF = 0x40n;
export const RF_SF = 0x80n;
export const RF_TF = 0x100n;
export const RF_OF = 0x800n;
export const RF_RF = 1n << 16n;
export const RF_AC = 1n << 18n;

export function seg(over: Partial<KvmSegment> = {}): KvmSegment {
  return { base: 0n, limit: 0xffffffff, selector: 0x18, type: 3, present: 1, dpl: 0, db: 1, s: 1, l: 0, g: 1, avl: 0, unusable: 0, ...over };
}

export function regs(over: Partial<KvmRegs> = {}): KvmRegs {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n,
    rip: 0x1000n, rflags: 2n, ...over,
  };
}

/** 64-bit long mode with paging, SSE enabled, CPL `cpl`. */
export function longSregs(cr3: bigint, cpl = 0, over: Partial<KvmSregs> = {}): KvmSregs {
  return {
    cs: seg({ type: 11, l: 1, db: 0, dpl: cpl, selector: 0x10 }),
    ds: seg({ dpl: cpl }), es: seg({ dpl: cpl }), fs: seg({ dpl: cpl }), gs: seg({ dpl: cpl }), ss: seg({ dpl: cpl }),
    tr: seg({ type: 11, s: 0 }), ldt: seg({ type: 2, s: 0, unusable: 1 }),
    gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
    cr0: CR0_PE | CR0_MP | CR0_NE | CR0_WP | CR0_PG, cr2: 0n, cr3, cr4: CR4_PAE | CR4_OSFXSR, cr8: 0n,
    efer: EFER_LME | EFER_LMA | EFER_NXE, apicBase: 0xfee00900n, interruptBitmap: [0n, 0n, 0n, 0n],
    ...over,
  };
}

/** 32-bit protected mode, flat segments, paging off. */
export function prot32Sregs(over: Partial<KvmSregs> = {}): KvmSregs {
  return {
    ...longSregs(0n),
    cs: seg({ type: 11, db: 1, selector: 0x10 }),
    cr0: CR0_PE | CR0_MP | CR0_NE, cr4: CR4_OSFXSR, efer: 0n,
    ...over,
  };
}

/** Real mode, paging off. */
export function realSregs(over: Partial<KvmSregs> = {}): KvmSregs {
  const rs = (base: bigint) => seg({ base, limit: 0xffff, db: 0, g: 0, selector: Number(base >> 4n) });
  return {
    ...longSregs(0n),
    cs: { ...rs(0n), type: 11 }, ds: rs(0n), es: rs(0n), fs: rs(0n), gs: rs(0n), ss: rs(0n),
    cr0: 0n, cr4: CR4_OSFXSR, efer: 0n,
    ...over,
  };
}

/** A bump allocator of zeroed 4 KiB pages plus helpers to build x86-64 page tables. */
export class Tables {
  next: number;
  readonly root: number;
  constructor(readonly mem: GuestMemoryAccess, start = 0x100000, readonly levels: 4 | 5 = 4) {
    this.next = start;
    this.root = this.alloc();
  }
  alloc(): number {
    const a = this.next;
    this.next += 0x1000;
    this.mem.fill(a, 0x1000, 0);
    return a;
  }
  get cr3(): bigint {
    return BigInt(this.root);
  }
  /**
   * Map `linear` → `phys`. `pageSize` 4K, 2M or 1G. `leafFlags` go on the leaf;
   * `tableFlags` on every non-leaf entry (default P|W|U).
   */
  map(linear: bigint, phys: bigint, leafFlags: bigint, pageSize: '4k' | '2m' | '1g' = '4k', tableFlags = P | W | U): void {
    const leafLevel = pageSize === '4k' ? 1 : pageSize === '2m' ? 2 : 3;
    let table = this.root;
    for (let level = this.levels; level > leafLevel; level--) {
      const idx = Number((linear >> BigInt(12 + 9 * (level - 1))) & 511n);
      const ea = table + idx * 8;
      let e = this.mem.readU64(ea);
      if ((e & P) === 0n) {
        e = BigInt(this.alloc()) | tableFlags;
        this.mem.writeU64(ea, e);
      }
      table = Number(e & 0xffffffffff000n);
    }
    const idx = Number((linear >> BigInt(12 + 9 * (leafLevel - 1))) & 511n);
    this.mem.writeU64(table + idx * 8, phys | leafFlags | (leafLevel > 1 ? PS : 0n));
  }
  /** The address of the entry at `level` (1 = PTE) for `linear`, following present entries. */
  entry(linear: bigint, level: number): number {
    let table = this.root;
    for (let l = this.levels; l > level; l--) {
      const e = this.mem.readU64(table + Number((linear >> BigInt(12 + 9 * (l - 1))) & 511n) * 8);
      table = Number(e & 0xffffffffff000n);
    }
    return table + Number((linear >> BigInt(12 + 9 * (level - 1))) & 511n) * 8;
  }
}

/** A host over `mem` with a zeroed FPU (FCW 0x37f, MXCSR 0x1f80); counts get/set calls. */
export class TestHost implements EmulatorHost {
  fpu = new DataView(new ArrayBuffer(SIZEOF.kvm_fpu));
  gets = 0;
  sets = 0;
  constructor(readonly memory: GuestMemory) {
    this.fpu.setUint16(FPU.fcw, 0x37f, true);
    this.fpu.setUint32(FPU.mxcsr, 0x1f80, true);
  }
  getFpu(): DataView {
    this.gets++;
    return new DataView(this.fpu.buffer.slice(0));
  }
  setFpu(v: DataView): void {
    this.sets++;
    this.fpu = new DataView(new Uint8Array(v.buffer, v.byteOffset, SIZEOF.kvm_fpu).slice().buffer);
  }
  xmm(i: number): bigint {
    return this.fpu.getBigUint64(FPU.xmm + 16 * i, true) | (this.fpu.getBigUint64(FPU.xmm + 16 * i + 8, true) << 64n);
  }
  setXmm(i: number, v: bigint): void {
    this.fpu.setBigUint64(FPU.xmm + 16 * i, BigInt.asUintN(64, v), true);
    this.fpu.setBigUint64(FPU.xmm + 16 * i + 8, BigInt.asUintN(64, v >> 64n), true);
  }
}

/** Data area used by the long-mode fixture: linear DATA → physical DATA_PHYS (identity of 16 pages). */
export const DATA = 0x7000_0000n;
export const DATA_PHYS = 0x200000;

/**
 * A 64-bit long-mode machine: 4 MiB of RAM, 4-level tables at 0x100000, code page at
 * linear 0x1000 → phys 0x1000 (supervisor), and 16 writable supervisor data pages at DATA.
 */
export function longMachine(opts: { cpl?: number; levels?: 4 | 5; user?: boolean } = {}): {
  mem: GuestMemory;
  tables: Tables;
  host: TestHost;
  cpu: CpuState;
} {
  const mem = bufferMemory(0x400000);
  const tables = new Tables(mem, 0x100000, opts.levels ?? 4);
  const userBit = opts.user ? U : 0n;
  tables.map(0x1000n, 0x1000n, P | W | userBit);
  for (let i = 0n; i < 16n; i++) tables.map(DATA + i * 0x1000n, BigInt(DATA_PHYS) + i * 0x1000n, P | W | userBit);
  const sregs = longSregs(tables.cr3, opts.cpl ?? 0);
  if (opts.levels === 5) sregs.cr4 |= CR4_LA57;
  return { mem, tables, host: new TestHost(mem), cpu: { regs: regs(), sregs } };
}

/** Bytes from hex, spaces allowed. */
export function hx(s: string): Uint8Array {
  const t = s.replace(/\s+/g, '');
  const out = new Uint8Array(t.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(t.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** A small deterministic PRNG (xorshift64*) producing 64-bit bigints. */
export function rng(seed = 0x9e3779b97f4a7c15n): () => bigint {
  let s = seed;
  return () => {
    s ^= s >> 12n;
    s ^= BigInt.asUintN(64, s << 25n);
    s ^= s >> 27n;
    return BigInt.asUintN(64, s * 0x2545f4914f6cdd1dn);
  };
}

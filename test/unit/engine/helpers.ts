/**
 * Test helpers for the engine's unit tests: a flat, identity-mapped fake {@link EngineMmu}
 * over a Uint8Array (linear = physical; addresses past the end raise #PF), a recording
 * {@link EngineIo}, an assembler that shells out to GNU `as`/`objcopy` (Intel syntax), and a
 * machine builder that loads code at {@link CODE} in 64-bit long mode with a GDT and IDT.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cpl0Engine } from '../../../src/engine/cpu.js';
import type { EngineMmuAtomic } from '../../../src/engine/atomic.js';
import { GuestException, type EngineIo, type EngineMmu, type EngineState, type MmuControl } from '../../../src/engine/types.js';
import type { KvmSegment } from '../../../src/kvm/structs.js';

/** Where code is loaded, the initial RSP, the GDT and the IDT, and data scratch space. */
export const CODE = 0x10000;
export const STACK = 0x80000;
export const GDT = 0x1000;
export const IDT = 0x2000;
export const TSS = 0x3000;
export const DATA = 0x40000;
export const MEM_SIZE = 0x100000;

/** A flat identity-mapped MMU over `mem` (linear = physical), with an atomic RMW. */
export class FlatMmu implements EngineMmu, EngineMmuAtomic {
  readonly view: DataView;
  control: MmuControl | null = null;
  invalidated: bigint[] = [];
  flushes = 0;
  onCodeWrite?: (gpaPage: number) => void;
  private readonly watched = new Set<number>();
  constructor(readonly mem: Uint8Array) {
    this.view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  }
  setControl(c: MmuControl): void { this.control = { ...c }; }
  invalidatePage(la: bigint): void { this.invalidated.push(la); }
  flushAll(): void { this.flushes++; }
  private at(la: bigint, n: number, write: boolean, fetch = false): number {
    if (la + BigInt(n) > BigInt(this.mem.length)) {
      throw new GuestException(14, (write ? 2 : 0) | (fetch ? 16 : 0), la < BigInt(this.mem.length) ? BigInt(this.mem.length) : la);
    }
    const a = Number(la);
    if (write && this.onCodeWrite) {
      const p0 = Math.floor(a / 4096), p1 = Math.floor((a + n - 1) / 4096);
      if (this.watched.has(p0)) this.onCodeWrite(p0);
      if (p1 !== p0 && this.watched.has(p1)) this.onCodeWrite(p1);
    }
    return a;
  }
  read8(la: bigint, kind?: number): number { return this.mem[this.at(la, 1, false, kind === 2)]; }
  read16(la: bigint): number { return this.view.getUint16(this.at(la, 2, false), true); }
  read32(la: bigint): number { return this.view.getUint32(this.at(la, 4, false), true); }
  read64(la: bigint): bigint { return this.view.getBigUint64(this.at(la, 8, false), true); }
  write8(la: bigint, v: number): void { this.mem[this.at(la, 1, true)] = v; }
  write16(la: bigint, v: number): void { this.view.setUint16(this.at(la, 2, true), v, true); }
  write32(la: bigint, v: number): void { this.view.setUint32(this.at(la, 4, true), v, true); }
  write64(la: bigint, v: bigint): void { this.view.setBigUint64(this.at(la, 8, true), v, true); }
  translateFetch(la: bigint): number { this.at(la, 1, false, true); return Number(la) & ~0xfff; }
  watchCode(gpaPage: number): void { this.watched.add(gpaPage); }
  rmwCalls = 0;
  rmw(la: bigint, size: 1 | 2 | 4 | 8, update: (old: bigint) => bigint): bigint {
    this.rmwCalls++;
    const rd = size === 1 ? () => BigInt(this.read8(la)) : size === 2 ? () => BigInt(this.read16(la)) : size === 4 ? () => BigInt(this.read32(la)) : () => this.read64(la);
    const old = rd();
    const v = update(old);
    if (size === 1) this.write8(la, Number(v)); else if (size === 2) this.write16(la, Number(v)); else if (size === 4) this.write32(la, Number(v)); else this.write64(la, v);
    return old;
  }
}

/** An EngineIo that records writes and answers reads from a map (0xffffffff otherwise). */
export class RecordingIo implements EngineIo {
  writes: [number, number, number][] = [];
  reads: [number, number][] = [];
  constructor(readonly ports: Map<number, number> = new Map()) {}
  pioRead(port: number, size: 1 | 2 | 4): number { this.reads.push([port, size]); return this.ports.get(port) ?? (size === 4 ? 0xffffffff : (1 << (size * 8)) - 1); }
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void { this.writes.push([port, size, value]); }
  mmioRead(): bigint { return 0n; }
  mmioWrite(): void {}
}

const asmCache = new Map<string, Uint8Array>();

/** Assemble Intel-syntax 64-bit code (GNU as) into raw bytes. */
export function asm(src: string): Uint8Array {
  const hit = asmCache.get(src);
  if (hit) return hit;
  const dir = mkdtempSync(join(tmpdir(), 'engine-asm-'));
  try {
    writeFileSync(join(dir, 'a.s'), `.intel_syntax noprefix\n.code64\n${src}\n`);
    execFileSync('as', ['--64', '-o', join(dir, 'a.o'), join(dir, 'a.s')], { stdio: 'pipe' });
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', join(dir, 'a.o'), join(dir, 'a.bin')], { stdio: 'pipe' });
    const out = new Uint8Array(readFileSync(join(dir, 'a.bin')));
    asmCache.set(src, out);
    return out;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function seg(selector: number, code: boolean): KvmSegment {
  return { base: 0n, limit: 0xffffffff, selector, type: code ? 0xb : 0x3, present: 1, dpl: 0, db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0 };
}

/** GDT descriptors: 0x08 kernel code64, 0x10 kernel data, 0x18 user code32, 0x20 user data, 0x28 user code64, 0x30 data with base 0x12345. */
export const GDT_ENTRIES = [0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn, 0x00cffb000000ffffn, 0x00cff3000000ffffn, 0x00affb000000ffffn, 0x00cf93012345ffffn];

/** The state of a fresh 64-bit ring-0 vCPU at CODE. */
export function longState(): EngineState {
  const z = 0n;
  return {
    regs: { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: BigInt(STACK), rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: BigInt(CODE), rflags: 2n },
    sregs: {
      cs: seg(8, true), ds: seg(0x10, false), es: seg(0x10, false), fs: seg(0x10, false), gs: seg(0x10, false), ss: seg(0x10, false),
      tr: { ...seg(0x38, false), type: 0xb, s: 0, base: BigInt(TSS), limit: 0x67 }, ldt: { ...seg(0, false), unusable: 1 },
      gdt: { base: BigInt(GDT), limit: GDT_ENTRIES.length * 8 - 1 }, idt: { base: BigInt(IDT), limit: 256 * 16 - 1 },
      cr0: 0x80050033n, cr2: z, cr3: 0x100000n, cr4: 0x20n, cr8: z, efer: 0xd01n, apicBase: 0xfee00900n, interruptBitmap: [z, z, z, z],
    },
    msrs: { star: 0x0023001000000000n, lstar: 0n, cstar: 0n, fmask: 0x700n, kernelGsBase: 0n, tscAux: 7n },
  };
}

/** A machine: memory, MMU, I/O, engine with code loaded at CODE. */
export interface Machine {
  mem: Uint8Array;
  view: DataView;
  mmu: FlatMmu;
  io: RecordingIo;
  e: Cpl0Engine;
}

/** Set IDT gate `vector` (interrupt gate unless `trap`) to `target`, with IST `ist`. */
export function setGate(view: DataView, vector: number, target: number, opts: { trap?: boolean; ist?: number; present?: boolean } = {}): void {
  const o = IDT + vector * 16;
  view.setUint16(o, target & 0xffff, true);
  view.setUint16(o + 2, 8, true);
  view.setUint8(o + 4, opts.ist ?? 0);
  view.setUint8(o + 5, (opts.present === false ? 0 : 0x80) | (opts.trap ? 0xf : 0xe));
  view.setUint16(o + 6, (target >>> 16) & 0xffff, true);
  view.setUint32(o + 8, 0, true);
}

/** Build a machine running `code` (bytes or assembly source). */
export function machine(code: Uint8Array | string, setup?: (s: EngineState) => void, opts?: ConstructorParameters<typeof Cpl0Engine>[2]): Machine {
  const bytes = typeof code === 'string' ? asm(code) : code;
  const mem = new Uint8Array(MEM_SIZE);
  const view = new DataView(mem.buffer);
  GDT_ENTRIES.forEach((d, i) => view.setBigUint64(GDT + i * 8, d, true));
  mem.set(bytes, CODE);
  const mmu = new FlatMmu(mem);
  const io = new RecordingIo();
  const e = new Cpl0Engine(mmu, io, opts);
  const s = longState();
  setup?.(s);
  e.load(s);
  return { mem, view, mmu, io, e };
}

/** Run `code` until HLT (or the budget); returns the machine and the saved state. */
export function runAsm(code: string, setup?: (s: EngineState) => void, budget = 100_000) {
  const m = machine(code + '\nhlt\n', setup);
  const stop = m.e.run(budget);
  return { ...m, stop, s: m.e.save() };
}

/** Flag bits. */
export const CF = 1n, PF = 4n, AF = 0x10n, ZF = 0x40n, SF = 0x80n, OF = 0x800n, DF = 0x400n, IF = 0x200n;
/** The six status flags of RFLAGS. */
export const STATUS = CF | PF | AF | ZF | SF | OF;

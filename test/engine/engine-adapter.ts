/**
 * The engine side of the differential tests (issue 15): the same layout as the native
 * reference (layout.ts) in a bufferMemory, run by `Cpl0Engine` over `SoftMmu`, read back into
 * the same {@link SequenceResult} shape, and {@link compareResults} to set the two side by side.
 *
 * The engine runs ring-0 code, so its copy starts at **CPL 0** (CS 0x08, SS 0x10; DS/ES/FS/GS
 * 0x1b as natively) over the same user pages (reachable from CPL 0: SMAP and SMEP are off;
 * CR0.WP is on, so the read-only pages fault for CPL 0 too). Exceptions go through the same
 * IDT: DPL-3 gates on IST 1, so the frame lands on the same kernel stack at either CPL, and
 * the handler's `out %al,$0xff ; hlt` stops the engine with 'hlt'. The terminator `hlt`
 * stops it directly.
 *
 * What CPL 0 cannot mirror, and how it is handled:
 * - RFLAGS.IF/IOPL (and RF/VM/VIF/VIP): masked ({@link RFLAGS_COMPARE_MASK}); both sides start
 *   with IF = 1, IOPL = 0, so `pushf` images agree unless the sequence `popf`s IF/IOPL.
 * - #PF error code bit 2 (U/S): 1 natively, 0 at CPL 0: {@link compareResults} ignores it.
 * - Privileged instructions (HLT, CLI/STI, IN/OUT/INS/OUTS, MOV CR/DR, LGDT…, RDMSR…): #GP(0)
 *   natively, executed by the engine. A `hlt` in the sequence is turned into that #GP(0)
 *   here (it changes nothing else); the sequence's own port I/O ends the engine's run as
 *   'io' ({@link knownDivergence} names the rest). Generated sequences contain none.
 * - Segment-selector reads (`mov %cs,…`, LAR/LSL/VERR): natively PVM's selectors (CS reads
 *   0x33); never generated.
 *
 * The engine modules (src/engine/cpu.ts, src/engine/mmu.ts) are loaded by {@link loadEngine}
 * through a dynamic import with a computed specifier, so this file typechecks and loads
 * before they exist; the shapes it uses are declared here from src/engine/types.ts.
 */
import { bufferMemory, type GuestMemory } from '../../src/memory/guest-memory.js';
import type { EngineIo, EngineMmu, EngineMsrs, EngineState, EngineStop } from '../../src/engine/types.js';
import {
  CODE, DATA, DATA_SIZE, GPRS, RODATA, MEMORY_SIZE, RFLAGS_COMPARE_MASK, faultResult, handlerVector, initialRegs, initialSregs, loadTest, plainResult,
  terminatorAddress, writeStaticLayout, type SequenceResult, type SequenceTest,
} from './layout.js';

/** The engine as this adapter uses it (src/engine/cpu.ts). */
export interface EngineLike {
  load(state: EngineState): void;
  save(): EngineState;
  run(budget: number): EngineStop;
  /** Instructions compiled code ran (src/engine/jit.ts), when the engine compiles. */
  readonly retiredCompiled?: number;
}
/** src/engine/cpu.ts's export. */
type EngineCtor = new (mmu: EngineMmu, io: EngineIo, opts?: object) => EngineLike;
/** src/engine/mmu.ts's export. */
type MmuCtor = new (memory: GuestMemory, io: EngineIo) => EngineMmu;

/** Options for {@link EngineAdapter}. */
export interface EngineAdapterOptions {
  /** Instructions one run may execute before it is 'timeout' (default 100000). */
  maxSteps?: number;
  /** Passed to the engine's constructor. */
  engineOptions?: object;
  /**
   * Run each sequence with its whole budget at once instead of one instruction at a time
   * (compiled code runs only whole blocks); a run that did port I/O is replayed one
   * instruction at a time, to end where the I/O happened.
   */
  wholeRuns?: boolean;
  /**
   * Before each run, translate the data window's pages for writing and the read-only page
   * for reading, as a warm TLB would hold them. Compiled code reaches RAM only through TLB
   * hits (a miss leaves to the interpreter), and `load()` leaves the TLB empty: without
   * this, short sequences would hardly run a compiled memory access.
   */
  warmTlb?: boolean;
}

const ZERO_MSRS: EngineMsrs = { star: 0n, lstar: 0n, cstar: 0n, fmask: 0n, kernelGsBase: 0n, tscAux: 0n };

/** Port I/O seen during one run (the handlers' OUT and the sequence's own). */
interface IoRecord {
  port: number;
  in: boolean;
  size: number;
}

/** Runs sequences on the engine in the reference's layout. */
export class EngineAdapter {
  readonly #mem = bufferMemory(MEMORY_SIZE);
  readonly #io: IoRecord[] = [];
  readonly #engine: EngineLike;
  readonly #maxSteps: number;
  readonly #wholeRuns: boolean;
  readonly #warm: ((la: bigint, write: boolean) => void) | undefined;

  constructor(Engine: EngineCtor, Mmu: MmuCtor, opts: EngineAdapterOptions = {}) {
    this.#maxSteps = opts.maxSteps ?? 100_000;
    this.#wholeRuns = opts.wholeRuns ?? false;
    writeStaticLayout(this.#mem);
    const record = (port: number, isIn: boolean, size: number): void => void this.#io.push({ port, in: isIn, size });
    const io: EngineIo = {
      pioRead: (port, size) => (record(port, true, size), size === 4 ? 0xffffffff : (1 << (size * 8)) - 1),
      pioWrite: (port, size) => record(port, false, size),
      mmioRead: (gpa) => {
        throw new Error(`engine read unbacked memory at 0x${gpa.toString(16)} (nothing maps it)`);
      },
      mmioWrite: (gpa) => {
        throw new Error(`engine wrote unbacked memory at 0x${gpa.toString(16)} (nothing maps it)`);
      },
    };
    const mmu = new Mmu(this.#mem, io) as EngineMmu & { translate?(la: bigint, kind: number): number };
    this.#engine = new Engine(mmu, io, opts.engineOptions);
    if (opts.warmTlb && typeof mmu.translate === 'function') {
      const translate = mmu.translate.bind(mmu);
      this.#warm = (la, write) => void translate(la, write ? 1 : 0); // ACCESS.WRITE / READ
    }
  }

  /** The engine (for its counters). */
  get engine(): EngineLike {
    return this.#engine;
  }

  #start(test: SequenceTest): void {
    loadTest(this.#mem, test);
    this.#io.length = 0;
    this.#engine.load({ regs: initialRegs(test), sregs: initialSregs(0), msrs: { ...ZERO_MSRS } });
    if (this.#warm) {
      for (let p = DATA; p < DATA + DATA_SIZE; p += 4096) this.#warm(BigInt(p), true);
      this.#warm(BigInt(RODATA), false);
    }
  }

  /** Run one sequence on the engine. */
  run(test: SequenceTest): SequenceResult {
    this.#start(test);
    if (this.#wholeRuns) {
      const stop = this.#engine.run(this.#maxSteps);
      if (this.#io.length === 0) {
        if (stop.kind !== 'budget') return this.#stopResult(test, stop);
        const s = this.#engine.save();
        return plainResult(this.#mem, 'timeout', s.regs, s.regs.rip);
      }
      this.#start(test);
    }
    for (let step = 0; step < this.#maxSteps; step++) {
      // one instruction at a time, so the sequence's own port I/O ends the run where it happened
      const before = this.#engine.save().regs.rip;
      const stop = this.#engine.run(1);
      const rip = this.#engine.save().regs.rip;
      if (stop.kind === 'budget' && this.#io.length > 0 && handlerVector(rip) === undefined) return this.#ioResult(before);
      if (stop.kind !== 'budget') return this.#stopResult(test, stop);
    }
    const s = this.#engine.save();
    return plainResult(this.#mem, 'timeout', s.regs, s.regs.rip);
  }

  /** Run many sequences in order. */
  runBatch(tests: readonly SequenceTest[]): SequenceResult[] {
    return tests.map((t) => this.run(t));
  }

  /** The result of the sequence's own port I/O (natively a #GP(0) at CPL 3): the state after it, RIP at it. */
  #ioResult(at: bigint): SequenceResult {
    const s = this.#engine.save();
    return { ...plainResult(this.#mem, 'io', s.regs, at), io: this.#io[0] };
  }

  /** Read a non-budget stop: a handler's HLT, the terminator, the sequence's own HLT, or trouble. */
  #stopResult(test: SequenceTest, stop: EngineStop): SequenceResult {
    const s = this.#engine.save();
    const mem = this.#mem;
    if (stop.kind !== 'hlt') {
      const detail = stop.kind === 'unsupported' ? `unsupported: ${stop.reason}` : stop.kind === 'shutdown' ? `shutdown (vector ${stop.vector})` : stop.kind;
      return { ...plainResult(mem, 'error', s.regs, s.regs.rip), detail };
    }
    const at = s.regs.rip - 1n; // the HLT
    const vector = handlerVector(at);
    if (vector !== undefined) return faultResult(mem, s.regs, vector, s.sregs.cr2);
    if (at === terminatorAddress(test.code.length)) return plainResult(mem, 'done', s.regs, at);
    // the sequence's own HLT: CPL 3 raises #GP(0) there and changes nothing else
    return { ...plainResult(mem, 'fault', s.regs, at), fault: { vector: 13, errorCode: 0 } };
  }
}

/**
 * Load the engine modules and make an adapter; undefined while src/engine/cpu.ts or
 * src/engine/mmu.ts does not exist yet (or lacks the export), so tests can `skipIf` on it.
 */
export async function loadEngine(opts: EngineAdapterOptions = {}): Promise<EngineAdapter | undefined> {
  const load = async (rel: string): Promise<Record<string, unknown> | undefined> => {
    try {
      return (await import(new URL(rel, import.meta.url).href)) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  };
  const [cpu, mmu] = [await load('../../src/engine/cpu.js'), await load('../../src/engine/mmu.js')];
  if (typeof cpu?.Cpl0Engine !== 'function' || typeof mmu?.SoftMmu !== 'function') return undefined;
  return new EngineAdapter(cpu.Cpl0Engine as EngineCtor, mmu.SoftMmu as MmuCtor, opts);
}

/**
 * The differences between a native and an engine result, as readable lines (empty: they
 * agree). Compared: outcome, RIP, the 16 GPRs, RFLAGS & {@link RFLAGS_COMPARE_MASK}, the fault
 * (vector, error code without bit 2 for #PF, CR2) and the data window (the first 8 differing
 * bytes are listed).
 */
export function compareResults(native: SequenceResult, engine: SequenceResult): string[] {
  const out: string[] = [];
  const hex = (v: bigint | number | undefined): string => (v === undefined ? '-' : `0x${v.toString(16)}`);
  if (native.outcome !== engine.outcome) out.push(`outcome: native ${native.outcome}, engine ${engine.outcome}${engine.detail ? ` (${engine.detail})` : ''}`);
  if (native.rip !== engine.rip) out.push(`rip: native ${hex(native.rip)}, engine ${hex(engine.rip)}`);
  for (const r of GPRS) if (native.regs[r] !== engine.regs[r]) out.push(`${r}: native ${hex(native.regs[r])}, engine ${hex(engine.regs[r])}`);
  const [nf, ef] = [native.rflags & RFLAGS_COMPARE_MASK, engine.rflags & RFLAGS_COMPARE_MASK];
  if (nf !== ef) out.push(`rflags: native ${hex(nf)}, engine ${hex(ef)} (differ in ${hex(nf ^ ef)})`);
  out.push(...compareFaults(native, engine));
  let shown = 0;
  for (let i = 0; i < native.data.length && shown < 8; i++) {
    if (native.data[i] !== engine.data[i]) {
      out.push(`data[0x${(DATA + i).toString(16)}]: native ${hex(native.data[i])}, engine ${hex(engine.data[i])}`);
      shown++;
    }
  }
  return out;
}

/** The fault part of {@link compareResults}. */
function compareFaults(native: SequenceResult, engine: SequenceResult): string[] {
  const [n, e] = [native.fault, engine.fault];
  if (!n && !e) return [];
  if (!n || !e) return [`fault: native ${n ? `#${n.vector}` : 'none'}, engine ${e ? `#${e.vector}` : 'none'}`];
  const out: string[] = [];
  if (n.vector !== e.vector) out.push(`fault vector: native ${n.vector}, engine ${e.vector}`);
  const mask = n.vector === 14 ? ~4 : ~0; // U/S: the CPL the access was made at
  if (((n.errorCode ?? -1) & mask) !== ((e.errorCode ?? -1) & mask)) out.push(`error code: native ${n.errorCode}, engine ${e.errorCode}`);
  if (n.cr2 !== e.cr2) out.push(`cr2: native ${n.cr2?.toString(16)}, engine ${e.cr2?.toString(16)}`);
  return out;
}

/** Skip legacy prefixes and REX; the offset of the opcode in `b`. */
function opcodeAt(b: Uint8Array, i: number): number {
  while (i < b.length && ([0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0x66, 0x67, 0xf0, 0xf2, 0xf3].includes(b[i]) || (b[i] & 0xf0) === 0x40)) i++;
  return i;
}

/**
 * Why a native and an engine result may rightly differ for this sequence (hostile bytes), by
 * the instruction at the native stop: a privileged instruction (#GP(0) at CPL 3, run at
 * CPL 0), `int n` (this PVM host raises #UD at CPL 3 for n other than 1 and 3), `syscall`
 * (PVM jumps to LSTAR = 0 at CPL 3: #PF at 0), or the engine not implementing the
 * instruction. Undefined: no known reason — the results must agree. Divergences earlier in
 * the sequence (RDTSC/RDRAND/CPUID values, x87/SSE that PVM runs natively whatever CR4
 * says, selector reads) are not detected: hostile comparisons should treat any difference
 * as a lead, not a failure.
 */
export function knownDivergence(test: SequenceTest, native: SequenceResult, engine: SequenceResult): string | undefined {
  if (engine.outcome === 'error' && engine.detail?.startsWith('unsupported')) return engine.detail;
  const off = Number(native.rip) - CODE;
  if (off < 0 || off >= test.code.length) return undefined;
  const b = test.code;
  const i = opcodeAt(b, off);
  const [op, op2] = [b[i], b[i + 1]];
  if (native.fault?.vector === 6 && op === 0xcd) return 'int n at CPL 3 is #UD on PVM';
  if (native.fault?.vector === 14 && native.rip === 0n) return 'syscall on PVM';
  if (native.fault?.vector === 13 && native.fault.errorCode === 0) {
    const privileged = [0xf4, 0xfa, 0xfb, 0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef, 0x6c, 0x6d, 0x6e, 0x6f, 0xcf];
    const privileged0f = [0x00, 0x01, 0x06, 0x08, 0x09, 0x20, 0x21, 0x22, 0x23, 0x30, 0x32, 0x33, 0x07, 0x35];
    if (privileged.includes(op) || (op === 0x0f && privileged0f.includes(op2))) return 'privileged instruction (#GP at CPL 3)';
  }
  return undefined;
}

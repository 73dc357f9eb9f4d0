/**
 * Micro-benchmark of the CPL0 engine (issue 15): guest instructions per second for a
 * straight-line integer loop and a memory-heavy loop, over a flat identity-mapped MMU.
 * Run: `npm run build:ts && node dist/bench/engine-mips.js [iterations]`.
 */
import { Cpl0Engine } from '../src/engine/cpu.js';
import { GuestException, type EngineIo, type EngineMmu, type EngineState, type MmuControl } from '../src/engine/types.js';

/** A flat MMU (linear = physical) over a Uint8Array; out-of-range accesses raise #PF. */
class FlatMmu implements EngineMmu {
  private readonly view: DataView;
  onCodeWrite?: (gpaPage: number) => void;
  private readonly watched = new Uint8Array(1 << 12);
  constructor(readonly mem: Uint8Array) {
    this.view = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  }
  setControl(_c: MmuControl): void {}
  invalidatePage(_la: bigint): void {}
  flushAll(): void {}
  private at(la: bigint, n: number): number {
    const a = Number(la);
    if (a > this.mem.length - n) throw new GuestException(14, 0, la);
    return a;
  }
  private w(la: bigint, n: number): number {
    const a = this.at(la, n);
    const p = a >>> 12;
    if (this.watched[p] !== 0) this.onCodeWrite?.(p);
    return a;
  }
  read8(la: bigint): number { return this.mem[this.at(la, 1)]; }
  read16(la: bigint): number { return this.view.getUint16(this.at(la, 2), true); }
  read32(la: bigint): number { return this.view.getUint32(this.at(la, 4), true); }
  read64(la: bigint): bigint { return this.view.getBigUint64(this.at(la, 8), true); }
  write8(la: bigint, v: number): void { this.mem[this.w(la, 1)] = v; }
  write16(la: bigint, v: number): void { this.view.setUint16(this.w(la, 2), v, true); }
  write32(la: bigint, v: number): void { this.view.setUint32(this.w(la, 4), v, true); }
  write64(la: bigint, v: bigint): void { this.view.setBigUint64(this.w(la, 8), v, true); }
  translateFetch(la: bigint): number { return this.at(la, 1) & ~0xfff; }
  watchCode(p: number): void { this.watched[p] = 1; }
}

const io: EngineIo = { pioRead: () => 0xffffffff, pioWrite: () => {}, mmioRead: () => 0n, mmioWrite: () => {} };

/** mov ecx, N; 1: add rax,rcx; xor rdx,rax; inc rbx; sub rsi,3; dec ecx; jnz 1b; hlt (6 instructions a lap). */
function integerLoop(n: number): number[] {
  return [0xb9, ...le32(n), 0x48, 0x01, 0xc8, 0x48, 0x31, 0xc2, 0x48, 0xff, 0xc3, 0x48, 0x83, 0xee, 0x03, 0xff, 0xc9, 0x75, 0xef, 0xf4];
}
/** mov rdi, 0x40000; mov ecx, N; 1: mov rax,[rdi]; add rax,rcx; mov [rdi+8],rax; add qword [rdi+16],1; dec ecx; jnz 1b; hlt. */
function memoryLoop(n: number): number[] {
  return [0x48, 0xc7, 0xc7, 0x00, 0x00, 0x04, 0x00, 0xb9, ...le32(n), 0x48, 0x8b, 0x07, 0x48, 0x01, 0xc8, 0x48, 0x89, 0x47, 0x08,
    0x48, 0x83, 0x47, 0x10, 0x01, 0xff, 0xc9, 0x75, 0xed, 0xf4];
}
function le32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function state(): EngineState {
  const seg = (sel: number, code: boolean) => ({ base: 0n, limit: 0xffffffff, selector: sel, type: code ? 0xb : 3, present: 1, dpl: 0, db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0 });
  const z = 0n;
  return {
    regs: { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: 0x80000n, rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: 0x10000n, rflags: 2n },
    sregs: {
      cs: seg(8, true), ds: seg(0x10, false), es: seg(0x10, false), fs: seg(0x10, false), gs: seg(0x10, false), ss: seg(0x10, false),
      tr: seg(0, false), ldt: seg(0, false), gdt: { base: 0n, limit: 0xffff }, idt: { base: 0n, limit: 0 },
      cr0: 0x80050033n, cr2: z, cr3: z, cr4: 0x20n, cr8: z, efer: 0xd00n, apicBase: 0xfee00900n, interruptBitmap: [z, z, z, z],
    },
    msrs: { star: z, lstar: z, cstar: z, fmask: z, kernelGsBase: z, tscAux: z },
  };
}

/** Run `code` to HLT; the best of `reps` runs, in guest instructions per second. */
function measure(code: number[], reps: number): { ips: number; insns: number } {
  let best = 0;
  let insns = 0;
  for (let r = 0; r < reps; r++) {
    const mem = new Uint8Array(1 << 20);
    mem.set(code, 0x10000);
    const e = new Cpl0Engine(new FlatMmu(mem), io);
    e.load(state());
    const t0 = process.hrtime.bigint();
    const stop = e.run(Number.MAX_SAFE_INTEGER);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (stop.kind !== 'hlt') throw new Error(`benchmark loop stopped with ${JSON.stringify(stop, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
    insns = e.retired;
    best = Math.max(best, insns / dt);
  }
  return { ips: best, insns };
}

const laps = Number(process.argv[2] ?? 2_000_000);
if (!Number.isSafeInteger(laps) || laps <= 0 || laps > 0xffffffff) throw new RangeError(`iterations must be 1..2^32-1, got ${process.argv[2]}`);
for (const [name, code] of [['integer loop', integerLoop(laps)], ['memory loop', memoryLoop(laps)]] as const) {
  const { ips, insns } = measure(code, 5);
  console.log(`${name.padEnd(14)} ${(ips / 1e6).toFixed(2).padStart(8)} M instructions/s  (${insns} instructions a run, best of 5)`);
}

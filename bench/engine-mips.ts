/**
 * Micro-benchmark of the CPL0 engine (issue 15): guest instructions per second for a
 * straight-line integer loop and a memory-heavy loop, run by the engine with its real MMU
 * (SoftMmu: 4-level paging over identity-mapped page tables in a 1 MiB guest memory). Part
 * of `npm run bench` (bench/engine.ts); alone: `node dist/bench/engine-mips.js [laps]`.
 */
import { pathToFileURL } from 'node:url';
import { buildIdentityPageTables } from '../src/boot/paging.js';
import { Cpl0Engine } from '../src/engine/cpu.js';
import { SoftMmu } from '../src/engine/mmu.js';
import type { EngineIo, EngineState } from '../src/engine/types.js';
import { bufferMemory } from '../src/memory/guest-memory.js';

/** Where the page tables go (identity map of the first GiB with 2 MiB pages). */
const PAGE_TABLES = 0x20000;

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

function state(cr3: bigint): EngineState {
  const seg = (sel: number, code: boolean) => ({ base: 0n, limit: 0xffffffff, selector: sel, type: code ? 0xb : 3, present: 1, dpl: 0, db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0 });
  const z = 0n;
  return {
    regs: { rax: z, rbx: z, rcx: z, rdx: z, rsi: z, rdi: z, rsp: 0x80000n, rbp: z, r8: z, r9: z, r10: z, r11: z, r12: z, r13: z, r14: z, r15: z, rip: 0x10000n, rflags: 2n },
    sregs: {
      cs: seg(8, true), ds: seg(0x10, false), es: seg(0x10, false), fs: seg(0x10, false), gs: seg(0x10, false), ss: seg(0x10, false),
      tr: seg(0, false), ldt: seg(0, false), gdt: { base: 0n, limit: 0xffff }, idt: { base: 0n, limit: 0 },
      cr0: 0x80050033n, cr2: z, cr3, cr4: 0x20n, cr8: z, efer: 0xd00n, apicBase: 0xfee00900n, interruptBitmap: [z, z, z, z],
    },
    msrs: { star: z, lstar: z, cstar: z, fmask: z, kernelGsBase: z, tscAux: z },
  };
}

/** Run `code` to HLT; the best of `reps` runs, in guest instructions per second. */
function measure(code: number[], reps: number): { ips: number; insns: number } {
  let best = 0;
  let insns = 0;
  for (let r = 0; r < reps; r++) {
    const mem = bufferMemory(1 << 20);
    const { cr3 } = buildIdentityPageTables(mem, PAGE_TABLES, { gigabytes: 1 });
    mem.writeBytes(0x10000, Uint8Array.from(code));
    const e = new Cpl0Engine(new SoftMmu(mem, io), io);
    e.load(state(cr3));
    const t0 = process.hrtime.bigint();
    const stop = e.run(Number.MAX_SAFE_INTEGER);
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (stop.kind !== 'hlt') throw new Error(`benchmark loop stopped with ${JSON.stringify(stop, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))}`);
    insns = e.retired;
    best = Math.max(best, insns / dt);
  }
  return { ips: best, insns };
}

/** Engine instructions per second on the two loops (`laps` iterations each, best of `reps` runs). */
export function engineMips(laps: number, reps = 5): { integer: number; memory: number; insns: { integer: number; memory: number } } {
  if (!Number.isSafeInteger(laps) || laps <= 0 || laps > 0xffffffff) throw new RangeError(`laps must be an integer in [1, 2^32), got ${laps}`);
  const i = measure(integerLoop(laps), reps);
  const m = measure(memoryLoop(laps), reps);
  return { integer: i.ips, memory: m.ips, insns: { integer: i.insns, memory: m.insns } };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = engineMips(Number(process.argv[2] ?? 2_000_000));
  console.log(`integer loop ${(r.integer / 1e6).toFixed(2).padStart(8)} M instructions/s  (${r.insns.integer} instructions a run, best of 5)`);
  console.log(`memory loop  ${(r.memory / 1e6).toFixed(2).padStart(8)} M instructions/s  (${r.insns.memory} instructions a run, best of 5)`);
}

/**
 * The block compiler's memory paths (src/engine/jit.ts over src/engine/mmu.ts), without KVM:
 * compiled code reads and writes RAM inline through the TLB's int32 keys, forms addresses
 * as 32-bit pairs (kernel-half addresses included), and leaves to the interpreter on a miss,
 * a page-crossing access or a store into a watched code page. Each program runs compiled
 * (`jitAfter: 0`) and interpreted (`jit: false`); the two must end in the same state.
 */
import { describe, expect, it } from 'vitest';
import { Cpl0Engine } from '../../../src/engine/cpu.js';
import { SoftMmu } from '../../../src/engine/mmu.js';
import type { EngineState } from '../../../src/engine/types.js';
import { bufferMemory, type GuestMemory } from '../../../src/memory/guest-memory.js';
import { CODE, DATA, GDT, GDT_ENTRIES, IDT, MEM_SIZE, RecordingIo, asm, longState, setGate } from './helpers.js';

/** The page tables: PML4, a low and a kernel-half PDPT, one PD, and a PT for the first 2 MiB. */
const PML4 = 0x90000;
const PDPT_LOW = 0x91000;
const PDPT_HIGH = 0x92000;
const PD = 0x93000;
const PT = 0x94000;
/** The kernel half's window onto physical 0 (PML4[511], PDPT[510]). */
const KERNEL = 0xffffffff80000000n;
/** The #PF handler: records nothing, stops the engine. */
const PF_HANDLER = 0x20000;

const P = 1n, W = 2n, U = 4n;

/**
 * 4 KiB pages over the first 2 MiB at both windows; `userPage` (a physical page address),
 * if given, is the only user page (its upper levels allow user access).
 */
function pageTables(mem: GuestMemory, userPage?: number): void {
  mem.writeU64(PML4, BigInt(PDPT_LOW) | P | W | U);
  mem.writeU64(PML4 + 511 * 8, BigInt(PDPT_HIGH) | P | W | U);
  mem.writeU64(PDPT_LOW, BigInt(PD) | P | W | U);
  mem.writeU64(PDPT_HIGH + 510 * 8, BigInt(PD) | P | W | U);
  mem.writeU64(PD, BigInt(PT) | P | W | U);
  for (let i = 0; i < 512; i++) mem.writeU64(PT + i * 8, BigInt(i * 4096) | P | W | (userPage === i * 4096 ? U : 0n));
}

interface Run {
  engine: Cpl0Engine;
  mem: GuestMemory;
  state: EngineState;
  stop: string;
}

/** Run `src` (Intel syntax, then HLT) at CODE under SoftMmu, compiled or interpreted. */
function run(src: string, jit: boolean, opts: { cr4?: bigint; userPage?: number; setup?: (s: EngineState) => void } = {}): Run {
  const mem = bufferMemory(MEM_SIZE);
  const view = new DataView(new ArrayBuffer(8));
  GDT_ENTRIES.forEach((d, i) => {
    view.setBigUint64(0, d, true);
    mem.writeBytes(GDT + i * 8, new Uint8Array(view.buffer));
  });
  mem.writeBytes(CODE, asm(`${src}\nhlt\n`));
  mem.writeBytes(PF_HANDLER, asm('hlt'));
  const scratch = new Uint8Array(IDT + 256 * 16);
  setGate(new DataView(scratch.buffer), 14, PF_HANDLER);
  mem.writeBytes(IDT, scratch.subarray(IDT));
  pageTables(mem, opts.userPage);
  const io = new RecordingIo();
  const engine = new Cpl0Engine(new SoftMmu(mem, io), io, jit ? { jitAfter: 0 } : { jit: false });
  const s = longState();
  s.sregs.cr3 = BigInt(PML4);
  if (opts.cr4 !== undefined) s.sregs.cr4 = opts.cr4;
  opts.setup?.(s);
  engine.load(s);
  const stop = engine.run(2_000_000);
  return { engine, mem, state: engine.save(), stop: stop.kind };
}

/** Both ways; returns the compiled run after checking that the two agree. */
function bothWays(src: string, opts: Parameters<typeof run>[2] = {}, bytes: [number, number][] = []): Run {
  const c = run(src, true, opts);
  const i = run(src, false, opts);
  expect(c.stop).toBe(i.stop);
  expect(c.state.regs).toEqual(i.state.regs);
  expect(c.state.sregs.cr2).toBe(i.state.sregs.cr2);
  for (const [at, n] of bytes) expect(c.mem.readBytes(at, n)).toEqual(i.mem.readBytes(at, n));
  expect(c.engine.retiredCompiled).toBeGreaterThan(0);
  return c;
}

describe('compiled memory accesses (SoftMmu)', () => {
  it('agree with the interpreter on every width, inside and across pages, at low and kernel-half addresses', () => {
    const r = bothWays(
      `
      mov rdi, ${DATA}
      movabs rsi, ${KERNEL + BigInt(DATA) + 0x1000n}
      mov ecx, 300
    1:
      mov rax, rcx
      imul eax, eax, 0x01010101
      mov [rdi + rcx*8 - 8], rax
      mov [rsi + rcx*2], ax
      add [rdi + 0xffd], eax
      add rbx, [rdi + 0xffb]
      movzx edx, byte ptr [rsi + rcx]
      add rbx, rdx
      mov [rsi + rcx*4 + 0x800], ecx
      push rax
      pop rdx
      xor rbx, rdx
      dec ecx
      jnz 1b
      `,
      {},
      [[DATA, 0x3000]],
    );
    expect(r.stop).toBe('hlt');
    // the kernel-half window wrote the same physical page the low one sees
    expect(r.mem.readBytes(DATA + 0x1000 + 4 + 0x800, 4)).toEqual(new Uint8Array([1, 0, 0, 0]));
  });

  it('a store into a page of decoded code ends the compiled block, and the new code runs', () => {
    // the loop patches the immediate of the `mov eax, 1` after it (on the same, decoded page)
    const r = bothWays(`
      lea rdi, [rip + 2f]
      mov ecx, 20
    1:
      mov byte ptr [rdi + 1], cl
      dec ecx
      jnz 1b
    2:
      mov eax, 0x55
      `);
    expect(r.stop).toBe('hlt');
    expect(r.state.regs.rax).toBe(1n); // the last patch wrote cl = 1
  });

  it('an access that faults in a compiled loop leaves to the interpreter, which raises the fault with CR2', () => {
    const r = bothWays(`
      mov rdi, ${DATA}
      movabs rsi, 0x7ff000000000
      mov ecx, 50
    1:
      mov [rdi + rcx], cl
      cmp ecx, 10
      cmove rdi, rsi
      dec ecx
      jnz 1b
      `);
    expect(r.stop).toBe('hlt'); // the #PF handler's HLT
    expect(r.state.sregs.cr2).toBe(0x7ff000000000n + 9n);
  });

  it('a link between compiled blocks does not outlive a write to the code it leads to', () => {
    // the block at 1 jumps to (and so links to) the block at 2, on the next page; halfway, the
    // loop patches 2's immediate (dropping that page's blocks, not the block at 1)
    const r = bothWays(`
      xor ebx, ebx
      mov ecx, 50
    1:
      inc edx
      jmp 2f
    5:
      cmp ecx, 25
      jne 4f
      mov byte ptr [rip + 2f + 1], 2
    4:
      dec ecx
      jnz 1b
      jmp 3f
      .balign 4096
    2:
      mov eax, 1
      add ebx, eax
      jmp 5b
    3:
      `);
    expect(r.stop).toBe('hlt');
    expect(r.state.regs.rbx).toBe(26n * 1n + 24n * 2n);
  });

  it('a link between compiled blocks does not outlive INVLPG of a remapped target page', () => {
    // the block at 1 calls (and so links to) linear CODE + 0x20000; halfway, the loop points
    // that page's PTE at the next physical page, which holds other code, and invalidates it
    const pte = PT + ((CODE + 0x20000) >>> 12) * 8;
    const r = bothWays(`
      xor ebx, ebx
      mov ecx, 50
    1:
      inc edx
      call 2f
      cmp ecx, 25
      jne 4f
      mov qword ptr [${pte}], ${CODE + 0x21000 + 3}
      invlpg [${CODE + 0x20000}]
    4:
      dec ecx
      jnz 1b
      jmp 3f
      .org 0x20000
    2:
      mov eax, 1
      add ebx, eax
      ret
      .org 0x21000
      mov eax, 2
      add ebx, eax
      ret
    3:
      `);
    expect(r.stop).toBe('hlt');
    expect(r.state.regs.rbx).toBe(26n * 1n + 24n * 2n);
  });

  it('code compiled while RFLAGS.AC opened user pages (SMAP) does not keep them open after CLAC', () => {
    const src = `
      mov rdi, ${DATA}
      stac
      call 3f
      clac
      call 3f
      jmp 4f
    3:
      mov ecx, 20
    5:
      add rax, [rdi]
      dec ecx
      jnz 5b
      ret
    4:
      `;
    const smap = 0x20n | (1n << 21n); // PAE | SMAP
    const r = bothWays(src, { cr4: smap, userPage: DATA });
    expect(r.stop).toBe('hlt');
    // the second call faults on its first read of the user page: the #PF handler's HLT
    expect(r.state.sregs.cr2).toBe(BigInt(DATA));
    expect(r.state.regs.rcx).toBe(20n);
  });
});

import { describe, expect, it } from 'vitest';
import { emulate } from '../../../src/emulate/emulator.js';
import { SUPPORTED_MNEMONICS } from '../../../src/emulate/mnemonics.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import {
  DATA, DATA_PHYS, EFER_LMA, EFER_LME, NX, P, TestHost, W, hx, longMachine, prot32Sregs, realSregs, regs, rng, seg,
} from './helpers.js';

function prot32(memSize = 0x100000) {
  const mem = bufferMemory(memSize);
  const host = new TestHost(mem);
  return { mem, host, cpu: { regs: regs(), sregs: prot32Sregs() } };
}

describe('modes and segmentation', () => {
  it('32-bit protected mode: DS base, 32-bit operands, RIP wraps to 32 bits', () => {
    const m = prot32();
    m.cpu.sregs.ds = seg({ base: 0x10000n });
    m.mem.writeU32(0x10000 + 0x80, 0xf0f0);
    m.cpu.regs.rbx = 0x80n;
    m.cpu.regs.rax = 0xffff_ffff_ffff_ffffn;
    m.cpu.regs.rip = 0xffff_fffen;
    expect(emulate(hx('f3 0f b8 03'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'popcnt', length: 4 });
    expect(m.cpu.regs.rax).toBe(8n);
    expect(m.cpu.regs.rip).toBe(2n);
  });
  it('32-bit: REX bytes are INC/DEC (unsupported), 66 selects 16-bit', () => {
    const m = prot32();
    expect(emulate(hx('48 0f 01 ca'), m.cpu, m.host)).toMatchObject({ kind: 'unsupported', bytes: hx('48') });
    m.cpu.regs.rcx = 0xffn;
    m.cpu.regs.rax = 0x1234_5678n;
    expect(emulate(hx('66 f3 0f b8 c1'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(0x1234_0008n);
  });
  it('segment limit violations: #GP(0), or #SS(0) through SS', () => {
    const m = prot32();
    m.cpu.sregs.ds = seg({ limit: 0xfff });
    m.cpu.regs.rbx = 0xffen;
    expect(emulate(hx('f3 0f b8 03'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0 });
    m.cpu.regs.rbx = 0xffcn;
    expect(emulate(hx('f3 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    m.cpu.sregs.ss = seg({ limit: 0xfff });
    m.cpu.regs.rip = 0x1000n;
    m.cpu.regs.rbp = 0x1000n;
    expect(emulate(hx('f3 0f b8 45 00'), m.cpu, m.host)).toMatchObject({ vector: 12, errorCode: 0 });
    expect(emulate(hx('3e f3 0f b8 45 00'), m.cpu, m.host)).toMatchObject({ vector: 13 }); // DS override, same limit
  });
  it('expand-down segments, unusable segments, read-only and code segments', () => {
    const m = prot32();
    m.cpu.sregs.es = seg({ type: 7, limit: 0xfff, db: 1 }); // expand-down, writable
    m.cpu.regs.rbx = 0x800n;
    expect(emulate(hx('26 0f ae 1b'), m.cpu, m.host)).toMatchObject({ vector: 13 });
    m.cpu.regs.rbx = 0x2000n;
    expect(emulate(hx('26 0f ae 1b'), m.cpu, m.host).kind).toBe('emulated');
    m.cpu.sregs.fs = seg({ unusable: 1, present: 0 });
    expect(emulate(hx('64 0f ae 1b'), m.cpu, m.host)).toMatchObject({ vector: 13 });
    m.cpu.sregs.gs = seg({ type: 1 }); // read-only data
    expect(emulate(hx('65 0f ae 1b'), m.cpu, m.host)).toMatchObject({ vector: 13 });
    expect(emulate(hx('65 0f ae 13'), m.cpu, m.host).kind).toBe('emulated'); // ldmxcsr reads fine
    expect(emulate(hx('2e 0f ae 1b'), m.cpu, m.host)).toMatchObject({ vector: 13 }); // write via CS
  });
  it('16-bit addressing in real mode: segment base + 16-bit wrapped offset', () => {
    const mem = bufferMemory(0x100000);
    const host = new TestHost(mem);
    const cpu = { regs: regs({ rbx: 0xfff0n, rsi: 0x20n, rax: 0xaaaa_bbbbn }), sregs: realSregs({ ds: seg({ base: 0x20000n, limit: 0xffff, db: 0 }) }) };
    mem.writeU16(0x20000 + 0x10, 0x0007);
    expect(emulate(hx('f3 0f b8 00'), cpu, host)).toMatchObject({ kind: 'emulated', length: 4 }); // popcnt ax, [bx+si]
    expect(cpu.regs.rax).toBe(0xaaaa_0003n);
  });
  it('compatibility mode decodes as 32-bit code', () => {
    const m = longMachine();
    m.cpu.sregs.cs = seg({ type: 11, l: 0, db: 1 });
    m.cpu.regs.rbx = DATA;
    m.mem.writeU32(DATA_PHYS, 3);
    expect(emulate(hx('f3 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(2n);
    expect(emulate(hx('48 0f 01 ca'), m.cpu, m.host).kind).toBe('unsupported');
  });
  it('64-bit: FS/GS bases apply, DS/ES/SS/CS overrides do not', () => {
    const m = longMachine();
    m.cpu.sregs.fs.base = DATA;
    m.cpu.sregs.gs.base = DATA + 0x100n;
    m.cpu.sregs.ds.base = 0x1234_0000n;
    m.mem.writeU64(DATA_PHYS + 8, 0xffn);
    m.mem.writeU64(DATA_PHYS + 0x108, 0xfn);
    m.cpu.regs.rbx = 8n;
    expect(emulate(hx('64 f3 48 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(8n);
    expect(emulate(hx('65 f3 48 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(4n);
    m.cpu.regs.rbx = DATA + 8n;
    expect(emulate(hx('3e f3 48 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(8n);
  });
  it('64-bit: 67 prefix wraps the effective address to 32 bits', () => {
    const m = longMachine();
    m.cpu.regs.rbx = 0xffff_ffff_0000_0000n + DATA; // upper half ignored with 32-bit addressing
    m.mem.writeU32(DATA_PHYS, 0x7);
    expect(emulate(hx('67 f3 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(3n);
    m.cpu.regs.rbx = 0xffff_fff0n;
    m.cpu.regs.rsi = DATA + 0x10n; // ebx + esi overflows 32 bits → DATA
    expect(emulate(hx('67 f3 0f b8 04 33'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(3n);
  });
  it('64-bit: non-canonical operand → #GP(0) with state unchanged', () => {
    const m = longMachine();
    m.cpu.regs.rbx = 0x8000_0000_0000_0000n;
    const before = { ...m.cpu.regs };
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'popcnt', vector: 13, errorCode: 0 });
    expect(m.cpu.regs).toEqual(before);
    m.cpu.regs.rbx = 0x0000_7fff_ffff_fffcn; // access crosses into non-canonical space
    m.tables.map(0x7fff_ffff_f000n, BigInt(DATA_PHYS), P | W);
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host)).toMatchObject({ vector: 13 });
  });
  it('5-level paging and a 1 GiB page', () => {
    const m = longMachine({ levels: 5 });
    const va = 0x0100_0000_0000_0000n - 0x1000n; // needs 57-bit addressing
    m.tables.map(va, BigInt(DATA_PHYS), P | W);
    m.tables.map(0x80_0000_0000n, 0n, P | W, '1g');
    m.mem.writeU64(DATA_PHYS, 0xffn);
    m.cpu.regs.rbx = va;
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(8n);
    m.cpu.regs.rbx = 0x80_0000_0000n + BigInt(DATA_PHYS);
    expect(emulate(hx('f3 48 0f bc 03'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.rax).toBe(0n);
  });
  it('SMAP: supervisor access to a user page faults unless RFLAGS.AC', () => {
    const m = longMachine({ user: true });
    m.cpu.sregs.cr4 |= 1n << 21n;
    m.cpu.regs.rbx = DATA;
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host)).toMatchObject({ vector: 14, errorCode: 1, cr2: DATA });
    expect(emulate(hx('0f 01 cb'), m.cpu, m.host).kind).toBe('emulated'); // stac
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host).kind).toBe('emulated');
  });
  it('page tables pointing outside guest RAM give #PF(RSVD), not an exception', () => {
    const m = longMachine();
    m.mem.writeU64(m.tables.root + 8 * 3, 0x10_0000_0000n | P | W);
    m.cpu.regs.rbx = 3n << 39n;
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 14, errorCode: 9 });
  });
  it('memory operands that are not RAM (MMIO) are unsupported', () => {
    const m = longMachine();
    m.tables.map(0x6000_0000n, 0xfee0_0000n, P | W);
    m.cpu.regs.rbx = 0x6000_0000n;
    expect(emulate(hx('f3 48 0f b8 03'), m.cpu, m.host)).toMatchObject({ kind: 'unsupported', mnemonic: 'popcnt', bytes: hx('f3 48 0f b8 03') });
    expect(m.cpu.regs.rip).toBe(0x1000n);
  });
});

describe('results for non-emulated bytes', () => {
  it('unknown opcodes are unsupported, naming the bytes', () => {
    const m = longMachine();
    const r = emulate(hx('0f ae 20 90 90'), m.cpu, m.host); // xsave [rax]
    expect(r).toMatchObject({ kind: 'unsupported', bytes: hx('0f ae 20') });
    expect(emulate(hx('c5 f9 6f 00'), m.cpu, m.host).kind).toBe('unsupported');
  });
  it('known-invalid encodings are #UD', () => {
    const m = longMachine();
    expect(emulate(hx('0f 0b'), m.cpu, m.host)).toEqual({ kind: 'exception', vector: 6 });
    expect(emulate(hx('48 0f c7 c8'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'cmpxchg16b', vector: 6 });
    expect(emulate(hx('0f ae d0'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'ldmxcsr', vector: 6 });
    expect(emulate(hx('f0 f3 0f b8 c1'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'popcnt', vector: 6 });
  });
  it('over-long instructions and prefix soup are #GP(0)', () => {
    const m = longMachine();
    expect(emulate(hx('66'.repeat(15) + '90'), m.cpu, m.host)).toEqual({ kind: 'exception', vector: 13, errorCode: 0 });
    expect(emulate(hx('2e 36 3e 26 64 65 66 67 f2 f3 2e 36 3e 26 cc'), m.cpu, m.host)).toMatchObject({ vector: 3, trap: true });
    expect(m.cpu.regs.rip).toBe(0x100fn);
  });
});

describe('instruction fetch', () => {
  it('asks fetchMore for missing bytes', () => {
    const m = longMachine();
    const asked: number[] = [];
    const r = emulate(hx('f3 48'), m.cpu, m.host, { fetchMore: (n) => (asked.push(n), hx('f3 48 0f b8 c1 90 90')) });
    expect(r).toMatchObject({ kind: 'emulated', mnemonic: 'popcnt', length: 5 });
    expect(asked[0]).toBe(3);
  });
  it('fetches from guest memory at CS:RIP (across a page boundary)', () => {
    const m = longMachine();
    m.tables.map(0x2000n, 0x5000n, P | W);
    m.cpu.regs.rip = 0x1ffen;
    m.mem.writeBytes(0x1ffe, hx('f3 48'));
    m.mem.writeBytes(0x5000, hx('0f b8 c1'));
    m.cpu.regs.rcx = 3n;
    expect(emulate(hx('f3'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', length: 5 });
    expect(m.cpu.regs.rax).toBe(2n);
    expect(m.cpu.regs.rip).toBe(0x2003n);
  });
  it('reports the fetch #PF (with I/D) when the rest of the instruction is not mapped', () => {
    const m = longMachine();
    m.cpu.regs.rip = 0x1ffen;
    m.mem.writeBytes(0x1ffe, hx('f3 48'));
    expect(emulate(hx('f3 48'), m.cpu, m.host)).toEqual({ kind: 'exception', vector: 14, errorCode: 0x10, cr2: 0x2000n });
    m.tables.map(0x2000n, 0x5000n, P | W | NX);
    expect(emulate(hx('f3 48'), m.cpu, m.host)).toEqual({ kind: 'exception', vector: 14, errorCode: 0x11, cr2: 0x2000n });
  });
});

describe('robustness', () => {
  it('never throws and never half-commits on random bytes in every mode', () => {
    const next = rng(0x1234_5678n);
    const modes = [
      () => longMachine(),
      () => longMachine({ cpl: 3, user: true }),
      () => {
        const m = longMachine();
        m.cpu.sregs = prot32Sregs();
        return m;
      },
      () => {
        const m = longMachine();
        m.cpu.sregs = realSregs();
        return m;
      },
    ];
    let emulated = 0;
    for (let i = 0; i < 6000; i++) {
      const m = modes[i % modes.length]();
      for (const r of ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp'] as const) {
        const pick = Number(next() % 4n);
        m.cpu.regs[r] = pick === 0 ? next() : pick === 1 ? DATA + (next() % 0x10000n) : pick === 2 ? next() % 0x400000n : 0n;
      }
      const len = 1 + Number(next() % 16n);
      const bytes = new Uint8Array(len).map(() => Number(next() & 0xffn));
      // Bias towards interesting opcodes.
      if (i % 3 === 0) {
        const pat = hx(['f3 0f b8', '0f c7', '66 0f 6f', '0f ae', 'f3 48 0f bd', '66 0f 7e', '0f 01', '9b db'][i % 8]);
        const off = Math.min(len - 1, i % 2);
        bytes.set(pat.subarray(0, len - off), off);
      }
      const before = { ...m.cpu.regs };
      let r;
      expect(() => (r = emulate(bytes, m.cpu, m.host, { fetchMore: () => undefined }))).not.toThrow();
      r = r!;
      expect(['emulated', 'exception', 'unsupported']).toContain(r.kind);
      if (r.kind === 'unsupported' || (r.kind === 'exception' && !r.trap)) expect(m.cpu.regs).toEqual(before);
      if (r.kind === 'emulated') emulated++;
    }
    expect(emulated).toBeGreaterThan(100);
  });
  it('wraps host failures into unsupported', () => {
    const m = longMachine();
    const host = { memory: m.mem, getFpu: (): DataView => { throw new Error('boom'); }, setFpu: () => undefined };
    expect(emulate(hx('66 0f ef c0'), m.cpu, host)).toMatchObject({ kind: 'unsupported', mnemonic: 'pxor', reason: expect.stringMatching(/boom/) });
    const bad = { memory: m.mem, getFpu: () => new DataView(new ArrayBuffer(8)), setFpu: () => undefined };
    expect(emulate(hx('66 0f ef c0'), m.cpu, bad)).toMatchObject({ kind: 'unsupported' });
    expect(emulate(null as unknown as Uint8Array, m.cpu, m.host).kind).not.toBe('emulated');
    expect(emulate(hx('cc'), {} as never, m.host).kind).toBe('unsupported');
  });
  it('works with paging off in long-mode-less 32-bit code at CPL 0 and EFER.LME only', () => {
    const m = prot32();
    m.cpu.sregs.efer = EFER_LME; // LME without LMA: still legacy mode
    expect(emulate(hx('0f 01 cb'), m.cpu, m.host).kind).toBe('emulated');
    m.cpu.sregs.efer = EFER_LME | EFER_LMA;
    expect(emulate(hx('0f 01 ca'), m.cpu, m.host).kind).toBe('emulated');
  });
});

describe('SUPPORTED_MNEMONICS', () => {
  it('lists every required instruction', () => {
    for (const mn of ['int3', 'clac', 'stac', 'popcnt', 'lzcnt', 'tzcnt', 'fwait', 'fninit', 'finit', 'ldmxcsr', 'stmxcsr', 'cmpxchg8b', 'cmpxchg16b',
      'movd', 'movq', 'movdqa', 'movdqu', 'movaps', 'movups', 'movapd', 'movupd', 'pxor', 'xorps', 'xorpd']) {
      expect(SUPPORTED_MNEMONICS).toContain(mn);
    }
  });
});

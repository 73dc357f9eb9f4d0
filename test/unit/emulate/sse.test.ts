import { describe, expect, it } from 'vitest';
import { emulate } from '../../../src/emulate/emulator.js';
import { CR0_EM, CR0_TS, CR4_OSFXSR, DATA, DATA_PHYS, hx, longMachine } from './helpers.js';

const X = 0x0f0e_0d0c_0b0a_0908_0706_0504_0302_0100n;
const Y = 0xffee_ddcc_bbaa_9988_7766_5544_3322_1100n;

function machine() {
  const m = longMachine();
  for (let i = 0; i < 16; i++) m.host.setXmm(i, 0xaaaa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaa_aaaan + BigInt(i));
  return m;
}

describe('movd/movq', () => {
  it('movd xmm15, ecx zero-extends into the whole register (66 44 0f 6e f9)', () => {
    const m = machine();
    m.cpu.regs.rcx = 0x1234_5678_9abc_def0n;
    const r = emulate(hx('66 44 0f 6e f9'), m.cpu, m.host);
    expect(r).toEqual({ kind: 'emulated', mnemonic: 'movd', length: 5, regsChanged: true, sregsChanged: false, fpuChanged: true });
    expect(m.host.xmm(15)).toBe(0x9abc_def0n);
    expect(m.host.sets).toBe(1);
    expect(m.host.gets).toBe(1);
  });
  it('movq xmm0, rax (66 48 0f 6e c0)', () => {
    const m = machine();
    m.cpu.regs.rax = 0x1234_5678_9abc_def0n;
    expect(emulate(hx('66 48 0f 6e c0'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.host.xmm(0)).toBe(0x1234_5678_9abc_def0n);
  });
  it('movd/movq from memory', () => {
    const m = machine();
    m.mem.writeU64(DATA_PHYS, 0x1122_3344_5566_7788n);
    m.cpu.regs.rsi = DATA;
    expect(emulate(hx('66 0f 6e 0e'), m.cpu, m.host).kind).toBe('emulated'); // movd xmm1, [rsi]
    expect(m.host.xmm(1)).toBe(0x5566_7788n);
    expect(emulate(hx('66 48 0f 6e 16'), m.cpu, m.host).kind).toBe('emulated'); // movq xmm2, [rsi]
    expect(m.host.xmm(2)).toBe(0x1122_3344_5566_7788n);
    expect(emulate(hx('f3 0f 7e 1e'), m.cpu, m.host).kind).toBe('emulated'); // movq xmm3, [rsi]
    expect(m.host.xmm(3)).toBe(0x1122_3344_5566_7788n);
  });
  it('movd r32, xmm zero-extends the GPR; movq r64, xmm', () => {
    const m = machine();
    m.host.setXmm(1, Y);
    m.cpu.regs.rax = -1n & 0xffff_ffff_ffff_ffffn;
    expect(emulate(hx('66 0f 7e c8'), m.cpu, m.host).kind).toBe('emulated'); // movd eax, xmm1
    expect(m.cpu.regs.rax).toBe(0x3322_1100n);
    expect(emulate(hx('66 49 0f 7e cb'), m.cpu, m.host).kind).toBe('emulated'); // movq r11, xmm1
    expect(m.cpu.regs.r11).toBe(0x7766_5544_3322_1100n);
  });
  it('movd/movq stores to memory', () => {
    const m = machine();
    m.host.setXmm(1, Y);
    m.cpu.regs.rdi = DATA + 0x100n;
    m.mem.writeU64(DATA_PHYS + 0x100, 0xffff_ffff_ffff_ffffn);
    expect(emulate(hx('66 0f 7e 0f'), m.cpu, m.host).kind).toBe('emulated'); // movd [rdi], xmm1
    expect(m.mem.readU64(DATA_PHYS + 0x100)).toBe(0xffff_ffff_3322_1100n);
    expect(emulate(hx('66 0f d6 4f 08'), m.cpu, m.host).kind).toBe('emulated'); // movq [rdi+8], xmm1
    expect(m.mem.readU64(DATA_PHYS + 0x108)).toBe(0x7766_5544_3322_1100n);
    expect(emulate(hx('66 48 0f 7e 4f 10'), m.cpu, m.host).kind).toBe('emulated'); // movq [rdi+16], xmm1
    expect(m.mem.readU64(DATA_PHYS + 0x110)).toBe(0x7766_5544_3322_1100n);
  });
  it('movq xmm, xmm zeroes the upper quadword (F3 0F 7E and 66 0F D6)', () => {
    const m = machine();
    m.host.setXmm(1, Y);
    expect(emulate(hx('f3 0f 7e c1'), m.cpu, m.host).kind).toBe('emulated'); // movq xmm0, xmm1
    expect(m.host.xmm(0)).toBe(0x7766_5544_3322_1100n);
    expect(emulate(hx('66 41 0f d6 ca'), m.cpu, m.host).kind).toBe('emulated'); // movq xmm10, xmm1
    expect(m.host.xmm(10)).toBe(0x7766_5544_3322_1100n);
  });
});

describe('128-bit moves', () => {
  const loads: [string, string][] = [
    ['movdqa', '66 0f 6f 06'], ['movdqu', 'f3 0f 6f 06'], ['movaps', '0f 28 06'],
    ['movups', '0f 10 06'], ['movapd', '66 0f 28 06'], ['movupd', '66 0f 10 06'],
  ];
  it.each(loads)('%s load xmm0, [rsi]', (mn, b) => {
    const m = machine();
    m.mem.writeU64(DATA_PHYS + 0x20, X & 0xffff_ffff_ffff_ffffn);
    m.mem.writeU64(DATA_PHYS + 0x28, X >> 64n);
    m.cpu.regs.rsi = DATA + 0x20n;
    expect(emulate(hx(b), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: mn });
    expect(m.host.xmm(0)).toBe(X);
  });

  const stores: [string, string][] = [
    ['movdqa', '66 0f 7f 07'], ['movdqu', 'f3 0f 7f 07'], ['movaps', '0f 29 07'], ['movups', '0f 11 07'],
    ['movapd', '66 0f 29 07'], ['movupd', '66 0f 11 07'], ['movntdq', '66 0f e7 07'], ['movntps', '0f 2b 07'], ['movntpd', '66 0f 2b 07'],
  ];
  it.each(stores)('%s store [rdi], xmm0', (mn, b) => {
    const m = machine();
    m.host.setXmm(0, Y);
    m.cpu.regs.rdi = DATA + 0x40n;
    expect(emulate(hx(b), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: mn, fpuChanged: false });
    expect(m.mem.readU64(DATA_PHYS + 0x40)).toBe(Y & 0xffff_ffff_ffff_ffffn);
    expect(m.mem.readU64(DATA_PHYS + 0x48)).toBe(Y >> 64n);
    expect(m.host.sets).toBe(0);
  });

  it('register-to-register moves with REX', () => {
    const m = machine();
    m.host.setXmm(9, X);
    expect(emulate(hx('66 45 0f 6f f9'), m.cpu, m.host).kind).toBe('emulated'); // movdqa xmm15, xmm9
    expect(m.host.xmm(15)).toBe(X);
    expect(emulate(hx('44 0f 29 c9'), m.cpu, m.host).kind).toBe('emulated'); // movaps xmm1, xmm9
    expect(m.host.xmm(1)).toBe(X);
  });

  it('reports no FPU change for a no-op move', () => {
    const m = machine();
    const r = emulate(hx('0f 28 c0'), m.cpu, m.host); // movaps xmm0, xmm0
    expect(r).toMatchObject({ kind: 'emulated', fpuChanged: false, regsChanged: true });
    expect(m.host.sets).toBe(0);
  });

  it('aligned forms raise #GP(0) on a misaligned operand, unaligned forms do not', () => {
    for (const b of ['66 0f 6f 06', '0f 28 06', '66 0f 28 06', '66 0f 7f 06', '0f 29 06', '66 0f e7 06', '0f 2b 06', '66 0f ef 06', '0f 57 06']) {
      const m = machine();
      m.cpu.regs.rsi = DATA + 8n;
      const before = m.host.xmm(0);
      expect(emulate(hx(b), m.cpu, m.host), b).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0 });
      expect(m.cpu.regs.rip).toBe(0x1000n);
      expect(m.host.xmm(0)).toBe(before);
    }
    // Alignment is checked before paging: misaligned + not present is #GP.
    const m = machine();
    m.cpu.regs.rsi = 0x6000_0008n;
    expect(emulate(hx('66 0f 6f 06'), m.cpu, m.host)).toMatchObject({ vector: 13 });
    const u = machine();
    u.cpu.regs.rsi = DATA + 0xff8n; // crosses a page boundary
    u.mem.writeU64(DATA_PHYS + 0xff8, 0x1111n);
    u.mem.writeU64(DATA_PHYS + 0x1000, 0x2222n);
    expect(emulate(hx('f3 0f 6f 06'), u.cpu, u.host).kind).toBe('emulated');
    expect(u.host.xmm(0)).toBe(0x2222n << 64n | 0x1111n);
  });

  it('a store that page-faults writes nothing and leaves RIP', () => {
    const m = machine();
    m.tables.map(DATA + 0x10000n, BigInt(DATA_PHYS) + 0x10000n, 1n); // read-only page after the writable ones
    m.cpu.regs.rdi = DATA + 0xfff8n;
    m.mem.fill(DATA_PHYS + 0xfff8, 8, 0x77);
    const r = emulate(hx('f3 0f 7f 07'), m.cpu, m.host);
    expect(r).toEqual({ kind: 'exception', mnemonic: 'movdqu', vector: 14, errorCode: 3, cr2: DATA + 0x10000n });
    expect(m.mem.readU64(DATA_PHYS + 0xfff8)).toBe(0x7777_7777_7777_7777n);
    expect(m.cpu.regs.rip).toBe(0x1000n);
  });
});

describe('bitwise logic', () => {
  it('pxor xmm0, xmm0 zeroes; xorps/xorpd with registers', () => {
    const m = machine();
    expect(emulate(hx('66 0f ef c0'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'pxor', fpuChanged: true });
    expect(m.host.xmm(0)).toBe(0n);
    m.host.setXmm(1, X);
    m.host.setXmm(2, Y);
    expect(emulate(hx('0f 57 ca'), m.cpu, m.host).kind).toBe('emulated'); // xorps xmm1, xmm2
    expect(m.host.xmm(1)).toBe(X ^ Y);
    expect(emulate(hx('66 0f 57 ca'), m.cpu, m.host).kind).toBe('emulated'); // xorpd xmm1, xmm2
    expect(m.host.xmm(1)).toBe(X);
  });
  it('pxor/pand/pandn/por with an aligned memory source', () => {
    const mask = (1n << 128n) - 1n;
    const cases: [string, (d: bigint, s: bigint) => bigint][] = [
      ['66 0f ef 06', (d, s) => d ^ s], ['66 0f db 06', (d, s) => d & s],
      ['66 0f df 06', (d, s) => ~d & s & mask], ['66 0f eb 06', (d, s) => d | s],
    ];
    for (const [b, f] of cases) {
      const m = machine();
      m.host.setXmm(0, X);
      m.mem.writeU64(DATA_PHYS + 0x30, Y & 0xffff_ffff_ffff_ffffn);
      m.mem.writeU64(DATA_PHYS + 0x38, Y >> 64n);
      m.cpu.regs.rsi = DATA + 0x30n;
      expect(emulate(hx(b), m.cpu, m.host).kind, b).toBe('emulated');
      expect(m.host.xmm(0), b).toBe(f(X, Y));
    }
  });
  it('pxor xmm15, xmm15 with REX.RB (66 45 0f ef ff)', () => {
    const m = machine();
    expect(emulate(hx('66 45 0f ef ff'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.host.xmm(15)).toBe(0n);
    expect(m.host.xmm(7)).not.toBe(0n);
  });
});

describe('SSE availability', () => {
  it('#UD with CR0.EM or without CR4.OSFXSR, #NM with CR0.TS (UD first)', () => {
    for (const b of ['66 0f ef c0', '66 0f 6e c0', '0f 28 c1', 'f3 0f 7e c1', '0f ae 16']) {
      const em = machine();
      em.cpu.sregs.cr0 |= CR0_EM | CR0_TS;
      expect(emulate(hx(b), em.cpu, em.host), b).toMatchObject({ kind: 'exception', vector: 6 });
      const nofx = machine();
      nofx.cpu.sregs.cr4 &= ~CR4_OSFXSR;
      expect(emulate(hx(b), nofx.cpu, nofx.host), b).toMatchObject({ kind: 'exception', vector: 6 });
      const ts = machine();
      ts.cpu.sregs.cr0 |= CR0_TS;
      expect(emulate(hx(b), ts.cpu, ts.host), b).toMatchObject({ kind: 'exception', vector: 7 });
      expect(ts.host.sets).toBe(0);
    }
  });
});

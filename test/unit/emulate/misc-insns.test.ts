import { describe, expect, it } from 'vitest';
import { emulate } from '../../../src/emulate/emulator.js';
import { FPU } from '../../../src/kvm/structs.js';
import {
  CR0_AM, CR0_EM, CR0_MP, CR0_NE, CR0_TS, DATA, DATA_PHYS, RF_AC, RF_CF, RF_RF, RF_TF, RF_ZF, hx, longMachine,
} from './helpers.js';

describe('int3', () => {
  it('advances RIP and reports #BP as a trap', () => {
    const m = longMachine();
    const r = emulate(hx('cc'), m.cpu, m.host);
    expect(r).toEqual({ kind: 'exception', mnemonic: 'int3', vector: 3, trap: true });
    expect(m.cpu.regs.rip).toBe(0x1001n);
  });
  it('works at CPL 3 too (gate DPL is checked on delivery)', () => {
    const m = longMachine({ cpl: 3, user: true });
    expect(emulate(hx('cc'), m.cpu, m.host)).toMatchObject({ vector: 3, trap: true });
  });
});

describe('clac/stac', () => {
  it('clears and sets RFLAGS.AC at CPL 0', () => {
    const m = longMachine();
    m.cpu.regs.rflags = 2n | RF_CF;
    expect(emulate(hx('0f 01 cb'), m.cpu, m.host)).toEqual({ kind: 'emulated', mnemonic: 'stac', length: 3, regsChanged: true, sregsChanged: false, fpuChanged: false });
    expect(m.cpu.regs.rflags).toBe(2n | RF_CF | RF_AC);
    expect(m.cpu.regs.rip).toBe(0x1003n);
    expect(emulate(hx('0f 01 ca'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'clac' });
    expect(m.cpu.regs.rflags).toBe(2n | RF_CF);
    expect(m.host.gets).toBe(0);
  });
  it('#UD at CPL > 0, leaving state alone', () => {
    const m = longMachine({ cpl: 3, user: true });
    expect(emulate(hx('0f 01 cb'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'stac', vector: 6 });
    expect(m.cpu.regs.rflags).toBe(2n);
    expect(m.cpu.regs.rip).toBe(0x1000n);
  });
  it('clears RF after completing', () => {
    const m = longMachine();
    m.cpu.regs.rflags = 2n | RF_RF;
    emulate(hx('0f 01 cb'), m.cpu, m.host);
    expect(m.cpu.regs.rflags).toBe(2n | RF_AC);
  });
  it('reports a single-step #DB trap when TF was set', () => {
    const m = longMachine();
    m.cpu.regs.rflags = 2n | RF_TF;
    expect(emulate(hx('0f 01 cb'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'stac', vector: 1, trap: true });
    expect(m.cpu.regs.rip).toBe(0x1003n);
    expect(m.cpu.regs.rflags & RF_AC).toBe(RF_AC);
  });
});

describe('x87: fwait, fninit, fnclex, finit', () => {
  function dirty(m: ReturnType<typeof longMachine>) {
    const f = m.host.fpu;
    f.setUint16(FPU.fcw, 0x0040, true);
    f.setUint16(FPU.fsw, 0x38a1, true); // ES + PE + IE + TOP
    f.setUint8(FPU.ftwx, 0xff);
    f.setUint16(FPU.lastOpcode, 0x123, true);
    f.setBigUint64(FPU.lastIp, 0xffff_ffff_8100_0000n, true);
    f.setBigUint64(FPU.lastDp, 0x1234n, true);
    f.setUint32(FPU.mxcsr, 0x1f80, true);
  }
  function expectInit(m: ReturnType<typeof longMachine>) {
    const f = m.host.fpu;
    expect(f.getUint16(FPU.fcw, true)).toBe(0x037f);
    expect(f.getUint16(FPU.fsw, true)).toBe(0);
    expect(f.getUint8(FPU.ftwx)).toBe(0);
    expect(f.getUint16(FPU.lastOpcode, true)).toBe(0);
    expect(f.getBigUint64(FPU.lastIp, true)).toBe(0n);
    expect(f.getBigUint64(FPU.lastDp, true)).toBe(0n);
    expect(f.getUint32(FPU.mxcsr, true)).toBe(0x1f80);
  }
  it('fninit resets the x87 state', () => {
    const m = longMachine();
    dirty(m);
    expect(emulate(hx('db e3'), m.cpu, m.host)).toEqual({ kind: 'emulated', mnemonic: 'fninit', length: 2, regsChanged: true, sregsChanged: false, fpuChanged: true });
    expectInit(m);
    expect(m.host.sets).toBe(1);
  });
  it('fwait is a no-op without a pending exception', () => {
    const m = longMachine();
    expect(emulate(hx('9b'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fwait', length: 1, fpuChanged: false });
    expect(m.cpu.regs.rip).toBe(0x1001n);
    expect(m.host.sets).toBe(0);
  });
  it('fwait raises #MF with a pending unmasked exception (FSW.ES)', () => {
    const m = longMachine();
    dirty(m);
    expect(emulate(hx('9b db e3'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'fwait', vector: 16 });
    expect(m.cpu.regs.rip).toBe(0x1000n);
    m.cpu.sregs.cr0 &= ~CR0_NE;
    expect(emulate(hx('9b'), m.cpu, m.host)).toMatchObject({ kind: 'unsupported', mnemonic: 'fwait' });
  });
  it('finit (9b db e3) completes both instructions', () => {
    const m = longMachine();
    dirty(m);
    m.host.fpu.setUint16(FPU.fsw, 0x3801, true); // masked exception only
    expect(emulate(hx('9b db e3 90 90'), m.cpu, m.host)).toEqual({ kind: 'emulated', mnemonic: 'finit', length: 3, regsChanged: true, sregsChanged: false, fpuChanged: true });
    expect(m.cpu.regs.rip).toBe(0x1003n);
    expectInit(m);
    // With TF set only the FWAIT is done.
    const t = longMachine();
    t.cpu.regs.rflags = 2n | RF_TF;
    expect(emulate(hx('9b db e3'), t.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 1, mnemonic: 'fwait' });
    expect(t.cpu.regs.rip).toBe(0x1001n);
  });
  it('fclex (9b db e2) and fnclex clear exception flags', () => {
    const m = longMachine();
    m.host.fpu.setUint16(FPU.fsw, 0xb87f & ~0x80, true);
    expect(emulate(hx('9b db e2'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fclex', length: 3 });
    expect(m.host.fpu.getUint16(FPU.fsw, true)).toBe(0x3800);
    m.host.fpu.setUint16(FPU.fsw, 0xb8ff, true);
    expect(emulate(hx('db e2'), m.cpu, m.host)).toMatchObject({ mnemonic: 'fnclex' });
    expect(m.host.fpu.getUint16(FPU.fsw, true)).toBe(0x3800);
  });
  it('#NM rules: fwait needs MP and TS; fninit EM or TS', () => {
    const m = longMachine();
    m.cpu.sregs.cr0 = (m.cpu.sregs.cr0 & ~CR0_MP) | CR0_TS;
    expect(emulate(hx('9b'), m.cpu, m.host).kind).toBe('emulated');
    expect(emulate(hx('db e3'), m.cpu, m.host)).toMatchObject({ vector: 7 });
    m.cpu.sregs.cr0 |= CR0_MP;
    expect(emulate(hx('9b'), m.cpu, m.host)).toMatchObject({ vector: 7 });
    const e = longMachine();
    e.cpu.sregs.cr0 |= CR0_EM;
    expect(emulate(hx('db e3'), e.cpu, e.host)).toMatchObject({ vector: 7 });
    // finit whose FNINIT half would fault: only the FWAIT completes.
    const f = longMachine();
    f.cpu.sregs.cr0 = (f.cpu.sregs.cr0 & ~CR0_MP) | CR0_TS;
    expect(emulate(hx('9b db e3'), f.cpu, f.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fwait', length: 1 });
    expect(f.cpu.regs.rip).toBe(0x1001n);
  });
});

describe('ldmxcsr/stmxcsr', () => {
  it('loads and stores MXCSR through memory', () => {
    const m = longMachine();
    m.mem.writeU32(DATA_PHYS + 0x10, 0x9fc0);
    m.cpu.regs.rax = DATA;
    expect(emulate(hx('0f ae 50 10'), m.cpu, m.host)).toEqual({ kind: 'emulated', mnemonic: 'ldmxcsr', length: 4, regsChanged: true, sregsChanged: false, fpuChanged: true });
    expect(m.host.fpu.getUint32(FPU.mxcsr, true)).toBe(0x9fc0);
    m.cpu.regs.rsp = DATA + 0x100n;
    expect(emulate(hx('0f ae 5c 24 fc'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'stmxcsr', fpuChanged: false });
    expect(m.mem.readU32(DATA_PHYS + 0xfc)).toBe(0x9fc0);
  });
  it('#GP(0) for reserved bits', () => {
    const m = longMachine();
    m.mem.writeU32(DATA_PHYS, 0x1_1f80);
    m.cpu.regs.rax = DATA;
    expect(emulate(hx('0f ae 10'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'ldmxcsr', vector: 13, errorCode: 0 });
    expect(m.host.fpu.getUint32(FPU.mxcsr, true)).toBe(0x1f80);
    expect(m.host.sets).toBe(0);
  });
  it('RIP-relative operand', () => {
    const m = longMachine();
    m.cpu.regs.rip = DATA;
    m.mem.writeU32(DATA_PHYS + 0x107, 0x1f81);
    expect(emulate(hx('0f ae 15 00 01 00 00'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.host.fpu.getUint32(FPU.mxcsr, true)).toBe(0x1f81);
    expect(m.cpu.regs.rip).toBe(DATA + 7n);
  });
  it('#AC at CPL 3 with CR0.AM and RFLAGS.AC on a misaligned operand', () => {
    const m = longMachine({ cpl: 3, user: true });
    m.cpu.sregs.cr0 |= CR0_AM;
    m.cpu.regs.rflags = 2n | RF_AC;
    m.cpu.regs.rax = DATA + 2n;
    expect(emulate(hx('0f ae 18'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 17, errorCode: 0 });
    m.cpu.regs.rax = DATA + 4n;
    expect(emulate(hx('0f ae 18'), m.cpu, m.host).kind).toBe('emulated');
  });
  it('#PF with the user bit at CPL 3 on a supervisor page', () => {
    const m = longMachine({ cpl: 3 });
    m.cpu.regs.rax = DATA;
    expect(emulate(hx('0f ae 18'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'stmxcsr', vector: 14, errorCode: 7, cr2: DATA });
  });
});

describe('cmpxchg8b/cmpxchg16b', () => {
  const LO = 0x1111_1111_2222_2222n;
  const HI = 0x3333_3333_4444_4444n;
  function m16(memLo = LO, memHi = HI) {
    const m = longMachine();
    m.mem.writeU64(DATA_PHYS + 0x40, memLo);
    m.mem.writeU64(DATA_PHYS + 0x48, memHi);
    m.cpu.regs.rsi = DATA + 0x40n;
    m.cpu.regs.rbx = 0xaaaan;
    m.cpu.regs.rcx = 0xbbbbn;
    return m;
  }
  it('cmpxchg16b stores RCX:RBX and sets ZF on match', () => {
    const m = m16();
    m.cpu.regs.rax = LO;
    m.cpu.regs.rdx = HI;
    m.cpu.regs.rflags = 2n | RF_CF;
    expect(emulate(hx('f0 48 0f c7 0e'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'cmpxchg16b', length: 5 });
    expect(m.mem.readU64(DATA_PHYS + 0x40)).toBe(0xaaaan);
    expect(m.mem.readU64(DATA_PHYS + 0x48)).toBe(0xbbbbn);
    expect(m.cpu.regs.rflags).toBe(2n | RF_CF | RF_ZF);
    expect(m.cpu.regs.rax).toBe(LO);
  });
  it('cmpxchg16b loads RDX:RAX and clears ZF on mismatch', () => {
    const m = m16();
    m.cpu.regs.rax = LO;
    m.cpu.regs.rdx = HI + 1n;
    m.cpu.regs.rflags = 2n | RF_ZF;
    expect(emulate(hx('f0 48 0f c7 0e'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.mem.readU64(DATA_PHYS + 0x40)).toBe(LO);
    expect(m.cpu.regs.rax).toBe(LO);
    expect(m.cpu.regs.rdx).toBe(HI);
    expect(m.cpu.regs.rflags).toBe(2n);
  });
  it('cmpxchg16b needs 16-byte alignment (#GP(0))', () => {
    const m = m16();
    m.cpu.regs.rsi = DATA + 0x48n;
    expect(emulate(hx('f0 48 0f c7 0e'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'cmpxchg16b', vector: 13, errorCode: 0 });
  });
  it('cmpxchg16b on a read-only page faults with a write error code even on mismatch', () => {
    const m = m16();
    m.tables.map(0x6000_0000n, BigInt(DATA_PHYS), 1n);
    m.cpu.regs.rsi = 0x6000_0040n;
    expect(emulate(hx('f0 48 0f c7 0e'), m.cpu, m.host)).toMatchObject({ vector: 14, errorCode: 3, cr2: 0x6000_0040n });
  });
  it('cmpxchg8b compares EDX:EAX, zero-extends on mismatch, preserves on match', () => {
    const m = longMachine();
    m.mem.writeU64(DATA_PHYS + 0x8, 0x5555_6666_7777_8888n);
    m.cpu.regs.rdi = DATA + 8n;
    m.cpu.regs.rax = 0xffff_ffff_0000_0000n;
    m.cpu.regs.rdx = 0xffff_ffff_0000_0000n;
    expect(emulate(hx('0f c7 0f'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'cmpxchg8b', length: 3 });
    expect(m.cpu.regs.rax).toBe(0x7777_8888n);
    expect(m.cpu.regs.rdx).toBe(0x5555_6666n);
    expect(m.cpu.regs.rflags & RF_ZF).toBe(0n);
    m.cpu.regs.rip = 0x1000n;
    m.cpu.regs.rax |= 0xabcd_0000_0000_0000n;
    m.cpu.regs.rbx = 0xffff_ffff_1234_5678n;
    m.cpu.regs.rcx = 0x9abc_def0n;
    expect(emulate(hx('f0 0f c7 0f'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.mem.readU64(DATA_PHYS + 8)).toBe(0x9abc_def0_1234_5678n);
    expect(m.cpu.regs.rax).toBe(0xabcd_0000_7777_8888n);
    expect(m.cpu.regs.rflags & RF_ZF).toBe(RF_ZF);
  });
  it('cmpxchg8b split across pages works (non-atomically)', () => {
    const m = longMachine();
    m.mem.writeU64(DATA_PHYS + 0xffc, 0x0102_0304_0506_0708n);
    m.cpu.regs.rdi = DATA + 0xffcn;
    m.cpu.regs.rax = 0x0506_0708n;
    m.cpu.regs.rdx = 0x0102_0304n;
    m.cpu.regs.rbx = 0xaaaa_aaaan;
    m.cpu.regs.rcx = 0xbbbb_bbbbn;
    expect(emulate(hx('0f c7 0f'), m.cpu, m.host).kind).toBe('emulated');
    expect(m.mem.readU64(DATA_PHYS + 0xffc)).toBe(0xbbbb_bbbb_aaaa_aaaan);
  });
  it('uses the host atomicCmpxchg callback with the translated address', () => {
    const m = m16();
    const calls: unknown[] = [];
    const host = {
      ...m.host,
      memory: m.mem,
      getFpu: () => m.host.getFpu(),
      setFpu: (v: DataView) => m.host.setFpu(v),
      atomicCmpxchg(gpa: number, size: 8 | 16, expected: bigint, replacement: bigint) {
        calls.push([gpa, size, expected, replacement]);
        return { ok: false, old: (7n << 64n) | 9n };
      },
    };
    m.cpu.regs.rax = 1n;
    m.cpu.regs.rdx = 2n;
    expect(emulate(hx('f0 48 0f c7 0e'), m.cpu, host).kind).toBe('emulated');
    expect(calls).toEqual([[DATA_PHYS + 0x40, 16, (2n << 64n) | 1n, (0xbbbbn << 64n) | 0xaaaan]]);
    expect(m.cpu.regs.rax).toBe(9n);
    expect(m.cpu.regs.rdx).toBe(7n);
  });
});

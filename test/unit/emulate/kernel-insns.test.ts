/**
 * INT n/INT1, IRET (32-bit protected mode), XGETBV, XRSTOR, CLWB/CLFLUSHOPT, INVPCID and x87
 * in the emulator, against fake CPU state (no KVM; x87 runs on the host CPU through the addon).
 */
import { describe, expect, it } from 'vitest';
import { emulate } from '../../../src/emulate/emulator.js';
import { classifyX87 } from '../../../src/emulate/instructions/x87-native.js';
import { FPU } from '../../../src/kvm/structs.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { CR0_TS, DATA, DATA_PHYS, TestHost, hx, longMachine, prot32Sregs, realSregs, regs, seg } from './helpers.js';

const CR4_OSXSAVE = 1n << 18n;
const IF = 0x200n;
const TF = 0x100n;

/** A long-mode machine with an IDT at DATA (linear), a GDT at DATA + 0x1000 and a stack at DATA + 0x8000. */
function idtMachine() {
  const m = longMachine();
  const s = m.cpu.sregs;
  s.idt = { base: DATA, limit: 0xfff };
  s.gdt = { base: DATA + 0x1000n, limit: 0x2f };
  m.mem.writeU64(DATA_PHYS + 0x1000 + 0x10, 0x00af9b000000ffffn); // 0x10: code64
  m.mem.writeU64(DATA_PHYS + 0x1000 + 0x18, 0x00cf93000000ffffn); // 0x18: data
  s.ss = seg({ selector: 0x18 });
  m.cpu.regs.rsp = DATA + 0x8000n;
  m.cpu.regs.rflags = 2n | IF;
  return m;
}
function gate64(m: ReturnType<typeof longMachine>, v: number, off: bigint, opts: { type?: number; dpl?: number; p?: boolean; sel?: number; ist?: number } = {}) {
  const type = opts.type ?? 0xe;
  const attr = BigInt(type | ((opts.dpl ?? 0) << 5) | ((opts.p ?? true) ? 0x80 : 0));
  m.mem.writeU64(DATA_PHYS + 16 * v, (off & 0xffffn) | (BigInt(opts.sel ?? 0x10) << 16n) | (BigInt(opts.ist ?? 0) << 32n) | (attr << 40n) | (((off >> 16n) & 0xffffn) << 48n));
  m.mem.writeU64(DATA_PHYS + 16 * v + 8, off >> 32n);
}

describe('int n (IA-32e)', () => {
  it('delivers through a 64-bit interrupt gate: frame SS, RSP, RFLAGS, CS, RIP; IF and TF cleared', () => {
    const m = idtMachine();
    gate64(m, 0x80, 0xffff_ffff_8100_0000n);
    m.cpu.regs.rflags = 2n | IF | TF;
    const r = emulate(hx('cd 80'), m.cpu, m.host);
    expect(r).toMatchObject({ kind: 'emulated', mnemonic: 'int' }); // CS reloaded with the same descriptor
    expect(m.cpu.regs.rip).toBe(0xffff_ffff_8100_0000n);
    expect(m.cpu.regs.rsp).toBe(DATA + 0x8000n - 40n);
    const f = DATA_PHYS + 0x8000 - 40;
    expect(m.mem.readU64(f)).toBe(0x1002n);
    expect(m.mem.readU64(f + 8)).toBe(0x10n);
    expect(m.mem.readU64(f + 16)).toBe(2n | IF | TF);
    expect(m.mem.readU64(f + 24)).toBe(DATA + 0x8000n);
    expect(m.mem.readU64(f + 32)).toBe(0x18n);
    expect(m.cpu.regs.rflags & (IF | TF)).toBe(0n);
  });
  it('a trap gate keeps IF', () => {
    const m = idtMachine();
    gate64(m, 0x81, 0x2000n, { type: 0xf });
    emulate(hx('cd 81'), m.cpu, m.host);
    expect(m.cpu.regs.rflags & IF).toBe(IF);
  });
  it('#GP(vector*8+2) for a gate beyond the IDT limit, a gate DPL below CPL or a wrong type; #NP for a missing gate', () => {
    const m = idtMachine();
    m.cpu.sregs.idt.limit = 0x7ff;
    expect(emulate(hx('cd 80'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0x80 * 8 + 2 });
    const m2 = longMachine({ cpl: 3, user: true });
    const i2 = idtMachine();
    gate64(i2, 0x80, 0x2000n, { dpl: 0 });
    i2.cpu.sregs.cs.dpl = 3;
    i2.cpu.sregs.ss.dpl = 3;
    expect(emulate(hx('cd 80'), i2.cpu, i2.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0x80 * 8 + 2 });
    void m2;
    const m3 = idtMachine();
    gate64(m3, 0x80, 0x2000n, { type: 0xc });
    expect(emulate(hx('cd 80'), m3.cpu, m3.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0x80 * 8 + 2 });
    const m4 = idtMachine();
    gate64(m4, 0x80, 0x2000n, { p: false });
    expect(emulate(hx('cd 80'), m4.cpu, m4.host)).toMatchObject({ kind: 'exception', vector: 11, errorCode: 0x80 * 8 + 2 });
    expect(m4.cpu.regs.rip).toBe(0x1000n); // a fault: nothing changed
  });
  it('#GP(selector) for a gate naming a data segment; a stack #PF leaves memory and registers alone', () => {
    const m = idtMachine();
    gate64(m, 0x80, 0x2000n, { sel: 0x18 });
    expect(emulate(hx('cd 80'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0x18 });
    const p = idtMachine();
    gate64(p, 0x80, 0x2000n);
    p.cpu.regs.rsp = 0x5000_0000n; // unmapped
    expect(emulate(hx('cd 80'), p.cpu, p.host)).toMatchObject({ kind: 'exception', vector: 14 });
    expect(p.cpu.regs.rsp).toBe(0x5000_0000n);
    expect(p.cpu.sregs.cs.selector).toBe(0x10);
  });
  it('uses the IST stack named by the gate, aligned to 16 bytes', () => {
    const m = idtMachine();
    gate64(m, 0x82, 0x2000n, { ist: 1 });
    m.cpu.sregs.tr = seg({ base: DATA + 0x2000n, limit: 0x67, type: 11, s: 0 });
    m.mem.writeU64(DATA_PHYS + 0x2000 + 0x24, DATA + 0x6008n);
    emulate(hx('cd 82'), m.cpu, m.host);
    expect(m.cpu.regs.rsp).toBe(DATA + 0x6000n - 40n);
  });
  it('int1 is a #DB trap', () => {
    const m = longMachine();
    expect(emulate(hx('f1'), m.cpu, m.host)).toEqual({ kind: 'exception', mnemonic: 'int1', vector: 1, trap: true });
    expect(m.cpu.regs.rip).toBe(0x1001n);
  });
});

describe('int n and iret (32-bit protected mode, real mode)', () => {
  function pm() {
    const mem = bufferMemory(0x100000);
    const host = new TestHost(mem);
    const sregs = prot32Sregs({ idt: { base: 0x4000n, limit: 0x7ff }, gdt: { base: 0x5000n, limit: 0x2f } });
    mem.writeU64(0x5010, 0x00cf9b000000ffffn); // 0x10 code32
    mem.writeU64(0x5018, 0x00cf93000000ffffn); // 0x18 data
    mem.writeU64(0x5020, 0x00cffb000000ffffn); // 0x20 code32 DPL3
    mem.writeU64(0x5028, 0x00cff3000000ffffn); // 0x28 data DPL3
    sregs.ss = seg({ selector: 0x18 });
    return { mem, host, cpu: { regs: regs({ rsp: 0x8000n, rflags: 2n | IF }), sregs } };
  }
  it('int pushes EFLAGS, CS, EIP through a 32-bit interrupt gate', () => {
    const m = pm();
    m.mem.writeU64(0x4000 + 8 * 0x80, 0x3000n | (0x10n << 16n) | (0x8en << 40n));
    expect(emulate(hx('cd 80'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'int' });
    expect(m.cpu.regs.rip).toBe(0x3000n);
    expect(m.cpu.regs.rsp).toBe(0x8000n - 12n);
    expect(m.mem.readU32(0x8000 - 12)).toBe(0x1002);
    expect(m.mem.readU32(0x8000 - 8)).toBe(0x10);
    expect(m.mem.readU32(0x8000 - 4)).toBe(Number(2n | IF));
  });
  it('iret returns at the same level, restoring EFLAGS', () => {
    const m = pm();
    m.mem.writeU32(0x7ff4, 0x1234);
    m.mem.writeU32(0x7ff8, 0x10);
    m.mem.writeU32(0x7ffc, 0x2c3); // IF, ZF, CF, PF... bit 1
    m.cpu.regs.rsp = 0x7ff4n;
    expect(emulate(hx('cf'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'iret' });
    expect(m.cpu.regs.rip).toBe(0x1234n);
    expect(m.cpu.regs.rsp).toBe(0x8000n);
    expect(m.cpu.regs.rflags).toBe(0x2c3n);
  });
  it('iret to CPL 3 loads SS:ESP and nulls data segments the outer level may not use', () => {
    const m = pm();
    const frame = [0x4000, 0x23, 0x202, 0x9000, 0x2b];
    frame.forEach((v, i) => m.mem.writeU32(0x7000 + 4 * i, v));
    m.cpu.regs.rsp = 0x7000n;
    m.cpu.sregs.ds = seg({ selector: 0x18, dpl: 0 });
    emulate(hx('cf'), m.cpu, m.host);
    expect(m.cpu.sregs.cs.selector).toBe(0x23);
    expect(m.cpu.sregs.cs.dpl).toBe(3);
    expect(m.cpu.sregs.ss.selector).toBe(0x2b);
    expect(m.cpu.regs.rsp).toBe(0x9000n);
    expect(m.cpu.regs.rip).toBe(0x4000n);
    expect(m.cpu.sregs.ds.unusable).toBe(1);
  });
  it('iret #GP(selector) for a return to a data segment or to a more privileged RPL; NT is refused', () => {
    const m = pm();
    [0x4000, 0x18, 0x202].forEach((v, i) => m.mem.writeU32(0x7000 + 4 * i, v));
    m.cpu.regs.rsp = 0x7000n;
    expect(emulate(hx('cf'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0x18 });
    expect(m.cpu.regs.rsp).toBe(0x7000n);
    const n = pm();
    n.cpu.regs.rflags |= 1n << 14n;
    expect(emulate(hx('cf'), n.cpu, n.host)).toMatchObject({ kind: 'unsupported', mnemonic: 'iret' });
  });
  it('real-mode int pushes FLAGS, CS, IP and jumps through the IVT', () => {
    const mem = bufferMemory(0x100000);
    const host = new TestHost(mem);
    const sregs = realSregs({ idt: { base: 0n, limit: 0x3ff } });
    mem.writeU32(0x21 * 4, (0x1234 << 16) | 0x0010);
    const cpu = { regs: regs({ rsp: 0x8000n, rflags: 2n | IF }), sregs };
    expect(emulate(hx('cd 21'), cpu, host)).toMatchObject({ kind: 'emulated', mnemonic: 'int' });
    expect(cpu.sregs.cs.selector).toBe(0x1234);
    expect(cpu.sregs.cs.base).toBe(0x12340n);
    expect(cpu.regs.rip).toBe(0x10n);
    expect(mem.readU16(0x8000 - 6)).toBe(0x1002);
    expect(cpu.regs.rflags & IF).toBe(0n);
  });
});

describe('xgetbv', () => {
  it('reads XCR0; #UD without CR4.OSXSAVE; #GP for ECX > 1', () => {
    const m = longMachine();
    const host = Object.assign(m.host, { getXcr0: () => 0x2e7n });
    expect(emulate(hx('0f 01 d0'), m.cpu, host)).toMatchObject({ kind: 'exception', vector: 6 });
    m.cpu.sregs.cr4 |= CR4_OSXSAVE;
    m.cpu.regs.rax = 0xffff_ffff_ffff_ffffn;
    expect(emulate(hx('0f 01 d0'), m.cpu, host)).toMatchObject({ kind: 'emulated', mnemonic: 'xgetbv' });
    expect(m.cpu.regs.rax).toBe(0x2e7n);
    expect(m.cpu.regs.rdx).toBe(0n);
    m.cpu.regs.rcx = 2n;
    expect(emulate(hx('0f 01 d0'), m.cpu, host)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0 });
  });
});

describe('xrstor', () => {
  function machine() {
    const m = longMachine();
    m.cpu.sregs.cr4 |= CR4_OSXSAVE;
    let img = new Uint8Array(4096);
    let sets = 0;
    const host = Object.assign(m.host, {
      getXcr0: () => 7n,
      getXsave: () => img.slice(),
      setXsave: (x: Uint8Array) => { img = x.slice(); sets++; },
    });
    m.cpu.regs.rax = 7n;
    m.cpu.regs.rbx = DATA;
    return { m, host, img: () => img, sets: () => sets };
  }
  it('loads x87, SSE, MXCSR and AVX from a standard-form area', () => {
    const t = machine();
    const a = DATA_PHYS;
    t.m.mem.writeU16(a, 0x27f);
    t.m.mem.writeU32(a + 24, 0x1f80);
    t.m.mem.writeU64(a + 160, 0x1111n); // xmm0
    t.m.mem.writeU64(a + 576, 0x2222n); // ymm0 high
    t.m.mem.writeU64(a + 512, 7n);
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'emulated', mnemonic: 'xrstor' });
    const v = new DataView(t.img().buffer);
    expect(v.getUint16(0, true)).toBe(0x27f);
    expect(v.getBigUint64(160, true)).toBe(0x1111n);
    expect(v.getBigUint64(576, true)).toBe(0x2222n);
    expect(v.getBigUint64(512, true)).toBe(7n);
    expect(t.sets()).toBe(1);
  });
  it('initialises components whose XSTATE_BV bit is clear', () => {
    const t = machine();
    t.m.mem.writeU64(DATA_PHYS + 512, 0n);
    emulate(hx('0f ae 2b'), t.m.cpu, t.host);
    expect(new DataView(t.img().buffer).getUint16(0, true)).toBe(0x37f);
  });
  it('#GP for a misaligned area, XSTATE_BV outside XCR0, non-zero reserved header bytes or reserved MXCSR bits; #NM with CR0.TS', () => {
    const t = machine();
    t.m.cpu.regs.rbx = DATA + 8n;
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 13 });
    t.m.cpu.regs.rbx = DATA;
    t.m.mem.writeU64(DATA_PHYS + 512, 0x20n);
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 13 });
    t.m.mem.writeU64(DATA_PHYS + 512, 1n);
    t.m.mem.writeU64(DATA_PHYS + 528, 1n);
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 13 });
    t.m.mem.writeU64(DATA_PHYS + 528, 0n);
    t.m.mem.writeU32(DATA_PHYS + 24, 0x10000);
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 13 });
    t.m.cpu.sregs.cr0 |= CR0_TS;
    expect(emulate(hx('0f ae 2b'), t.m.cpu, t.host)).toMatchObject({ kind: 'exception', vector: 7 });
    expect(t.sets()).toBe(0);
  });
});

describe('clwb, clflushopt, invpcid', () => {
  it('clwb/clflushopt complete on RAM and fault on an unmapped line', () => {
    const m = longMachine();
    m.cpu.regs.rax = DATA;
    expect(emulate(hx('66 0f ae 30'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'clwb' });
    expect(emulate(hx('66 0f ae 38'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'clflushopt' });
    m.cpu.regs.rax = 0x5000_0000n;
    expect(emulate(hx('66 0f ae 30'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 14 });
  });
  it('invpcid: #GP for a type > 3 or at CPL 3, #UD for a register operand, otherwise a refusal naming it', () => {
    const m = longMachine();
    m.cpu.regs.rax = DATA;
    m.cpu.regs.rcx = 4n;
    expect(emulate(hx('66 0f 38 82 08'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 13 });
    m.cpu.regs.rcx = 2n;
    const r = emulate(hx('66 0f 38 82 08'), m.cpu, m.host);
    expect(r).toMatchObject({ kind: 'unsupported', mnemonic: 'invpcid' });
    expect(r.kind === 'unsupported' && r.reason).toMatch(/invpcid/);
    expect(emulate(hx('66 0f 38 82 c8'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 6 });
    const u = longMachine({ cpl: 3, user: true });
    u.cpu.regs.rax = DATA;
    expect(emulate(hx('66 0f 38 82 08'), u.cpu, u.host)).toMatchObject({ kind: 'exception', vector: 13 });
  });
});

describe('x87 on the host CPU', () => {
  it('classifies encodings: names, operand sizes, reserved ones', () => {
    expect(classifyX87(0xd9, 0xee)).toEqual({ kind: 'insn', mnemonic: 'fldz', waiting: true });
    expect(classifyX87(0xdb, 0x28)).toMatchObject({ mnemonic: 'fld', mem: { size: 10, store: false } });
    expect(classifyX87(0xdd, 0x18)).toMatchObject({ mnemonic: 'fstp', mem: { size: 8, store: true } });
    expect(classifyX87(0xd9, 0xd1).kind).toBe('ud');
    expect(classifyX87(0xd9, 0x08).kind).toBe('ud');
    expect(classifyX87(0xdd, 0x30).kind).toBe('unsupported'); // fnsave
  });
  it('fld1; fadd st(0),st(0); fstpl m64 compute 2.0 into memory; FIP/FDP are the guest addresses where the host records them', () => {
    const m = longMachine();
    expect(emulate(hx('d9 e8'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fld1', fpuChanged: true });
    expect(emulate(hx('d8 c0'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fadd' });
    m.cpu.regs.rbx = DATA;
    const rip = m.cpu.regs.rip;
    expect(emulate(hx('dd 1b'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fstp' });
    const dv = new DataView(new ArrayBuffer(8));
    dv.setBigUint64(0, m.mem.readU64(DATA_PHYS), true);
    expect(dv.getFloat64(0, true)).toBe(2);
    // FIP/FDP follow the host CPU's policy: updated (to the guest's addresses), or recorded only
    // with an exception (FDP_EXCPTN_ONLY; AMD's FXSAVE without ES) and so left as they were
    expect([DATA, 0n]).toContain(m.host.fpu.getBigUint64(FPU.lastDp, true));
    expect([rip, 0n]).toContain(m.host.fpu.getBigUint64(FPU.lastIp, true));
    expect(m.host.fpu.getUint8(FPU.ftwx)).toBe(0); // stack empty again
  });
  it('an unmasked exception sets FSW.ES, and the next waiting instruction raises #MF', () => {
    const m = longMachine();
    m.host.fpu.setUint16(FPU.fcw, 0x37b, true); // ZE unmasked
    emulate(hx('d9 e8'), m.cpu, m.host); // fld1
    emulate(hx('d9 ee'), m.cpu, m.host); // fldz
    emulate(hx('de f9'), m.cpu, m.host); // fdivp: 1/0
    expect(m.host.fpu.getUint16(FPU.fsw, true) & 0x84).toBe(0x84); // ZE, ES
    expect(emulate(hx('d9 e8'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 16 });
    // fnstsw ax does not wait
    expect(emulate(hx('df e0'), m.cpu, m.host)).toMatchObject({ kind: 'emulated', mnemonic: 'fnstsw' });
    expect(Number(m.cpu.regs.rax) & 0x84).toBe(0x84);
  });
  it('#NM with CR0.TS; a store to an unmapped page is a #PF with memory and FPU state unchanged', () => {
    const m = longMachine();
    m.cpu.sregs.cr0 |= CR0_TS;
    expect(emulate(hx('d9 ee'), m.cpu, m.host)).toMatchObject({ kind: 'exception', vector: 7 });
    const p = longMachine();
    emulate(hx('d9 e8'), p.cpu, p.host);
    const before = new Uint8Array(p.host.fpu.buffer).slice();
    p.cpu.regs.rbx = 0x5000_0000n;
    expect(emulate(hx('dd 1b'), p.cpu, p.host)).toMatchObject({ kind: 'exception', vector: 14 });
    expect(new Uint8Array(p.host.fpu.buffer)).toEqual(before);
  });
  it('runs in 32-bit protected mode too (memory operand through the guest segments)', () => {
    const mem = bufferMemory(0x100000);
    const host = new TestHost(mem);
    const cpu = { regs: regs({ rbx: 0x3000n }), sregs: prot32Sregs() };
    mem.writeU32(0x3000, 41);
    expect(emulate(hx('db 03'), cpu, host)).toMatchObject({ kind: 'emulated', mnemonic: 'fild' });
    expect(emulate(hx('d9 e8'), cpu, host)).toMatchObject({ mnemonic: 'fld1' });
    expect(emulate(hx('de c1'), cpu, host)).toMatchObject({ mnemonic: 'faddp' });
    expect(emulate(hx('db 5b 04'), cpu, host)).toMatchObject({ mnemonic: 'fistp' });
    expect(mem.readU32(0x3004)).toBe(42);
  });
});

import { describe, expect, it } from 'vitest';
import { CODE, DATA, GDT, IF, TSS, asm, machine, runAsm, setGate } from './helpers.js';

/** Put `handler` code at CODE + 0x800 and point `vector` at it. */
function withHandler(main: string, vectors: number[], handler: string, opts: { ist?: number } = {}) {
  const m = machine(main + '\nhlt');
  const h = asm(handler + '\nhlt');
  m.mem.set(h, CODE + 0x800);
  for (const v of vectors) setGate(m.view, v, CODE + 0x800, opts);
  return m;
}

describe('engine: system instructions', () => {
  it('hlt stops with RIP past it; budget stops', () => {
    const m = machine('nop\nnop\nhlt');
    expect(m.e.run(1)).toEqual({ kind: 'budget' });
    expect(m.e.run(10)).toEqual({ kind: 'hlt' });
    expect(m.e.save().regs.rip).toBe(BigInt(CODE + 3));
    expect(() => m.e.run(-1)).toThrow(RangeError);
  });
  it('in/out through EngineIo, cpuid, rdtsc/rdtscp', () => {
    const m = machine('mov dx, 0x3f8\nmov al, 0x41\nout dx, al\nin eax, 0x60\nmov r8d, eax\nmov eax, 1\ncpuid\nrdtsc\nrdtscp\nhlt', undefined, {
      cpuid: (leaf) => [leaf + 1, 2, 3, 4], tsc: () => 0x123456789n,
    });
    m.io.ports.set(0x60, 0xabcd);
    expect(m.e.run(100).kind).toBe('hlt');
    const s = m.e.save();
    expect(m.io.writes).toEqual([[0x3f8, 1, 0x41]]);
    expect(s.regs.r8).toBe(0xabcdn);
    expect(s.regs.rbx).toBe(2n);
    expect(s.regs.rax).toBe(0x23456789n);
    expect(s.regs.rdx).toBe(1n);
    expect(s.regs.rcx).toBe(7n); // TSC_AUX
  });
  it('rdmsr/wrmsr (EFER, FS/GS base, KERNEL_GS_BASE), swapgs, unknown MSR #GP', () => {
    const r = runAsm(`
      mov ecx, 0xc0000100
      mov eax, 0x1000
      mov edx, 0
      wrmsr
      mov rbx, fs:[0x40000 - 0x1000]
      mov ecx, 0xc0000102
      mov eax, 0x2000
      wrmsr
      swapgs
      mov ecx, 0xc0000101
      rdmsr
      mov r8d, eax
      mov ecx, 0xc0000080
      rdmsr
      mov r9d, eax`);
    expect(r.s.sregs.fs.base).toBe(0x1000n);
    expect(r.s.sregs.gs.base).toBe(0x2000n);
    expect(r.s.regs.r8).toBe(0x2000n);
    expect(r.s.regs.r9).toBe(0xd01n);
    const m = withHandler('mov ecx, 0x12345\nrdmsr', [13], 'mov r15, [rsp]');
    expect(m.e.run(100).kind).toBe('hlt');
    expect(m.e.save().regs.r15).toBe(0n); // error code 0
  });
  it('mov to/from CRs tells the MMU; invlpg; lgdt/sidt; mov ds loads from the GDT', () => {
    const r = runAsm(`
      mov rax, cr3
      add rax, 0x1000
      mov cr3, rax
      mov r8, cr0
      mov rax, 5
      mov cr8, rax
      invlpg [0x5000]
      sidt [${DATA}]
      mov word ptr [${DATA + 16}], 0x37
      mov qword ptr [${DATA + 18}], ${GDT}
      lgdt [${DATA + 16}]
      mov ax, 0x30
      mov ds, ax
      mov ax, 0
      mov es, ax`);
    expect(r.stop.kind).toBe('hlt');
    expect(r.mmu.control?.cr3).toBe(0x101000n);
    expect(r.s.regs.r8).toBe(0x80050033n);
    expect(r.s.sregs.cr8).toBe(5n);
    expect(r.mmu.invalidated).toEqual([0x5000n]);
    expect(r.view.getUint16(DATA, true)).toBe(0xfff);
    expect(r.s.sregs.gdt.limit).toBe(0x37);
    expect(r.s.sregs.ds.base).toBe(0x12345n);
    expect(r.s.sregs.ds.selector).toBe(0x30);
    expect(r.s.sregs.es.unusable).toBe(1);
  });
  it('cli/sti and popf change IF', () => {
    const r = runAsm('sti\npushfq\npop r8\ncli');
    expect(r.s.regs.r8 & IF).toBe(IF);
    expect(r.s.regs.rflags & IF).toBe(0n);
  });
});

describe('engine: exceptions and interrupts', () => {
  it('int3 and int n push the next RIP; iretq returns (CPL 0)', () => {
    const m = withHandler('int3\nmov r9, 1\nint 0x80\nmov r10, 2', [3, 0x80], 'inc r8\niretq');
    // the handler's hlt is never reached: iretq returns first
    expect(m.e.run(100).kind).toBe('hlt');
    const s = m.e.save();
    expect([s.regs.r8, s.regs.r9, s.regs.r10]).toEqual([2n, 1n, 2n]);
    expect(s.regs.rsp).toBe(0x80000n);
  });
  it('#PF pushes an error code and sets CR2; IST switches stacks', () => {
    const m = withHandler('mov rax, 0x200000\nmov byte ptr [rax], 1', [14], 'mov r8, [rsp]\nmov r9, cr2\nmov r10, rsp', { ist: 1 });
    m.view.setBigUint64(TSS + 0x24, 0x70000n, true);
    expect(m.e.run(100).kind).toBe('hlt');
    const s = m.e.save();
    expect(s.regs.r8).toBe(2n);
    expect(s.regs.r9).toBe(0x200000n);
    expect(s.regs.r10).toBe(0x70000n - 48n);
    expect(s.sregs.cr2).toBe(0x200000n);
    expect(s.regs.rflags & IF).toBe(0n);
  });
  it('#UD for invalid opcodes and ud2; #GP for > 15 bytes; unsupported stops without changes', () => {
    for (const bad of [[0x0f, 0x0b], [0x06], [0xf0, 0x90], Array(15).fill(0x66).concat([0x90])]) {
      const m = machine(Uint8Array.from([...bad, 0xf4]));
      m.mem.set(asm('mov r15, [rsp]\nmov r14, 0xee\nhlt'), CODE + 0x800);
      setGate(m.view, 6, CODE + 0x800);
      setGate(m.view, 13, CODE + 0x800);
      expect(m.e.run(100).kind, bad.join(',')).toBe('hlt');
      expect(m.e.save().regs.r14).toBe(0xeen);
    }
    const m = machine(Uint8Array.from([0x0f, 0x28, 0xc1, 0xf4])); // movaps
    const stop = m.e.run(10);
    expect(stop.kind).toBe('unsupported');
    if (stop.kind === 'unsupported') {
      expect(stop.rip).toBe(BigInt(CODE));
      expect(Array.from(stop.bytes)).toEqual([0x0f, 0x28, 0xc1]);
    }
  });
  it('an absent IDT entry escalates to #DF, and a failing #DF is a shutdown', () => {
    const m = withHandler('ud2', [8], 'mov r8, 8');
    expect(m.e.run(100).kind).toBe('hlt');
    expect(m.e.save().regs.r8).toBe(8n);
    const n = machine('ud2\nhlt');
    n.view.setUint8(0x2000 + 6 * 16 + 5, 0x8e); // #UD gate present but CS selector 0
    expect(n.e.run(100)).toEqual({ kind: 'shutdown', vector: 13 });
  });
  it('fuzzed bytes never crash the host', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
    for (let t = 0; t < 300; t++) {
      const m = machine(Uint8Array.from({ length: 64 }, rnd));
      for (let v = 0; v < 32; v++) setGate(m.view, v, CODE + 0x800);
      m.mem[CODE + 0x800] = 0xf4;
      const stop = m.e.run(200);
      expect(['budget', 'hlt', 'unsupported', 'shutdown', 'cpl3']).toContain(stop.kind);
      if (stop.kind === 'unsupported') expect(stop.reason).not.toMatch(/^engine error/);
    }
  });
});

describe('engine: leaving ring 0, code writes', () => {
  it('iretq to CPL 3 stops with the user state', () => {
    const r = runAsm(`
      push 0x23
      push 0x7000
      push 0x202
      push 0x2b
      push 0x400000
      iretq`);
    expect(r.stop).toEqual({ kind: 'cpl3' });
    expect(r.s.regs.rip).toBe(0x400000n);
    expect(r.s.regs.rsp).toBe(0x7000n);
    expect(r.s.sregs.cs.selector).toBe(0x2b);
    expect(r.s.sregs.cs.dpl).toBe(3);
    expect(r.s.sregs.cs.l).toBe(1);
    expect(r.s.sregs.ss.selector).toBe(0x23);
    expect(r.mmu.control?.cpl).toBe(3);
  });
  it('sysretq goes to CPL 3 with RIP=RCX, RFLAGS=R11', () => {
    const r = runAsm('mov rcx, 0x401000\nmov r11, 0x246\nsysretq');
    expect(r.stop).toEqual({ kind: 'cpl3' });
    expect(r.s.regs.rip).toBe(0x401000n);
    expect(r.s.regs.rflags).toBe(0x246n);
    expect(r.s.sregs.cs.selector).toBe(0x33);
    expect(r.s.sregs.ss.selector).toBe(0x2b);
  });
  it('self-modifying code: a write to decoded code is seen', () => {
    const r = runAsm(`
      mov ecx, 2
    1: mov eax, 1
      lea rbx, [rip + 1b + 1]
      mov dword ptr [rbx], 7
      loop 1b`);
    expect(r.s.regs.rax).toBe(7n);
  });
  it('load/save round-trips and validates', () => {
    const m = machine('hlt');
    const s = m.e.save();
    m.e.load(s);
    expect(m.e.save()).toEqual(s);
    expect(() => m.e.load({} as never)).toThrow(TypeError);
  });
});

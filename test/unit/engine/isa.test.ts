import { describe, expect, it } from 'vitest';
import { AF, CF, DATA, DF, OF, PF, SF, STATUS, ZF, runAsm, setGate, machine, IDT } from './helpers.js';

const flags = (r: { s: { regs: { rflags: bigint } } }) => r.s.regs.rflags & STATUS;

describe('engine: shifts and rotates', () => {
  it('shl/shr/sar by 1, cl and imm', () => {
    let r = runAsm('mov al, 0xc1\nshl al, 1');
    expect(r.s.regs.rax).toBe(0x82n);
    expect(flags(r) & (CF | OF | SF | ZF)).toBe(CF | SF);
    r = runAsm('mov eax, 0x80000001\nshr eax, 1');
    expect(r.s.regs.rax).toBe(0x40000000n);
    expect(flags(r) & (CF | OF)).toBe(CF | OF);
    r = runAsm('mov rax, -16\nmov cl, 66\nsar rax, cl'); // count masked to 2
    expect(r.s.regs.rax).toBe(0xfffffffffffffffcn);
    expect(flags(r) & (CF | SF)).toBe(SF);
    r = runAsm('mov eax, 1\nstc\nmov cl, 32\nshl eax, cl'); // masked to 0: nothing changes
    expect(r.s.regs.rax).toBe(1n);
    expect(flags(r) & CF).toBe(CF);
  });
  it('rol/ror/rcl/rcr', () => {
    let r = runAsm('mov al, 0x81\nrol al, 1');
    expect(r.s.regs.rax).toBe(0x03n);
    expect(flags(r) & (CF | OF)).toBe(CF | OF);
    r = runAsm('mov ax, 0x0001\nror ax, 1');
    expect(r.s.regs.rax).toBe(0x8000n);
    expect(flags(r) & (CF | OF)).toBe(CF | OF);
    r = runAsm('stc\nmov al, 0x80\nrcl al, 1');
    expect(r.s.regs.rax).toBe(0x01n);
    expect(flags(r) & CF).toBe(CF);
    r = runAsm('stc\nmov rax, 0\nrcr rax, 1');
    expect(r.s.regs.rax).toBe(0x8000000000000000n);
    expect(flags(r) & (CF | OF)).toBe(OF);
    r = runAsm('clc\nmov al, 1\nrcl al, 9'); // 9-bit rotate by 9 = identity
    expect(r.s.regs.rax).toBe(1n);
  });
  it('shld/shrd', () => {
    const r = runAsm('mov eax, 0x12345678\nmov ebx, 0x9abcdef0\nshld eax, ebx, 8\nmov ecx, 0x12345678\nshrd ecx, ebx, 4');
    expect(r.s.regs.rax).toBe(0x3456789an);
    expect(r.s.regs.rcx).toBe(0x01234567n);
  });
});

describe('engine: mul/div', () => {
  it('mul/imul forms', () => {
    const r = runAsm(`
      mov rax, 0xffffffffffffffff
      mov rbx, 2
      mul rbx
      mov r8, rax
      mov r9, rdx
      mov eax, -3
      mov ecx, 7
      imul ecx
      mov r10, rax
      mov r11, rdx
      mov rsi, -5
      imul rsi, rsi, 3
      mov al, 0x10
      mov bl, 0x10
      mul bl
      mov rdi, 6
      imul rdi, rbx`);
    expect(r.s.regs.r8).toBe(0xfffffffffffffffen);
    expect(r.s.regs.r9).toBe(1n);
    expect(r.s.regs.r10).toBe(0xffffffebn);
    expect(r.s.regs.r11).toBe(0xffffffffn);
    expect(r.s.regs.rsi).toBe(0xfffffffffffffff1n);
    expect(r.s.regs.rax & 0xffffn).toBe(0x100n);
    expect(r.s.regs.rdi).toBe(0x60n);
  });
  it('div/idiv', () => {
    const r = runAsm(`
      xor edx, edx
      mov eax, 100
      mov ecx, 7
      div ecx
      mov r8, rax
      mov r9, rdx
      mov rax, -100
      cqo
      mov rcx, 7
      idiv rcx
      mov ax, 0x0107
      mov bl, 2
      div bl`);
    expect(r.s.regs.r8).toBe(14n);
    expect(r.s.regs.r9).toBe(2n);
    expect(r.s.regs.rdx).toBe(0xfffffffffffffffen);
    expect(r.s.regs.rax & 0xffffn).toBe(0x0183n);
  });
  it('#DE on divide by zero and on overflow, delivered through the IDT', () => {
    for (const src of ['xor ecx, ecx\ndiv ecx', 'mov edx, 1\nmov eax, 0\nmov ecx, 1\ndiv ecx', 'mov rax, 0x8000000000000000\ncqo\nmov rcx, -1\nidiv rcx']) {
      const m = machine(`${src}\nhlt\nhandler: mov r15, 0xde\nhlt`);
      const code = m.mem.indexOf(0xf4, 0x10000); // the first hlt; the handler follows it
      setGate(m.view, 0, code + 1);
      expect(m.e.run(1000)).toEqual({ kind: 'hlt' });
      const s = m.e.save();
      expect(s.regs.r15, src).toBe(0xden);
      // the frame: RIP of the faulting DIV, CS, RFLAGS, RSP, SS
      const rsp = Number(s.regs.rsp);
      expect(m.view.getBigUint64(rsp + 8, true)).toBe(8n);
      expect(m.view.getBigUint64(rsp + 24, true)).toBe(0x80000n);
    }
  });
});

describe('engine: bit ops, exchange, conditional ops', () => {
  it('bt/bts/btr/btc (reg and memory with bit offsets), bsf/bsr, bswap', () => {
    const r = runAsm(`
      mov rbx, ${DATA}
      mov qword ptr [rbx], 0
      mov rcx, 67
      bts [rbx], rcx
      mov eax, 0x10
      bt eax, 4
      setc r8b
      btc eax, 4
      mov r9, rax
      mov edx, 0x100
      bsf esi, edx
      bsr edi, edx
      mov r10, 0x0102030405060708
      bswap r10
      mov r11d, 0x11223344
      bswap r11d`);
    expect(r.view.getUint8(DATA + 8)).toBe(8);
    expect(r.s.regs.r8).toBe(1n);
    expect(r.s.regs.r9).toBe(0n);
    expect(r.s.regs.rsi).toBe(8n);
    expect(r.s.regs.rdi).toBe(8n);
    expect(r.s.regs.r10).toBe(0x0807060504030201n);
    expect(r.s.regs.r11).toBe(0x44332211n);
  });
  it('bsf of zero sets ZF and leaves the destination', () => {
    const r = runAsm('mov rax, 5\nxor ecx, ecx\nbsf rax, rcx');
    expect(r.s.regs.rax).toBe(5n);
    expect(flags(r) & ZF).toBe(ZF);
  });
  it('xchg/xadd/cmpxchg (also locked, through the MMU rmw hook)', () => {
    const r = runAsm(`
      mov rbx, ${DATA}
      mov dword ptr [rbx], 10
      mov eax, 5
      lock xadd [rbx], eax
      mov r8d, eax
      mov eax, 15
      mov ecx, 99
      lock cmpxchg [rbx], ecx
      setz r9b
      mov eax, 1
      cmpxchg [rbx], ecx
      mov r10d, eax
      mov edx, 7
      xchg [rbx], edx
      lock inc dword ptr [rbx]
      lock add dword ptr [rbx], 10`);
    expect(r.s.regs.r8).toBe(10n);
    expect(r.s.regs.r9).toBe(1n);
    expect(r.s.regs.r10).toBe(99n);
    expect(r.s.regs.rdx).toBe(99n);
    expect(r.view.getUint32(DATA, true)).toBe(18);
    expect(r.mmu.rmwCalls).toBeGreaterThanOrEqual(4);
  });
  it('setcc/cmovcc for signed and unsigned compares', () => {
    const r = runAsm(`
      mov eax, -1
      cmp eax, 1
      setl r8b
      setb r9b
      seta r10b
      setg r11b
      mov ecx, 42
      mov edx, 0x77
      cmovl edx, ecx
      mov rsi, -1
      cmovg esi, ecx`);
    expect([r.s.regs.r8, r.s.regs.r9, r.s.regs.r10, r.s.regs.r11]).toEqual([1n, 0n, 1n, 0n]);
    expect(r.s.regs.rdx).toBe(42n);
    expect(r.s.regs.rsi).toBe(0xffffffffn); // 32-bit cmov zero-extends even when false
  });
  it('lahf/sahf, clc/stc/cmc, pushf/popf, enter/leave, loop/jrcxz', () => {
    const r = runAsm(`
      stc
      cmc
      mov ah, 0xd5
      sahf
      lahf
      mov r8d, eax
      pushfq
      pop r9
      push 0x202
      popfq
      pushfq
      pop r10
      enter 32, 0
      mov r11, rbp
      leave
      xor eax, eax
      mov ecx, 5
    1: inc eax
      loop 1b
      jrcxz 2f
      mov eax, 0
    2: nop`);
    expect(r.s.regs.r8 & 0xff00n).toBe(0xd700n);
    expect(r.s.regs.r9 & STATUS).toBe(CF | PF | AF | ZF | SF);
    expect(r.s.regs.r10).toBe(0x202n);
    expect(r.s.regs.r11).toBe(0x80000n - 8n);
    expect(r.s.regs.rsp).toBe(0x80000n);
    expect(r.s.regs.rax).toBe(5n);
  });
});

describe('engine: string instructions', () => {
  it('rep movsb/stosq, DF, repe cmpsb, repne scasb, lodsw', () => {
    const r = runAsm(`
      mov rsi, ${DATA}
      mov rdi, ${DATA + 0x100}
      mov dword ptr [rsi], 0x44434241
      mov ecx, 4
      cld
      rep movsb
      mov rdi, ${DATA + 0x200}
      mov rax, 0x1111111111111111
      mov ecx, 3
      rep stosq
      mov rsi, ${DATA}
      mov rdi, ${DATA + 0x100}
      mov ecx, 8
      repe cmpsb
      mov r8, rcx
      mov rdi, ${DATA}
      mov al, 0x43
      mov ecx, 10
      repne scasb
      mov r9, rcx
      std
      mov rsi, ${DATA + 2}
      lodsw
      mov r10, rsi
      cld`);
    expect(r.view.getUint32(DATA + 0x100, true)).toBe(0x44434241);
    expect(r.view.getBigUint64(DATA + 0x210, true)).toBe(0x1111111111111111n);
    expect(r.view.getBigUint64(DATA + 0x218, true)).toBe(0n);
    expect(r.s.regs.r8).toBe(0n); // all 8 bytes equal (4 copied, 4 zero)
    expect(r.s.regs.r9).toBe(7n);
    expect(r.s.regs.rax & 0xffffn).toBe(0x4443n);
    expect(r.s.regs.r10).toBe(BigInt(DATA));
    expect(r.s.regs.rflags & DF).toBe(0n);
  });
  it('a huge rep stos respects the budget and resumes', () => {
    const m = machine(`mov rdi, ${DATA}\nmov ecx, 20000\nxor eax, eax\nrep stosb\nhlt`);
    let stop = m.e.run(4);
    expect(stop.kind).toBe('budget');
    let n = 0;
    while ((stop = m.e.run(1)).kind === 'budget') n++;
    expect(stop.kind).toBe('hlt');
    expect(n).toBeGreaterThan(1);
    expect(m.e.save().regs.rcx).toBe(0n);
    void IDT; void OF;
  });
});

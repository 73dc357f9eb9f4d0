import { describe, expect, it } from 'vitest';
import { AF, CF, DATA, OF, PF, SF, STATUS, ZF, runAsm } from './helpers.js';

describe('engine: mov, alu, flags', () => {
  it('runs to hlt with RIP past it', () => {
    const r = runAsm('mov eax, 5\nadd eax, 7');
    expect(r.stop).toEqual({ kind: 'hlt' });
    expect(r.s.regs.rax).toBe(12n);
    expect(r.e.retired).toBe(3);
  });
  it('32-bit writes zero-extend; 8/16-bit writes merge; AH..BH without REX', () => {
    const r = runAsm(`
      mov rax, 0x1122334455667788
      mov rbx, rax
      mov rcx, rax
      mov rdx, rax
      mov eax, 0xdeadbeef
      mov bx, 0xaaaa
      mov cl, 0x55
      mov dh, 0x99
      mov rsi, rdx
      mov sil, 0x12`);
    expect(r.s.regs.rax).toBe(0xdeadbeefn);
    expect(r.s.regs.rbx).toBe(0x112233445566aaaan);
    expect(r.s.regs.rcx).toBe(0x1122334455667755n);
    expect(r.s.regs.rdx).toBe(0x1122334455669988n);
    expect(r.s.regs.rsi).toBe(0x1122334455669912n);
  });
  it('add/sub/cmp flags', () => {
    const cases: [string, bigint, bigint][] = [
      ['mov al, 0x7f\nadd al, 1', 0x80n, SF | OF | AF],
      ['mov al, 0xff\nadd al, 1', 0n, ZF | CF | AF | PF],
      ['mov eax, 0\nsub eax, 1', 0xffffffffn, SF | CF | AF | PF],
      ['mov rax, 0x8000000000000000\nsub rax, 1', 0x7fffffffffffffffn, OF | AF | PF],
      ['mov ax, 5\ncmp ax, 5', 5n, ZF | PF],
      ['mov eax, 0xf0\nxor eax, 0x0f', 0xffn, PF],
      ['stc\nmov al, 0xff\nadc al, 0', 0n, ZF | CF | AF | PF],
      ['stc\nmov al, 0\nsbb al, 0', 0xffn, SF | CF | AF | PF],
      ['mov al, 1\nneg al', 0xffn, SF | CF | AF | PF],
      ['mov al, 0\nneg al', 0n, ZF | PF],
      ['stc\nmov al, 0x7f\ninc al', 0x80n, CF | SF | OF | AF],
      ['clc\nmov al, 0x80\ndec al', 0x7fn, OF | AF],
    ];
    for (const [src, rax, flags] of cases) {
      const r = runAsm(src);
      expect(r.s.regs.rax & 0xffffffffffffffffn, src).toBe(rax);
      expect(r.s.regs.rflags & STATUS, src).toBe(flags);
    }
  });
  it('memory operands, SIB, RIP-relative, moffs', () => {
    const r = runAsm(`
      mov rbx, ${DATA}
      mov rcx, 2
      mov qword ptr [rbx + rcx*8 + 16], 0x1234
      mov rax, [rbx + 32]
      lea rdx, [rip + lbl]
      add dword ptr [rbx + rcx*8 + 16], 0x10
      mov esi, [rbx + 32]
      movabs al, [${DATA + 32}]
      jmp lbl
      lbl: nop`);
    expect(r.s.regs.rax & 0xffn).toBe(0x44n);
    expect(r.s.regs.rsi).toBe(0x1244n);
    expect(r.view.getBigUint64(DATA + 32, true)).toBe(0x1244n);
    expect(r.s.regs.rdx).toBe(r.s.regs.rip - 2n); // lbl is the nop; RIP is past the hlt after it
  });
  it('movzx/movsx/movsxd, cbw family', () => {
    const r = runAsm(`
      mov eax, 0x80
      movsx rbx, al
      movzx ecx, al
      mov edx, 0x80000000
      movsxd rsi, edx
      mov eax, 0x8000
      cwde
      cdqe
      cqo
      mov r8, rdx`);
    expect(r.s.regs.rbx).toBe(0xffffffffffffff80n);
    expect(r.s.regs.rcx).toBe(0x80n);
    expect(r.s.regs.rsi).toBe(0xffffffff80000000n);
    expect(r.s.regs.rax).toBe(0xffffffffffff8000n);
    expect(r.s.regs.r8).toBe(0xffffffffffffffffn);
  });
  it('loops with jcc and push/pop/call/ret', () => {
    const r = runAsm(`
      xor eax, eax
      mov ecx, 100
    1: add rax, rcx
      dec ecx
      jnz 1b
      push rax
      call f
      pop rbx
      jmp 2f
    f: mov rdx, [rsp + 8]
      ret
    2: nop`);
    expect(r.s.regs.rax).toBe(5050n);
    expect(r.s.regs.rbx).toBe(5050n);
    expect(r.s.regs.rdx).toBe(5050n);
    expect(r.s.regs.rsp).toBe(0x80000n);
  });
});

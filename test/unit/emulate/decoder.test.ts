import { describe, expect, it } from 'vitest';
import { decode, type DecodedInsn, type DecodeResult } from '../../../src/emulate/decoder.js';
import { hx } from './helpers.js';

const L64 = { long: true, default32: true };
const P32 = { long: false, default32: true };
const P16 = { long: false, default32: false };

function insn(r: DecodeResult): DecodedInsn {
  if (r.kind !== 'insn') throw new Error(`expected insn, got ${JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? `${v}` : v))}`);
  return r;
}

describe('decode: supported instructions', () => {
  const cases: [string, string, number, object?][] = [
    ['cc', 'int3', 1],
    ['0f 01 ca', 'clac', 3],
    ['0f 01 cb', 'stac', 3],
    ['f3 0f b8 c1', 'popcnt', 4, { operandSize: 4 }],
    ['f3 48 0f b8 c1', 'popcnt', 5, { operandSize: 8 }],
    ['66 f3 0f b8 c1', 'popcnt', 5, { operandSize: 2 }],
    ['f3 66 0f b8 c1', 'popcnt', 5, { operandSize: 2 }],
    ['f3 0f bd 07', 'lzcnt', 4],
    ['f3 4d 0f bc 44 24 08', 'tzcnt', 7],
    ['9b', 'fwait', 1],
    ['db e3', 'fninit', 2],
    ['db e2', 'fnclex', 2],
    ['0f ae 10', 'ldmxcsr', 3],
    ['0f ae 5c 24 fc', 'stmxcsr', 5],
    ['0f ae e8', 'lfence', 3],
    ['0f ae f0', 'mfence', 3],
    ['0f ae f8', 'sfence', 3],
    ['f0 48 0f c7 0e', 'cmpxchg16b', 5],
    ['f0 0f c7 0e', 'cmpxchg8b', 4],
    ['66 44 0f 6e f9', 'movd', 5],
    ['66 48 0f 6e c0', 'movq', 5],
    ['66 0f 7e c0', 'movd', 4],
    ['66 48 0f 7e c0', 'movq', 5],
    ['f3 0f 7e c1', 'movq', 4],
    ['66 0f d6 07', 'movq', 4],
    ['66 0f 6f 06', 'movdqa', 4],
    ['66 0f 7f 07', 'movdqa', 4],
    ['f3 0f 6f 06', 'movdqu', 4],
    ['f3 44 0f 7f 7f 10', 'movdqu', 6],
    ['0f 28 c1', 'movaps', 3],
    ['0f 29 07', 'movaps', 3],
    ['66 0f 28 c1', 'movapd', 4],
    ['0f 10 07', 'movups', 3],
    ['0f 11 07', 'movups', 3],
    ['66 0f 11 07', 'movupd', 4],
    ['66 0f e7 07', 'movntdq', 4],
    ['0f 2b 07', 'movntps', 3],
    ['66 0f ef c0', 'pxor', 4],
    ['0f 57 c0', 'xorps', 3],
    ['66 0f 57 c0', 'xorpd', 4],
    ['66 45 0f ef ff', 'pxor', 5],
  ];
  it.each(cases)('%s → %s', (bytes, mnemonic, length, extra) => {
    const d = insn(decode(hx(bytes), L64));
    expect(d.mnemonic).toBe(mnemonic);
    expect(d.length).toBe(length);
    if (extra) expect(d).toMatchObject(extra);
  });

  it('decodes REX fields into ModRM registers', () => {
    const d = insn(decode(hx('66 44 0f 6e f9'), L64)); // movd xmm15, ecx
    expect(d.modrm).toEqual({ byte: 0xf9, mod: 3, reg: 15, rm: 1 });
    const e = insn(decode(hx('f3 4d 0f b8 c8'), L64)); // popcnt r9, r8
    expect(e.modrm).toMatchObject({ reg: 9, rm: 8 });
    expect(e.operandSize).toBe(8);
  });

  it('applies REX only when it immediately precedes the opcode', () => {
    // 48 f3 0f b8 c1: the REX is followed by a legacy prefix and is ignored.
    const d = insn(decode(hx('48 f3 0f b8 c1'), L64));
    expect(d.rex).toBe(0);
    expect(d.operandSize).toBe(4);
    // Two REX prefixes: the last one counts.
    const e = insn(decode(hx('f3 41 48 0f b8 c1'), L64));
    expect(e.rex).toBe(0x48);
    expect(e.modrm?.rm).toBe(1);
  });

  it('treats 40-4f as INC/DEC outside 64-bit mode', () => {
    const r = decode(hx('48 0f 01 ca'), P32);
    expect(r).toMatchObject({ kind: 'unknown', length: 1 });
  });

  it('uses the last of F2/F3 as the mandatory prefix', () => {
    expect(insn(decode(hx('f2 f3 0f b8 c1'), L64)).mnemonic).toBe('popcnt');
    expect(decode(hx('f3 f2 0f b8 c1'), L64).kind).toBe('unknown');
    expect(decode(hx('0f b8 c1'), L64).kind).toBe('unknown'); // JMPE / no F3
    expect(decode(hx('0f bc c1'), L64).kind).toBe('unknown'); // BSF
    expect(decode(hx('0f 6f c1'), L64).kind).toBe('unknown'); // MMX movq
  });

  it('sizes operands and addresses by mode and prefixes', () => {
    expect(insn(decode(hx('f3 0f b8 c1'), P32))).toMatchObject({ operandSize: 4, addressSize: 4 });
    expect(insn(decode(hx('f3 0f b8 c1'), P16))).toMatchObject({ operandSize: 2, addressSize: 2 });
    expect(insn(decode(hx('66 f3 0f b8 c1'), P16))).toMatchObject({ operandSize: 4 });
    expect(insn(decode(hx('67 f3 0f b8 01'), P16))).toMatchObject({ addressSize: 4 });
    expect(insn(decode(hx('67 f3 0f b8 01'), L64))).toMatchObject({ addressSize: 4 });
    expect(insn(decode(hx('66 48 f3 0f b8 c1'), L64)).operandSize).toBe(2); // REX cancelled by the F3 after it; 66 applies
    expect(insn(decode(hx('66 f3 48 0f b8 c1'), L64)).operandSize).toBe(8); // REX.W beats 66
  });
});

describe('decode: addressing forms', () => {
  it('decodes SIB with scale, index and disp8', () => {
    // popcnt eax, [rbx + rsi*4 - 8]
    const d = insn(decode(hx('f3 0f b8 44 b3 f8'), L64));
    expect(d.mem).toEqual({ base: 3, index: 6, scale: 4, disp: -8n, ripRelative: false, segment: 'ds' });
    expect(d.length).toBe(6);
  });
  it('decodes SIB without base (mod 0, base 5) and REX.X index', () => {
    // popcnt eax, [r9*8 + 0x12345678]
    const d = insn(decode(hx('f3 42 0f b8 04 cd 78 56 34 12'), L64));
    expect(d.mem).toEqual({ index: 9, scale: 8, disp: 0x12345678n, ripRelative: false, segment: 'ds' });
  });
  it('decodes index 4 (RSP) as no index, REX.X=1 as R12', () => {
    expect(insn(decode(hx('f3 0f b8 04 24'), L64)).mem).toMatchObject({ base: 4, segment: 'ss' });
    expect(insn(decode(hx('f3 0f b8 04 24'), L64)).mem?.index).toBeUndefined();
    expect(insn(decode(hx('f3 42 0f b8 04 24'), L64)).mem).toMatchObject({ base: 4, index: 12 });
  });
  it('decodes RIP-relative in 64-bit mode and disp32 absolute in 32-bit mode', () => {
    const d = insn(decode(hx('0f ae 15 00 10 00 00'), L64));
    expect(d.mem).toMatchObject({ ripRelative: true, disp: 0x1000n });
    expect(d.length).toBe(7);
    const e = insn(decode(hx('0f ae 15 00 10 00 00'), P32));
    expect(e.mem).toMatchObject({ ripRelative: false, disp: 0x1000n });
    expect(e.mem?.base).toBeUndefined();
  });
  it('decodes mod 2 disp32 with R13 base (REX.B) and the RBP default segment', () => {
    const d = insn(decode(hx('f3 41 0f b8 85 00 01 00 00'), L64));
    expect(d.mem).toMatchObject({ base: 13, disp: 0x100n });
    expect(insn(decode(hx('f3 0f b8 45 00'), P32)).mem).toMatchObject({ base: 5, segment: 'ss' });
  });
  it('decodes 16-bit addressing forms', () => {
    expect(insn(decode(hx('f3 0f b8 00'), P16)).mem).toMatchObject({ base: 3, index: 6, segment: 'ds' }); // [bx+si]
    expect(insn(decode(hx('f3 0f b8 42 10'), P16)).mem).toMatchObject({ base: 5, index: 6, disp: 0x10n, segment: 'ss' }); // [bp+si+10]
    const d = insn(decode(hx('f3 0f b8 06 34 12'), P16)); // [0x1234]
    expect(d.mem).toEqual({ scale: 1, disp: 0x1234n, ripRelative: false, segment: 'ds' });
    expect(d.length).toBe(6);
    expect(insn(decode(hx('f3 0f b8 87 fe ff'), P16)).mem).toMatchObject({ base: 3, disp: -2n }); // [bx-2]
  });
  it('keeps segment overrides (last wins)', () => {
    expect(insn(decode(hx('64 65 f3 0f b8 00'), L64)).mem?.segment).toBe('gs');
    expect(insn(decode(hx('2e f3 0f b8 45 00'), P32)).mem?.segment).toBe('cs');
  });
});

describe('decode: errors', () => {
  it('reports truncated bytes distinctly', () => {
    for (const b of ['', 'f3', 'f3 0f', 'f3 0f b8', 'f3 0f b8 84', 'f3 0f b8 84 24', 'f3 0f b8 84 24 00 00 00', '66 0f 6f 05 00 00', '0f', '0f 01', 'db', '48']) {
      const r = decode(hx(b), L64);
      expect(r.kind, b).toBe('need-more-bytes');
      if (r.kind === 'need-more-bytes') expect(r.need).toBeGreaterThan(hx(b).length);
    }
  });
  it('accepts exactly 15 bytes and rejects 16 with #GP(0)', () => {
    const ok = insn(decode(hx('2e'.repeat(11) + 'f3 0f b8 c1'), L64));
    expect(ok.length).toBe(15);
    expect(decode(hx('2e'.repeat(12) + 'f3 0f b8 c1'), L64)).toMatchObject({ kind: 'exception', vector: 13, errorCode: 0 });
    // popcnt rax, [rax*8+disp32] with 6 prefixes = 16 bytes
    expect(decode(hx('66 66 66 66 66 f3 48 0f b8 04 c5 00 00 00 00'), L64).kind).toBe('insn');
    expect(decode(hx('66 66 66 66 66 66 f3 48 0f b8 04 c5 00 00 00 00'), L64)).toMatchObject({ kind: 'exception', vector: 13 });
  });
  it('handles prefix soup: 14 prefixes + opcode, 15+ prefixes', () => {
    const soup = '26 2e 36 3e 64 65 66 67 f2 26 2e 36 3e 64';
    expect(insn(decode(hx(`${soup} cc`), L64))).toMatchObject({ mnemonic: 'int3', length: 15 });
    expect(decode(hx(`${soup} 65 cc`), L64)).toMatchObject({ kind: 'exception', vector: 13 });
    expect(decode(hx('66'.repeat(40)), L64)).toMatchObject({ kind: 'exception', vector: 13 });
    expect(decode(hx('40'.repeat(15)), L64)).toMatchObject({ kind: 'exception', vector: 13 });
    expect(decode(hx('66'.repeat(14)), L64).kind).toBe('need-more-bytes');
  });
  it('raises #UD for register forms where only memory is valid', () => {
    for (const b of ['48 0f c7 c8', '0f c7 c8', '0f ae d0', '0f ae d8', '66 0f e7 c0', '0f 2b c0']) {
      expect(decode(hx(b), L64), b).toMatchObject({ kind: 'exception', vector: 6 });
    }
  });
  it('raises #UD for LOCK on instructions that do not accept it', () => {
    for (const b of ['f0 cc', 'f0 f3 0f b8 c1', 'f0 f3 0f b8 00', 'f0 0f 01 ca', 'f0 66 0f 6f 00', 'f0 0f ae 10', 'f0 90', 'f0 01 c0', 'f0 39 00']) {
      expect(decode(hx(b), L64), b).toMatchObject({ kind: 'exception', vector: 6 });
    }
    expect(decode(hx('f0 0f c7 0e'), L64).kind).toBe('insn');
    expect(decode(hx('f0 01 00'), L64)).toMatchObject({ kind: 'unknown', length: 3 }); // lock add [rax], eax
  });
  it('raises #UD for UD0/UD1/UD2 and opcodes invalid in 64-bit mode', () => {
    for (const b of ['0f 0b', '0f b9 00', '0f ff 00', '06', '27', '60', 'd4 0a', 'ce', 'ea 00 00 00 00 00 00']) {
      expect(decode(hx(b), L64), b).toMatchObject({ kind: 'exception', vector: 6 });
    }
    expect(decode(hx('06'), P32).kind).toBe('unknown');
  });
  it('returns unknown with a length for other legacy instructions', () => {
    const cases: [string, number, typeof L64?][] = [
      ['90', 1],
      ['48 b8 11 22 33 44 55 66 77 88', 10],
      ['b8 11 22 33 44', 5],
      ['66 b8 11 22', 4],
      ['81 84 98 78 56 34 12 44 33 22 11', 11],
      ['66 81 c0 34 12', 5],
      ['f6 c1 01', 3],
      ['f6 d1', 2],
      ['f7 c1 01 00 00 00', 6],
      ['c8 10 00 01', 4],
      ['e8 00 00 00 00', 5],
      ['0f 84 00 00 00 00', 6],
      ['a1 11 22 33 44 55 66 77 88', 9],
      ['67 a1 11 22 33 44', 6],
      ['0f 3a 0f c1 08', 5],
      ['66 0f 38 00 c1', 5],
      ['0f 1f 44 00 00', 5],
      ['0f 20 d8', 3],
      ['0f a2', 2],
      ['0f ba e0 05', 4],
      ['0f ae 20', 3], // xsave [rax]
      ['48 0f ae 64 24 40', 6], // xsave64 [rsp+0x40]
      ['c3', 1],
      ['48 cb', 2],
      ['9a 00 00 00 00 08 00', 7, P32],
      ['66 e8 00 00', 4, P32],
    ];
    for (const [b, len, mode] of cases) expect(decode(hx(b), mode ?? L64), b).toMatchObject({ kind: 'unknown', length: len });
  });
  it('reports VEX/EVEX encodings as unknown', () => {
    expect(decode(hx('c5 f9 6f 00'), L64).kind).toBe('unknown');
    expect(decode(hx('62 f1 7d 48 6f 00'), L64).kind).toBe('unknown');
    expect(decode(hx('c4 00'), P32)).toMatchObject({ kind: 'unknown', length: 2 }); // LES
  });
  it('never throws on random bytes', () => {
    let s = 12345;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 20000; i++) {
      const b = new Uint8Array(1 + (rnd() % 20)).map(() => rnd());
      for (const m of [L64, P32, P16]) {
        const r = decode(b, m);
        expect(['insn', 'unknown', 'need-more-bytes', 'exception']).toContain(r.kind);
        if (r.kind === 'insn') expect(r.length).toBeLessThanOrEqual(Math.min(15, b.length));
      }
    }
  });
});

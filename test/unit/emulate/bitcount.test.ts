import { describe, expect, it } from 'vitest';
import { emulate } from '../../../src/emulate/emulator.js';
import { DATA, DATA_PHYS, RF_AF, RF_CF, RF_OF, RF_PF, RF_SF, RF_ZF, hx, longMachine, rng } from './helpers.js';

const ALL = RF_CF | RF_PF | RF_AF | RF_ZF | RF_SF | RF_OF;

// Independent bit-loop references.
function refPopcnt(v: bigint, bits: number): bigint {
  let n = 0n;
  for (let i = 0; i < bits; i++) if ((v >> BigInt(i)) & 1n) n++;
  return n;
}
function refLzcnt(v: bigint, bits: number): bigint {
  let n = 0n;
  for (let i = bits - 1; i >= 0 && ((v >> BigInt(i)) & 1n) === 0n; i--) n++;
  return n;
}
function refTzcnt(v: bigint, bits: number): bigint {
  let n = 0n;
  for (let i = 0; i < bits && ((v >> BigInt(i)) & 1n) === 0n; i++) n++;
  return n;
}

const OPS = { popcnt: 0xb8, tzcnt: 0xbc, lzcnt: 0xbd } as const;
type Op = keyof typeof OPS;

/** Encode `op r?, r?` (dst=rdx/r10, src=rcx/r9) for a size. */
function encode(op: Op, size: 2 | 4 | 8, highRegs = false): Uint8Array {
  const pre = size === 2 ? [0x66] : [];
  const rex = (size === 8 ? 0x48 : 0) | (highRegs ? 0x45 : 0);
  // ModRM: mod 3, reg 2 (rdx / r10), rm 1 (rcx / r9)
  return Uint8Array.from([...pre, 0xf3, ...(rex ? [rex] : []), 0x0f, OPS[op], 0xd1]);
}

function expectFlags(op: Op, src: bigint, result: bigint, bits: number): bigint {
  if (op === 'popcnt') return src === 0n ? RF_ZF : 0n;
  return (src === 0n ? RF_CF : 0n) | (result === 0n ? RF_ZF : 0n);
}

describe('popcnt/lzcnt/tzcnt', () => {
  const table: [Op, 2 | 4 | 8, bigint, bigint][] = [
    ['popcnt', 8, 0n, 0n],
    ['popcnt', 8, 0xffff_ffff_ffff_ffffn, 64n],
    ['popcnt', 4, 0xffff_ffff_0000_0001n, 1n], // only the low 32 bits count
    ['popcnt', 2, 0xffff_0000_0000_8001n, 2n],
    ['lzcnt', 8, 0n, 64n],
    ['lzcnt', 4, 0n, 32n],
    ['lzcnt', 2, 0n, 16n],
    ['lzcnt', 8, 1n << 63n, 0n],
    ['lzcnt', 4, 0x0000_0001_0000_0100n, 23n],
    ['lzcnt', 2, 0x00ffn, 8n],
    ['tzcnt', 8, 0n, 64n],
    ['tzcnt', 4, 0xffff_ffff_0000_0000n, 32n],
    ['tzcnt', 2, 0x8000n, 15n],
    ['tzcnt', 8, 1n, 0n],
    ['tzcnt', 8, 1n << 40n, 40n],
  ];
  it.each(table)('%s/%i of %s = %s', (op, size, src, result) => {
    const m = longMachine();
    m.cpu.regs.rcx = src;
    m.cpu.regs.rdx = 0xdead_beef_cafe_f00dn;
    m.cpu.regs.rflags = 2n | ALL;
    const bytes = encode(op, size);
    const r = emulate(bytes, m.cpu, m.host);
    expect(r).toEqual({ kind: 'emulated', mnemonic: op, length: bytes.length, regsChanged: true, sregsChanged: false, fpuChanged: false });
    const expectRdx = size === 2 ? (0xdead_beef_cafe_0000n | result) : result; // 32-bit writes zero-extend
    expect(m.cpu.regs.rdx).toBe(expectRdx);
    expect(m.cpu.regs.rflags).toBe(2n | expectFlags(op, BigInt.asUintN(size * 8, src), result, size * 8));
    expect(m.cpu.regs.rip).toBe(0x1000n + BigInt(bytes.length));
  });

  it('reads a memory source through the page tables (all sizes)', () => {
    for (const [size, pre] of [[2, '66 f3'], [4, 'f3'], [8, 'f3 48']] as const) {
      const m = longMachine();
      m.mem.writeU64(DATA_PHYS + 0x10, 0x8000_0000_0000_00f0n);
      m.cpu.regs.rbx = DATA;
      const r = emulate(hx(`${pre} 0f b8 43 10`), m.cpu, m.host); // popcnt eax, [rbx+0x10]
      expect(r.kind).toBe('emulated');
      expect(m.cpu.regs.rax).toBe(size === 8 ? 5n : 4n);
    }
  });

  it('uses REX.R/REX.B registers', () => {
    const m = longMachine();
    m.cpu.regs.r9 = 0x10n;
    m.cpu.regs.r10 = 0xffff_ffff_ffff_ffffn;
    expect(emulate(encode('tzcnt', 4, true), m.cpu, m.host).kind).toBe('emulated');
    expect(m.cpu.regs.r10).toBe(4n);
    expect(m.cpu.regs.rdx).toBe(0n);
  });

  it('matches bit-loop references on random values', () => {
    const next = rng();
    const m = longMachine();
    for (let i = 0; i < 3000; i++) {
      const op = (['popcnt', 'lzcnt', 'tzcnt'] as const)[i % 3];
      const size = ([2, 4, 8] as const)[(i / 3) % 3 | 0];
      // Mix dense and sparse values, and sometimes zero.
      let v = next();
      if (i % 7 === 0) v &= next() & next();
      if (i % 11 === 0) v >>= BigInt(Number(next() % 64n));
      if (i % 97 === 0) v = 0n;
      m.cpu.regs.rcx = v;
      m.cpu.regs.rdx = 0x1111_2222_3333_4444n;
      m.cpu.regs.rip = 0x1000n;
      m.cpu.regs.rflags = 2n | (next() & ALL);
      emulate(encode(op, size), m.cpu, m.host);
      const bits = size * 8;
      const src = BigInt.asUintN(bits, v);
      const ref = op === 'popcnt' ? refPopcnt(src, bits) : op === 'lzcnt' ? refLzcnt(src, bits) : refTzcnt(src, bits);
      expect(m.cpu.regs.rdx & ((1n << BigInt(bits)) - 1n)).toBe(ref);
      if (size === 2) expect(m.cpu.regs.rdx >> 16n).toBe(0x1111_2222_3333n);
      else expect(m.cpu.regs.rdx >> BigInt(bits)).toBe(0n);
      expect(m.cpu.regs.rflags).toBe(2n | expectFlags(op, src, ref, bits));
    }
  });

  it('faults without changing registers when the source page is not present', () => {
    const m = longMachine();
    m.cpu.regs.rbx = 0x5000_0000n;
    m.cpu.regs.rax = 7n;
    const before = { ...m.cpu.regs };
    const r = emulate(hx('f3 48 0f b8 03'), m.cpu, m.host);
    expect(r).toEqual({ kind: 'exception', mnemonic: 'popcnt', vector: 14, errorCode: 0, cr2: 0x5000_0000n });
    expect(m.cpu.regs).toEqual(before);
  });
});

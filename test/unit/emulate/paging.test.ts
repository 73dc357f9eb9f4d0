import { describe, expect, it } from 'vitest';
import { linearRead, linearWrite, translate, translateRange, type PagingContext } from '../../../src/emulate/paging.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import {
  A, CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, D, EFER_LMA, EFER_LME, EFER_NXE, NX, P, PS, Tables, U, W,
} from './helpers.js';

const R = { write: false, user: false, fetch: false };
const WR = { write: true, user: false, fetch: false };
const UR = { write: false, user: true, fetch: false };
const UW = { write: true, user: true, fetch: false };
const F = { write: false, user: false, fetch: true };
const UF = { write: false, user: true, fetch: true };

function ctx64(cr3: bigint, over: Partial<PagingContext> = {}): PagingContext {
  return { cr0: CR0_PE | CR0_PG | CR0_WP, cr3, cr4: CR4_PAE, efer: EFER_LME | EFER_LMA | EFER_NXE, cpl: 0, ...over };
}

function setup(levels: 4 | 5 = 4) {
  const mem = bufferMemory(0x400000);
  const t = new Tables(mem, 0x100000, levels);
  return { mem, t, ctx: ctx64(t.cr3, levels === 5 ? { cr4: CR4_PAE | CR4_LA57 } : {}) };
}

describe('translate: 4-level paging', () => {
  it('maps 4 KiB, 2 MiB and 1 GiB pages', () => {
    const { mem, t, ctx } = setup();
    t.map(0x40_0000_1000n, 0x5000n, P | W);
    t.map(0x40_0020_0000n, 0x20_0000n, P | W, '2m');
    t.map(0x80_4000_0000n, 0xc000_0000n, P | W, '1g');
    expect(translate(mem, 0x40_0000_1234n, ctx, R)).toEqual({ ok: true, gpa: 0x5234 });
    expect(translate(mem, 0x40_0021_2345n, ctx, R)).toEqual({ ok: true, gpa: 0x21_2345 });
    expect(translate(mem, 0x80_7fff_fff8n, ctx, R)).toEqual({ ok: true, gpa: 0xffff_fff8 });
  });

  it('translates a high-half (sign-extended) address', () => {
    const { mem, t, ctx } = setup();
    t.map(0xffff_ffff_8100_0000n, 0x3000n, P | W);
    expect(translate(mem, 0xffff_ffff_8100_0010n, ctx, WR)).toEqual({ ok: true, gpa: 0x3010 });
  });

  it('raises #GP(0) for non-canonical addresses', () => {
    const { mem, ctx } = setup();
    for (const a of [0x0000_8000_0000_0000n, 0xffff_7fff_ffff_ffffn, 0x1234_5678_9abc_def0n]) {
      expect(translate(mem, a, ctx, R)).toEqual({ ok: false, fault: { vector: 13, errorCode: 0 } });
    }
  });

  it('raises #PF with the right error code and CR2 for not-present pages', () => {
    const { mem, t, ctx } = setup();
    t.map(0x1000n, 0x1000n, P | W | U);
    const cases: [typeof R, number][] = [[R, 0], [WR, 2], [UR, 4], [UW, 6], [F, 0x10], [UF, 0x14]];
    for (const [acc, code] of cases) {
      expect(translate(mem, 0x2008n, ctx, acc)).toEqual({ ok: false, fault: { vector: 14, errorCode: code, cr2: 0x2008n } });
      // Missing at the PML4 level too.
      expect(translate(mem, 0x7f00_0000_0000n, ctx, acc)).toMatchObject({ fault: { errorCode: code, cr2: 0x7f00_0000_0000n } });
    }
  });

  it('checks R/W with CR0.WP and U/S', () => {
    const { mem, t, ctx } = setup();
    t.map(0x1000n, 0x1000n, P | U); // user read-only
    t.map(0x2000n, 0x2000n, P | W); // supervisor writable
    t.map(0x3000n, 0x3000n, P); // supervisor read-only
    expect(translate(mem, 0x1000n, ctx, UR).ok).toBe(true);
    expect(translate(mem, 0x1000n, ctx, UW)).toMatchObject({ ok: false, fault: { vector: 14, errorCode: 7 } });
    expect(translate(mem, 0x2000n, ctx, UR)).toMatchObject({ fault: { errorCode: 5 } });
    expect(translate(mem, 0x3000n, ctx, WR)).toMatchObject({ fault: { errorCode: 3 } });
    // WP=0: supervisor writes ignore R/W.
    const noWp = { ...ctx, cr0: CR0_PE | CR0_PG };
    expect(translate(mem, 0x3000n, noWp, WR).ok).toBe(true);
    expect(translate(mem, 0x1000n, noWp, WR).ok).toBe(true);
    expect(translate(mem, 0x1000n, noWp, UW).ok).toBe(false);
  });

  it('accumulates R/W and U/S across levels', () => {
    const { mem, t, ctx } = setup();
    t.map(0x4000_0000n, 0x1000n, P | W | U, '4k', P | U); // read-only PDPT-level path
    expect(translate(mem, 0x4000_0000n, ctx, UW)).toMatchObject({ fault: { errorCode: 7 } });
    expect(translate(mem, 0x4000_0000n, ctx, UR).ok).toBe(true);
    const { mem: m2, t: t2, ctx: c2 } = setup();
    t2.map(0x4000_0000n, 0x1000n, P | W | U, '4k', P | W); // supervisor tables
    expect(translate(m2, 0x4000_0000n, c2, UR)).toMatchObject({ fault: { errorCode: 5 } });
  });

  it('enforces NX only with EFER.NXE, and treats XD as reserved without it', () => {
    const { mem, t, ctx } = setup();
    t.map(0x1000n, 0x1000n, P | W | NX);
    expect(translate(mem, 0x1000n, ctx, R).ok).toBe(true);
    expect(translate(mem, 0x1008n, ctx, F)).toEqual({ ok: false, fault: { vector: 14, errorCode: 0x11, cr2: 0x1008n } });
    const noNxe = { ...ctx, efer: EFER_LME | EFER_LMA };
    expect(translate(mem, 0x1000n, noNxe, R)).toMatchObject({ fault: { errorCode: 0x9 } });
    // Without NXE and SMEP the I/D bit is not reported.
    expect(translate(mem, 0x5000n, noNxe, F)).toMatchObject({ fault: { errorCode: 0 } });
  });

  it('implements SMEP and SMAP (with RFLAGS.AC and implicit accesses)', () => {
    const { mem, t, ctx } = setup();
    t.map(0x1000n, 0x1000n, P | W | U);
    const smep = { ...ctx, cr4: CR4_PAE | CR4_SMEP };
    expect(translate(mem, 0x1000n, smep, F)).toMatchObject({ fault: { errorCode: 0x11 } });
    expect(translate(mem, 0x1000n, smep, UF).ok).toBe(true);
    expect(translate(mem, 0x1000n, ctx, F).ok).toBe(true);
    const smap = { ...ctx, cr4: CR4_PAE | CR4_SMAP };
    expect(translate(mem, 0x1000n, smap, R)).toMatchObject({ fault: { vector: 14, errorCode: 1 } });
    expect(translate(mem, 0x1000n, smap, WR)).toMatchObject({ fault: { errorCode: 3 } });
    expect(translate(mem, 0x1000n, { ...smap, ac: true }, R).ok).toBe(true);
    expect(translate(mem, 0x1000n, { ...smap, ac: true }, WR).ok).toBe(true);
    // Implicit supervisor access (CPL 3, user: false) faults even with AC.
    expect(translate(mem, 0x1000n, { ...smap, ac: true, cpl: 3 }, R)).toMatchObject({ fault: { errorCode: 1 } });
    expect(translate(mem, 0x1000n, { ...smap, cpl: 3 }, UR).ok).toBe(true);
  });

  it('raises RSVD faults for reserved bits', () => {
    const { mem, t, ctx } = setup();
    t.map(0x20_0000n, 0x20_2000n, P | W, '2m'); // bits 20:13 non-zero in a 2 MiB PDE
    expect(translate(mem, 0x20_0000n, ctx, R)).toEqual({ ok: false, fault: { vector: 14, errorCode: 9, cr2: 0x20_0000n } });
    t.map(0x40_0000n, 0x40_1000n, P | W, '2m'); // bit 12 is PAT in a large-page entry, not reserved
    expect(translate(mem, 0x40_0000n, ctx, R)).toEqual({ ok: true, gpa: 0x40_0000 });
    t.map(0x4000_0000n, 0x4000_2000n, P | W, '1g');
    expect(translate(mem, 0x4000_0000n, ctx, WR)).toMatchObject({ fault: { errorCode: 0xb } });
    // PS in a PML4E is reserved.
    mem.writeU64(t.root + 8 * 5, 0x0n | P | W | PS);
    expect(translate(mem, 5n << 39n, ctx, R)).toMatchObject({ fault: { errorCode: 9 } });
    // Address bits at or above MAXPHYADDR.
    t.map(0x5000n, 1n << 40n, P | W);
    expect(translate(mem, 0x5000n, ctx, R).ok).toBe(true);
    expect(translate(mem, 0x5000n, { ...ctx, maxPhysAddr: 39 }, F)).toMatchObject({ fault: { errorCode: 0x19 } });
  });

  it('faults (RSVD) when a paging structure lies outside guest memory, without throwing', () => {
    const { mem, t, ctx } = setup();
    mem.writeU64(t.root + 8 * 7, 0x7_0000_0000n | P | W);
    expect(translate(mem, 7n << 39n, ctx, R)).toMatchObject({ ok: false, fault: { vector: 14, errorCode: 9 } });
    expect(translate(mem, 0n, { ...ctx, cr3: 0xfff_ffff_f000n }, R)).toMatchObject({ fault: { errorCode: 9 } });
  });

  it('sets accessed and dirty bits only on success', () => {
    const { mem, t, ctx } = setup();
    t.map(0x1000n, 0x1000n, P | W);
    const pte = t.entry(0x1000n, 1);
    expect(translate(mem, 0x1000n, ctx, R).ok).toBe(true);
    expect(mem.readU64(pte) & (A | D)).toBe(A);
    expect(mem.readU64(t.root) & A).toBe(A);
    expect(translate(mem, 0x1000n, ctx, WR).ok).toBe(true);
    expect(mem.readU64(pte) & (A | D)).toBe(A | D);
    t.map(0x2000n, 0x2000n, P);
    const pte2 = t.entry(0x2000n, 1);
    expect(translate(mem, 0x2000n, ctx, WR).ok).toBe(false);
    expect(mem.readU64(pte2) & (A | D)).toBe(0n);
    t.map(0x3000n, 0x3000n, P | W);
    expect(translate(mem, 0x3000n, { ...ctx, setAccessedDirty: false }, WR).ok).toBe(true);
    expect(mem.readU64(t.entry(0x3000n, 1)) & (A | D)).toBe(0n);
  });
});

describe('translate: 5-level paging', () => {
  it('walks five levels with 57-bit canonical addresses', () => {
    const { mem, t, ctx } = setup(5);
    const va = 0x00ff_8000_0000_1000n; // uses PML5 index 511 >> ... (bit 55)
    t.map(va, 0x7000n, P | W);
    expect(translate(mem, va + 0x10n, ctx, R)).toEqual({ ok: true, gpa: 0x7010 });
    // Canonical under LA57 but not under 4-level.
    expect(translate(mem, va, { ...ctx, cr4: CR4_PAE }, R)).toMatchObject({ fault: { vector: 13 } });
    expect(translate(mem, 0x0100_0000_0000_0000n, ctx, R)).toMatchObject({ fault: { vector: 13 } });
    t.map(0xff80_0000_0000_0000n, 0x8000n, P | W, '2m');
    expect(translate(mem, 0xff80_0000_0000_0000n, ctx, R)).toMatchObject({ ok: false, fault: { errorCode: 9 } }); // 0x8000 misaligned 2M frame
  });
});

describe('translate: legacy modes', () => {
  it('passes through with paging off, truncating to 32 bits outside long mode', () => {
    const mem = bufferMemory(0x1000);
    const ctx = { cr0: CR0_PE, cr3: 0n, cr4: 0n, efer: 0n, cpl: 0 };
    expect(translate(mem, 0x1_2345_6789n, ctx, R)).toEqual({ ok: true, gpa: 0x2345_6789 });
    expect(translate(mem, 0x1234n, { ...ctx, cr0: 0n }, WR)).toEqual({ ok: true, gpa: 0x1234 });
  });

  it('walks 32-bit paging with 4 KiB and 4 MiB (PSE, PSE-36) pages', () => {
    const mem = bufferMemory(0x400000);
    const pd = 0x10000;
    const pt = 0x11000;
    mem.writeU32(pd + 4 * 1, pt | 7); // 0x400000-0x7fffff → PT
    mem.writeU32(pt + 4 * 2, 0x9000 | 3); // 0x402000 → 0x9000 (supervisor)
    mem.writeU32(pd + 4 * 2, 0x0040_0000 | 0x83 | (0x12 << 13)); // 4 MiB page at 0x12_0040_0000
    mem.writeU32(pd + 4 * 3, 0x0040_0000 | 0x83 | (1 << 21)); // reserved bit 21
    const ctx: PagingContext = { cr0: CR0_PE | CR0_PG | CR0_WP, cr3: BigInt(pd), cr4: CR4_PSE, efer: 0n, cpl: 0 };
    expect(translate(mem, 0x402abcn, ctx, WR)).toEqual({ ok: true, gpa: 0x9abc });
    expect(translate(mem, 0x402abcn, ctx, UR)).toMatchObject({ fault: { errorCode: 5, cr2: 0x402abcn } });
    expect(translate(mem, 0x812345n, ctx, R)).toEqual({ ok: true, gpa: 0x12_0041_2345 });
    expect(translate(mem, 0xc00000n, ctx, R)).toMatchObject({ fault: { errorCode: 9 } });
    expect(translate(mem, 0x1000000n, ctx, F)).toMatchObject({ fault: { errorCode: 0 } }); // not present, no I/D without SMEP
    expect(mem.readU32(pt + 8) & 0x60).toBe(0x60); // A|D set by the write
    // Without CR4.PSE the PS bit is ignored: the entry points at a page table.
    mem.writeU32(pd + 4 * 4, 0x13000 | 0x83);
    mem.writeU32(0x13000, 0x6000 | 3);
    expect(translate(mem, 0x1000010n, { ...ctx, cr4: 0n }, R)).toEqual({ ok: true, gpa: 0x6010 });
    expect(translate(mem, 0x1000010n, ctx, R)).toEqual({ ok: true, gpa: 0x9_0000_0010 });
  });

  it('walks PAE paging with 2 MiB pages, XD and PDPTE reserved bits', () => {
    const mem = bufferMemory(0x400000);
    const pdpt = 0x10020; // 32-byte aligned
    const pd = 0x11000;
    const pt = 0x12000;
    mem.writeU64(pdpt + 8 * 1, BigInt(pd) | P);
    mem.writeU64(pd + 8 * 0, BigInt(pt) | P | W | U);
    mem.writeU64(pt + 8 * 3, 0x5000n | P | W | U | NX);
    mem.writeU64(pd + 8 * 1, 0x20_0000n | P | PS);
    mem.writeU64(pdpt + 8 * 2, BigInt(pd) | P | W); // W is reserved in a PAE PDPTE
    const ctx: PagingContext = { cr0: CR0_PE | CR0_PG | CR0_WP, cr3: BigInt(pdpt), cr4: CR4_PAE, efer: EFER_NXE, cpl: 3 };
    expect(translate(mem, 0x4000_3004n, ctx, UW)).toEqual({ ok: true, gpa: 0x5004 });
    expect(translate(mem, 0x4000_3004n, ctx, UF)).toMatchObject({ fault: { errorCode: 0x15 } });
    expect(translate(mem, 0x4020_0010n, ctx, R)).toEqual({ ok: true, gpa: 0x20_0010 });
    expect(translate(mem, 0x4020_0010n, ctx, WR)).toMatchObject({ fault: { errorCode: 3 } });
    expect(translate(mem, 0x8000_0000n, ctx, R)).toMatchObject({ fault: { errorCode: 9 } });
    expect(translate(mem, 0xc000_0000n, ctx, R)).toMatchObject({ fault: { errorCode: 0 } });
    expect(translate(mem, 0x4000_3004n, { ...ctx, efer: 0n }, UR)).toMatchObject({ fault: { errorCode: 0xd } });
  });
});

describe('linearRead / linearWrite', () => {
  it('splits accesses at page boundaries across discontiguous frames', () => {
    const { mem, t, ctx } = setup();
    t.map(0x10000n, 0x3000n, P | W);
    t.map(0x11000n, 0x7000n, P | W);
    const bytes = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    expect(linearWrite(mem, ctx, 0x10ff8n, bytes)).toEqual({ ok: true });
    expect(mem.readBytes(0x3ff8, 8)).toEqual(bytes.subarray(0, 8));
    expect(mem.readBytes(0x7000, 8)).toEqual(bytes.subarray(8));
    expect(linearRead(mem, ctx, 0x10ff8n, 16)).toEqual({ ok: true, bytes });
    expect(translateRange(mem, ctx, 0x10ff8n, 16, R)).toMatchObject({ ok: true, chunks: [{ gpa: 0x3ff8, length: 8 }, { gpa: 0x7000, length: 8 }] });
  });

  it('writes nothing when a later page faults', () => {
    const { mem, t, ctx } = setup();
    t.map(0x10000n, 0x3000n, P | W);
    t.map(0x11000n, 0x7000n, P); // read-only
    mem.fill(0x3ff8, 8, 0xaa);
    const r = linearWrite(mem, ctx, 0x10ffcn, new Uint8Array(8).fill(0x55));
    expect(r).toEqual({ ok: false, fault: { vector: 14, errorCode: 3, cr2: 0x11000n } });
    expect(mem.readBytes(0x3ff8, 8)).toEqual(new Uint8Array(8).fill(0xaa));
    expect(mem.readU64(t.entry(0x10000n, 1)) & D).toBe(0n);
    expect(linearRead(mem, ctx, 0x11ffcn, 8)).toMatchObject({ fault: { errorCode: 0, cr2: 0x12000n } });
  });

  it('reports unbacked (MMIO) physical pages distinctly', () => {
    const { mem, t, ctx } = setup();
    t.map(0x10000n, 0xfee0_0000n, P | W);
    expect(linearRead(mem, ctx, 0x10000n, 4)).toEqual({ ok: false, unbackedGpa: 0xfee0_0000 });
  });

  it('wraps at 4 GiB outside long mode and checks the canonical boundary in long mode', () => {
    const mem = bufferMemory(0x2000);
    mem.writeU8(0, 0x42);
    const flat = { cr0: CR0_PE, cr3: 0n, cr4: 0n, efer: 0n, cpl: 0 };
    expect(linearRead(mem, flat, 0xffff_ffffn, 2)).toMatchObject({ ok: false, unbackedGpa: 0xffff_ffff });
    const { mem: m2, t, ctx } = setup();
    t.map(0x7fff_ffff_f000n, 0x3000n, P | W);
    expect(linearRead(m2, ctx, 0x7fff_ffff_fffcn, 4).ok).toBe(true);
    expect(linearRead(m2, ctx, 0x7fff_ffff_fffcn, 8)).toEqual({ ok: false, fault: { vector: 13, errorCode: 0 } });
  });
});

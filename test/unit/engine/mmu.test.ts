import { describe, expect, it } from 'vitest';
import { SoftMmu } from '../../../src/engine/mmu.js';
import { ACCESS, GuestException, type EngineIo, type MmuControl } from '../../../src/engine/types.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import {
  A, CR0_PE, CR0_PG, CR0_WP, CR4_LA57, CR4_PAE, CR4_PSE, CR4_SMAP, CR4_SMEP, D, EFER_LMA, EFER_LME, EFER_NXE, NX, P, PS, Tables, U, W,
} from '../emulate/helpers.js';

const G = 1n << 8n;
const CR4_PGE = 1n << 7n;
const RAM = 0x400000;
/** A linear address written as a (sign-extended) Number, as the 64-bit bigint the MMU takes. */
const la = (n: number): bigint => BigInt.asUintN(64, BigInt(n));

/** Records MMIO; reads answer 0x1122334455667788 truncated to the size. */
class TestIo implements EngineIo {
  log: string[] = [];
  pioRead(): number {
    return 0xffffffff;
  }
  pioWrite(): void {}
  mmioRead(gpa: number, size: 1 | 2 | 4 | 8): bigint {
    this.log.push(`r ${gpa.toString(16)} ${size}`);
    return BigInt.asUintN(size * 8, 0x1122334455667788n);
  }
  mmioWrite(gpa: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    this.log.push(`w ${gpa.toString(16)} ${size} ${value.toString(16)}`);
  }
}

function ctl64(cr3: bigint, over: Partial<MmuControl> = {}): MmuControl {
  return { cr0: CR0_PE | CR0_PG | CR0_WP, cr3, cr4: CR4_PAE | CR4_PGE, efer: EFER_LME | EFER_LMA | EFER_NXE, cpl: 0, ac: false, ...over };
}

/** Shared RAM at 0 (4 MiB), 4- or 5-level tables at 0x100000, an MMU in long mode. */
function setup(levels: 4 | 5 = 4) {
  const mem = new GuestMemory();
  mem.addSegment(0, new SharedArrayBuffer(RAM));
  const t = new Tables(mem, 0x100000, levels);
  const io = new TestIo();
  const mmu = new SoftMmu(mem, io);
  const c = ctl64(t.cr3, levels === 5 ? { cr4: CR4_PAE | CR4_PGE | CR4_LA57 } : {});
  mmu.setControl(c);
  return { mem, t, io, mmu, c };
}

function fault(f: () => unknown): GuestException {
  try {
    f();
  } catch (e) {
    if (e instanceof GuestException) return e;
    throw e;
  }
  throw new Error('no exception');
}

describe('SoftMmu: paging off', () => {
  it('uses linear = physical, truncated to 32 bits outside long mode', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new Uint8Array(0x10000));
    const mmu = new SoftMmu(mem, new TestIo());
    mmu.write32(0x1234n, 0xdeadbeef);
    expect(mem.readU32(0x1234)).toBe(0xdeadbeef);
    expect(mmu.read32(0x1_0000_1234n)).toBe(0xdeadbeef);
    expect(mmu.read16(la(0x1236))).toBe(0xdead);
    mmu.write64(la(0x2000), 0x0102030405060708n);
    expect(mmu.read64(0x2000n)).toBe(0x0102030405060708n);
    expect(mmu.read8(0x2000n, ACCESS.FETCH)).toBe(8);
    expect(mmu.translateFetch(0x2345n)).toBe(0x2000);
  });
});

describe('SoftMmu: 4-level paging', () => {
  it('translates 4 KiB, 2 MiB and 1 GiB pages, low and high half, bigint and Number addresses', () => {
    const { mem, t, mmu } = setup();
    t.map(0x40_0000_1000n, 0x5000n, P | W);
    t.map(0x40_0020_0000n, 0x20_0000n, P | W, '2m');
    t.map(0x80_4000_0000n, 0n, P | W, '1g');
    t.map(0xffff_ffff_8100_0000n, 0x3000n, P | W);
    mem.writeU32(0x5234, 0x11111111);
    mem.writeU32(0x21_2344, 0x22222222);
    mem.writeU32(0x3_0000, 0x33333333);
    mem.writeU32(0x3010, 0x44444444);
    expect(mmu.read32(0x40_0000_1234n)).toBe(0x11111111);
    expect(mmu.read32(0x40_0021_2344n)).toBe(0x22222222);
    expect(mmu.read32(0x80_4003_0000n)).toBe(0x33333333);
    expect(mmu.read32(0xffff_ffff_8100_0010n)).toBe(0x44444444);
    // The same through the Number API: high-half addresses sign-extended.
    expect(mmu.read32(la(0x40_0000_1234))).toBe(0x11111111);
    expect(mmu.read32(la(-0x7f00_0000 + 0x10))).toBe(0x44444444);
    mmu.write32(la(-0x7f00_0000 + 0x10), 0x55555555);
    expect(mem.readU32(0x3010)).toBe(0x55555555);
    expect(mmu.translate(0xffff_ffff_8100_0fffn)).toBe(0x3fff);
    expect(mmu.translate(0x80_4123_4567n, ACCESS.WRITE)).toBe(0x123_4567);
  });

  it('reads and writes every size and returns unsigned values', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    mmu.write64(0x1008n, 0xfedcba9876543210n);
    expect(mem.readU64(0x8008)).toBe(0xfedcba9876543210n);
    expect(mmu.read8(0x100fn)).toBe(0xfe);
    expect(mmu.read16(0x100en)).toBe(0xfedc);
    expect(mmu.read32(0x100cn)).toBe(0xfedcba98);
    expect(mmu.read64(0x1008n)).toBe(0xfedcba9876543210n);
    mmu.write64(0x1010n, 0x0123456789abcdefn);
    expect(mem.readU64(0x8010)).toBe(0x0123456789abcdefn);
    mmu.write8(0x1020n, 0x1ff);
    mmu.write16(la(0x1022), 0xbeef);
    mmu.write32(0x1024n, -1);
    expect(mem.readU64(0x8020)).toBe(0xffffffffbeef00ffn);
  });

  it('raises #GP(0) for non-canonical addresses', () => {
    const { mmu } = setup();
    for (const a of [0x0000_8000_0000_0000n, 0xffff_7fff_ffff_f000n]) {
      const e = fault(() => mmu.read32(a));
      expect([e.vector, e.errorCode]).toEqual([13, 0]);
      expect(fault(() => mmu.write8(a, 1)).vector).toBe(13);
    }
    expect(fault(() => mmu.read8(la(2 ** 47))).vector).toBe(13);
  });

  it('raises #PF with the error code and CR2 of each failure', () => {
    const { t, mmu, c } = setup();
    t.map(0x1000n, 0x8000n, P); // read-only supervisor
    t.map(0x2000n, 0x9000n, P | W | U | NX); // user, no execute
    t.map(0x3000n, 0xa000n, P | W | U); // user, executable
    t.map(0x4000n, 0xb000n, P | W | (1n << 51n)); // reserved bit (MAXPHYADDR 52: bit 51 is an address bit; use 50 below)
    const pf = (f: () => unknown) => {
      const e = fault(f);
      return [e.vector, e.errorCode, e.cr2];
    };
    // Not present.
    expect(pf(() => mmu.read32(0x5008n))).toEqual([14, 0, 0x5008n]);
    expect(pf(() => mmu.write32(0x5008n, 0))).toEqual([14, 2, 0x5008n]);
    expect(pf(() => mmu.read8(0x5008n, ACCESS.FETCH))).toEqual([14, 0x10, 0x5008n]);
    expect(pf(() => mmu.translateFetch(0xffff_8000_0000_0000n))).toEqual([14, 0x10, 0xffff_8000_0000_0000n]);
    // Write to a read-only page with CR0.WP; allowed without.
    expect(pf(() => mmu.write32(0x1000n, 1))).toEqual([14, 3, 0x1000n]);
    mmu.setControl({ ...c, cr0: CR0_PE | CR0_PG });
    mmu.write32(0x1000n, 1);
    mmu.setControl(c);
    // NX fetch.
    expect(pf(() => mmu.read8(0x2000n, ACCESS.FETCH))).toEqual([14, 0x11, 0x2000n]);
    // SMEP: supervisor fetch from a user page.
    mmu.read8(0x3000n, ACCESS.FETCH);
    mmu.setControl({ ...c, cr4: c.cr4 | CR4_SMEP });
    expect(pf(() => mmu.read8(0x3000n, ACCESS.FETCH))).toEqual([14, 0x11, 0x3000n]);
    // SMAP: supervisor data access to a user page unless AC; a bank switch, not a flush.
    const smap = { ...c, cr4: c.cr4 | CR4_SMAP };
    mmu.setControl(smap);
    expect(pf(() => mmu.read32(0x3000n))).toEqual([14, 1, 0x3000n]);
    expect(pf(() => mmu.write32(0x3000n, 0))).toEqual([14, 3, 0x3000n]);
    mmu.setControl({ ...smap, ac: true });
    mmu.write32(0x3000n, 7);
    expect(mmu.read32(0x3000n)).toBe(7);
    mmu.setControl(smap);
    expect(pf(() => mmu.read32(0x3000n))).toEqual([14, 1, 0x3000n]);
    mmu.setControl(c);
    // User accesses (CPL 3) to supervisor pages; user write to a read-only user page.
    mmu.setControl({ ...c, cpl: 3 });
    expect(pf(() => mmu.read32(0x1000n))).toEqual([14, 5, 0x1000n]);
    expect(pf(() => mmu.write32(0x1000n, 0))).toEqual([14, 7, 0x1000n]);
    expect(pf(() => mmu.read8(0x1000n, ACCESS.FETCH))).toEqual([14, 0x15, 0x1000n]);
    expect(mmu.read32(0x3000n)).toBe(7);
    mmu.setControl(c);
    expect(mmu.read32(0x1000n)).toBe(1);
  });

  it('raises #PF with RSVD for reserved bits and for tables outside RAM', () => {
    const { mem, t, mmu } = setup();
    const mmu40 = new SoftMmu(mem, new TestIo(), { maxPhysAddr: 40 });
    mmu40.setControl(ctl64(t.cr3));
    t.map(0x1000n, 0x8000n | (1n << 45n), P | W); // above MAXPHYADDR 40
    expect([fault(() => mmu40.read8(0x1000n)).errorCode]).toEqual([9]);
    t.map(0x2000n, 0x8000n, P | W);
    mmu40.read8(0x2000n);
    t.map(0x20_0000n, 0x2000n, P | W, '2m'); // 2 MiB frame not 2 MiB-aligned: bits 20:13 reserved
    expect(fault(() => mmu.read8(0x20_0000n)).errorCode).toBe(9);
    expect(fault(() => mmu.write8(0x20_0000n, 0)).errorCode).toBe(0xb);
    // A PML4E pointing far outside RAM.
    mem.writeU64(t.root + 8 * 5, 0x7_0000_0000n | P | W);
    expect(fault(() => mmu.read8(5n << 39n)).errorCode).toBe(9);
    // Without NXE bit 63 is reserved.
    t.map(0x3000n, 0x8000n, P | W | NX);
    mmu.setControl(ctl64(t.cr3, { efer: EFER_LME | EFER_LMA }));
    expect(fault(() => mmu.read8(0x3000n)).errorCode).toBe(9);
  });

  it('follows self-referencing (recursive) tables without looping', () => {
    const { mem, t, mmu } = setup();
    // PML4[511] → PML4: linear 0xffff_ff80_0000_0000 + ... maps the tables themselves.
    mem.writeU64(t.root + 511 * 8, BigInt(t.root) | P | W);
    const self = 0xffff_ffff_ffff_f000n; // PML4 → PML4 → PML4 → PML4: the PML4 page
    expect(mmu.read64(self + 511n * 8n) & ~0xfffn).toBe(BigInt(t.root));
    mmu.write64(self + 8n * 7n, 0x1234_5000n); // a non-present entry written through the recursive mapping
    expect(mem.readU64(t.root + 7 * 8)).toBe(0x1234_5000n);
  });
});

describe('SoftMmu: 5-level, PAE and 32-bit paging', () => {
  it('translates with LA57', () => {
    const { mem, t, mmu } = setup(5);
    t.map(0x0010_0000_0000_1000n, 0x7000n, P | W);
    t.map(0xff00_0000_0000_0000n, 0x20_0000n, P | W, '2m');
    mem.writeU32(0x7004, 0xabcdef01);
    mem.writeU32(0x20_0010, 0x12345678);
    expect(mmu.read32(0x0010_0000_0000_1004n)).toBe(0xabcdef01);
    expect(mmu.read32(la(2 ** 52 + 0x1004))).toBe(0xabcdef01);
    expect(mmu.read32(0xff00_0000_0000_0010n)).toBe(0x12345678);
    // 57-bit canonical, 48-bit non-canonical: a #PF; 57-bit non-canonical: #GP.
    expect(fault(() => mmu.read8(0x0010_0000_0000_5000n)).vector).toBe(14);
    expect(fault(() => mmu.read8(0x0100_0000_0000_0000n)).vector).toBe(13);
    // Beyond ±2^53 the Number key is inexact: the bigint path still works (and writes).
    mmu.write32(0xff00_0000_0000_0020n, 0x77);
    expect(mem.readU32(0x20_0020)).toBe(0x77);
  });

  it('translates PAE paging (4 KiB and 2 MiB) and 32-bit paging (4 KiB and 4 MiB)', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new SharedArrayBuffer(RAM));
    const io = new TestIo();
    const mmu = new SoftMmu(mem, io);
    // PAE: PDPT at 0x10000, PD at 0x11000, PT at 0x12000.
    mem.writeU64(0x10000 + 3 * 8, 0x11000n | P);
    mem.writeU64(0x11000 + 8 * 0, 0x12000n | P | W);
    mem.writeU64(0x12000 + 8 * 5, 0x9000n | P | W);
    mem.writeU64(0x11000 + 8 * 1, 0x20_0000n | P | W | PS);
    mem.writeU32(0x9010, 0xaaaa5555);
    mem.writeU32(0x20_0100, 0x5555aaaa);
    mmu.setControl({ cr0: CR0_PE | CR0_PG | CR0_WP, cr3: 0x10000n, cr4: CR4_PAE, efer: 0n, cpl: 0, ac: false });
    expect(mmu.read32(0xc000_5010n)).toBe(0xaaaa5555);
    expect(mmu.read32(0xc020_0100n)).toBe(0x5555aaaa);
    expect(mmu.read32(la(0xc000_5010))).toBe(0xaaaa5555);
    expect(mem.readU64(0x12000 + 8 * 5) & A).toBe(A);
    // 32-bit: PD at 0x30000, PT at 0x31000.
    mem.writeU32(0x30000 + 4 * 0x300, 0x31000 | 3);
    mem.writeU32(0x31000 + 4 * 5, 0x9000 | 3);
    mem.writeU32(0x30000 + 4 * 0x301, 0x0040_0000 | 3 | 0x80); // 4 MiB page → 4 MiB (outside RAM: MMIO)
    mmu.setControl({ cr0: CR0_PE | CR0_PG, cr3: 0x30000n, cr4: CR4_PSE, efer: 0n, cpl: 0, ac: false });
    expect(mmu.read32(0xc000_5010n)).toBe(0xaaaa5555);
    mmu.write16(0xc040_0002n, 0x1234);
    expect(io.log).toEqual(['w 400002 2 1234']);
    expect(mem.readU32(0x30000 + 4 * 0x301) & 0x60).toBe(0x60);
  });
});

describe('SoftMmu: accessed and dirty bits', () => {
  it('sets A on every level on a read, D on the leaf on the first write, also after a cached read', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    t.map(0x40_0000n, 0x20_0000n, P | W, '2m');
    const pte = t.entry(0x1000n, 1);
    const levels = [4, 3, 2, 1].map((l) => t.entry(0x1000n, l));
    mmu.read8(0x1000n);
    for (const e of levels) expect(mem.readU64(e) & (A | D)).toBe(A);
    // The read filled the TLB; the write must still walk and set D.
    mmu.write8(0x1001n, 5);
    expect(mem.readU64(pte) & (A | D)).toBe(A | D);
    for (const e of levels.slice(0, 3)) expect(mem.readU64(e) & D).toBe(0n);
    // A write hit after the guest cleared D without invalidating: stale, as on hardware.
    mem.writeU64(pte, mem.readU64(pte) & ~D);
    mmu.write8(0x1002n, 6);
    expect(mem.readU64(pte) & D).toBe(0n);
    mmu.invalidatePage(0x1000n);
    mmu.write8(0x1002n, 6);
    expect(mem.readU64(pte) & D).toBe(D);
    // 2 MiB page: A and D on the PDE.
    const pde = t.entry(0x40_0000n, 2);
    mmu.read32(0x40_1000n);
    expect(mem.readU64(pde) & (A | D)).toBe(A);
    mmu.write32(0x5f_f000n, 1);
    expect(mem.readU64(pde) & (A | D)).toBe(A | D);
  });

  it('sets no A/D bits when the access faults on rights (the walk bits it passed may be set)', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P);
    expect(fault(() => mmu.write8(0x1000n, 1)).errorCode).toBe(3);
    expect(mem.readU64(t.entry(0x1000n, 1)) & (A | D)).toBe(0n);
  });

  it('fetches do not set D', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    expect(mmu.translateFetch(0x1234n)).toBe(0x8000);
    expect(mem.readU64(t.entry(0x1000n, 1)) & (A | D)).toBe(A);
  });
});

describe('SoftMmu: TLB semantics', () => {
  it('uses a stale translation until invalidatePage, then the new one', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    mem.writeU32(0x8000, 1);
    mem.writeU32(0x9000, 2);
    expect(mmu.read32(0x1000n)).toBe(1);
    mmu.write32(0x1004n, 0);
    t.map(0x1000n, 0x9000n, P | W);
    expect(mmu.read32(0x1000n)).toBe(1);
    expect(mmu.read32(la(0x1000))).toBe(1);
    mmu.invalidatePage(0x1fffn);
    expect(mmu.read32(0x1000n)).toBe(2);
    mmu.write32(0x1008n, 3);
    expect(mem.readU32(0x9008)).toBe(3);
    // Unmapped: stale fetch entries go too.
    mmu.translateFetch(0x1000n);
    t.map(0x1000n, 0x9000n, 0n);
    mmu.invalidatePage(0x1000n);
    expect(fault(() => mmu.translateFetch(0x1000n)).errorCode).toBe(0x10);
    expect(fault(() => mmu.read8(0x1000n)).errorCode).toBe(0);
  });

  it('a CR3 load flushes non-global translations; global ones survive until flushAll or a PGE change', () => {
    const { mem, t, mmu, c } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    t.map(0x2000n, 0x9000n, P | W | G);
    t.map(0x60_0000n, 0x20_0000n, P | W | G, '2m');
    mem.writeU32(0x8000, 1);
    mem.writeU32(0x9000, 2);
    mem.writeU32(0x20_0000, 3);
    expect([mmu.read32(0x1000n), mmu.read32(0x2000n), mmu.read32(0x60_0000n)]).toEqual([1, 2, 3]);
    // A second address space mapping none of them.
    const t2 = new Tables(mem, 0x300000);
    mmu.setControl({ ...c, cr3: t2.cr3 });
    expect(fault(() => mmu.read32(0x1000n)).errorCode).toBe(0);
    expect(mmu.read32(0x2000n)).toBe(2);
    expect(mmu.read32(0x60_0000n)).toBe(3);
    // Same CR3 value reloaded: flushNonGlobal.
    t2.map(0x1000n, 0x8000n, P | W);
    expect(mmu.read32(0x1000n)).toBe(1);
    t2.map(0x1000n, 0x9000n, P | W);
    expect(mmu.read32(0x1000n)).toBe(1);
    mmu.flushNonGlobal();
    expect(mmu.read32(0x1000n)).toBe(2);
    // Global pages stay until PGE toggles or flushAll.
    mmu.setControl({ ...c, cr3: t2.cr3, ac: true });
    expect(mmu.read32(0x2000n)).toBe(2);
    mmu.setControl({ ...c, cr3: t2.cr3, cr4: c.cr4 & ~CR4_PGE });
    expect(fault(() => mmu.read32(0x2000n)).errorCode).toBe(0);
    mmu.setControl(c);
    expect(mmu.read32(0x2000n)).toBe(2);
    mmu.flushAll();
    mmu.setControl({ ...c, cr3: t2.cr3 });
    expect(fault(() => mmu.read32(0x2000n)).errorCode).toBe(0);
    // Without PGE the G bit means nothing.
    const noPge = { ...c, cr4: CR4_PAE };
    mmu.setControl(noPge);
    expect(mmu.read32(0x2000n)).toBe(2);
    mmu.setControl({ ...noPge, cr3: t2.cr3 });
    expect(fault(() => mmu.read32(0x2000n)).errorCode).toBe(0);
  });

  it('invalidatePage of any address in a large page drops all its cached pieces', () => {
    const { mem, t, mmu } = setup();
    t.map(0x20_0000n, 0x20_0000n, P | W, '2m');
    t.map(0x40_0000n, 0x20_0000n, P | W, '2m');
    mem.writeU32(0x20_0000, 1);
    mem.writeU32(0x2f_f000, 2);
    expect(mmu.read32(0x20_0000n)).toBe(1);
    expect(mmu.read32(0x2f_f000n)).toBe(2);
    expect(mmu.read32(0x40_0000n)).toBe(1);
    mmu.write32(0x20_0004n, 9);
    t.map(0x20_0000n, 0x0n, P | W, '2m');
    mem.writeU32(0x0, 10);
    mem.writeU32(0xf_f000, 20);
    expect(mmu.read32(0x2f_f000n)).toBe(2); // stale
    mmu.invalidatePage(0x21_2345n);
    expect(mmu.read32(0x20_0000n)).toBe(10);
    expect(mmu.read32(0x2f_f000n)).toBe(20);
    mmu.write32(0x20_0004n, 11);
    expect(mem.readU32(4)).toBe(11);
    expect(mmu.read32(0x40_0000n)).toBe(1); // the other large page is untouched
  });

  it('keeps working when many large-page pieces are cached (list overflow) and with a 2-entry TLB', () => {
    const { mem, t, mmu } = setup();
    t.map(0x4000_0000n, 0n, P | W, '1g');
    for (let p = 0; p < 0x200; p++) mem.writeU32(0x20_0000 + p * 0x1000, p);
    for (let round = 0; round < 2; round++) for (let p = 0; p < 0x200; p++) expect(mmu.read32(la(0x4020_0000 + p * 0x1000))).toBe(p);
    const tiny = new SoftMmu(mem, new TestIo(), { tlbBits: 1 });
    tiny.setControl(ctl64(t.cr3));
    for (let p = 0; p < 0x40; p++) tiny.write32(la(0x4020_0000 + p * 0x1000 + 8), p + 1);
    for (let p = 0; p < 0x40; p++) expect(tiny.read32(0x4020_0008n + BigInt(p) * 0x1000n)).toBe(p + 1);
    tiny.invalidatePage(0x4020_0000n);
    expect(tiny.read32(0x4020_0008n)).toBe(1);
  });
});

describe('SoftMmu: page-crossing accesses', () => {
  it('splits reads and writes across non-contiguous frames', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x9000n, P | W);
    t.map(0x2000n, 0x8000n, P | W);
    mmu.write64(0x1ffdn, 0x0807060504030201n);
    expect([...mem.readBytes(0x9ffd, 3)]).toEqual([1, 2, 3]);
    expect([...mem.readBytes(0x8000, 5)]).toEqual([4, 5, 6, 7, 8]);
    expect(mmu.read64(0x1ffdn)).toBe(0x0807060504030201n);
    expect(mmu.read32(la(0x1ffe))).toBe(0x05040302);
    expect(mmu.read16(0x1fffn)).toBe(0x0403);
    mmu.write16(la(0x1fff), 0xaabb);
    expect(mem.readU8(0x9fff)).toBe(0xbb);
    expect(mem.readU8(0x8000)).toBe(0xaa);
    mmu.write64(0x1ffcn, 0x5566778811223344n);
    expect(mmu.read64(0x1ffcn)).toBe(0x5566778811223344n);
  });

  it('checks both pages before writing either', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x9000n, P | W);
    t.map(0x2000n, 0x8000n, P); // read-only
    mem.writeU32(0x9ffc, 0x12345678);
    const e = fault(() => mmu.write32(0x1ffen, 0));
    expect([e.errorCode, e.cr2]).toEqual([3, 0x2000n]);
    expect(mem.readU32(0x9ffc)).toBe(0x12345678);
    const e2 = fault(() => mmu.read64(0x2ffcn));
    expect([e2.errorCode, e2.cr2]).toEqual([0, 0x3000n]);
    const e3 = fault(() => mmu.writeBytes(0x1ff0n, new Uint8Array(0x20).fill(1)));
    expect(e3.cr2).toBe(0x2000n);
    expect(mem.readU32(0x9ffc)).toBe(0x12345678);
  });

  it('copies byte ranges across pages', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x9000n, P | W);
    t.map(0x2000n, 0x8000n, P | W);
    t.map(0x3000n, 0xa000n, P | W);
    const data = Uint8Array.from({ length: 0x1800 }, (_, i) => i & 0xff);
    mmu.writeBytes(0x1c00n, data);
    expect(mem.readBytes(0x9c00, 0x400)).toEqual(data.subarray(0, 0x400));
    expect(mem.readBytes(0x8000, 0x1000)).toEqual(data.subarray(0x400, 0x1400));
    expect(mmu.readBytes(0x1c00, 0x1800)).toEqual(data);
  });
});

describe('SoftMmu: MMIO', () => {
  it('routes unbacked guest-physical addresses to the io, every time, by size', () => {
    const { t, io, mmu } = setup();
    t.map(0xffff_c000_0000_0000n, 0xfee0_0000n, P | W);
    for (let k = 0; k < 2; k++) {
      expect(mmu.read32(0xffff_c000_0000_0030n)).toBe(0x55667788);
      mmu.write32(0xffff_c000_0000_00b0n, 0);
    }
    expect(mmu.read8(la(-0x4000_0000_0000 + 1))).toBe(0x88);
    expect(mmu.read64(0xffff_c000_0000_0008n)).toBe(0x1122334455667788n);
    mmu.write64(0xffff_c000_0000_0010n, 0xfedcba9876543210n);
    expect(io.log).toEqual([
      'r fee00030 4',
      'w fee000b0 4 0',
      'r fee00030 4',
      'w fee000b0 4 0',
      'r fee00001 1',
      'r fee00008 8',
      'w fee00010 8 fedcba9876543210',
    ]);
  });

  it('sends guest writes to read-only segments (ROMs) to the io, and reads them as RAM', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new SharedArrayBuffer(0x10000));
    const rom = new Uint8Array(0x1000).fill(0xab);
    mem.addSegment(0xf000_0000, rom, true);
    const io = new TestIo();
    const mmu = new SoftMmu(mem, io);
    expect(mmu.read32(0xf000_0010n)).toBe(0xabababab);
    mmu.write32(0xf000_0010n, 1);
    mmu.write8(0xf000_0010n, 1);
    expect(io.log).toEqual(['w f0000010 4 1', 'w f0000010 1 1']);
    expect(rom[0x10]).toBe(0xab);
    expect(mmu.cmpxchg(0xf000_0000n, 4, 0xabababab, 5)).toBe(0xabababab);
    expect(io.log.at(-1)).toBe('w f0000000 4 5');
  });

  it('handles a page that is part RAM, part MMIO, and an access crossing from RAM into MMIO', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new Uint8Array(0x1800));
    const io = new TestIo();
    const mmu = new SoftMmu(mem, io);
    mmu.write32(0x17fen, 0xaabbccdd);
    expect(mem.readU16(0x17fe)).toBe(0xccdd);
    expect(io.log).toEqual(['w 1800 1 bb', 'w 1801 1 aa']);
    mmu.write32(0x1700n, 0x01020304);
    expect(mmu.read32(0x1700n)).toBe(0x01020304);
    io.log = [];
    expect(mmu.read16(0x17ffn)).toBe(0x88cc);
    expect(io.log).toEqual(['r 1800 1']);
  });

  it('notices new segments', () => {
    const mem = new GuestMemory();
    mem.addSegment(0, new Uint8Array(0x1000));
    const io = new TestIo();
    const mmu = new SoftMmu(mem, io);
    mmu.read8(0x2000n);
    expect(io.log).toEqual(['r 2000 1']);
    mem.addSegment(0x2000, new Uint8Array(0x1000).fill(7));
    expect(mmu.read8(0x2000n)).toBe(7);
  });
});

describe('SoftMmu: code-page watch', () => {
  it('calls onCodeWrite for a write to a watched page, once, whatever the write path', () => {
    const { t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    t.map(0x2000n, 0x9000n, P | W);
    t.map(0x3000n, 0x8000n, P | W); // an alias of 0x1000
    const seen: number[] = [];
    mmu.onCodeWrite = (p) => seen.push(p);
    mmu.write32(0x1000n, 1); // a writable TLB entry exists before the watch
    mmu.watchCode(8);
    expect(mmu.isWatched(8)).toBe(true);
    mmu.write8(0x1010n, 1);
    expect(seen).toEqual([8]);
    expect(mmu.isWatched(8)).toBe(false);
    mmu.write8(0x1010n, 1);
    expect(seen).toEqual([8]);
    // Through an alias, a crossing write, an atomic, a byte copy.
    mmu.watchCode(8);
    mmu.write16(0x3ffen, 1);
    expect(seen).toEqual([8, 8]);
    mmu.watchCode(9);
    mmu.write32(0x1ffen, 0);
    expect(seen).toEqual([8, 8, 9]);
    mmu.watchCode(9);
    mmu.cmpxchg(0x2000n, 4, 0, 1);
    mmu.watchCode(8);
    mmu.writeBytes(0x1100n, new Uint8Array(4));
    expect(seen).toEqual([8, 8, 9, 9, 8]);
    // Reads and fetches do not count; unwatchCode.
    mmu.watchCode(8);
    mmu.read32(0x1000n);
    mmu.translateFetch(0x1000n);
    expect(mmu.unwatchCode(8)).toBe(true);
    mmu.write8(0x1000n, 0);
    expect(seen).toEqual([8, 8, 9, 9, 8]);
  });
});

describe('SoftMmu: locked read-modify-write', () => {
  it('cmpxchg and atomicRmw of every size and alignment', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    t.map(0x2000n, 0x9000n, P | W);
    mem.writeU32(0x8010, 5);
    expect(mmu.cmpxchg(0x1010n, 4, 5, 6)).toBe(5);
    expect(mem.readU32(0x8010)).toBe(6);
    expect(mmu.cmpxchg(0x1010, 4, 5, 7)).toBe(6);
    expect(mem.readU32(0x8010)).toBe(6);
    mem.writeU32(0x8020, 0xffffffff);
    expect(mmu.atomicRmw(0x1020n, 4, (v) => v + 1)).toBe(0xffffffff);
    expect(mem.readU32(0x8020)).toBe(0);
    mem.writeU64(0x8030, 0x0706050403020100n);
    for (let off = 0; off < 8; off++) expect(mmu.atomicRmw(0x1030 + off, 1, (v) => v + 0x10)).toBe(off);
    expect(mem.readU64(0x8030)).toBe(0x1716151413121110n);
    for (const off of [0, 1, 2, 3, 5, 7]) {
      const before = mem.readU16(0x8040 + off);
      expect(mmu.atomicRmw(0x1040 + off, 2, (v) => v ^ 0xffff)).toBe(before);
      expect(mem.readU16(0x8040 + off)).toBe(before ^ 0xffff);
    }
    mem.writeU64(0x8050, 0x1111111122222222n);
    expect(mmu.atomicRmw(0x1052n, 4, () => 0xaabbccdd)).toBe(0x11112222); // within a qword
    expect(mem.readU64(0x8050)).toBe(0x1111aabbccdd2222n);
    mem.writeU64(0x8060, 0n);
    mem.writeU64(0x8068, 0n);
    expect(mmu.atomicRmw(0x1066n, 4, () => 0x01020304)).toBe(0); // a split lock
    expect(mem.readU32(0x8066)).toBe(0x01020304);
    expect(mmu.cmpxchg64(0x1070n, 0n, 0xffff_ffff_ffff_fffen)).toBe(0n);
    expect(mmu.cmpxchg64(0x1070n, -2n, 3n)).toBe(0xffff_ffff_ffff_fffen);
    expect(mem.readU64(0x8070)).toBe(3n);
    expect(mmu.atomicRmw64(0x1079n, (v) => v + 1n)).toBe(0n); // misaligned
    expect(mem.readU64(0x8079)).toBe(1n);
    // Across pages.
    mem.writeU32(0x8ffe, 0);
    mem.writeU32(0x9000, 0);
    expect(mmu.atomicRmw(0x1ffen, 4, () => 0x44332211)).toBe(0);
    expect([mem.readU16(0x8ffe), mem.readU16(0x9000)]).toEqual([0x2211, 0x4433]);
    expect(mmu.atomicRmw64(0x1ffcn, (v) => v + 1n)).toBe(0x44332211_0000n);
  });

  it('write-checks even a failing cmpxchg and sets D', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P);
    t.map(0x2000n, 0x9000n, P | W);
    expect(fault(() => mmu.cmpxchg(0x1000n, 4, 1, 2)).errorCode).toBe(3);
    expect(fault(() => mmu.cmpxchg64(0x1000n, 1n, 2n)).errorCode).toBe(3);
    mem.writeU32(0x9000, 9);
    expect(mmu.cmpxchg(0x2000n, 4, 1, 2)).toBe(9);
    expect(mem.readU64(t.entry(0x2000n, 1)) & D).toBe(D);
    t.map(0x3000n, 0x8000n, P | W);
    t.map(0x4000n, 0x9000n, P);
    expect(fault(() => mmu.atomicRmw(0x3ffen, 4, (v) => v)).cr2).toBe(0x4000n);
  });

  it('is atomic against another agent using Atomics on the same SharedArrayBuffer', () => {
    const { mem, t, mmu } = setup();
    t.map(0x1000n, 0x8000n, P | W);
    const sab = mem.segments[0].buffer as SharedArrayBuffer;
    const i32 = new Int32Array(sab);
    // An interfering update inside the CAS loop: fn sees the new value on the retry.
    let calls = 0;
    const old = mmu.atomicRmw(0x1000n, 4, (v) => {
      if (calls++ === 0) Atomics.add(i32, 0x8000 / 4, 100);
      return v + 1;
    });
    expect([old, calls, mem.readU32(0x8000)]).toEqual([100, 2, 101]);
  });
});

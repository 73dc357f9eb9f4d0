import { describe, expect, it } from 'vitest';
import { buildAcpiTables, FADT_LENGTH, FadtFlags, MCFG_LENGTH, type AcpiOptions } from '../../../src/boot/acpi.js';
import { find, readAddressSpace, readResources, readTerms } from './aml-decode.js';
import type { GuestMemoryAccess } from '../../../src/memory/access.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { ascii, byteSum } from './images.js';

const IOAPIC = { id: 0, address: 0xfec00000, gsiBase: 0 };

function table(mem: GuestMemoryAccess, at: number): { sig: string; length: number; revision: number; bytes: Uint8Array } {
  const length = mem.readU32(at + 4);
  const bytes = mem.readBytes(at, length);
  return { sig: ascii(bytes.subarray(0, 4)), length, revision: bytes[8], bytes };
}

function build(opts: Partial<AcpiOptions> = {}): { mem: GuestMemoryAccess; t: ReturnType<typeof buildAcpiTables> } {
  const mem = bufferMemory(0x100000);
  const t = buildAcpiTables(mem, { at: 0xe0000, cpus: 4, ioapic: IOAPIC, lapicAddress: 0xfee00000, ...opts });
  return { mem, t };
}

interface MadtEntry {
  type: number;
  bytes: Uint8Array;
}

function madtEntries(bytes: Uint8Array): MadtEntry[] {
  const out: MadtEntry[] = [];
  let o = 44;
  while (o < bytes.length) {
    const len = bytes[o + 1];
    expect(len).toBeGreaterThan(0);
    out.push({ type: bytes[o], bytes: bytes.subarray(o, o + len) });
    o += len;
  }
  expect(o).toBe(bytes.length);
  return out;
}

describe('buildAcpiTables', () => {
  it('writes a valid RSDP in the BIOS area', () => {
    const { mem, t } = build();
    expect(t.rsdp % 16).toBe(0);
    expect(t.rsdp).toBeGreaterThanOrEqual(0xe0000);
    expect(t.rsdp + 36).toBeLessThanOrEqual(0x100000);
    const r = mem.readBytes(t.rsdp, 36);
    expect(ascii(r.subarray(0, 8))).toBe('RSD PTR ');
    expect(byteSum(r.subarray(0, 20))).toBe(0);
    expect(byteSum(r)).toBe(0);
    expect(r[15]).toBe(2);
    expect(ascii(r.subarray(9, 15))).toBe('VMMAPI');
    const v = new DataView(r.buffer);
    expect(v.getUint32(20, true)).toBe(36);
    expect(Number(v.getBigUint64(24, true))).toBe(t.xsdt);
    expect(v.getUint32(16, true)).toBe(t.rsdt);
  });

  it('writes XSDT and RSDT pointing at FADT and MADT', () => {
    const { mem, t } = build();
    const x = table(mem, t.xsdt);
    expect(x.sig).toBe('XSDT');
    expect(x.length).toBe(36 + 16);
    expect(byteSum(x.bytes)).toBe(0);
    const xv = new DataView(x.bytes.buffer);
    expect([Number(xv.getBigUint64(36, true)), Number(xv.getBigUint64(44, true))]).toEqual([t.fadt, t.madt]);
    const r = table(mem, t.rsdt);
    expect(r.sig).toBe('RSDT');
    expect(byteSum(r.bytes)).toBe(0);
    const rv = new DataView(r.bytes.buffer);
    expect([rv.getUint32(36, true), rv.getUint32(40, true)]).toEqual([t.fadt, t.madt]);
    expect(ascii(x.bytes.subarray(10, 16))).toBe('VMMAPI');
  });

  it('writes a revision 6 FADT', () => {
    const { mem, t } = build({ pmTimerPort: 0x608 });
    const f = table(mem, t.fadt);
    expect(f.sig).toBe('FACP');
    expect(f.length).toBe(FADT_LENGTH);
    expect(f.revision).toBe(6);
    expect(byteSum(f.bytes)).toBe(0);
    const v = new DataView(f.bytes.buffer);
    expect(v.getUint32(40, true)).toBe(t.dsdt);
    expect(Number(v.getBigUint64(140, true))).toBe(t.dsdt);
    expect(v.getUint32(36, true)).toBe(0); // FIRMWARE_CTRL: only the 64-bit pointer is set
    expect(Number(v.getBigUint64(132, true))).toBe(t.facs); // X_FIRMWARE_CTRL
    expect(v.getUint16(46, true)).toBe(9);
    const flags = v.getUint32(112, true);
    expect(flags & FadtFlags.RESET_REG_SUP).toBeTruthy();
    expect(flags & FadtFlags.HW_REDUCED_ACPI).toBe(0);
    expect(flags & FadtFlags.TMR_VAL_EXT).toBeTruthy();
    expect(v.getUint16(109, true)).toBe(0x3); // legacy devices + 8042
    // RESET_REG: I/O space, 8 bits, byte access, port 0xcf9; value 6.
    expect([f.bytes[116], f.bytes[117], f.bytes[119]]).toEqual([1, 8, 1]);
    expect(v.getBigUint64(120, true)).toBe(0xcf9n);
    expect(f.bytes[128]).toBe(6);
    expect(v.getUint32(56, true)).toBe(0x600);
    expect(v.getUint32(64, true)).toBe(0x604);
    expect(v.getUint32(76, true)).toBe(0x608);
    expect(f.bytes[91]).toBe(4);
    expect(v.getBigUint64(208 + 4, true)).toBe(0x608n);
    const facs = mem.readBytes(t.facs, 64);
    expect(ascii(facs.subarray(0, 4))).toBe('FACS');
    expect(t.facs % 64).toBe(0);
  });

  it('omits the PM timer by default', () => {
    const { mem, t } = build();
    const f = table(mem, t.fadt);
    const v = new DataView(f.bytes.buffer);
    expect(v.getUint32(76, true)).toBe(0);
    expect(f.bytes[91]).toBe(0);
    expect(v.getUint32(112, true) & FadtFlags.TMR_VAL_EXT).toBe(0);
  });

  it('writes a DSDT with \\_S5', () => {
    const { mem, t } = build();
    const d = table(mem, t.dsdt);
    expect(d.sig).toBe('DSDT');
    expect(byteSum(d.bytes)).toBe(0);
    expect(ascii(d.bytes.subarray(37, 41))).toBe('_S5_');
    const empty = build({ s5SleepType: false });
    const e = table(empty.mem, empty.t.dsdt);
    expect(e.length).toBe(36);
    expect(byteSum(e.bytes)).toBe(0);
  });

  it('writes a MADT with one LAPIC per CPU, the IOAPIC, overrides and LINT1 NMI', () => {
    const { mem, t } = build({ cpus: 4 });
    const m = table(mem, t.madt);
    expect(m.sig).toBe('APIC');
    expect(m.revision).toBeGreaterThanOrEqual(4);
    expect(byteSum(m.bytes)).toBe(0);
    const v = new DataView(m.bytes.buffer);
    expect(v.getUint32(36, true)).toBe(0xfee00000);
    expect(v.getUint32(40, true)).toBe(1);
    const entries = madtEntries(m.bytes);
    expect(entries).toHaveLength(4 + 1 + 2 + 1);
    const lapics = entries.filter((e) => e.type === 0);
    expect(lapics.map((e) => [e.bytes[2], e.bytes[3], e.bytes[4]])).toEqual([
      [0, 0, 1],
      [1, 1, 1],
      [2, 2, 1],
      [3, 3, 1],
    ]);
    const io = entries.find((e) => e.type === 1)!;
    const iv = new DataView(io.bytes.slice().buffer);
    expect(io.bytes.length).toBe(12);
    expect(iv.getUint32(4, true)).toBe(0xfec00000);
    expect(iv.getUint32(8, true)).toBe(0);
    const isos = entries.filter((e) => e.type === 2).map((e) => {
      const d = new DataView(e.bytes.slice().buffer);
      return { bus: e.bytes[2], irq: e.bytes[3], gsi: d.getUint32(4, true), flags: d.getUint16(8, true) };
    });
    expect(isos).toEqual([
      { bus: 0, irq: 0, gsi: 2, flags: 0 },
      { bus: 0, irq: 9, gsi: 9, flags: 0xd },
    ]);
    const nmi = entries.find((e) => e.type === 4)!;
    expect([nmi.bytes[2], nmi.bytes[5]]).toEqual([0xff, 1]);
  });

  it('scales the MADT with the CPU count', () => {
    for (const cpus of [1, 17, 254]) {
      const { mem, t } = build({ cpus });
      const m = table(mem, t.madt);
      expect(byteSum(m.bytes)).toBe(0);
      const lapics = madtEntries(m.bytes).filter((e) => e.type === 0);
      expect(lapics).toHaveLength(cpus);
      expect(lapics.at(-1)!.bytes[3]).toBe(cpus - 1);
      expect(t.end).toBeGreaterThanOrEqual(t.madt + m.length);
    }
  });

  it('puts the RSDP at rsdpAt when given, and keeps tables in order', () => {
    const mem = bufferMemory(0x200000);
    const t = buildAcpiTables(mem, { at: 0x180000, rsdpAt: 0xf0000, cpus: 2, ioapic: IOAPIC });
    expect(t.rsdp).toBe(0xf0000);
    expect(ascii(mem.readBytes(0xf0000, 8))).toBe('RSD PTR ');
    expect(t.xsdt).toBe(0x180000);
    expect(t.xsdt < t.rsdt && t.rsdt < t.fadt && t.fadt < t.facs && t.facs < t.dsdt && t.dsdt < t.madt && t.madt < t.end).toBe(true);
  });

  it('rejects misuse', () => {
    const mem = bufferMemory(0x100000);
    const base = { at: 0xe0000, cpus: 1, ioapic: IOAPIC };
    expect(() => buildAcpiTables(mem, { ...base, cpus: 0 })).toThrow(/cpus/);
    expect(() => buildAcpiTables(mem, { ...base, cpus: 255 })).toThrow(RangeError);
    expect(() => buildAcpiTables(mem, { ...base, cpus: '2' as unknown as number })).toThrow(TypeError);
    expect(() => buildAcpiTables(mem, { ...base, at: 0xfff00 })).toThrow(/not backed/);
    expect(() => buildAcpiTables(mem, { ...base, oemId: 'TOOLONGID' })).toThrow(/oemId/);
    expect(() => buildAcpiTables(mem, { ...base, rsdpAt: 0xf0001 })).toThrow(/16-byte aligned/);
    expect(() => buildAcpiTables(mem, { ...base, ioapic: { id: 300, address: 0xfec00000, gsiBase: 0 } })).toThrow(/ioapic\.id/);
    expect(() => buildAcpiTables(mem, { ...base, at: -1 })).toThrow(RangeError);
  });
});

describe('buildAcpiTables with a PCI host bridge', () => {
  const PCI = {
    ecamBase: 0xe000_0000,
    io: { base: 0xc000, size: 0x4000 },
    mmio32: { base: 0xc000_0000, size: 0x2000_0000 },
    mmio64: { base: 2 ** 32, size: 2 ** 35 },
  };

  it('lists an MCFG in the XSDT and RSDT: segment 0, buses 0-0, the ECAM base', () => {
    const { mem, t } = build({ pci: PCI });
    expect(t.mcfg).toBeDefined();
    const x = table(mem, t.xsdt);
    expect(x.length).toBe(36 + 24);
    expect(byteSum(x.bytes)).toBe(0);
    const xv = new DataView(x.bytes.buffer);
    expect([0, 1, 2].map((i) => Number(xv.getBigUint64(36 + 8 * i, true)))).toEqual([t.fadt, t.madt, t.mcfg]);
    const r = table(mem, t.rsdt);
    expect(r.length).toBe(36 + 12);
    expect(byteSum(r.bytes)).toBe(0);
    expect(new DataView(r.bytes.buffer).getUint32(44, true)).toBe(t.mcfg);
    const m = table(mem, t.mcfg!);
    expect(m.sig).toBe('MCFG');
    expect(m.length).toBe(MCFG_LENGTH);
    expect(m.length).toBe(60);
    expect(m.revision).toBe(1);
    expect(byteSum(m.bytes)).toBe(0);
    const mv = new DataView(m.bytes.buffer);
    expect(mv.getBigUint64(36, true)).toBe(0n); // reserved
    expect(mv.getBigUint64(44, true)).toBe(0xe000_0000n);
    expect([mv.getUint16(52, true), m.bytes[54], m.bytes[55], mv.getUint32(56, true)]).toEqual([0, 0, 0, 0]);
    expect(t.end).toBeGreaterThanOrEqual(t.mcfg! + 60);
    expect(t.madt < t.mcfg!).toBe(true);
  });

  it('says the end bus the ECAM covers', () => {
    const { mem, t } = build({ pci: { ...PCI, endBus: 15 } });
    expect(table(mem, t.mcfg!).bytes[55]).toBe(15);
  });

  it('describes \\_SB.PCI0 (PNP0A08/PNP0A03, _SEG/_BBN/_UID 0, _CRS windows) and \\_SB.MBRD in the DSDT, keeping \\_S5', () => {
    const { mem, t } = build({ pci: PCI });
    const d = table(mem, t.dsdt);
    expect(byteSum(d.bytes)).toBe(0);
    const terms = readTerms(d.bytes.subarray(36));
    expect(terms.map((n) => n.kind)).toEqual(['scope', 'name']);
    expect(find(terms, '_S5_')).toMatchObject({ kind: 'name', value: { kind: 'package', count: 4 } });
    const int = (path: string): bigint | undefined => {
      const n = find(terms, path);
      return n?.kind === 'name' && n.value.kind === 'integer' ? n.value.value : undefined;
    };
    expect(find(terms, '\\_SB_')).toMatchObject({ kind: 'scope' });
    expect(find(terms, '\\_SB_.PCI0')).toMatchObject({ kind: 'device' });
    expect(int('\\_SB_.PCI0._HID')).toBe(0x080ad041n);
    expect(int('\\_SB_.PCI0._CID')).toBe(0x030ad041n);
    expect([int('\\_SB_.PCI0._SEG'), int('\\_SB_.PCI0._BBN'), int('\\_SB_.PCI0._UID')]).toEqual([0n, 0n, 0n]);
    const crs = find(terms, '\\_SB_.PCI0._CRS');
    if (crs?.kind !== 'name' || crs.value.kind !== 'buffer') throw new Error('no _CRS buffer');
    expect(crs.value.size).toBe(crs.value.bytes.length);
    expect(byteSum(crs.value.bytes)).toBe(0);
    const descs = readResources(crs.value.bytes);
    expect(descs.map((x) => x.tag)).toEqual([0x88, 0x40, 0x88, 0x87, 0x8a, 0x78]);
    const spaces = [0, 2, 3, 4].map((i) => readAddressSpace(descs[i]));
    expect(spaces.map((s) => [s.type, s.general, s.min, s.max, s.length])).toEqual([
      [2, 0x0c, 0n, 0n, 1n],
      [1, 0x0c, 0xc000n, 0xffffn, 0x4000n],
      [0, 0x0c, 0xc000_0000n, 0xdfff_ffffn, 0x2000_0000n],
      [0, 0x0c, 2n ** 32n, 2n ** 32n + 2n ** 35n - 1n, 2n ** 35n],
    ]);
    expect([...descs[1].bytes]).toEqual([0x47, 1, 0xf8, 0x0c, 0xf8, 0x0c, 1, 8]);
    expect(int('\\_SB_.MBRD._HID')).toBe(0x020cd041n);
    const mres = find(terms, '\\_SB_.MBRD._CRS');
    if (mres?.kind !== 'name' || mres.value.kind !== 'buffer') throw new Error('no MBRD _CRS');
    const [fixed, end] = readResources(mres.value.bytes);
    expect([...fixed.bytes]).toEqual([0x86, 9, 0, 1, 0, 0, 0, 0xe0, 0, 0, 0x10, 0]);
    expect(end.tag).toBe(0x78);
  });

  it('leaves the QWordMemory out without a 64-bit window, and _S5 out when asked', () => {
    const { mem, t } = build({ pci: { ...PCI, mmio64: undefined }, s5SleepType: false });
    const terms = readTerms(table(mem, t.dsdt).bytes.subarray(36));
    expect(find(terms, '_S5_')).toBeUndefined();
    const crs = find(terms, '\\_SB_.PCI0._CRS');
    if (crs?.kind !== 'name' || crs.value.kind !== 'buffer') throw new Error('no _CRS buffer');
    expect(readResources(crs.value.bytes).map((x) => x.tag)).toEqual([0x88, 0x40, 0x88, 0x87, 0x78]);
  });

  it('without opts.pci: no MCFG, two XSDT entries, the DSDT only \\_S5', () => {
    const { mem, t } = build();
    expect(t.mcfg).toBeUndefined();
    expect(table(mem, t.xsdt).length).toBe(52);
    expect(readTerms(table(mem, t.dsdt).bytes.subarray(36)).map((n) => n.kind)).toEqual(['name']);
  });

  it('rejects bad PCI options, naming them', () => {
    const bad: [unknown, new (...a: never[]) => Error, RegExp][] = [
      [{ ...PCI, ecamBase: 0xe008_0000 }, RangeError, /opts\.pci\.ecamBase must be 1 MiB aligned/],
      [{ ...PCI, ecamBase: '0' }, TypeError, /opts\.pci\.ecamBase must be a number/],
      [{ ...PCI, endBus: 256 }, RangeError, /opts\.pci\.endBus/],
      [{ ...PCI, io: { base: 0xc00, size: 0x400 } }, RangeError, /opts\.pci\.io must not include the config ports/],
      [{ ...PCI, io: { base: 0xf000, size: 0x2000 } }, RangeError, /opts\.pci\.io 0xf000\+0x2000 must end at or below 0x10000/],
      [{ ...PCI, mmio32: { base: 0xf000_0000, size: 0x2000_0000 } }, RangeError, /opts\.pci\.mmio32/],
      [{ ...PCI, mmio32: { base: 0xdff0_0000, size: 0x20_0000 } }, RangeError, /opts\.pci\.mmio32 overlaps the ECAM window/],
      [{ ...PCI, mmio64: { base: 0xc000_0000, size: 2 ** 32 } }, RangeError, /opts\.pci\.mmio64 overlaps/],
      [{ ...PCI, mmio32: null }, TypeError, /opts\.pci\.mmio32 must be an object/],
      [null, TypeError, /opts\.pci must be an object/],
    ];
    for (const [pci, cls, re] of bad) {
      expect(() => build({ pci: pci as never }), String(re)).toThrow(cls);
      expect(() => build({ pci: pci as never }), String(re)).toThrow(re);
    }
  });
});

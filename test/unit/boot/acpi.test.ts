import { describe, expect, it } from 'vitest';
import { buildAcpiTables, FADT_LENGTH, FadtFlags, type AcpiOptions } from '../../../src/boot/acpi.js';
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

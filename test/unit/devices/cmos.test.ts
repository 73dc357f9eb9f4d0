import { describe, expect, it } from 'vitest';
import { Cmos, CmosReg } from '../../../src/devices/cmos.js';

// Thursday 2024-02-29 23:59:58.250 UTC
const T0 = Date.UTC(2024, 1, 29, 23, 59, 58, 250);

function make(opts: ConstructorParameters<typeof Cmos>[0] = {}) {
  let t = T0;
  const cmos = new Cmos({ now: () => new Date(t), ...opts });
  const rd = (i: number) => {
    cmos.write(0, 1, i);
    return cmos.read(1, 1) as number;
  };
  const wr = (i: number, v: number) => {
    cmos.write(0, 1, i);
    cmos.write(1, 1, v);
  };
  const clockRegs = () => [0x00, 0x02, 0x04, 0x06, 0x07, 0x08, 0x09, 0x32].map(rd);
  return { cmos, rd, wr, clockRegs, advance: (ms: number) => (t += ms) };
}

describe('Cmos', () => {
  it('reports the clock in BCD, 24-hour by default', () => {
    const { rd, clockRegs } = make();
    expect(rd(CmosReg.REG_B)).toBe(0x02);
    expect(clockRegs()).toEqual([0x58, 0x59, 0x23, 0x05, 0x29, 0x02, 0x24, 0x20]);
  });

  it('honours binary mode and 12-hour mode', () => {
    const { wr, rd, clockRegs } = make();
    wr(CmosReg.REG_B, 0x06);
    expect(clockRegs()).toEqual([58, 59, 23, 5, 29, 2, 24, 20]);
    wr(CmosReg.REG_B, 0x04); // binary, 12-hour
    expect(rd(CmosReg.HOURS)).toBe(0x80 | 11);
    wr(CmosReg.REG_B, 0x00); // BCD, 12-hour
    expect(rd(CmosReg.HOURS)).toBe(0x91);
  });

  it('12-hour mode: midnight is 12 AM, noon is 12 PM', () => {
    const { cmos, wr, rd } = make();
    cmos.setClock(new Date(Date.UTC(2030, 0, 1, 0, 30)));
    wr(CmosReg.REG_B, 0x00);
    expect(rd(CmosReg.HOURS)).toBe(0x12);
    cmos.setClock(new Date(Date.UTC(2030, 0, 1, 12, 30)));
    expect(rd(CmosReg.HOURS)).toBe(0x92);
  });

  it('the clock runs with the host clock and rolls over', () => {
    const { advance, clockRegs } = make();
    advance(2000);
    expect(clockRegs()).toEqual([0x00, 0x00, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]);
  });

  it('guest writes set the clock (BCD and binary), keeping it running', () => {
    const { cmos, wr, rd, advance, clockRegs } = make();
    wr(CmosReg.HOURS, 0x10);
    wr(CmosReg.MINUTES, 0x05);
    wr(CmosReg.YEAR, 0x99);
    wr(CmosReg.CENTURY, 0x19);
    wr(CmosReg.MONTH, 0x12);
    wr(CmosReg.DAY_OF_MONTH, 0x31);
    wr(CmosReg.SECONDS, 0x00);
    wr(CmosReg.DAY_OF_WEEK, 0x01); // ignored: derived from the date
    expect(clockRegs()).toEqual([0x00, 0x05, 0x10, 0x06, 0x31, 0x12, 0x99, 0x19]);
    expect(cmos.clock().toISOString()).toBe('1999-12-31T10:05:00.250Z');
    advance(61_000);
    expect(rd(CmosReg.MINUTES)).toBe(0x06);
    expect(rd(CmosReg.SECONDS)).toBe(0x01);
    wr(CmosReg.REG_B, 0x06);
    wr(CmosReg.HOURS, 7);
    expect(rd(CmosReg.HOURS)).toBe(7);
    wr(CmosReg.REG_B, 0x04); // 12-hour binary: 3 PM
    wr(CmosReg.HOURS, 0x80 | 3);
    wr(CmosReg.REG_B, 0x06);
    expect(rd(CmosReg.HOURS)).toBe(15);
  });

  it('SET freezes the clock while it is being set', () => {
    const { wr, rd, advance } = make();
    wr(CmosReg.REG_B, 0x82 | 0x10);
    expect(rd(CmosReg.REG_B)).toBe(0x82); // SET clears UIE
    advance(10_000);
    expect(rd(CmosReg.SECONDS)).toBe(0x58);
    wr(CmosReg.SECONDS, 0x30);
    advance(10_000);
    expect(rd(CmosReg.SECONDS)).toBe(0x30);
    wr(CmosReg.REG_B, 0x02);
    advance(5_000);
    expect(rd(CmosReg.SECONDS)).toBe(0x35);
  });

  it('registers A, C, D', () => {
    const { cmos, wr, rd } = make();
    expect(rd(CmosReg.REG_A)).toBe(0x26);
    wr(CmosReg.REG_A, 0xff);
    expect(rd(CmosReg.REG_A)).toBe(0x7f); // UIP reads 0
    expect(rd(CmosReg.REG_D)).toBe(0x80);
    wr(CmosReg.REG_D, 0x00);
    expect(rd(CmosReg.REG_D)).toBe(0x80);
    wr(CmosReg.REG_C, 0xf0); // read-only for the guest
    expect(rd(CmosReg.REG_C)).toBe(0);
    cmos.set(CmosReg.REG_C, 0x90);
    expect(cmos.get(CmosReg.REG_C)).toBe(0x90);
    expect(rd(CmosReg.REG_C)).toBe(0x90);
    expect(rd(CmosReg.REG_C)).toBe(0); // read clears
  });

  it('index port: NMI mask in bit 7, index in bits 0-6, reads 0xff', () => {
    const { cmos } = make();
    expect(cmos.nmiMasked).toBe(false);
    cmos.write(0, 1, 0x80 | 0x40);
    expect(cmos.nmiMasked).toBe(true);
    expect(cmos.selectedIndex).toBe(0x40);
    cmos.write(1, 1, 0xab);
    expect(cmos.get(0x40)).toBe(0xab);
    cmos.write(0, 1, 0x40);
    expect(cmos.nmiMasked).toBe(false);
    expect(cmos.read(1, 1)).toBe(0xab);
    expect(cmos.read(0, 1)).toBe(0xff);
    cmos.write(0, 1, 0x8d); // masked NMI + register D
    expect(cmos.read(1, 1)).toBe(0x80);
  });

  it('plain RAM bytes are read/write over all 128 bytes', () => {
    const { wr, rd } = make();
    for (let i = 0x0e; i < 0x80; i++) if (i !== 0x32) wr(i, (i * 7) & 0xff);
    for (let i = 0x0e; i < 0x80; i++) if (i !== 0x32) expect(rd(i)).toBe((i * 7) & 0xff);
    wr(CmosReg.SECONDS_ALARM, 0x11);
    expect(rd(CmosReg.SECONDS_ALARM)).toBe(0x11);
  });

  it('memory size bytes: 8 GiB with the default low memory end', () => {
    const { rd } = make({ memoryBytes: 8n * 1024n ** 3n, cpus: 4 });
    expect([rd(0x15), rd(0x16)]).toEqual([0x80, 0x02]);
    expect([rd(0x17), rd(0x18), rd(0x30), rd(0x31)]).toEqual([0xff, 0xff, 0xff, 0xff]);
    expect([rd(0x34), rd(0x35)]).toEqual([0x00, 0xdf]);
    expect([rd(0x5b), rd(0x5c), rd(0x5d)]).toEqual([0x00, 0x20, 0x01]);
    expect(rd(0x5f)).toBe(3);
  });

  it('memory size bytes: small guests and custom lowMemoryEnd', () => {
    const a = make({ memoryBytes: 32 * 1024 * 1024 });
    expect([a.rd(0x17), a.rd(0x18)]).toEqual([0x00, 0x7c]);
    expect([a.rd(0x34), a.rd(0x35)]).toEqual([0x00, 0x01]);
    expect([a.rd(0x5b), a.rd(0x5c), a.rd(0x5d)]).toEqual([0, 0, 0]);
    const b = make({ memoryBytes: 512 * 1024 });
    expect([b.rd(0x15), b.rd(0x16), b.rd(0x17), b.rd(0x34)]).toEqual([0x00, 0x02, 0, 0]);
    const c = make({ memoryBytes: 4 * 1024 ** 3, lowMemoryEnd: 0x8000_0000 });
    expect([c.rd(0x34), c.rd(0x35)]).toEqual([0x00, 0x7f]);
    expect([c.rd(0x5b), c.rd(0x5c), c.rd(0x5d)]).toEqual([0x00, 0x80, 0x00]);
  });

  it('rejects bad options and host API misuse', () => {
    expect(() => new Cmos({ memoryBytes: -1 })).toThrow(/memoryBytes/);
    expect(() => new Cmos({ memoryBytes: 1.5 })).toThrow(RangeError);
    expect(() => new Cmos({ memoryBytes: 'x' as never })).toThrow(TypeError);
    expect(() => new Cmos({ lowMemoryEnd: 0x1234 })).toThrow(/lowMemoryEnd/);
    expect(() => new Cmos({ lowMemoryEnd: 2 ** 33 })).toThrow(/lowMemoryEnd/);
    expect(() => new Cmos({ cpus: 0 })).toThrow(/cpus/);
    expect(() => new Cmos({ now: 5 as never })).toThrow(/now/);
    const { cmos } = make();
    expect(() => cmos.set(128, 0)).toThrow(RangeError);
    expect(() => cmos.set(0x40, 256)).toThrow(RangeError);
    expect(() => cmos.get(-1)).toThrow(/index/);
    expect(() => cmos.setClock(new Date(Number.NaN))).toThrow(TypeError);
  });

  it('never throws on hostile accesses or nonsense clock values', () => {
    const { cmos, wr, rd } = make();
    for (const size of [1, 2, 4, 8] as const) {
      for (const off of [2, 3, 100, -1, 0.5, Number.NaN]) {
        expect(() => cmos.write(off, size, 0xff)).not.toThrow();
        expect(cmos.read(off, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
      }
    }
    cmos.write(0, 4, 0x1234_5640); // low byte: index 0x40
    cmos.write(1, 8, 0xffff_ffff_ffff_ff5an);
    expect(cmos.read(1, 4)).toBe(0x5a);
    for (const i of [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32]) wr(i, 0xff);
    expect(() => rd(0x00)).not.toThrow();
    expect(Number.isFinite(cmos.clock().getTime())).toBe(true);
    const broken = new Cmos({ now: () => new Date(Number.NaN) });
    broken.write(0, 1, 0);
    expect(broken.read(1, 1)).toBe(0x00);
  });

  it('snapshot/restore', () => {
    const a = make();
    a.wr(0x40, 0x77);
    a.wr(CmosReg.HOURS, 0x05);
    a.cmos.write(0, 1, 0x84);
    const snap = a.cmos.snapshot();
    const b = make();
    b.cmos.restore(JSON.parse(JSON.stringify(snap)));
    expect(b.cmos.snapshot()).toEqual(snap);
    expect(b.cmos.nmiMasked).toBe(true);
    expect(b.cmos.read(1, 1)).toBe(0x05);
    expect(b.cmos.get(0x40)).toBe(0x77);
    expect(() => b.cmos.restore({ ...snap, ram: [] })).toThrow(RangeError);
    expect(() => b.cmos.restore({ ...snap, index: 200 })).toThrow(RangeError);
  });
});

/** The platform's ACPI PM1a registers and memory layout helpers (no KVM needed). */
import { describe, expect, it } from 'vitest';
import { AcpiPm, formatBytes, Pm1Cnt, ramRanges } from '../../src/platform/index.js';

describe('AcpiPm', () => {
  const make = () => {
    const sleeps: number[] = [];
    return { pm: new AcpiPm({ onSleep: (t) => sleeps.push(t) }), sleeps };
  };

  it('PM1_CNT reads with SCI_EN set, keeps SLP_TYP, and SLP_EN reports the sleep type', () => {
    const { pm, sleeps } = make();
    expect(pm.read(4, 2)).toBe(Pm1Cnt.SCI_EN);
    pm.write(4, 2, 5 << 10);
    expect(pm.read(4, 2)).toBe((5 << 10) | 1);
    expect(sleeps).toEqual([]);
    pm.write(4, 2, (5 << 10) | Pm1Cnt.SLP_EN);
    expect(sleeps).toEqual([5]);
    expect(pm.read(4, 2)).toBe((5 << 10) | 1); // SLP_EN is write-only
    pm.write(4, 2, 0); // SCI_EN cannot be cleared
    expect(pm.read(4, 2)).toBe(1);
  });

  it('byte-wide writes to PM1_CNT work (the high byte carries SLP_EN)', () => {
    const { pm, sleeps } = make();
    pm.write(5, 1, (Pm1Cnt.SLP_EN | (7 << 10)) >> 8);
    expect(sleeps).toEqual([7]);
  });

  it('PM1_EN is read/write, PM1_STS is write-1-to-clear; a 32-bit access spans both', () => {
    const { pm } = make();
    pm.write(2, 2, 0x0121);
    expect(pm.read(2, 2)).toBe(0x0121);
    expect(pm.read(0, 4)).toBe(0x0121_0000);
    pm.write(0, 2, 0xffff);
    expect(pm.read(0, 2)).toBe(0);
    expect(pm.read(6, 1)).toBe(0xff);
  });

  it('rejects a missing onSleep', () => {
    expect(() => new AcpiPm({} as never)).toThrow(TypeError);
  });
});

describe('layout', () => {
  it('splits RAM at 3 GiB and relocates the rest to 4 GiB', () => {
    expect(ramRanges(2 ** 20)).toEqual([{ gpa: 0, length: 2 ** 20 }]);
    expect(ramRanges(4 * 2 ** 30)).toEqual([
      { gpa: 0, length: 0xc000_0000 },
      { gpa: 2 ** 32, length: 2 ** 30 },
    ]);
  });

  it('formats sizes for messages', () => {
    expect(formatBytes(512 * 1024)).toBe('512 KiB');
    expect(formatBytes(3 * 2 ** 20)).toBe('3 MiB');
    expect(formatBytes(4097)).toBe('4097 bytes');
  });
});

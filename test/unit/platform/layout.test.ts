import { describe, expect, it } from 'vitest';
import { buildE820, E820Type } from '../../../src/boot/e820.js';
import { checkDebugExit } from '../../../src/platform/options.js';
import {
  KVM_MMIO,
  KVM_PORTS,
  LOW_RAM_LIMIT,
  PCI_ECAM,
  PCI_IO_WINDOW,
  PCI_MMIO32_WINDOW,
  PCI_MMIO64_SIZE,
  pciLayout,
  pciMmio64Window,
  pcReservedE820,
  PORTS,
  ramRanges,
} from '../../../src/platform/layout.js';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const overlaps = (a: { base: number; size: number }, b: { base: number; size: number }): boolean => a.base < b.base + b.size && b.base < a.base + a.size;
const span = (r: { base: number; length: number }) => ({ base: r.base, size: r.length });

describe('PC memory map: the PCI windows', () => {
  const sizes = [MiB, 64 * MiB, 3 * GiB - 4096, 3 * GiB, 3 * GiB + 4096, 4 * GiB, 64 * GiB + 12345 * 4096, 2 ** 40];

  it('keeps the ECAM, the 32-bit and the 64-bit windows clear of RAM, of each other and of KVM, below the BIOS', () => {
    for (const mem of sizes) {
      const l = pciLayout(mem);
      const ram = ramRanges(mem).map((r) => ({ base: r.gpa, size: r.length }));
      const windows = [l.ecam, l.mmio32, l.mmio64];
      for (const w of windows) {
        for (const r of ram) expect(overlaps(w, r), `${mem}: window ${w.base.toString(16)} vs RAM`).toBe(false);
        for (const k of Object.values(KVM_MMIO)) expect(overlaps(w, span(k))).toBe(false);
        expect(overlaps(w, { base: 0xfec0_0000, size: 2 ** 32 - 0xfec0_0000 }), 'APICs, HPET, BIOS').toBe(false);
      }
      expect(overlaps(l.ecam, l.mmio32) || overlaps(l.ecam, l.mmio64) || overlaps(l.mmio32, l.mmio64)).toBe(false);
      expect(l.mmio32.base).toBeGreaterThanOrEqual(LOW_RAM_LIMIT);
      expect(l.mmio32.base + l.mmio32.size).toBeLessThanOrEqual(2 ** 32);
      expect(l.mmio64.base % GiB).toBe(0);
      expect(l.mmio64.base).toBeGreaterThanOrEqual(2 ** 32);
      expect(l.mmio64.size).toBe(PCI_MMIO64_SIZE);
      expect(l.mmio64.base + l.mmio64.size).toBeLessThanOrEqual(2 ** 48); // guest-physical bits of today's hosts
    }
  });

  it('puts the 64-bit window at 4 GiB with no high RAM, else at the next 1 GiB above it', () => {
    expect(pciMmio64Window(64 * MiB).base).toBe(4 * GiB);
    expect(pciMmio64Window(3 * GiB).base).toBe(4 * GiB);
    expect(pciMmio64Window(3 * GiB + 4096).base).toBe(5 * GiB);
    expect(pciMmio64Window(4 * GiB).base).toBe(5 * GiB);
    expect(pciMmio64Window(5 * GiB).base).toBe(6 * GiB);
    expect(() => pciMmio64Window(4096)).toThrow(RangeError);
  });

  it('fixes the 32-bit window at 0xc0000000-0xdfffffff and ECAM (bus 0) at 0xe0000000', () => {
    expect(PCI_MMIO32_WINDOW).toEqual({ base: 0xc000_0000, size: 0x2000_0000 });
    expect(PCI_ECAM).toEqual({ base: 0xe000_0000, size: MiB, buses: 1 });
    expect(pciLayout(64 * MiB).ecam).toEqual({ base: 0xe000_0000, size: MiB });
  });

  it('reserves the ECAM window in the E820 map and leaves the MMIO windows as holes', () => {
    for (const mem of [64 * MiB, 4 * GiB]) {
      const map = buildE820(mem, { reserved: pcReservedE820() });
      expect(map).toContainEqual({ addr: 0xe000_0000, size: MiB, type: E820Type.RESERVED });
      const l = pciLayout(mem);
      for (const e of map) {
        const r = { base: e.addr, size: e.size };
        expect(overlaps(r, l.mmio32) || overlaps(r, l.mmio64)).toBe(false);
        if (e.type === E820Type.RAM) expect(overlaps(r, l.ecam)).toBe(false);
      }
    }
  });
});

describe('PC port map: the PCI ports', () => {
  it('config mechanism #1 at 0xcf8 and 0xcfc-0xcff around the reset register at 0xcf9', () => {
    expect(PORTS.pciConfigAddress).toEqual({ base: 0xcf8, length: 1 });
    expect(PORTS.reset).toEqual({ base: 0xcf9, length: 1 });
    expect(PORTS.pciConfigData).toEqual({ base: 0xcfc, length: 4 });
  });

  it('no two platform port ranges overlap, and the I/O window is clear of them and of KVM', () => {
    const ours = Object.entries(PORTS);
    for (let i = 0; i < ours.length; i++) for (let j = i + 1; j < ours.length; j++) expect(overlaps(span(ours[i][1]), span(ours[j][1])), `${ours[i][0]} vs ${ours[j][0]}`).toBe(false);
    for (const [k, r] of ours) {
      for (const [kk, rr] of Object.entries(KVM_PORTS)) if (!(k === 'i8042' && kk === 'speaker')) expect(overlaps(span(r), span(rr)), `${k} vs ${kk}`).toBe(false);
    }
    const all = [...Object.values(PORTS), ...Object.values(KVM_PORTS)].map(span);
    for (const r of all) expect(overlaps(r, PCI_IO_WINDOW)).toBe(false);
    expect(PCI_IO_WINDOW).toEqual({ base: 0xc000, size: 0x4000 });
  });

  it('debug-exit may not sit on the config ports or in the PCI I/O window', () => {
    expect(() => checkDebugExit({ port: 0xcf8, size: 1 }, false)).toThrow(/overlap the pciConfigAddress at 0xcf8/);
    expect(() => checkDebugExit({ port: 0xcfc, size: 2 }, false)).toThrow(/overlap the pciConfigData at 0xcfc-0xcff/);
    expect(() => checkDebugExit({ port: 0xc000, size: 4 }, false)).toThrow(/overlap the PCI I\/O window at 0xc000-0xffff/);
    expect(() => checkDebugExit({ port: 0xbffe, size: 4 }, false)).toThrow(RangeError);
    expect(checkDebugExit({ port: 0xcfa, size: 2 }, false)).toEqual({ base: 0xcfa, length: 2 });
    expect(checkDebugExit({ port: 0xf4, size: 4 }, false)).toEqual({ base: 0xf4, length: 4 });
  });
});

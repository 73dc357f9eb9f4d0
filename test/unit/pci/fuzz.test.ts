import { describe, expect, it } from 'vitest';
import type { AccessSize } from '../../../src/devices/device.js';
import { PciBus } from '../../../src/pci/bus.js';
import { PciConfigSpace, type PciBarChange } from '../../../src/pci/config-space.js';
import { PCI_COMMAND_WRITABLE, PciReg } from '../../../src/pci/registers.js';
import { PciConfigIo, PciEcam, PciHostBridge } from '../../../src/pci/host-bridge.js';
import { Msix, RecordingMsiSink } from '../../../src/pci/msix.js';
import { xorshift32 } from '../../helpers.js';

/** xorshift32: a reproducible stream of u32s. */
const rng = xorshift32;

function pick<T>(next: () => number, xs: readonly T[]): T {
  return xs[next() % xs.length];
}

function build() {
  const config = new PciConfigSpace({ vendorId: 0x1af4, deviceId: 0x1041, classCode: 0x020000, revisionId: 1, subsystemVendorId: 0x1af4, subsystemId: 0x1100, interruptPin: 1 });
  config.setBar(0, { kind: 'io', size: 0x20 });
  config.setBar(1, { kind: 'mem32', size: 0x1000 });
  config.setBar(2, { kind: 'mem64', size: 0x4000, prefetchable: true });
  config.setBar(4, { kind: 'mem64', size: 2 ** 33 });
  const vendorCap = config.addCapability({ id: 0x09, body: [8, 0x11, 0x22, 0x33, 0x44, 0x55], writable: [0, 0x0f, 0xff] });
  const msix = new Msix(config, { vectors: 5, table: { bar: 1, offset: 0 }, pba: { bar: 1, offset: 0x800 }, sink: new RecordingMsiSink() });
  config.addExtendedCapability({ id: 0x0b, version: 1, body: [1, 2, 3, 4], writable: [0, 0xff] });
  return { config, msix, vendorCap };
}

/** Bits of each byte a guest can never change (1 = read-only). */
function readOnlyBits(vendorCap: number, msixCap: number): Uint8Array {
  const ro = new Uint8Array(0x1000).fill(0xff);
  ro[PciReg.COMMAND] = ~PCI_COMMAND_WRITABLE & 0xff;
  ro[PciReg.COMMAND + 1] = ~(PCI_COMMAND_WRITABLE >> 8) & 0xff;
  ro[PciReg.STATUS + 1] = 0; // write-1-to-clear bits; none is ever set, so checked below as a whole value
  ro[PciReg.CACHE_LINE_SIZE] = 0;
  ro[PciReg.INTERRUPT_LINE] = 0;
  const bar = (i: number, mask: number) => {
    for (let b = 0; b < 4; b++) ro[PciReg.BAR0 + 4 * i + b] = ~(mask >>> (8 * b)) & 0xff;
  };
  bar(0, 0xffff_ffe0);
  bar(1, 0xffff_f000);
  bar(2, 0xffff_c000);
  bar(3, 0xffff_ffff);
  bar(4, 0);
  bar(5, 0xffff_fffe);
  ro[vendorCap + 3] = 0xf0;
  ro[vendorCap + 4] = 0;
  ro[msixCap + 3] = 0x3f;
  ro[0x105] = 0;
  return ro;
}

const OFFSETS = [0, 1, 2, 3, 4, 6, 0x10, 0x14, 0x1c, 0x24, 0x34, 0x3c, 0x3f, 0x40, 0x44, 0x4a, 0xfc, 0xff, 0x100, 0x104, 0xffc, 0xfff, 0x1000, 0x1003, 0x10000, -1, -4, 0.5, Number.NaN, 2 ** 53];
const SIZES = [1, 2, 4, 8, 1, 2, 4, 3, 0] as unknown as AccessSize[];

function value(next: () => number): number | bigint {
  switch (next() % 8) {
    case 0:
      return 0xffff_ffff;
    case 1:
      return 0;
    case 2:
      return -next();
    case 3:
      return (BigInt(next()) << 32n) | BigInt(next());
    case 4:
      return Number.NaN;
    case 5:
      return next() * 2 ** 20;
    default:
      return next();
  }
}

describe('PCI config space under random guest accesses', () => {
  it('never throws and never changes a read-only bit', () => {
    const { config, msix, vendorCap } = build();
    const bus = new PciBus();
    bus.add(0, 0, new PciHostBridge());
    bus.add(1, 0, { config, readBar: (b, o, s) => msix.read(b, o, s) ?? 0, writeBar: (b, o, s, v) => void msix.write(b, o, s, v) });
    const io = new PciConfigIo(bus);
    const ecam = new PciEcam(bus);
    const ro = readOnlyBits(vendorCap, msix.capabilityOffset);
    const initial = Array.from({ length: 0x1000 }, (_, i) => config.peek(i, 1));
    const status = config.status;
    const changes: PciBarChange[] = [];
    config.onBarChange((e) => changes.push(e));
    const next = rng(0x5eed_1234);

    for (let n = 0; n < 20_000; n++) {
      const size = pick(next, SIZES);
      const r = next() % 10;
      const off = r < 6 ? pick(next, OFFSETS) : next() % 0x1100;
      expect(() => {
        switch (next() % 6) {
          case 0:
            config.write(off, size, value(next));
            break;
          case 1:
            config.read(off, size);
            break;
          case 2:
            ecam.write((1 << 15) | (Number.isInteger(off) ? off & 0xfff : 0), size, value(next));
            break;
          case 3:
            io.write(0, 4, 0x8000_0800 | (next() & 0xfc));
            io.write(4 + (next() & 3), size, value(next));
            break;
          case 4:
            io.write(0, 4, value(next));
            io.read(4 + (next() & 7), size);
            break;
          default: {
            const o = next() % 0x900;
            if (next() & 1) msix.write(1, o, size, value(next));
            else msix.read(1, o, size);
            msix.signal(pick(next, [0, 1, 4, 5, -1, 0.5, Number.NaN, 1e9]));
          }
        }
      }).not.toThrow();

      if (n % 97 === 0 || n === 19_999) {
        for (let i = 0; i < 0x1000; i++) {
          const now = config.peek(i, 1);
          if ((now & ro[i]) !== (initial[i] & ro[i])) throw new Error(`read-only bits of byte 0x${i.toString(16)} changed: ${initial[i]} -> ${now}`);
        }
        expect(config.status).toBe(status);
        expect(config.command & ~PCI_COMMAND_WRITABLE).toBe(0);
      }
    }

    // What the guest sees is still a well-formed function.
    expect(config.read(0, 4)).toBe(0x1041_1af4);
    expect(config.read(PciReg.CAPABILITIES_POINTER, 1)).toBe(vendorCap);
    expect(config.read(vendorCap + 1, 1)).toBe(msix.capabilityOffset);
    expect(config.read(msix.capabilityOffset + 1, 1)).toBe(0);
    expect((config.read(msix.capabilityOffset + 2, 2) as number) & 0x7ff).toBe(4);
    expect(Number(msix.read(1, 0x800, 8)) >> 5).toBe(0); // no pending bit past vector 4
    for (const e of changes) if (e.address !== undefined) expect(e.address % e.size).toBe(0);
    for (const b of config.bars()) {
      const last = changes.filter((e) => e.bar === b.index).at(-1);
      expect(last?.address).toBe(b.mapped);
    }
    expect(changes.length).toBeGreaterThan(0);
    expect(msix.counters.outOfRange).toBeGreaterThan(0);
  });
});

/**
 * Hostile drivers: seeded random BAR and configuration-space traffic, mixed with real
 * bring-ups and ring traffic, with invariants checked after every access. Nothing may
 * throw, the device must never be handed a configuration access outside its space, and
 * guest memory outside RAM must stay untouched.
 */
import { describe, expect, it } from 'vitest';
import { RecordingIrqLine, type AccessSize } from '../../../../src/devices/device.js';
import { RecordingMsiSink } from '../../../../src/pci/msix.js';
import { CommonCfg, VIRTIO_STATUS, VirtioPciFunction } from '../../../../src/virtio/index.js';
import { TestRam } from '../driver.js';
import { EchoDevice } from './echo-device.js';
import { PciGuest } from './guest.js';
import { Vring } from './vring.js';
import { xorshift32 } from '../../../helpers.js';

const rng = xorshift32;

const C = CommonCfg;
const S = VIRTIO_STATUS;

function build(seed: number) {
  const next = rng(seed);
  const ram = new TestRam(0x20000);
  const sink = new RecordingMsiSink();
  const intx = new RecordingIrqLine();
  const device = new EchoDevice({ queueSizes: [8, 4, 16] });
  const errors: string[] = [];
  const fn = new VirtioPciFunction(device, { memory: ram.mem, msi: sink, intx, onError: (r) => errors.push(r) });
  const guest = new PciGuest(fn);
  guest.enumerate();
  return { next, ram, sink, intx, device, fn, guest, errors };
}

type World = ReturnType<typeof build>;

const SIZES = [1, 2, 4, 8] as const;
const BAD_SIZES = [0, 3, 5, 16, -1, 1.5, NaN] as unknown as AccessSize[];

function offsetIn(w: World): number {
  const { next, fn } = w;
  const L = fn.layout;
  const r = next() % 12;
  const common = Object.values(C);
  switch (r) {
    case 0: case 1: case 2:
      return common[next() % common.length] + (next() % 8 === 0 ? next() % 4 : 0);
    case 3: return L.isr.offset + (next() % 8);
    case 4: return L.device.offset + (next() % 24);
    case 5: return L.notify.offset + (next() % 20);
    case 6: return L.msixTable!.offset + (next() % 80);
    case 7: return L.msixPba!.offset + (next() % 16);
    case 8: return next() % L.barSize;
    case 9: return L.barSize - (next() % 8);
    case 10: return [-1, -8, 2 ** 53, 0.5, NaN, Infinity, L.barSize + 100][next() % 7];
    default: return next() % 0x40;
  }
}

function value(w: World): number | bigint {
  const { next } = w;
  switch (next() % 8) {
    case 0: return 0;
    case 1: return 1;
    case 2: return next() & 0xff;
    case 3: return next() & 0xffff;
    case 4: return next();
    case 5: return (BigInt(next()) << 32n) | BigInt(next());
    case 6: return [-1, NaN, 2 ** 64, -(2n ** 70n), 1e300, 0xffff][next() % 6] as number | bigint;
    default: return [S.ACKNOWLEDGE, S.DRIVER, S.FEATURES_OK, S.DRIVER_OK, 0x0f, 0xff, 0x40][next() % 7];
  }
}

function checkRead(v: number | bigint, size: AccessSize): void {
  if (size === 8) {
    expect(typeof v).toBe('bigint');
    expect(v >= 0n && v < 2n ** 64n).toBe(true);
  } else if (SIZES.includes(size as 1)) {
    expect(typeof v).toBe('number');
    expect(Number.isInteger(v) && (v as number) >= 0 && (v as number) < 2 ** (8 * size)).toBe(true);
  }
}

/** A well-behaved bring-up with random (often bad) ring addresses, then traffic. */
function bringUp(w: World): void {
  const { next, guest, ram } = w;
  if (!guest.negotiate(next() % 4 === 0 ? BigInt(next()) << 16n : undefined)) return;
  if (next() % 3 === 0) guest.cfgWrite(guest.msixCap() + 2, 2, 0); // INTx and ISR this time
  else guest.msixEnable(next() % 4 === 0);
  for (let v = 0; v < 4; v++) guest.msixEntry(v, 0xfee0_0000, v, next() % 5 === 0);
  const rings: Vring[] = [];
  [8, 4, 16].forEach((size, i) => {
    const base = ram.base + 0x6000 * i + (next() % 6 === 0 ? 8 : 0);
    const ring = new Vring(ram.mem, base, next() % 6 === 0 ? size * 2 : size, 0x1000);
    rings.push(ring);
    guest.setupQueue(i, ring, next() % 5);
  });
  guest.driverOk();
  for (let k = 0; k < 4; k++) {
    const i = next() % 3;
    try {
      rings[i].post(Uint8Array.of(next() & 0xff), next() % 8);
    } catch {
      // the driver ran out of descriptors: fine
    }
    guest.notify(i);
    rings[i].used();
  }
}

function invariants(w: World): void {
  const { fn, intx, ram, errors } = w;
  expect(fn.intxLevel).toBe(intx.level);
  if (fn.status & S.DEVICE_NEEDS_RESET) expect(fn.counters.needsReset).toBeGreaterThan(0);
  if (fn.status & S.DRIVER_OK) expect(fn.status & S.FEATURES_OK).toBe(S.FEATURES_OK);
  expect(errors.some((e) => /outside/.test(e))).toBe(false); // the device never saw an out-of-bounds config access
  expect(ram.guardsIntact()).toBe(true);
}

describe('fuzz', () => {
  for (const seed of [1, 0xdecafbad, 77]) {
    it(`seed ${seed}: 15 000 random BAR/config accesses and bring-ups never throw and keep the invariants`, () => {
      const w = build(seed);
      const { next, fn, guest, ram } = w;
      for (let i = 0; i < 15_000; i++) {
        const op = next() % 20;
        const size = next() % 16 === 0 ? BAD_SIZES[next() % BAD_SIZES.length] : SIZES[next() % 4];
        if (op < 8) {
          const off = offsetIn(w);
          checkRead(fn.readBar(next() % 10 === 0 ? next() % 7 : 0, off, size), size);
        } else if (op < 15) {
          fn.writeBar(next() % 10 === 0 ? next() % 7 : 0, offsetIn(w), size, value(w));
        } else if (op < 17) {
          const reg = next() % 12 === 0 ? next() % 0x1100 : next() % 0x100;
          if (next() & 1) checkRead(fn.config.read(reg, size), size);
          else fn.config.write(reg, size, value(w));
        } else if (op === 17) {
          // The guest scribbles on its rings.
          ram.mem.writeU32(ram.base + (next() % (ram.length - 4) & ~3), next());
        } else if (op === 18 && next() % 8 === 0) {
          guest.enumerate(); // the random config writes may have moved or unmapped the BAR
          bringUp(w);
        } else {
          guest.enumerate();
          guest.setStatus(next() % 3 === 0 ? 0 : next() & 0xff);
        }
        invariants(w);
      }
      // The run exercised the interesting paths.
      expect(fn.counters.activations).toBeGreaterThan(0);
      expect(fn.counters.badNotifies).toBeGreaterThan(0);
      expect(fn.counters.ignoredAccesses).toBeGreaterThan(0);
      expect(fn.counters.resets).toBeGreaterThan(0);
      expect(fn.interruptCounters.msix).toBeGreaterThan(0);
      expect(fn.interruptCounters.isr).toBeGreaterThan(0);
    });
  }

  it('hostile register sequences: select past the queues, enable twice, vectors everywhere, status storms', () => {
    const w = build(5);
    const { guest, fn, device } = w;
    expect(guest.negotiate()).toBe(true);
    const ring = new Vring(w.ram.mem, w.ram.base, 8);
    guest.setupQueue(0, ring, 1);
    guest.cw(C.QUEUE_ENABLE, 2, 1); // again: no effect
    guest.cw(C.QUEUE_ENABLE, 2, 0); // disabling is not allowed without RING_RESET: ignored
    expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(1);
    for (const sel of [3, 0xffff, 1000]) {
      guest.cw(C.QUEUE_SELECT, 2, sel);
      guest.cw(C.QUEUE_SIZE, 2, 0xffff);
      guest.cw(C.QUEUE_DESC, 8, 0xffff_ffff_ffff_ffffn);
      guest.cw(C.QUEUE_MSIX_VECTOR, 2, 0);
      expect(guest.c(C.QUEUE_SIZE, 2)).toBe(0);
    }
    for (let v = 0x1111; v < 0x10000; v += 0x1111) guest.setStatus(v & 0xff); // never 0: no reset
    guest.driverOk();
    expect(fn.status & S.DRIVER_OK).toBe(S.DRIVER_OK);
    expect(device.ctx?.queues[0]?.enabled).toBe(true);
    // Addresses near 2^64 are stored exactly and refused at enable time.
    guest.cw(C.QUEUE_SELECT, 2, 1);
    guest.cw(C.QUEUE_DESC, 8, 0xffff_ffff_ffff_fff0n);
    expect(guest.read(guest.addr(1, C.QUEUE_DESC), 8)).toBe(0xffff_ffff_ffff_fff0n);
    guest.cw(C.QUEUE_ENABLE, 2, 1);
    expect(guest.c(C.QUEUE_ENABLE, 2)).toBe(0);
    expect(fn.lastError).toMatch(/queue 1/);
    expect(device.ctx?.queues[1]).toBeUndefined();
    invariants(w);
  });
});

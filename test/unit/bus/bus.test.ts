import { describe, expect, it } from 'vitest';
import { MmioBus, PioBus } from '../../../src/bus/bus.js';
import type { Device } from '../../../src/devices/device.js';

function recorder(): Device & { log: string[] } {
  const log: string[] = [];
  return {
    log,
    read: (o, s) => {
      log.push(`r${o}/${s}`);
      return 0x42;
    },
    write: (o, s, v) => void log.push(`w${o}/${s}=${v}`),
  };
}

describe('PioBus / MmioBus', () => {
  it('dispatches by offset, never by address', () => {
    const bus = new PioBus();
    const d = recorder();
    bus.register(0x3f8, 8, d);
    expect(bus.read(0x3fd, 1)).toBe(0x42);
    expect(bus.write(0x3f8, 1, 0x41)).toBe(true);
    expect(d.log).toEqual(['r5/1', 'w0/1=65']);
    expect(bus.counters).toMatchObject({ reads: 1, writes: 1 });
  });
  it('rejects overlapping, zero-length, wrapping and out-of-space ranges', () => {
    const bus = new PioBus();
    bus.register(0x60, 5, recorder());
    expect(() => bus.register(0x64, 1, recorder())).toThrow(/overlaps/);
    expect(() => bus.register(0x5f, 2, recorder())).toThrow(/overlaps/);
    expect(() => bus.register(0x50, 0x20, recorder())).toThrow(/overlaps/);
    expect(() => bus.register(0x70, 0, recorder())).toThrow(/greater than zero/);
    expect(() => bus.register(0xffff, 2, recorder())).toThrow(/wraps or leaves/);
    expect(() => bus.register(-1, 2, recorder())).toThrow(RangeError);
    expect(() => bus.register(0x80, 1, {} as Device)).toThrow(TypeError);
    bus.register(0x65, 1, recorder()); // adjacent is fine
    const mmio = new MmioBus();
    mmio.register(0xfee00000, 0x1000, recorder());
    expect(() => mmio.register(2 ** 52 - 0x1000, 0x2000, recorder())).toThrow(/wraps or leaves/);
    expect(() => mmio.register(0xfee00800, 0x1000, recorder())).toThrow(/overlaps/);
  });
  it('reports unclaimed accesses and counts them', () => {
    const bus = new PioBus();
    expect(bus.read(0x99, 1)).toBeUndefined();
    expect(bus.write(0x99, 1, 1)).toBe(false);
    expect(bus.counters).toMatchObject({ unhandledReads: 1, unhandledWrites: 1 });
  });
  it('finds ranges among many and unregisters', () => {
    const bus = new MmioBus();
    for (let i = 0; i < 100; i++) bus.register(i * 0x1000, 0x800, recorder(), `d${i}`);
    expect(bus.find(0x42400)?.name).toBe('d66');
    expect(bus.find(0x42900)).toBeUndefined();
    expect(bus.unregister(0x42000)).toBe(true);
    expect(bus.find(0x42400)).toBeUndefined();
    expect(bus.unregister(0x42000)).toBe(false);
  });
});

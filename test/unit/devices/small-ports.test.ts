import { describe, expect, it } from 'vitest';
import { ResetPort, type ResetKind } from '../../../src/devices/reset-port.js';
import { PostPort } from '../../../src/devices/post-port.js';
import { DebugExit } from '../../../src/devices/debug-exit.js';
import { Debugcon } from '../../../src/devices/debugcon.js';

const ones = (size: 1 | 2 | 4 | 8) => (size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
const SIZES = [1, 2, 4, 8] as const;
const BAD_OFFSETS = [1, 2, 7, 1000, -1, 0.5, Number.NaN];

describe('ResetPort (0xcf9)', () => {
  function make() {
    const kinds: ResetKind[] = [];
    return { port: new ResetPort({ onReset: (k) => kinds.push(k) }), kinds };
  }

  it('Linux reboot=pci sequence: 0x02 then 0x06 → hard reset', () => {
    const { port, kinds } = make();
    port.write(0, 1, 0x02);
    expect(kinds).toEqual([]);
    expect(port.read(0, 1)).toBe(0x02);
    port.write(0, 1, 0x06);
    expect(kinds).toEqual(['hard']);
    expect(port.read(0, 1)).toBe(0x02); // RST_CPU self-clears
    port.write(0, 1, 0x06);
    expect(kinds).toEqual(['hard', 'hard']);
  });

  it('soft and full resets; reserved bits read 0', () => {
    const { port, kinds } = make();
    port.write(0, 1, 0x04);
    port.write(0, 1, 0x0e);
    expect(kinds).toEqual(['soft', 'full']);
    port.write(0, 1, 0xf1);
    expect(port.read(0, 1)).toBe(0);
    port.write(0, 1, 0x0a);
    expect(port.read(0, 1)).toBe(0x0a);
    expect(kinds.length).toBe(2);
  });

  it('hostile accesses, snapshot, options', () => {
    const { port, kinds } = make();
    for (const size of SIZES) {
      for (const off of BAD_OFFSETS) {
        port.write(off, size, 0x06);
        expect(port.read(off, size)).toBe(ones(size));
      }
    }
    expect(kinds).toEqual([]);
    port.write(0, 4, 0xffffff06);
    expect(kinds).toEqual(['hard']);
    expect(port.read(0, 8)).toBe(0x02);
    port.write(0, 1, Number.NaN);
    expect(port.snapshot()).toEqual({ value: 0 });
    port.restore({ value: 0x0a });
    expect(port.read(0, 1)).toBe(0x0a);
    expect(() => port.restore({ value: 0x04 | 0x100 })).toThrow(RangeError);
    port.reset();
    expect(port.read(0, 1)).toBe(0);
    expect(() => new ResetPort({} as never)).toThrow(/onReset/);
  });
});

describe('PostPort (0x80)', () => {
  it('records codes and reports them', () => {
    const codes: number[] = [];
    const port = new PostPort({ onCode: (c) => codes.push(c) });
    expect(port.read(0, 1)).toBe(0);
    port.write(0, 1, 0x12);
    port.write(0, 4, 0xabcd34);
    expect(codes).toEqual([0x12, 0x34]);
    expect(port.lastCode).toBe(0x34);
    expect(port.read(0, 1)).toBe(0x34);
    expect(port.read(0, 2)).toBe(0x34);
    expect(port.snapshot()).toEqual({ lastCode: 0x34 });
    port.restore({ lastCode: 7 });
    expect(port.read(0, 1)).toBe(7);
    expect(() => port.restore({ lastCode: 256 })).toThrow(RangeError);
  });

  it('hostile accesses and options', () => {
    const port = new PostPort();
    for (const size of SIZES) {
      for (const off of BAD_OFFSETS) {
        port.write(off, size, 0x55);
        expect(port.read(off, size)).toBe(ones(size));
      }
    }
    expect(port.lastCode).toBe(0);
    port.write(0, 8, 2n ** 63n + 0x99n);
    expect(port.lastCode).toBe(0x99);
    expect(() => new PostPort({ onCode: 'x' as never })).toThrow(/onCode/);
  });
});

describe('DebugExit', () => {
  it('calls onExit with (v << 1) | 1, per access width', () => {
    const calls: [number, number][] = [];
    const dev = new DebugExit({ onExit: (s, v) => calls.push([s, v]) });
    expect(dev.exitStatus).toBeUndefined();
    dev.write(0, 1, 0x00);
    dev.write(0, 1, 0x10);
    dev.write(0, 1, 0x1ff);
    dev.write(0, 2, 0x1234);
    dev.write(0, 4, 0xffff_ffff);
    expect(calls).toEqual([
      [1, 0],
      [0x21, 0x10],
      [0x1ff, 0xff],
      [0x2469, 0x1234],
      [0x1_ffff_ffff, 0xffff_ffff],
    ]);
    expect(dev.lastValue).toBe(0xffff_ffff);
    expect(dev.exitStatus).toBe(0x1_ffff_ffff);
    expect(dev.read(0, 1)).toBe(0);
  });

  it('hostile accesses and options', () => {
    const calls: number[] = [];
    const dev = new DebugExit({ onExit: (s) => calls.push(s) });
    for (const size of SIZES) {
      for (const off of BAD_OFFSETS) {
        dev.write(off, size, 1);
        expect(dev.read(off, size)).toBe(ones(size));
      }
    }
    expect(calls).toEqual([]);
    dev.write(0, 8, 0x1_0000_0002n);
    expect(calls).toEqual([5]);
    dev.write(0, 1, -1);
    expect(calls).toEqual([5, 0x1ff]);
    expect(() => new DebugExit({} as never)).toThrow(/onExit/);
  });
});

describe('Debugcon', () => {
  it('outputs bytes and reads back 0xe9', () => {
    const out: number[] = [];
    const dev = new Debugcon({ onOutput: (b) => out.push(b) });
    for (const ch of 'Hi\n') dev.write(0, 1, ch.charCodeAt(0));
    dev.write(0, 2, 0x4142);
    expect(out).toEqual([0x48, 0x69, 0x0a, 0x42]);
    expect(dev.read(0, 1)).toBe(0xe9);
    expect(new Debugcon({ onOutput: () => {}, readback: 0 }).read(0, 1)).toBe(0);
  });

  it('hostile accesses and options', () => {
    const out: number[] = [];
    const dev = new Debugcon({ onOutput: (b) => out.push(b) });
    for (const size of SIZES) {
      for (const off of BAD_OFFSETS) {
        dev.write(off, size, 0x41);
        expect(dev.read(off, size)).toBe(ones(size));
      }
    }
    expect(out).toEqual([]);
    dev.write(0, 1, Number.POSITIVE_INFINITY);
    expect(out).toEqual([0]);
    expect(() => new Debugcon({} as never)).toThrow(/onOutput/);
    expect(() => new Debugcon({ onOutput: () => {}, readback: 256 })).toThrow(RangeError);
  });
});

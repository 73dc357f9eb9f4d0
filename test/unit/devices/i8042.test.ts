import { describe, expect, it } from 'vitest';
import { RecordingIrqLine } from '../../../src/devices/device.js';
import { I8042, I8042Ctr, I8042Status } from '../../../src/devices/i8042.js';

const DATA = 0, PORTB = 1, CMD = 4;

function make() {
  let resets = 0;
  const irq = new RecordingIrqLine();
  const auxIrq = new RecordingIrqLine();
  const kbc = new I8042({ onReset: () => resets++, irq, auxIrq });
  const r = (off: number) => kbc.read(off, 1) as number;
  const w = (off: number, v: number) => kbc.write(off, 1, v);
  const drain = () => {
    const got: number[] = [];
    while (r(CMD) & I8042Status.OBF) got.push(r(DATA));
    return got;
  };
  return { kbc, irq, auxIrq, r, w, drain, resets: () => resets };
}

describe('I8042', () => {
  it('starts with an empty output buffer', () => {
    const { r } = make();
    expect(r(CMD)).toBe(I8042Status.INH);
    expect(r(DATA)).toBe(0);
  });

  it('0xfe pulses reset', () => {
    const { w, resets } = make();
    w(CMD, 0xfe);
    expect(resets()).toBe(1);
    w(CMD, 0xff); // pulses nothing
    w(CMD, 0xf1); // bit 0 set: no reset
    expect(resets()).toBe(1);
    w(CMD, 0xf0); // pulses all four lines, including reset
    expect(resets()).toBe(2);
  });

  it('0xd1 writes the output port; bit 0 clear resets; bit 1 is A20', () => {
    const { kbc, w, r, drain, resets } = make();
    expect(kbc.a20Enabled).toBe(true);
    w(CMD, 0xd1);
    expect(r(CMD) & I8042Status.A2).toBe(I8042Status.A2);
    w(DATA, 0xdd);
    expect(r(CMD) & I8042Status.A2).toBe(0);
    expect(resets()).toBe(0);
    expect(kbc.a20Enabled).toBe(false);
    w(CMD, 0xd0);
    expect(drain()).toEqual([0xdd & 0xcf]);
    w(CMD, 0xd1);
    w(DATA, 0xfe);
    expect(resets()).toBe(1);
    w(CMD, 0xdf);
    expect(kbc.a20Enabled).toBe(true);
    w(CMD, 0xdd);
    expect(kbc.a20Enabled).toBe(false);
  });

  it('reads and writes the command byte and internal RAM', () => {
    const { kbc, w, r, drain } = make();
    w(CMD, 0x20);
    expect(r(CMD) & I8042Status.OBF).toBe(I8042Status.OBF);
    expect(drain()).toEqual([0x00]);
    w(CMD, 0x60);
    w(DATA, 0x47);
    expect(kbc.commandByte).toBe(0x47);
    expect(r(CMD) & I8042Status.SYS).toBe(I8042Status.SYS);
    w(CMD, 0x20);
    expect(drain()).toEqual([0x47]);
    w(CMD, 0x65);
    w(DATA, 0x12);
    w(CMD, 0x25);
    expect(drain()).toEqual([0x12]);
  });

  it('self-test, interface tests, enable/disable', () => {
    const { kbc, w, r, drain } = make();
    w(CMD, 0xaa);
    expect(drain()).toEqual([0x55]);
    expect(r(CMD) & I8042Status.SYS).toBe(I8042Status.SYS);
    w(CMD, 0xab);
    w(CMD, 0xa9);
    w(CMD, 0xe0);
    expect(drain()).toEqual([0, 0, 0]);
    w(CMD, 0xad);
    expect(kbc.commandByte & I8042Ctr.KBDDIS).toBeTruthy();
    w(CMD, 0xae);
    expect(kbc.commandByte & I8042Ctr.KBDDIS).toBe(0);
    w(CMD, 0xa7);
    expect(kbc.commandByte & I8042Ctr.AUXDIS).toBeTruthy();
    w(CMD, 0xa8);
    expect(kbc.commandByte & I8042Ctr.AUXDIS).toBe(0);
    w(CMD, 0x00); // unknown command: ignored
    w(CMD, 0xc7);
    expect(drain()).toEqual([]);
  });

  it('the keyboard answers commands', () => {
    const { w, drain } = make();
    w(DATA, 0xff);
    expect(drain()).toEqual([0xfa, 0xaa]);
    w(DATA, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
    w(DATA, 0xee);
    expect(drain()).toEqual([0xee]);
    w(DATA, 0xf0);
    w(DATA, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x02]);
    w(DATA, 0xf0);
    w(DATA, 0x01);
    w(DATA, 0xf0);
    w(DATA, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0x01]);
    w(DATA, 0xed);
    w(DATA, 0x07);
    w(DATA, 0xf4);
    expect(drain()).toEqual([0xfa, 0xfa, 0xfa]);
    w(DATA, 0x12);
    expect(drain()).toEqual([0xfe]);
    w(CMD, 0x60);
    w(DATA, I8042Ctr.XLATE);
    w(DATA, 0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x41]);
  });

  it('0xd2/0xd3/0xd4 write the output buffer; AUXB marks aux bytes', () => {
    const { w, r } = make();
    w(CMD, 0xd3);
    w(DATA, 0x5a);
    expect(r(CMD) & (I8042Status.OBF | I8042Status.AUXB)).toBe(I8042Status.OBF | I8042Status.AUXB);
    expect(r(DATA)).toBe(0x5a);
    w(CMD, 0xd2);
    w(DATA, 0x1c);
    expect(r(CMD) & (I8042Status.OBF | I8042Status.AUXB)).toBe(I8042Status.OBF);
    expect(r(DATA)).toBe(0x1c);
    expect(r(DATA)).toBe(0x1c); // empty buffer re-reads the last byte
    w(CMD, 0xd4);
    w(DATA, 0xff);
    expect(r(CMD) & I8042Status.AUXB).toBe(I8042Status.AUXB);
    expect(r(DATA)).toBe(0xfe); // no mouse
  });

  it('drives IRQ 1 and IRQ 12 per the command byte, pulsing between bytes', () => {
    const { kbc, irq, auxIrq, w, r } = make();
    kbc.pushKeyboardBytes([0x1e]);
    expect(irq.level).toBe(false); // KBDINT off
    w(CMD, 0x60);
    w(DATA, I8042Ctr.KBDINT | I8042Ctr.AUXINT);
    expect(irq.level).toBe(true);
    kbc.pushKeyboardBytes([0x9e]);
    r(DATA);
    expect(irq.level).toBe(true);
    expect(irq.history).toEqual([true, false, true]); // an edge for the second byte
    r(DATA);
    expect(irq.level).toBe(false);
    w(CMD, 0xd3);
    w(DATA, 0x01);
    expect(auxIrq.level).toBe(true);
    expect(irq.level).toBe(false);
    r(DATA);
    expect(auxIrq.level).toBe(false);
  });

  it('drops host key bytes while the keyboard is disabled, and bounds the queue', () => {
    const { kbc, w, drain } = make();
    w(CMD, 0xad);
    expect(kbc.pushKeyboardBytes([1, 2])).toBe(0);
    w(CMD, 0xae);
    expect(kbc.pushKeyboardBytes(new Uint8Array(300))).toBe(256);
    expect(drain().length).toBe(256);
    expect(() => kbc.pushKeyboardBytes([300])).toThrow(TypeError);
  });

  it('port B toggles the refresh bit and keeps bits 0-3', () => {
    const { r, w } = make();
    w(PORTB, 0xff);
    const a = r(PORTB);
    const b = r(PORTB);
    expect(a & 0x0f).toBe(0x0f);
    expect((a ^ b) & 0x10).toBe(0x10);
    expect(a & 0xe0).toBe(0);
  });

  it('never throws on hostile accesses', () => {
    const { kbc, r } = make();
    for (const size of [1, 2, 4, 8] as const) {
      for (const off of [2, 3, 5, 6, 100, -1, 0.5, Number.NaN]) {
        expect(() => kbc.write(off, size, 0xfe)).not.toThrow();
        expect(kbc.read(off, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
      }
    }
    kbc.write(CMD, 4, 0x12345620); // low byte: read CTR
    expect(kbc.read(CMD, 4)).toBe(I8042Status.INH | I8042Status.OBF | I8042Status.A2);
    expect(kbc.read(DATA, 8)).toBe(0);
    kbc.write(CMD, 8, 2n ** 64n - 1n); // 0xff: no-op pulse
    kbc.write(CMD, 1, Number.NaN); // 0x00: unknown
    expect(r(CMD) & I8042Status.OBF).toBe(0);
  });

  it('rejects bad options', () => {
    expect(() => new I8042({ onReset: 1 as never })).toThrow(/onReset/);
    expect(() => new I8042({ irq: {} as never })).toThrow(/options.irq/);
    expect(() => new I8042({ auxIrq: null as never })).toThrow(/auxIrq/);
    expect(() => new I8042()).not.toThrow();
  });

  it('snapshot/restore and reset', () => {
    const a = make();
    a.w(CMD, 0x60);
    a.w(DATA, 0x03);
    a.w(CMD, 0xd1); // pending command survives a snapshot
    a.kbc.pushKeyboardBytes([1, 2, 3]);
    const snap = a.kbc.snapshot();
    const b = make();
    b.kbc.restore(JSON.parse(JSON.stringify(snap)));
    expect(b.kbc.snapshot()).toEqual(snap);
    expect(b.irq.level).toBe(true);
    b.w(DATA, 0x00);
    expect(b.resets()).toBe(1);
    expect(b.drain()).toEqual([1, 2, 3]);
    expect(() => b.kbc.restore({ ...snap, ram: [1] })).toThrow(RangeError);
    expect(() => b.kbc.restore({ ...snap, output: [{ byte: 999, aux: false }] })).toThrow(TypeError);
    b.kbc.reset();
    expect(b.kbc.commandByte).toBe(0);
    expect(b.irq.level).toBe(false);
  });
});

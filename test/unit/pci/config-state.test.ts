import { describe, expect, it } from 'vitest';
import { PciConfigSpace, type PciBarChange } from '../../../src/pci/config-space.js';
import { Msix, RecordingMsiSink } from '../../../src/pci/msix.js';
import { PciCommand, PciReg } from '../../../src/pci/registers.js';
import { stateBytes, stateHex, stateIndexSet, toBase64, toHex } from '../../../src/pci/state-check.js';

const TABLE = 0x2000;
const PBA = 0x3000;

/** A function with a 64-bit BAR 0, a 32-bit BAR 2, an I/O BAR 3 and MSI-X (3 vectors) in BAR 2. */
function make(deviceId = 0x1041) {
  const config = new PciConfigSpace({ vendorId: 0x1af4, deviceId, classCode: 0x020000, interruptPin: 1 });
  config.setBar(0, { kind: 'mem64', size: 0x8000 });
  config.setBar(2, { kind: 'mem32', size: 0x4000 });
  config.setBar(3, { kind: 'io', size: 0x20 });
  const sink = new RecordingMsiSink();
  const msix = new Msix(config, { vectors: 3, table: { bar: 2, offset: TABLE }, pba: { bar: 2, offset: PBA }, sink });
  const changes: PciBarChange[] = [];
  const commands: number[] = [];
  config.onBarChange((c) => changes.push(c));
  config.onCommandChange((c) => commands.push(c));
  return { config, msix, sink, changes, commands };
}

/** Program the BARs and MSI-X as a guest would. */
function program(r: ReturnType<typeof make>): void {
  const { config, msix } = r;
  config.write(PciReg.BAR0, 4, 0xc000_0000);
  config.write(PciReg.BAR0 + 4, 4, 0x10);
  config.write(PciReg.BAR0 + 8, 4, 0xd000_0000);
  config.write(PciReg.BAR0 + 12, 4, 0xc040);
  config.write(PciReg.INTERRUPT_LINE, 1, 11);
  config.write(PciReg.COMMAND, 2, PciCommand.MEMORY | PciCommand.IO | PciCommand.BUS_MASTER);
  config.write(msix.capabilityOffset + 2, 2, 0x8000 | 0x4000); // enable, function mask
  for (let v = 0; v < 3; v++) {
    msix.write(2, TABLE + 16 * v, 4, 0xfee0_0000 | (v << 12));
    msix.write(2, TABLE + 16 * v + 8, 4, 0x40 + v);
    msix.write(2, TABLE + 16 * v + 12, 4, v === 2 ? 1 : 0);
  }
  msix.signal(1); // function masked: pends
}

describe('PciConfigSpace state', () => {
  it('round-trips into a fresh function: bytes, BAR mappings (listeners told), command', () => {
    const a = make();
    program(a);
    const state = JSON.parse(JSON.stringify(a.config.snapshot()));
    const b = make();
    b.config.restore(state);
    expect(b.config.read(0, 4)).toBe(a.config.read(0, 4));
    for (let off = 0; off < 0x1000; off += 4) expect(b.config.peek(off, 4)).toBe(a.config.peek(off, 4));
    expect(b.config.bars().map((x) => x.mapped)).toEqual([0x10_c000_0000, 0xd000_0000, 0xc040]);
    expect(b.changes.map((c) => [c.bar, c.address])).toEqual([[0, 0x10_c000_0000], [2, 0xd000_0000], [3, 0xc040]]);
    expect(b.commands).toEqual([PciCommand.MEMORY | PciCommand.IO | PciCommand.BUS_MASTER]);
    expect(b.config.interruptLine).toBe(11);
  });

  it('a restore that unmaps a BAR tells the listeners, as a guest write would', () => {
    const a = make();
    const blank = a.config.snapshot();
    program(a);
    a.changes.length = 0;
    a.config.restore(blank);
    expect(a.changes.map((c) => [c.bar, c.previous, c.address])).toEqual([
      [0, 0x10_c000_0000, undefined], [2, 0xd000_0000, undefined], [3, 0xc040, undefined],
    ]);
  });

  it('refuses hostile states and stays unchanged', () => {
    const a = make();
    program(a);
    const before = a.config.snapshot();
    const bytes = Buffer.from(before.bytes, 'base64');
    const with_ = (f: (b: Buffer) => void) => {
      const c = Buffer.from(bytes);
      f(c);
      return { bytes: c.toString('base64') };
    };
    expect(() => a.config.restore(null as never)).toThrow(TypeError);
    expect(() => a.config.restore({} as never)).toThrow(/state.bytes/);
    expect(() => a.config.restore({ bytes: 42 } as never)).toThrow(TypeError);
    expect(() => a.config.restore({ bytes: 'not base64!' })).toThrow(RangeError);
    expect(() => a.config.restore({ bytes: toBase64(new Uint8Array(100)) })).toThrow(/4096 bytes/);
    expect(() => a.config.restore(with_((b) => (b[PciReg.VENDOR_ID] ^= 1)))).toThrow(/read-only bits of byte 0x0/);
    expect(() => a.config.restore(with_((b) => (b[PciReg.BAR0] |= 0x10)))).toThrow(/byte 0x10/); // below the BAR's size
    expect(() => a.config.restore(with_((b) => (b[PciReg.CAPABILITIES_POINTER] = 0x80)))).toThrow(/byte 0x34/);
    expect(() => make(0x1042).config.restore(before)).toThrow(/another function/);
    expect(a.config.snapshot()).toEqual(before);
    expect(a.changes.length).toBe(3);
  });
});

describe('Msix state', () => {
  it('round-trips table, masks and pending bits; a restored pending vector is sent on unmask', () => {
    const a = make();
    program(a);
    const cfg = JSON.parse(JSON.stringify(a.config.snapshot()));
    const state = JSON.parse(JSON.stringify(a.msix.snapshot()));
    expect(state.pending).toEqual([1]);
    const b = make();
    b.config.restore(cfg);
    b.msix.restore(state);
    expect(b.msix.snapshot()).toEqual(a.msix.snapshot());
    expect(b.sink.messages).toEqual([]); // restoring sends nothing
    b.config.write(b.msix.capabilityOffset + 2, 2, 0x8000); // function unmask
    expect(b.sink.messages).toEqual([{ addressLo: 0xfee0_1000, addressHi: 0, data: 0x41 }]);
    expect(b.msix.isPending(1)).toBe(false);
  });

  it('refuses hostile states and stays unchanged', () => {
    const a = make();
    program(a);
    const good = a.msix.snapshot();
    const entry = good.entries[0];
    const bad = (patch: object) => ({ ...good, ...patch }) as never;
    expect(() => a.msix.restore(undefined as never)).toThrow(TypeError);
    expect(() => a.msix.restore(bad({ entries: good.entries.slice(1) }))).toThrow(/state.entries must have 3/);
    expect(() => a.msix.restore(bad({ entries: [{ ...entry, addressLo: 0xfee0_0001 }, ...good.entries.slice(1)] }))).toThrow(/bits 1:0/);
    expect(() => a.msix.restore(bad({ entries: [{ ...entry, data: 2 ** 32 }, ...good.entries.slice(1)] }))).toThrow(/entries\[0\].data/);
    expect(() => a.msix.restore(bad({ entries: [{ ...entry, masked: 1 }, ...good.entries.slice(1)] }))).toThrow(TypeError);
    expect(() => a.msix.restore(bad({ entries: [null, ...good.entries.slice(1)] }))).toThrow(/entries\[0\]/);
    expect(() => a.msix.restore(bad({ pending: [3] }))).toThrow(/pending\[0\]/);
    expect(() => a.msix.restore(bad({ pending: [1, 1] }))).toThrow(/ascending/);
    expect(() => a.msix.restore(bad({ pending: 'x' }))).toThrow(TypeError);
    expect(a.msix.snapshot()).toEqual(good);
  });
});

describe('state encodings', () => {
  it('hex and base64 check their input', () => {
    expect(stateHex(toHex(2n ** 64n - 1n), 'x', 2n ** 64n - 1n)).toBe(2n ** 64n - 1n);
    expect(() => stateHex('0x10', 'x', 15n)).toThrow(/x must be at most 0xf/);
    expect(() => stateHex('0X10', 'x', 99n)).toThrow(RangeError);
    expect(() => stateHex('16', 'x', 99n)).toThrow(RangeError);
    expect(() => stateHex(16, 'x', 99n)).toThrow(TypeError);
    expect(stateBytes(toBase64(Uint8Array.of(1, 2, 3, 4)), 'b', 4)).toEqual(Uint8Array.of(1, 2, 3, 4));
    expect(() => stateBytes(toBase64(new Uint8Array(5)), 'b', 4)).toThrow(/at most 4/);
    expect(() => stateBytes('AAA', 'b', 4)).toThrow(RangeError);
    expect(stateIndexSet([0, 2], 's', 2)).toEqual([0, 2]);
    expect(() => stateIndexSet([2, 0], 's', 2)).toThrow(/ascending/);
  });
});

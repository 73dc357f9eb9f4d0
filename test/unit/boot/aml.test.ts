import { describe, expect, it } from 'vitest';
import * as aml from '../../../src/boot/aml.js';
import { readAddressSpace, readPkgLength, readResources, readTerm, readTerms } from './aml-decode.js';

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);
const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));
const sum = (b: Uint8Array): number => b.reduce((a, x) => (a + x) & 0xff, 0);

describe('aml.pkgLength', () => {
  it('uses one byte while the whole package is at most 63 bytes', () => {
    expect(aml.pkgLength(0)).toEqual(bytes(1));
    expect(aml.pkgLength(62)).toEqual(bytes(63));
  });

  it('counts its own bytes at every boundary (1, 2, 3 and 4 bytes)', () => {
    // payload 63: total 65 in two bytes: lead 0x40 | (65 & 0xf), then 65 >> 4
    expect(aml.pkgLength(63)).toEqual(bytes(0x41, 0x04));
    expect(aml.pkgLength(4093)).toEqual(bytes(0x4f, 0xff)); // 4095 = 0xfff
    expect(aml.pkgLength(4094)).toEqual(bytes(0x81, 0x00, 0x01)); // 4097 in three bytes
    expect(aml.pkgLength(2 ** 20 - 4)).toEqual(bytes(0x8f, 0xff, 0xff)); // 2^20 - 1
    expect(aml.pkgLength(2 ** 20 - 3)).toEqual(bytes(0xc1, 0x00, 0x00, 0x01)); // 2^20 + 1
    for (const n of [0, 1, 61, 62, 63, 64, 200, 4092, 4093, 4094, 4095, 65535, 2 ** 20 - 4, 2 ** 20 - 3, 2 ** 24, aml.AML_MAX_PKG_LENGTH - 4]) {
      const enc = aml.pkgLength(n);
      const dec = readPkgLength(enc, 0);
      expect(dec.bytes).toBe(enc.length);
      expect(dec.length, `payload ${n}`).toBe(n + enc.length);
    }
  });

  it('rejects negative, fractional and too long payloads', () => {
    expect(() => aml.pkgLength(-1)).toThrow(RangeError);
    expect(() => aml.pkgLength(aml.AML_MAX_PKG_LENGTH)).toThrow(/payload must be in/);
    expect(() => aml.pkgLength(1.5)).toThrow(TypeError);
  });
});

describe('aml names and constants', () => {
  it('encodes NameStrings: a segment, root and parent prefixes, dual and multi names', () => {
    expect(aml.nameString('_HID')).toEqual(bytes(...ascii('_HID')));
    expect(aml.nameString('S5')).toEqual(bytes(...ascii('S5__')));
    expect(aml.nameString('\\_SB.PCI0')).toEqual(bytes(0x5c, 0x2e, ...ascii('_SB_PCI0')));
    expect(aml.nameString('\\_SB.PCI0.S08')).toEqual(bytes(0x5c, 0x2f, 3, ...ascii('_SB_PCI0S08_')));
    expect(aml.nameString('^^FOO')).toEqual(bytes(0x5e, 0x5e, ...ascii('FOO_')));
    expect(aml.nameString('\\')).toEqual(bytes(0x5c, 0x00));
    for (const bad of ['', 'TOOLONG', '1ABC', 'a', '_SB..X', '\\^X']) expect(() => aml.nameString(bad), bad).toThrow(RangeError);
    expect(() => aml.nameString(5 as never)).toThrow(TypeError);
  });

  it('encodes integers in their shortest form', () => {
    expect(aml.integer(0)).toEqual(bytes(0x00));
    expect(aml.integer(1)).toEqual(bytes(0x01));
    expect(aml.integer(2)).toEqual(bytes(0x0a, 2));
    expect(aml.integer(0xff)).toEqual(bytes(0x0a, 0xff));
    expect(aml.integer(0x100)).toEqual(bytes(0x0b, 0x00, 0x01));
    expect(aml.integer(0xcf8)).toEqual(bytes(0x0b, 0xf8, 0x0c));
    expect(aml.integer(0x1_0000)).toEqual(bytes(0x0c, 0, 0, 1, 0));
    expect(aml.integer(0xe000_0000)).toEqual(bytes(0x0c, 0, 0, 0, 0xe0));
    expect(aml.integer(2 ** 32)).toEqual(bytes(0x0e, 0, 0, 0, 0, 1, 0, 0, 0));
    expect(aml.integer(0xffff_ffff_ffff_ffffn)).toEqual(bytes(0x0e, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff));
    expect(() => aml.integer(-1)).toThrow(RangeError);
    expect(() => aml.integer(2n ** 64n)).toThrow(RangeError);
    expect(() => aml.integer('1' as never)).toThrow(TypeError);
  });

  it('encodes strings and EISA ids', () => {
    expect(aml.stringConst('PCI0')).toEqual(bytes(0x0d, ...ascii('PCI0'), 0));
    expect(() => aml.stringConst('a\0b')).toThrow(RangeError);
    expect(aml.eisaIdValue('PNP0A03')).toBe(0x030ad041);
    expect(aml.eisaIdValue('PNP0A08')).toBe(0x080ad041);
    expect(aml.eisaIdValue('PNP0C02')).toBe(0x020cd041);
    expect(aml.eisaId('PNP0A08')).toEqual(bytes(0x0c, 0x41, 0xd0, 0x0a, 0x08));
    expect(() => aml.eisaId('pnp0a03')).toThrow(RangeError);
    expect(() => aml.eisaId('PNP0A0')).toThrow(RangeError);
  });
});

describe('aml objects', () => {
  it('Name (_S5, Package (4) { 5, 0, 0, 0 }) as the DSDT had it hand-written', () => {
    const s5 = aml.name('_S5', aml.packageOf([aml.integer(5), aml.integer(0), aml.integer(0), aml.integer(0)]));
    expect(s5).toEqual(bytes(0x08, ...ascii('_S5_'), 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00));
  });

  it('long packages get multi-byte PkgLengths; more than 255 elements a VarPackage', () => {
    const elems = Array.from({ length: 40 }, (_, i) => aml.stringConst(`element-${i}`));
    const p = aml.packageOf(elems);
    const t = readTerm(p, 0);
    expect(t.bytes).toBe(p.length);
    expect(t.node).toMatchObject({ kind: 'package', count: 40, variable: false, pkgBytes: 2 });
    const big = aml.packageOf(Array.from({ length: 300 }, (_, i) => aml.integer(i)));
    const b = readTerm(big, 0);
    expect(b.bytes).toBe(big.length);
    expect(b.node).toMatchObject({ kind: 'package', count: 300, variable: true, pkgBytes: 2 });
    if (b.node.kind === 'package') expect(b.node.elements.map((e) => (e.kind === 'integer' ? Number(e.value) : -1))).toEqual([...Array(300).keys()]);
  });

  it('a buffer of 5000 bytes takes a 3-byte PkgLength and a word size', () => {
    const data = new Uint8Array(5000).map((_, i) => i & 0xff);
    const enc = aml.buffer(data);
    // 3 + 5000 bytes after the PkgLength: 5006 in all = 0x138e, so lead 0x80 | 0xe, then 0x38, 0x01
    expect(enc.subarray(0, 7)).toEqual(bytes(0x11, 0x8e, 0x38, 0x01, 0x0b, 0x88, 0x13));
    const t = readTerm(enc, 0);
    expect(t.bytes).toBe(enc.length);
    expect(t.node).toMatchObject({ kind: 'buffer', size: 5000 });
    if (t.node.kind === 'buffer') expect(t.node.bytes).toEqual(data);
    expect(readPkgLength(enc, 1).bytes).toBe(3);
  });

  it('scopes, devices and methods nest with the right lengths', () => {
    const dev = aml.device('PCI0', [aml.name('_UID', aml.integer(0)), aml.method('_STA', 0, [aml.returnOf(aml.integer(0x0f))])]);
    const all = aml.scope('\\_SB', [dev]);
    const [s] = readTerms(all);
    expect(s).toMatchObject({ kind: 'scope', name: '\\_SB_' });
    if (s.kind !== 'scope') return;
    const [d] = s.children;
    expect(d).toMatchObject({ kind: 'device', name: 'PCI0' });
    if (d.kind !== 'device') return;
    expect(d.children[0]).toEqual({ kind: 'name', name: '_UID', value: { kind: 'integer', value: 0n } });
    expect(d.children[1]).toMatchObject({ kind: 'method', name: '_STA', flags: 0, body: bytes(0xa4, 0x0a, 0x0f) });
    expect(dev.subarray(0, 2)).toEqual(bytes(0x5b, 0x82));
    expect(aml.method('_OSC', 4, [], { serialized: true, syncLevel: 2 })[2 + 4]).toBe(4 | 0x08 | 0x20);
    expect(() => aml.method('_OSC', 8, [])).toThrow(/argCount must be in \[0, 7\]/);
    expect(() => aml.device('PCI0', [new Uint8Array(1), 'x' as never])).toThrow(/terms\[1\] must be encoded AML/);
  });

  it('a device with a long body (a big _CRS) round-trips', () => {
    const crs = aml.resourceTemplate(Array.from({ length: 10 }, (_, i) => aml.qwordMemory({ min: 2 ** 33 * (i + 1), max: 2 ** 33 * (i + 1) + 0xfff })));
    const dev = aml.device('BIG0', [aml.name('_CRS', crs)]);
    const [d] = readTerms(dev);
    expect(d).toMatchObject({ kind: 'device', name: 'BIG0', pkgBytes: 2 });
  });
});

describe('aml resource descriptors', () => {
  it('WordBusNumber, WordIO, DWordMemory, QWordMemory: producers with fixed min/max', () => {
    expect(aml.wordBusNumber({ min: 0, max: 0xff })).toEqual(bytes(0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0, 0, 0, 0, 0xff, 0, 0, 0, 0x00, 0x01));
    expect(aml.wordIo({ min: 0xc000, max: 0xffff })).toEqual(bytes(0x88, 0x0d, 0x00, 0x01, 0x0c, 0x03, 0, 0, 0x00, 0xc0, 0xff, 0xff, 0, 0, 0x00, 0x40));
    const d = aml.dwordMemory({ min: 0xc000_0000, max: 0xdfff_ffff });
    expect(d.length).toBe(26);
    expect([...d.subarray(0, 6)]).toEqual([0x87, 0x17, 0x00, 0x00, 0x0c, 0x01]);
    const q = aml.qwordMemory({ min: 2 ** 34, max: 2 ** 34 + 2 ** 35 - 1, caching: 'prefetchable' });
    expect(q.length).toBe(46);
    const f = readAddressSpace({ tag: q[0], bytes: q });
    expect(f).toEqual({ type: 0, general: 0x0c, specific: 0x07, granularity: 0n, min: 2n ** 34n, max: 2n ** 34n + 2n ** 35n - 1n, translation: 0n, length: 2n ** 35n });
    expect(aml.qwordMemory({ min: 0, max: 0xfff, consumer: true })[4]).toBe(0x0d);
    expect(aml.dwordMemory({ min: 0, max: 0xfff, writable: false })[5]).toBe(0x00);
  });

  it('IO and Memory32Fixed', () => {
    expect(aml.ioPort({ min: 0xcf8, length: 8 })).toEqual(bytes(0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08));
    expect(aml.memory32Fixed({ base: 0xe000_0000, length: 0x10_0000 })).toEqual(bytes(0x86, 0x09, 0x00, 0x01, 0, 0, 0, 0xe0, 0, 0, 0x10, 0));
  });

  it('checks ranges and names the argument', () => {
    expect(() => aml.wordBusNumber({ min: 0, max: 256 })).toThrow(/range\.max must be at most 0xff/);
    expect(() => aml.wordIo({ min: 0x20, max: 0x10 })).toThrow(/range\.max \(0x10\) is below range\.min \(0x20\)/);
    expect(() => aml.dwordMemory({ min: 0, max: 2 ** 32 })).toThrow(RangeError);
    expect(() => aml.dwordMemory({ min: 0, max: 1, caching: 'fast' as never })).toThrow(/range\.caching/);
    expect(() => aml.ioPort({ min: 0x10000, length: 1 })).toThrow(/range\.min/);
    expect(() => aml.memory32Fixed({ base: 0xffff_f000, length: 0x2000 })).toThrow(/4 GiB/);
    expect(() => aml.wordIo(null as never)).toThrow(TypeError);
  });

  it('ResourceTemplate: a buffer of the descriptors and an end tag whose checksum zeroes the sum', () => {
    const rt = aml.resourceTemplate([aml.wordBusNumber({ min: 0, max: 0 }), aml.ioPort({ min: 0xcf8, length: 8 })]);
    const t = readTerm(rt, 0);
    expect(t.bytes).toBe(rt.length);
    if (t.node.kind !== 'buffer') throw new Error('not a buffer');
    expect(t.node.size).toBe(16 + 8 + 2);
    const descs = readResources(t.node.bytes);
    expect(descs.map((d) => d.tag)).toEqual([0x88, 0x40, 0x78]);
    expect(descs[2].bytes[0]).toBe(0x79);
    expect(sum(t.node.bytes)).toBe(0);
    const empty = readTerm(aml.resourceTemplate([]), 0).node;
    expect(empty).toEqual({ kind: 'buffer', size: 2, bytes: bytes(0x79, 0x87) });
  });
});

import { describe, expect, it } from 'vitest';
import { buildE820, buildFirmwareE820, e820ToBytes } from '../../../src/boot/e820.js';
import { buildE820Bytes, E820Type, FwCfg, FwCfgItem } from '../../../src/devices/fw-cfg.js';

function make(opts: Partial<ConstructorParameters<typeof FwCfg>[0]> = {}) {
  const fw = new FwCfg({ ramBytes: 256 * 1024 * 1024, cpus: 2, ...opts });
  const select = (key: number) => fw.write(0, 2, key);
  const bytes = (n: number) => Array.from({ length: n }, () => fw.read(1, 1) as number);
  const item = (key: number, n: number) => {
    select(key);
    return bytes(n);
  };
  return { fw, select, bytes, item };
}

const be32 = (b: number[], at: number) => ((b[at] << 24) | (b[at + 1] << 16) | (b[at + 2] << 8) | b[at + 3]) >>> 0;
const be16 = (b: number[], at: number) => (b[at] << 8) | b[at + 1];

describe('FwCfg', () => {
  it('signature, id, RAM size, CPU counts', () => {
    const { item } = make({ ramBytes: 0x1_2345_6789n, cpus: 3, maxCpus: 8 });
    expect(String.fromCharCode(...item(FwCfgItem.SIGNATURE, 4))).toBe('QEMU');
    expect(item(FwCfgItem.ID, 4)).toEqual([1, 0, 0, 0]);
    expect(item(FwCfgItem.RAM_SIZE, 8)).toEqual([0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0]);
    expect(item(FwCfgItem.NB_CPUS, 2)).toEqual([3, 0]);
    expect(item(FwCfgItem.MAX_CPUS, 2)).toEqual([8, 0]);
    expect(make({ cpus: 4 }).item(FwCfgItem.MAX_CPUS, 2)).toEqual([4, 0]);
  });

  it('reads past the end of an item return 0, and a selector write rewinds', () => {
    const { select, bytes } = make();
    select(FwCfgItem.SIGNATURE);
    expect(bytes(8)).toEqual([0x51, 0x45, 0x4d, 0x55, 0, 0, 0, 0]);
    select(FwCfgItem.SIGNATURE);
    expect(bytes(2)).toEqual([0x51, 0x45]);
    select(FwCfgItem.SIGNATURE);
    expect(bytes(1)).toEqual([0x51]);
  });

  it('unknown selectors read 0; write-channel bit is ignored; arch-local space is separate', () => {
    const { fw, item } = make();
    expect(item(0x0017, 4)).toEqual([0, 0, 0, 0]);
    expect(item(0x3fff, 2)).toEqual([0, 0]);
    expect(item(0xffff, 2)).toEqual([0, 0]);
    expect(item(FwCfgItem.WRITE_CHANNEL | FwCfgItem.NB_CPUS, 2)).toEqual([2, 0]);
    expect(item(FwCfgItem.ARCH_LOCAL | FwCfgItem.NB_CPUS, 2)).toEqual([0, 0]);
    fw.setItem(0x8003, [9, 8, 7]);
    expect(item(0x8003, 4)).toEqual([9, 8, 7, 0]);
    expect(item(0xc003, 1)).toEqual([9]);
  });

  it('file directory is big-endian and lists host files from 0x20 with etc/e820', () => {
    const e820 = [
      { addr: 0, size: 0x9fc00, type: E820Type.RAM },
      { addr: 0x100000, size: 0x7ff00000, type: E820Type.RAM },
      { addr: 0x1_0000_0000, size: 0x8000_0000, type: E820Type.RAM },
    ];
    const { fw, item } = make({ e820 });
    expect(fw.addFile('etc/boot-fail-wait', [0x10, 0x27, 0, 0])).toBe(0x21);
    const dir = item(FwCfgItem.FILE_DIR, 4 + 2 * 64 + 4);
    expect(be32(dir, 0)).toBe(2);
    expect(be32(dir, 4)).toBe(60);
    expect(be16(dir, 8)).toBe(0x20);
    expect(be16(dir, 10)).toBe(0);
    const name0 = dir.slice(12, 12 + 56);
    expect(String.fromCharCode(...name0.slice(0, 8))).toBe('etc/e820');
    expect(name0.slice(8).every((b) => b === 0)).toBe(true);
    expect(be32(dir, 68)).toBe(4);
    expect(be16(dir, 72)).toBe(0x21);
    expect(String.fromCharCode(...dir.slice(76, 76 + 18))).toBe('etc/boot-fail-wait');
    expect(dir.slice(4 + 128)).toEqual([0, 0, 0, 0]); // past the end
    expect(item(0x20, 60)).toEqual(Array.from(buildE820Bytes(e820)));
    expect(item(0x21, 5)).toEqual([0x10, 0x27, 0, 0, 0]);
    expect(fw.fileList.map((f) => f.name)).toEqual(['etc/e820', 'etc/boot-fail-wait']);
  });

  it('an empty directory has a zero count', () => {
    expect(make().item(FwCfgItem.FILE_DIR, 6)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('buildE820Bytes is boot/e820.ts e820ToBytes: 20-byte little-endian entries, validated', () => {
    expect(buildE820Bytes).toBe(e820ToBytes);
    const b = buildE820Bytes([{ addr: 0x1_0000_0000, size: 0x1234, type: 2 }]);
    expect(Array.from(b)).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
    expect(buildE820Bytes([]).length).toBe(0);
    expect(() => buildE820Bytes([{ addr: -1, size: 1, type: 1 }])).toThrow(/entries\[0\]\.addr/);
    expect(() => buildE820Bytes([{ addr: 0, size: 2 ** 53, type: 1 }])).toThrow(/size/);
    expect(() => buildE820Bytes([{ addr: 0, size: 1, type: 2 ** 32 }])).toThrow(/type/);
    expect(() => buildE820Bytes([{ addr: 0n, size: 1, type: 1 }] as never)).toThrow(TypeError);
    expect(() => buildE820Bytes('x' as never)).toThrow(TypeError);
  });

  it('etc/e820 is byte for byte the encoding of boot/e820.ts, for the firmware and the OS maps', () => {
    for (const e820 of [buildFirmwareE820(6 * 2 ** 30), buildE820(64 * 2 ** 20)]) {
      const fw = new FwCfg({ ramBytes: 1, cpus: 1, e820 });
      const file = fw.fileList.find((f) => f.name === 'etc/e820');
      expect(file?.bytes).toEqual(e820ToBytes(e820));
      fw.write(0, 2, file!.select);
      expect(Array.from({ length: e820.length * 20 }, () => fw.read(1, 1))).toEqual(Array.from(e820ToBytes(e820)));
    }
  });

  it('a bad e820 option is a TypeError/RangeError naming it, before the device exists', () => {
    expect(() => new FwCfg({ ramBytes: 1, cpus: 1, e820: [{ addr: 0, size: 0, type: 1 }] })).toThrow(/options\.e820\[0\]\.size/);
    expect(() => new FwCfg({ ramBytes: 1, cpus: 1, e820: 'x' as never })).toThrow(TypeError);
  });

  it('addFile validates names and copies bytes', () => {
    const { fw, item } = make();
    const data = new Uint8Array([1, 2, 3]);
    fw.addFile('a'.repeat(55), data);
    data[0] = 99;
    expect(item(0x20, 3)).toEqual([1, 2, 3]);
    expect(() => fw.addFile('b'.repeat(56), [])).toThrow(RangeError);
    expect(() => fw.addFile('', [])).toThrow(RangeError);
    expect(() => fw.addFile('a\0b', [])).toThrow(RangeError);
    expect(() => fw.addFile('a'.repeat(55), [])).toThrow(/already exists/);
    expect(() => fw.addFile(5 as never, [])).toThrow(TypeError);
    expect(() => fw.addFile('x', [256])).toThrow(TypeError);
    expect(() => fw.setItem(FwCfgItem.FILE_DIR, [])).toThrow(RangeError);
    expect(() => fw.setItem(0x25, [])).toThrow(RangeError);
    expect(() => fw.setItem(0x4001, [])).toThrow(RangeError);
    expect(() => fw.setItem(0x10000, [])).toThrow(RangeError);
  });

  it('rejects bad constructor options', () => {
    expect(() => new FwCfg({ ramBytes: -1, cpus: 1 })).toThrow(/ramBytes/);
    expect(() => new FwCfg({ ramBytes: 0, cpus: 0 })).toThrow(/cpus/);
    expect(() => new FwCfg({ ramBytes: 0, cpus: 4, maxCpus: 2 })).toThrow(/maxCpus/);
    expect(() => new FwCfg({ ramBytes: 0, cpus: 1, e820: [{ addr: 0, size: -5, type: 1 }] })).toThrow(/size/);
    expect(() => new FwCfg(null as never)).toThrow(TypeError);
  });

  it('wide data reads pack consecutive bytes least significant first', () => {
    const { fw, select } = make({ ramBytes: 0x0807_0605_0403_0201n });
    select(FwCfgItem.RAM_SIZE);
    expect(fw.read(1, 2)).toBe(0x0201);
    expect(fw.read(1, 4)).toBe(0x0605_0403);
    expect(fw.read(1, 4)).toBe(0x0807); // runs past the end: zeros
    select(FwCfgItem.RAM_SIZE);
    expect(fw.read(1, 8)).toBe(0x0807_0605_0403_0201n);
    select(FwCfgItem.SIGNATURE);
    expect(fw.read(1, 4)).toBe(0x554d_4551);
  });

  it('ignores hostile writes and odd accesses', () => {
    const { fw, select, bytes } = make();
    select(FwCfgItem.NB_CPUS);
    fw.write(1, 1, 0xff); // data port is read-only
    fw.write(1, 2, 0xffff);
    fw.write(0, 1, FwCfgItem.SIGNATURE); // byte write to the selector: ignored
    expect(bytes(2)).toEqual([2, 0]);
    for (const size of [1, 2, 4, 8] as const) {
      for (const off of [2, 3, 100, -1, 0.5, Number.NaN]) {
        expect(() => fw.write(off, size, 0)).not.toThrow();
        expect(fw.read(off, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
      }
      expect(fw.read(0, size)).toBe(size === 8 ? 0xffff_ffff_ffff_ffffn : 2 ** (8 * size) - 1);
    }
    fw.write(0, 4, 0xabcd_0000 | FwCfgItem.SIGNATURE); // low 16 bits
    expect(bytes(1)).toEqual([0x51]);
    fw.write(0, 8, (1n << 63n) | BigInt(FwCfgItem.NB_CPUS));
    expect(bytes(1)).toEqual([2]);
    fw.write(0, 2, Number.NaN); // selects 0
    expect(bytes(1)).toEqual([0x51]);
  });

  it('snapshot/restore and reset', () => {
    const { fw, select, bytes } = make();
    select(FwCfgItem.SIGNATURE);
    bytes(2);
    const snap = fw.snapshot();
    expect(snap).toEqual({ selector: 0, offset: 2 });
    const b = make();
    b.fw.restore(snap);
    expect(b.bytes(2)).toEqual([0x4d, 0x55]);
    b.fw.reset();
    expect(b.bytes(1)).toEqual([0x51]);
    expect(() => b.fw.restore({ selector: 0x10000, offset: 0 })).toThrow(RangeError);
    expect(() => b.fw.restore({ selector: 0, offset: -1 })).toThrow(RangeError);
    expect(b.fw.getItem(FwCfgItem.NB_CPUS)).toEqual(new Uint8Array([2, 0]));
  });
});

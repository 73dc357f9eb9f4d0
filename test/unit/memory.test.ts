import { describe, expect, it } from 'vitest';
import { GuestMemory, bufferMemory } from '../../src/memory/guest-memory.js';
import { GuestMemoryError } from '../../src/memory/access.js';

describe('GuestMemory', () => {
  it('checks whole ranges, overflow-safe, with the address in the error', () => {
    const m = bufferMemory(0x1000, 0x2000);
    expect(() => m.readU32(0x2ffe)).toThrow(GuestMemoryError);
    expect(() => m.readBytes(0x2000, 0x1001)).toThrow(/0x2000/);
    expect(() => m.readBytes(2 ** 53, 1)).toThrow(RangeError);
    expect(() => m.writeU8(Number.NaN, 1)).toThrow(RangeError);
    expect(m.segmentAt(Number.NaN)).toBeUndefined();
    expect(m.isBacked(0x2000, 0x1000)).toBe(true);
    expect(m.isBacked(0x1fff, 2)).toBe(false);
  });
  it('spans adjacent segments and rejects overlaps', () => {
    const m = new GuestMemory();
    m.addSegment(0, new Uint8Array(16));
    m.addSegment(16, new Uint8Array(16));
    m.writeU64(12, 0x1122334455667788n);
    expect(m.readU64(12)).toBe(0x1122334455667788n);
    expect(() => m.addSegment(8, new Uint8Array(16))).toThrow(/overlaps/);
  });
  it('refuses writes to ROM segments in the guest view, allows them in the host view', () => {
    const host = new GuestMemory();
    host.addSegment(0, new Uint8Array(16), true);
    host.writeU8(0, 1); // loaders write ROMs
    const guest = new GuestMemory({ enforceReadonly: true });
    guest.addSegment(0, new Uint8Array(16), true);
    guest.addSegment(16, new Uint8Array(16));
    expect(() => guest.writeU8(3, 1)).toThrow(/read-only/);
    expect(() => guest.writeBytes(14, new Uint8Array(4))).toThrow(/read-only/);
    expect(() => guest.fill(0, 4, 0)).toThrow(/read-only/);
    guest.writeU8(20, 7);
    expect(guest.readU8(20)).toBe(7);
    expect(guest.readU8(3)).toBe(0);
  });
});

describe('GuestMemory over chunked segments (segments larger than one typed array)', () => {
  it('reads, writes and fills ranges that cross chunk boundaries inside one segment', () => {
    // chunks of 16 bytes stand in for the 2 GiB chunks of a large segment
    const buf = new SharedArrayBuffer(64);
    const m = new GuestMemory({ chunkSize: 16 });
    const seg = m.addSegment(0x1000, buf);
    expect(seg).toMatchObject({ gpa: 0x1000, length: 64, buffer: buf, byteOffset: 0, readonly: false });
    m.writeU32(0x100e, 0xa1b2c3d4); // bytes 14..17: chunk 0 and 1
    expect(m.readU32(0x100e)).toBe(0xa1b2c3d4);
    expect(Array.from(new Uint8Array(buf, 14, 4))).toEqual([0xd4, 0xc3, 0xb2, 0xa1]);
    m.writeU64(0x101c, 0x0102030405060708n);
    expect(m.readU64(0x101c)).toBe(0x0102030405060708n);
    const src = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
    m.writeBytes(0x1004, src); // chunks 0, 1 and 2
    expect(Array.from(new Uint8Array(buf, 4, 40))).toEqual(Array.from(src));
    expect(Array.from(m.readBytes(0x1004, 40))).toEqual(Array.from(src));
    m.fill(0x1008, 50, 0xee); // chunks 0..3
    expect(new Uint8Array(buf, 8, 50).every((b) => b === 0xee)).toBe(true);
    expect(new Uint8Array(buf)[7]).toBe(4);
    expect(new Uint8Array(buf)[58]).toBe(0);
    const view = m.slice(0x100c, 40)!; // one view across chunks: the buffer is contiguous
    expect(view.length).toBe(40);
    expect(view.buffer).toBe(buf);
  });
  it('spans chunked segments and keeps ROM checks per segment', () => {
    const m = new GuestMemory({ chunkSize: 8, enforceReadonly: true });
    m.addSegment(0, new ArrayBuffer(24));
    m.addSegment(24, new Uint8Array(new ArrayBuffer(32), 8, 16), true); // a view: byteOffset kept
    expect(m.segments[1]).toMatchObject({ gpa: 24, length: 16, byteOffset: 8, readonly: true });
    expect(() => m.writeU32(22, 1)).toThrow(/read-only/);
    expect(m.readBytes(20, 8)).toEqual(new Uint8Array(8));
    m.writeU16(22, 0xbeef);
    expect(m.readU16(22)).toBe(0xbeef);
    expect(m.isBacked(0, 40)).toBe(true);
    expect(m.isBacked(0, 41)).toBe(false);
  });
  it('checks its options', () => {
    expect(() => new GuestMemory({ chunkSize: 24 })).toThrow(/opts.chunkSize must be a power of two/);
    expect(() => new GuestMemory({ chunkSize: 2 ** 33 })).toThrow(RangeError);
    expect(() => new GuestMemory(null as never)).toThrow(TypeError);
    expect(() => new GuestMemory().addSegment(0, new Uint16Array(4) as never)).toThrow(TypeError);
    expect(() => new GuestMemory().addSegment(0, new ArrayBuffer(0))).toThrow(RangeError);
  });
});

describe('GuestMemory argument checks (typed errors naming the argument, nothing written)', () => {
  it('writeUxx: value must be an integer in range', () => {
    const m = bufferMemory(0x100);
    expect(() => m.writeU32(0, 2 ** 40 + 5)).toThrow(new RangeError('value must be an integer in [0, 0xffffffff], got 1099511627781'));
    expect(() => m.writeU32(0, -1)).toThrow(/value must be an integer in \[0, 0xffffffff\]/);
    expect(() => m.writeU16(0, 0x10000)).toThrow(/value must be an integer in \[0, 0xffff\]/);
    expect(() => m.writeU8(0, 256)).toThrow(/value must be an integer in \[0, 0xff\]/);
    expect(() => m.writeU8(0, 1.5)).toThrow(RangeError);
    expect(() => m.writeU8(0, Number.NaN)).toThrow(RangeError);
    expect(() => m.writeU8(0, '1' as never)).toThrow(TypeError);
    expect(() => m.writeU64(0, 1n << 64n)).toThrow(/value must be in \[0, 2\^64\)/);
    expect(() => m.writeU64(0, -1n)).toThrow(RangeError);
    expect(() => m.writeU64(0, 'x' as never)).toThrow(TypeError);
    m.writeU64(0, 7 as never); // a safe integer is accepted
    expect(m.readU64(0)).toBe(7n);
    expect(m.readBytes(4, 12)).toEqual(new Uint8Array(12));
  });
  it('fill: value must be a byte', () => {
    const m = bufferMemory(0x100);
    expect(() => m.fill(0, 16, 256)).toThrow(/value must be an integer in \[0, 0xff\], got 256/);
    expect(() => m.fill(0, 16, Number.NaN)).toThrow(RangeError);
    expect(() => m.fill(0, 16, 'x' as never)).toThrow(TypeError);
    expect(() => m.fill(0, 'x' as never, 0)).toThrow(/length must be a number/);
    expect(m.readBytes(0, 16)).toEqual(new Uint8Array(16));
  });
  it('writeBytes: bytes must be bytes', () => {
    const m = bufferMemory(0x100);
    expect(() => m.writeBytes(0, new Float64Array([1.5]) as never)).toThrow(/bytes must be a Uint8Array.*got Float64Array/);
    expect(() => m.writeBytes(0, new Uint16Array(2) as never)).toThrow(TypeError);
    expect(() => m.writeBytes(0, null as never)).toThrow(/bytes must be a Uint8Array.*got null/);
    expect(() => m.writeBytes(0, [1, 2] as never)).toThrow(TypeError);
    expect(() => m.writeBytes('0' as never, new Uint8Array(1))).toThrow(/gpa must be a number/);
    expect(m.readBytes(0, 8)).toEqual(new Uint8Array(8));
    m.writeBytes(0, Buffer.from([1, 2]));
    m.writeBytes(2, Uint8Array.of(3, 4).buffer);
    m.writeBytes(4, new Uint8ClampedArray([5, 6]));
    const sab = new SharedArrayBuffer(2);
    new Uint8Array(sab).set([7, 8]);
    m.writeBytes(6, sab);
    expect(Array.from(m.readBytes(0, 8))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
  it('readBytes: at most 2^32 bytes (one Uint8Array)', () => {
    const m = bufferMemory(0x100);
    expect(() => m.readBytes(0, 2 ** 32 + 1)).toThrow(/length must be at most 2\^32/);
    expect(() => m.readBytes(-1, 1)).toThrow(/gpa must be an integer in \[0, 2\^53\)/);
  });
});

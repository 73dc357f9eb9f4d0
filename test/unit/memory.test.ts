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

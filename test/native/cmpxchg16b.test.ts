/** The addon's locked 16-byte compare-exchange, as the instruction fallback uses it on guest memory. */
import { expect, it } from 'vitest';
import { native } from '../../src/kvm/native.js';

it('swaps on a match, reports the old value either way, and checks size and alignment', () => {
  const sab = new SharedArrayBuffer(64);
  const q = new BigUint64Array(sab);
  q[2] = 0x1111n;
  q[3] = 0x2222n;
  const cell = new Uint8Array(sab, 16, 16);
  expect(native().cmpxchg16b(cell, 0x1111n, 0x2222n, 0xaaaan, 0xbbbbn)).toEqual([true, 0x1111n, 0x2222n]);
  expect([q[2], q[3]]).toEqual([0xaaaan, 0xbbbbn]);
  expect(native().cmpxchg16b(cell, 0x1111n, 0x2222n, 0n, 0n)).toEqual([false, 0xaaaan, 0xbbbbn]);
  expect([q[2], q[3]]).toEqual([0xaaaan, 0xbbbbn]); // unchanged on a mismatch
  expect(() => native().cmpxchg16b(new Uint8Array(sab, 8, 16), 0n, 0n, 0n, 0n)).toThrow(/16-byte aligned/);
  expect(() => native().cmpxchg16b(new Uint8Array(sab, 16, 8), 0n, 0n, 0n, 0n)).toThrow(RangeError);
  expect(() => native().cmpxchg16b('x' as unknown as Uint8Array, 0n, 0n, 0n, 0n)).toThrow(TypeError);
});

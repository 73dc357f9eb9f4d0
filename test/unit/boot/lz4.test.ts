import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BootImageError } from '../../../src/boot/errors.js';
import { decompressLz4Legacy, LZ4_LEGACY_MAGIC } from '../../../src/boot/lz4.js';

/** The input `fixtures/sample.lz4` was made from with `lz4 -l -9` (text, noise, a long run). */
function sample(): Uint8Array {
  const words = ['kvm', 'vcpu', 'guest', 'memory', 'exit', 'lz4', 'block', 'match', 'literal'];
  let x = 12345;
  const rnd = (): number => (x = (x * 1103515245 + 12345) >>> 0) >>> 16;
  const parts: string[] = [];
  for (let i = 0; i < 3000; i++) parts.push(words[rnd() % words.length]);
  const text = new TextEncoder().encode(parts.join(' '));
  const noise = Uint8Array.from({ length: 300 }, () => rnd() & 0xff);
  const out = new Uint8Array(text.length + noise.length + 1000);
  out.set(text);
  out.set(noise, text.length);
  out.fill(0x41, text.length + noise.length);
  return out;
}

const FIXTURE = new Uint8Array(readFileSync(new URL('./fixtures/sample.lz4', import.meta.url)));

/** A legacy frame holding one hand-written block. */
function frame(block: number[], trailer?: number): Uint8Array {
  const out = new Uint8Array(8 + block.length + (trailer === undefined ? 0 : 4));
  const v = new DataView(out.buffer);
  v.setUint32(0, LZ4_LEGACY_MAGIC, true);
  v.setUint32(4, block.length, true);
  out.set(block, 8);
  if (trailer !== undefined) v.setUint32(8 + block.length, trailer, true);
  return out;
}

describe('decompressLz4Legacy', () => {
  it('decodes what the lz4 tool wrote, byte for byte', () => {
    expect(decompressLz4Legacy(FIXTURE)).toEqual(sample());
  });

  it('ignores the 4-byte size trailer the kernel build appends, and follows concatenated frames', () => {
    const withTrailer = new Uint8Array(FIXTURE.length + 4);
    withTrailer.set(FIXTURE);
    new DataView(withTrailer.buffer).setUint32(FIXTURE.length, sample().length, true);
    expect(decompressLz4Legacy(withTrailer)).toEqual(sample());
    const twice = new Uint8Array(FIXTURE.length * 2);
    twice.set(FIXTURE);
    twice.set(FIXTURE, FIXTURE.length);
    const both = decompressLz4Legacy(twice);
    expect(both.length).toBe(sample().length * 2);
    expect(both.subarray(sample().length)).toEqual(sample());
  });

  it('repeats overlapping matches (offset smaller than the length)', () => {
    // 'ab' literal, then a 10-byte match at offset 2 → 'ababababababab'; then 5 trailing literals
    const block = [0x26, 0x61, 0x62, 0x02, 0x00, 0x50, 0x78, 0x78, 0x78, 0x78, 0x78];
    expect(new TextDecoder().decode(decompressLz4Legacy(frame(block)))).toBe('ababababababxxxxx');
  });

  it('rejects hostile streams with a BootImageError, never reading or writing out of bounds', () => {
    const bad: [string, Uint8Array, RegExp][] = [
      ['no magic', new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), /not an LZ4 legacy frame/],
      ['too short', new Uint8Array([0x02, 0x21]), /not an LZ4 legacy frame/],
      ['block larger than the input', frame([0x10, 0x61], undefined).subarray(0, 9), /truncated/],
      ['offset 0', frame([0x10, 0x61, 0x00, 0x00, 0x00]), /match offset 0/],
      ['offset before the output', frame([0x10, 0x61, 0x05, 0x00, 0x00]), /match offset 5/],
      ['literals past the block', frame([0x50, 0x61]), /5 literals run past/],
      ['literal length past the block', frame([0xf0, 0xff]), /literal length runs past/],
      ['match length past the block', frame([0x1f, 0x61, 0x01, 0x00, 0xff]), /match length runs past/],
      ['offset cut off', frame([0x10, 0x61, 0x01]), /match offset runs past/],
    ];
    for (const [what, data, msg] of bad) {
      expect(() => decompressLz4Legacy(data), what).toThrow(BootImageError);
      expect(() => decompressLz4Legacy(data), what).toThrow(msg);
    }
    // one literal, then a match whose length (15 + 255 * 40000) would exceed a block's 8 MiB
    const huge = [0x1f, 0x61, 0x01, 0x00, ...new Array(40000).fill(0xff), 0x00];
    expect(() => decompressLz4Legacy(frame(huge))).toThrow(/output exceeds the block size limit/);
    expect(() => decompressLz4Legacy(FIXTURE, 1000)).toThrow(/more than 1000 bytes/);
    expect(() => decompressLz4Legacy('x' as unknown as Uint8Array)).toThrow(TypeError);
  });

  it('survives random corruption of a real stream (errors only, no crash or hang)', () => {
    let x = 7;
    const rnd = (): number => (x = (x * 1103515245 + 12345) >>> 0) >>> 8;
    for (let round = 0; round < 300; round++) {
      const d = FIXTURE.slice();
      for (let k = 0; k < 4; k++) d[4 + (rnd() % (d.length - 4))] = rnd() & 0xff;
      try {
        const out = decompressLz4Legacy(d);
        expect(out.length).toBeLessThanOrEqual(8 * 1024 * 1024);
      } catch (e) {
        expect(e).toBeInstanceOf(BootImageError);
      }
    }
  });
});

/** ByteSink (src/cli/console.ts): guest output into a stream, bounded when the reader does not keep up. */
import { Writable } from 'node:stream';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ByteSink } from '../../../src/cli/console.js';

const KiB = 1024;

/** A writable that accepts its first chunk and then never finishes writing it (nobody reads). */
function stuck(): Writable & { received: number } {
  const w = new Writable({
    highWaterMark: 16 * KiB,
    write(chunk: Buffer) {
      w.received += chunk.length; // the callback is never called: the stream never drains
    },
  }) as Writable & { received: number };
  w.received = 0;
  return w;
}

/** A writable that completes each write on a later turn of the event loop, collecting the bytes. */
function slow(): Writable & { bytes: number[] } {
  const w = new Writable({
    highWaterMark: 4 * KiB,
    write(chunk: Buffer, _enc, done) {
      w.bytes.push(...chunk);
      setImmediate(done);
    },
  }) as Writable & { bytes: number[] };
  w.bytes = [];
  return w;
}

/** Push `n` bytes with a turn of the event loop every `every` bytes (as the guest's exits arrive). */
async function flood(sink: ByteSink, n: number, every = 64 * KiB): Promise<void> {
  for (let i = 0; i < n; i++) {
    sink.push(i & 0xff);
    if (i % every === every - 1) await nextTurn();
  }
  await nextTurn();
}

describe('ByteSink', () => {
  it('a stream that never drains: buffered bytes stay bounded, the rest is dropped, counted and noticed once', async () => {
    const target = stuck();
    const notices: number[] = [];
    const sink = ByteSink.stream(target, { maxBuffered: 256 * KiB, onFirstDrop: (held) => notices.push(held) });
    const total = 8 * 1024 * KiB;
    await flood(sink, total);
    expect(sink.buffered).toBeLessThanOrEqual(256 * KiB);
    // the stream itself holds what it was handed before it said "enough": one high-water mark's worth
    expect(target.writableLength).toBeLessThanOrEqual(16 * KiB + 4 * KiB);
    expect(sink.dropped).toBe(total - sink.buffered - target.writableLength);
    expect(sink.dropped).toBeGreaterThan(7 * 1024 * KiB);
    expect(notices).toEqual([256 * KiB]);
  });

  it('a slow reader gets every byte, in order, while the output fits in the bound', async () => {
    const target = slow();
    const sink = ByteSink.stream(target, { maxBuffered: 1024 * KiB });
    const total = 300 * KiB;
    await flood(sink, total);
    while (target.bytes.length < total) await nextTurn();
    expect(sink.dropped).toBe(0);
    expect(target.bytes).toHaveLength(total);
    expect(target.bytes.every((b, i) => b === (i & 0xff))).toBe(true);
  });

  it('close() hands over what is held even under backpressure (at most the bound)', async () => {
    const target = stuck();
    const sink = ByteSink.stream(target, { maxBuffered: 64 * KiB });
    await flood(sink, 40 * KiB, 40 * KiB);
    const before = target.writableLength;
    const held = sink.buffered;
    expect(held).toBeGreaterThan(0);
    sink.close();
    expect(sink.buffered).toBe(0);
    expect(target.writableLength).toBe(before + held);
  });

  it('rejects bad arguments with TypeError/RangeError naming them', () => {
    expect(() => ByteSink.stream({} as never)).toThrow(/target must be a writable stream/);
    expect(() => ByteSink.stream(stuck(), { maxBuffered: -1 })).toThrow(RangeError);
    expect(() => ByteSink.stream(stuck(), { maxBuffered: -1 })).toThrow(/opts\.maxBuffered/);
    expect(() => ByteSink.stream(stuck(), { onFirstDrop: 5 as never })).toThrow(/opts\.onFirstDrop must be a function/);
  });
});

/** The stream-socket framing: decoder over split and coalesced chunks, oversize lengths, and the backend over a Unix socket. */
import { createServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { StreamFrameDecoder, StreamSocketBackend, encodeStreamFrame, parseMac } from '../../../src/net/index.js';
import { ethFrame, BROADCAST } from '../virtio/devices/net-util.js';
import { prng } from '../virtio/devices/harness.js';

const A = parseMac('02:00:00:00:00:0a');

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

describe('StreamFrameDecoder', () => {
  it('reassembles frames from chunks of any size, coalesced or split', () => {
    const frames = [ethFrame(BROADCAST, A, 0), ethFrame(BROADCAST, A, 1500, 2), ethFrame(BROADCAST, A, 65550 - 14, 3), ethFrame(BROADCAST, A, 46, 4)];
    const wire = concat(frames.map(encodeStreamFrame));
    expect(wire.length).toBe(frames.reduce((s, f) => s + 4 + f.length, 0));
    expect([...wire.subarray(0, 4)]).toEqual([0, 0, 0, 14]);
    for (const seed of [1, 2, 3]) {
      const rand = prng(seed);
      const got: Uint8Array[] = [];
      const d = new StreamFrameDecoder((f) => got.push(f));
      for (let at = 0; at < wire.length;) {
        const n = seed === 1 ? 1 : Math.floor(rand() * (seed === 2 ? 7 : 70000)) + 1;
        expect(d.push(wire.subarray(at, at + n))).toBe(true);
        expect(d.buffered).toBeLessThanOrEqual(4 + 65550);
        at += n;
      }
      expect(got).toEqual(frames);
      expect(d.buffered).toBe(0);
    }
    const all: Uint8Array[] = [];
    new StreamFrameDecoder((f) => all.push(f)).push(wire);
    expect(all.length).toBe(4);
  });

  it('skips runts and fails on a length above the maximum', () => {
    const got: Uint8Array[] = [];
    const d = new StreamFrameDecoder((f) => got.push(f));
    const runt = encodeStreamFrame(new Uint8Array(5));
    const zero = encodeStreamFrame(new Uint8Array(0));
    const ok = ethFrame(BROADCAST, A, 10);
    expect(d.push(concat([runt, zero, encodeStreamFrame(ok)]))).toBe(true);
    expect(got).toEqual([ok]);
    expect(d.stats).toEqual({ frames: 1, runts: 2, oversize: 0 });
    expect(d.push(Uint8Array.of(0, 1, 0, 15))).toBe(false); // 65551
    expect(d.failed).toBe(true);
    expect(d.push(encodeStreamFrame(ok))).toBe(false);
    expect(got.length).toBe(1);
    expect(d.stats.oversize).toBe(1);
    expect(new StreamFrameDecoder(() => {}).push(Uint8Array.of(0xff, 0xff, 0xff, 0xff))).toBe(false);
    expect(() => new StreamFrameDecoder(5 as never)).toThrow(/onFrame/);
  });
});

/** A duplex whose written bytes land in `out` and whose readable side the test feeds. */
function pipePair(): { stream: Duplex; feed: PassThrough; out: Uint8Array[] } {
  const feed = new PassThrough();
  const out: Uint8Array[] = [];
  const stream = new Duplex({
    read() {},
    write(chunk, _enc, cb) {
      out.push(new Uint8Array(chunk));
      cb();
    },
  });
  feed.on('data', (c: Buffer) => stream.push(c));
  return { stream, feed, out };
}

describe('StreamSocketBackend', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('frames sends, delivers received frames, and closes on an oversize length', async () => {
    const { stream, feed, out } = pipePair();
    const be = new StreamSocketBackend(stream);
    const got: Uint8Array[] = [];
    be.onFrame((f) => got.push(f));
    const f = ethFrame(BROADCAST, A, 100);
    be.send(f);
    be.send(new Uint8Array(3));
    expect(concat(out)).toEqual(encodeStreamFrame(f));
    const wire = encodeStreamFrame(f);
    feed.write(wire.subarray(0, 3));
    feed.write(concat([wire.subarray(3), wire]));
    await new Promise((r) => setImmediate(r));
    expect(got).toEqual([f, f]);
    let closed = false;
    be.onClose(() => (closed = true));
    feed.write(Uint8Array.of(0x00, 0x02, 0x00, 0x00));
    await new Promise((r) => setImmediate(r));
    expect(be.closed).toBe(true);
    expect(closed).toBe(true);
    be.send(f);
    expect(be.stats).toMatchObject({ txFrames: 1, txDropped: 2, rxFrames: 2, rxOversize: 1 });
  });

  it('drops sends past maxWriteBuffer instead of buffering without bound', () => {
    const stream = new Duplex({ read() {}, write(_c, _e, _cb) { /* never completes */ }, highWaterMark: 1 });
    const be = new StreamSocketBackend(stream, { maxWriteBuffer: 70000 });
    for (let i = 0; i < 10; i++) be.send(ethFrame(BROADCAST, A, 20000));
    expect(be.stats.txFrames).toBe(3);
    expect(be.stats.txDropped).toBe(7);
    expect(() => new StreamSocketBackend(stream, { maxWriteBuffer: 10 })).toThrow(/options.maxWriteBuffer/);
    expect(() => new StreamSocketBackend({} as never)).toThrow(/stream must be/);
    be.close();
  });

  it('connects to a Unix socket and exchanges frames with a peer speaking the protocol', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vmmapi-net-'));
    const path = join(dir, 'sock');
    let peer: Socket | undefined;
    const peerGot: Uint8Array[] = [];
    const server = createServer((s) => {
      peer = s;
      const d = new StreamFrameDecoder((f) => peerGot.push(f));
      s.on('data', (c) => d.push(c));
    });
    await new Promise<void>((r) => server.listen(path, r));
    try {
      const be = await StreamSocketBackend.connect(path);
      const got: Uint8Array[] = [];
      be.onFrame((f) => got.push(f));
      const f = ethFrame(BROADCAST, A, 200);
      be.send(f);
      for (let i = 0; i < 100 && (!peer || peerGot.length === 0); i++) await new Promise((r) => setTimeout(r, 5));
      expect(peerGot).toEqual([f]);
      const g = ethFrame(A, BROADCAST, 300, 5);
      peer!.write(encodeStreamFrame(g));
      for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
      expect(got).toEqual([g]);
      const closed = new Promise<void>((r) => be.onClose(r));
      peer!.end();
      await closed;
      expect(be.closed).toBe(true);
    } finally {
      peer?.destroy();
      await new Promise((r) => server.close(r));
    }
    await expect(StreamSocketBackend.connect(join(dir, 'nothing'))).rejects.toThrow(/ENOENT/);
  });
});

/** NetSwitch: learning, flooding, hairpin filtering, bounded queues, asynchronous delivery. */
import { describe, expect, it } from 'vitest';
import { NetSwitch, parseMac } from '../../../src/net/index.js';
import { BROADCAST, ethFrame } from '../virtio/devices/net-util.js';

const A = parseMac('02:00:00:00:00:0a');
const B = parseMac('02:00:00:00:00:0b');
const C = parseMac('02:00:00:00:00:0c');

function ports(sw: NetSwitch, n: number) {
  return Array.from({ length: n }, (_, i) => {
    const p = sw.port();
    const got: Uint8Array[] = [];
    p.onFrame((f) => got.push(f));
    return { p, got, i };
  });
}

describe('NetSwitch', () => {
  it('floods unknown and broadcast destinations, then forwards to the learned port only', () => {
    const sw = new NetSwitch();
    const [a, b, c] = ports(sw, 3);
    const f1 = ethFrame(B, A, 10);
    a.p.send(f1);
    expect(b.got.length).toBe(0); // asynchronous
    sw.flush();
    expect(b.got).toEqual([f1]);
    expect(c.got).toEqual([f1]);
    expect(a.got).toEqual([]);
    expect(sw.lookup(A)).toBe('port0');
    const f2 = ethFrame(A, B, 20);
    b.p.send(f2);
    sw.flush();
    expect(a.got).toEqual([f2]);
    expect(c.got.length).toBe(1);
    const bc = ethFrame(BROADCAST, C, 5);
    c.p.send(bc);
    sw.flush();
    expect(a.got.length).toBe(2);
    expect(b.got.length).toBe(2);
    expect(sw.stats).toMatchObject({ frames: 3, unicast: 1, flooded: 2, delivered: 5 });
    expect(sw.macCount).toBe(3);
  });

  it('delivers from setImmediate, filters hairpins and invalid frames, forgets closed ports', async () => {
    const sw = new NetSwitch();
    const [a, b] = ports(sw, 2);
    a.p.send(ethFrame(BROADCAST, A, 1));
    await new Promise((r) => setImmediate(r));
    expect(b.got.length).toBe(1);
    a.p.send(ethFrame(A, A, 1)); // destination learned on the sending port
    a.p.send(new Uint8Array(13));
    a.p.send(new Uint8Array(65551));
    sw.flush();
    expect(sw.stats).toMatchObject({ hairpin: 1, invalid: 2 });
    a.p.close();
    a.p.close();
    expect(a.p.closed).toBe(true);
    expect(sw.portCount).toBe(1);
    expect(sw.lookup(A)).toBeUndefined();
    a.p.send(ethFrame(B, A, 1)); // closed: ignored
    expect(sw.stats.frames).toBe(4);
  });

  it('bounds each port queue and the MAC table', () => {
    const sw = new NetSwitch({ queueFrames: 2, maxMacs: 2 });
    const [a, b] = ports(sw, 2);
    for (let i = 0; i < 5; i++) a.p.send(ethFrame(B, A, 10));
    expect(b.p.queued).toBe(2);
    expect(sw.stats.queueFull).toBe(3);
    sw.flush();
    expect(b.got.length).toBe(2);
    for (const m of [B, C, parseMac('02:00:00:00:00:0d')]) b.p.send(ethFrame(A, m, 1));
    expect(sw.macCount).toBe(2);
    expect(sw.lookup(A)).toBeUndefined(); // the oldest entry went
    expect(() => new NetSwitch({ queueFrames: 0 })).toThrow(/options.queueFrames/);
    expect(() => sw.port(5 as never)).toThrow(/name must be a string/);
  });

  it('survives receivers that throw or answer at once without recursing', () => {
    const sw = new NetSwitch();
    const a = sw.port('a');
    const b = sw.port('b');
    let bounces = 0;
    a.onFrame(() => {
      throw new Error('receiver broke');
    });
    b.onFrame((f) => {
      bounces++;
      b.send(ethFrame(A, B, f.length - 14)); // answers inside the callback
    });
    a.send(ethFrame(B, A, 30));
    sw.flush();
    sw.flush();
    expect(bounces).toBe(1);
    expect(sw.stats.receiverErrors).toBe(1);
    const c = sw.port();
    c.send(ethFrame(BROADCAST, C, 1));
    a.onFrame(undefined);
    sw.flush();
    expect(sw.stats.noReceiver).toBe(2); // the broadcast, and b's answer to it
  });
});

/** Two VirtioNet devices through a NetSwitch, and hostile random chains on both queues. */
import { describe, expect, it } from 'vitest';
import { VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../../../src/virtio/index.js';
import { VirtioNet } from '../../../../src/virtio/devices/index.js';
import { NetSwitch } from '../../../../src/net/index.js';
import { activate, driversFor, prng, turn } from './harness.js';
import { BROADCAST, FakeBackend, ethFrame, withHeader, written } from './net-util.js';

describe('VirtioNet through a NetSwitch', () => {
  it('two devices exchange frames both ways (broadcast first, then learned unicast)', async () => {
    const sw = new NetSwitch();
    const a = new VirtioNet({ backend: sw.port('a'), mac: '02:00:00:00:00:0a', queueSize: 16 });
    const b = new VirtioNet({ backend: sw.port('b'), mac: '02:00:00:00:00:0b', queueSize: 16 });
    const [arx, atx] = driversFor(a);
    const [brx, btx] = driversFor(b);
    activate(a, [arx, atx]);
    activate(b, [brx, btx]);
    const aBuf = arx.add([], [2048]);
    const bBufs = [brx.add([], [2048]), brx.add([], [2048])];
    a.notify(0);
    b.notify(0);
    const hello = ethFrame(BROADCAST, a.mac, 100);
    atx.add([withHeader(hello)]);
    a.notify(1);
    await turn();
    const bu = brx.used();
    expect(bu.length).toBe(1);
    expect(written(brx, bBufs[0], bu[0].len).subarray(12)).toEqual(hello);
    const reply = ethFrame(a.mac, b.mac, 1400, 7);
    btx.add([withHeader(reply)]);
    b.notify(1);
    await turn();
    const au = arx.used();
    expect(au.length).toBe(1);
    expect(written(arx, aBuf, au[0].len).subarray(12)).toEqual(reply);
    const direct = ethFrame(b.mac, a.mac, 60, 3);
    atx.add([withHeader(direct)]);
    a.notify(1);
    await turn();
    const bu2 = brx.used();
    expect(written(brx, bBufs[1], bu2[0].len).subarray(12)).toEqual(direct);
    expect(sw.stats).toMatchObject({ flooded: 1, unicast: 2, delivered: 3 });
  });
});

describe('VirtioNet under hostile chains', () => {
  it('never throws, hangs, writes outside buffers or buffers without bound', async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const rand = prng(seed);
      const backend = new FakeBackend();
      const net = new VirtioNet({ backend, queueSize: 16, rxQueueFrames: 8, mergeRxBuffers: seed % 2 === 0 });
      const drivers = driversFor(net, { ramBytes: 0x40000 });
      const ctx = activate(net, drivers);
      for (let step = 0; step < 60; step++) {
        const q = Math.floor(rand() * 2);
        const d = drivers[q];
        const r = rand();
        if (r < 0.35) {
          // a chain of random buffers, some readable, some writable, random lengths (even 0)
          const n = 1 + Math.floor(rand() * 4);
          const outs: Uint8Array[] = [];
          const ins: number[] = [];
          for (let i = 0; i < n; i++) {
            const len = Math.floor(rand() * (rand() < 0.2 ? 4000 : 40));
            if (rand() < 0.5) outs.push(new Uint8Array(len).map(() => Math.floor(rand() * 256)));
            else ins.push(len);
          }
          try {
            d.add(outs, ins);
          } catch {
            /* driver out of descriptors */
          }
        } else if (r < 0.5) {
          // hand-written descriptors with random addresses, lengths, flags, next
          const head = Math.floor(rand() * d.size);
          d.writeDesc(head, {
            addr: rand() < 0.5 ? d.dataBase + Math.floor(rand() * 0x1000) : Math.floor(rand() * 2 ** 40),
            len: Math.floor(rand() * 70000),
            flags: (rand() < 0.5 ? VIRTQ_DESC_F_WRITE : 0) | (rand() < 0.5 ? VIRTQ_DESC_F_NEXT : 0),
            next: Math.floor(rand() * 40),
          });
          d.publish(head);
        } else if (r < 0.8) {
          backend.inject(ethFrame(net.mac, BROADCAST, Math.floor(rand() * 3000)));
        } else if (r < 0.97) {
          net.notify(q);
        } else {
          d.setAvailIdx(Math.floor(rand() * 0x10000));
          net.notify(q);
        }
        expect(net.rxPending).toBeLessThanOrEqual(8);
        d.used();
      }
      await turn();
      expect(ctx.resets.length).toBeLessThanOrEqual(1);
      for (const d of drivers) expect(d.ram.guardsIntact()).toBe(true);
      for (const f of backend.sent) expect(f.length >= 14 && f.length <= 65550).toBe(true);
      net.reset();
      expect(net.rxPending).toBe(0);
    }
  });

  it('survives a truncated header on receive buffers and a transmit chain of only writable buffers', () => {
    const backend = new FakeBackend();
    const net = new VirtioNet({ backend, queueSize: 8 });
    const [rx, tx] = driversFor(net);
    activate(net, [rx, tx]);
    rx.add([], [1, 2, 3]); // 6 bytes: shorter than the 12-byte header
    tx.add([], [100]);
    net.notify(0);
    net.notify(1);
    backend.inject(ethFrame(net.mac, BROADCAST, 20));
    expect(rx.used()).toEqual([{ id: 0, len: 0 }]);
    expect(tx.used().length).toBe(1);
    expect(net.stats).toMatchObject({ rxShortBuffers: 1, txBadHeader: 1 });
    expect(net.rxPending).toBe(1);
  });
});

/** VirtioNet snapshot/restore: held receive chains, link state, MAC override, pending frames dropped. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_F_VERSION_1 } from '../../../../src/virtio/index.js';
import { VIRTIO_NET_CONFIG, VIRTIO_NET_F, VirtioNet, featureBits, type VirtioNetState } from '../../../../src/virtio/devices/index.js';
import { parseMac } from '../../../../src/net/index.js';
import { restoreDevice, snapshotDevice } from '../state-helpers.js';
import { activate, driversFor } from './harness.js';
import { BROADCAST, FakeBackend, ethFrame, numBuffers, withHeader, written } from './net-util.js';
import type { Posted } from '../driver.js';

const MAC = '52:54:00:12:34:56';
const PEER = parseMac('52:54:00:aa:bb:cc');
const NO_MRG = featureBits(VIRTIO_NET_F.MAC, VIRTIO_NET_F.STATUS, VIRTIO_F_VERSION_1);

function setup(features?: bigint) {
  const backend = new FakeBackend();
  const net = new VirtioNet({ backend, mac: MAC, queueSize: 16 });
  const drivers = driversFor(net);
  const ctx = activate(net, drivers, features ?? net.features);
  return { backend, net, drivers, ctx };
}

/** A fresh device (random MAC, new backend) to restore into. */
function fresh() {
  const backend = new FakeBackend();
  return { backend, net: new VirtioNet({ backend, queueSize: 16 }) };
}

describe('VirtioNet state', () => {
  it('restored mid-stream (a short receive chain held, frames both ways), it goes on like an uninterrupted run', async () => {
    const run = async (snapshot: boolean) => {
      const s = setup(NO_MRG);
      let { backend, net } = s;
      const [rx, tx] = s.drivers;
      const posted: Posted[] = [rx.add([], [12 + 60])]; // too short for the first frame: held for the next
      net.notify(0);
      backend.inject(ethFrame(BROADCAST, PEER, 186, 1)); // dropped (tooBig), the chain held
      tx.add([withHeader(ethFrame(PEER, parseMac(MAC), 50, 2))]);
      net.notify(1);
      let ctxOut = s.ctx;
      if (snapshot) {
        const snap = await snapshotDevice(net, s.drivers);
        expect((snap.device as VirtioNetState).heldRx).toEqual([posted[0].head]);
        const f = fresh();
        ctxOut = restoreDevice(f.net, s.drivers, snap, NO_MRG)!;
        ({ backend, net } = f);
      }
      backend.inject(ethFrame(BROADCAST, PEER, 40, 3)); // into the held chain
      posted.push(rx.add([], [12 + 200]));
      net.notify(0);
      backend.inject(ethFrame(BROADCAST, PEER, 150, 4));
      tx.add([withHeader(ethFrame(PEER, parseMac(MAC), 60, 5))]);
      net.notify(1);
      const used = rx.used();
      return {
        used,
        frames: used.map((u) => Buffer.from(written(rx, posted.find((p) => p.head === u.id)!, u.len)).toString('hex')),
        sent: [...s.backend.sent, ...(snapshot ? backend.sent : [])].map((f) => f.length),
        txUsed: tx.used().length,
        interrupts: ctxOut.interrupts.length > 0,
      };
    };
    const straight = await run(false);
    expect(straight.used.length).toBe(2);
    expect(await run(true)).toEqual(straight);
  });

  it('with MRG_RXBUF the held chains come back and take the next frame; a waiting frame is dropped', async () => {
    const { backend, net, drivers } = setup();
    const [rx] = drivers;
    const posted = [rx.add([], [64]), rx.add([], [64])];
    net.notify(0);
    backend.inject(ethFrame(BROADCAST, PEER, 200, 1)); // needs 4 buffers: 2 held, the frame waits
    expect(net.rxPending).toBe(1);
    const snap = await snapshotDevice(net, drivers);
    expect((snap.device as VirtioNetState).heldRx).toEqual(posted.map((p) => p.head));
    const f = fresh();
    restoreDevice(f.net, drivers, snap, net.features);
    expect(f.net.rxPending).toBe(0);
    f.backend.inject(ethFrame(BROADCAST, PEER, 100, 2)); // 112 bytes: the two held chains
    const used = rx.used();
    expect(used.map((u) => u.id)).toEqual(posted.map((p) => p.head));
    expect(numBuffers(written(rx, posted[0], 12))).toBe(2);
  });

  it('a device that failed with chains held snapshots without them and restores failed', async () => {
    const { backend, net, drivers, ctx } = setup();
    const [rx] = drivers;
    rx.add([], [64]);
    net.notify(0);
    backend.inject(ethFrame(BROADCAST, PEER, 200, 1)); // one chain held, the frame waits
    rx.setAvailIdx(rx.availIdx + 100); // the driver breaks the ring
    net.notify(0);
    expect(ctx.resets.length).toBe(1);
    const snap = await snapshotDevice(net, drivers);
    expect(snap.device).toMatchObject({ failed: true, heldRx: [] });
    const f = fresh();
    const fctx = restoreDevice(f.net, drivers, snap, net.features)!;
    f.backend.inject(ethFrame(BROADCAST, PEER, 20, 2));
    expect(f.net.stats.rxNotReady).toBe(1);
    expect(fctx.resets).toEqual([]);
  });

  it('keeps the MAC and link of the state, or takes an override MAC with a configuration change', async () => {
    const { net, drivers, ctx } = setup();
    net.setLinkUp(false);
    expect(ctx.configChanges).toBe(1);
    const snap = await snapshotDevice(net, drivers);
    const a = fresh();
    const actx = restoreDevice(a.net, drivers, snap, net.features)!;
    expect(a.net.macString).toBe(MAC);
    expect(a.net.linkUp).toBe(false);
    expect(a.net.readConfig(VIRTIO_NET_CONFIG.STATUS, 2)).toBe(0);
    expect(actx.configChanges).toBe(0);
    const b = fresh();
    const bctx = restoreDevice(b.net, drivers, snap, net.features, { mac: '02:00:00:00:00:07' })!;
    expect(b.net.macString).toBe('02:00:00:00:00:07');
    expect([0, 1, 2, 3, 4, 5].map((i) => b.net.readConfig(i, 1))).toEqual([2, 0, 0, 0, 0, 7]);
    expect(bctx.configChanges).toBe(1);
    const c = fresh(); // no DRIVER_OK: nothing to tell
    c.net.prepareRestore(snap.device as VirtioNetState, undefined, { mac: '02:00:00:00:00:08' })();
    expect(c.net.macString).toBe('02:00:00:00:00:08');
  });

  it('refuses hostile states and overrides, naming the field', async () => {
    const { net, drivers } = setup();
    const [rx] = drivers;
    rx.add([], [64]);
    net.notify(0);
    net.receive(ethFrame(BROADCAST, PEER, 200, 1));
    const snap = await snapshotDevice(net, drivers);
    const good = snap.device as VirtioNetState;
    const f = fresh();
    const macBefore = f.net.macString;
    for (const [state, overrides, msg] of [
      [{ ...good, mac: 'nope' }, undefined, /state.mac must look like/],
      [{ ...good, linkUp: 1 }, undefined, /state.linkUp must be a boolean/],
      [{ ...good, heldRx: [] }, undefined, /state.heldRx .* must be the queue's in-flight chains/],
      [{ ...good, heldRx: [...good.heldRx, 3] }, undefined, /state.heldRx must have at most 1/],
      [{ ...good, heldRx: 'x' }, undefined, /state.heldRx must be an array/],
      [good, { mac: 12 }, /overrides.mac/],
      [good, 'x', /overrides must be an object/],
    ] as const) {
      expect(() => restoreDevice(f.net, drivers, snap.queues ? { ...snap, device: state } : snap, net.features, overrides), msg.source).toThrow(msg);
      expect(f.net.macString).toBe(macBefore);
    }
  });
});

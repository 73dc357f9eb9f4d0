/** VirtioNet over real SplitQueues: configuration, transmit, receive with and without MRG_RXBUF, bounds, reset. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_DEVICE_TYPE, VIRTIO_F_VERSION_1 } from '../../../../src/virtio/index.js';
import {
  NET_HDR_BYTES, VIRTIO_NET_CONFIG, VIRTIO_NET_F, VirtioNet, featureBits, hasFeature,
} from '../../../../src/virtio/devices/index.js';
import { parseMac } from '../../../../src/net/index.js';
import { activate, driversFor } from './harness.js';
import { BROADCAST, FakeBackend, ethFrame, numBuffers, withHeader, written } from './net-util.js';
import type { Posted } from '../driver.js';

const MAC = '52:54:00:12:34:56';
const PEER = parseMac('52:54:00:aa:bb:cc');
const NO_MRG = featureBits(VIRTIO_NET_F.MAC, VIRTIO_NET_F.STATUS, VIRTIO_F_VERSION_1);

function setup(opts: Partial<ConstructorParameters<typeof VirtioNet>[0]> = {}, features?: bigint, ramBytes = 0x40000) {
  const backend = new FakeBackend();
  const net = new VirtioNet({ backend, mac: MAC, queueSize: 16, ...opts });
  const [rx, tx] = driversFor(net, { ramBytes });
  const ctx = activate(net, [rx, tx], features ?? net.features);
  return { backend, net, rx, tx, ctx };
}

describe('VirtioNet configuration', () => {
  it('offers MAC, STATUS, MRG_RXBUF and VERSION_1, and MTU when asked', () => {
    const net = new VirtioNet({ backend: new FakeBackend(), mac: MAC });
    expect(net.deviceType).toBe(VIRTIO_DEVICE_TYPE.NET);
    expect(net.queueSizes).toEqual([256, 256]);
    for (const b of [VIRTIO_NET_F.MAC, VIRTIO_NET_F.STATUS, VIRTIO_NET_F.MRG_RXBUF, VIRTIO_F_VERSION_1]) expect(hasFeature(net.features, b)).toBe(true);
    expect(hasFeature(net.features, VIRTIO_NET_F.MTU)).toBe(false);
    expect(hasFeature(net.features, VIRTIO_NET_F.CTRL_VQ)).toBe(false);
    const m = new VirtioNet({ backend: new FakeBackend(), mtu: 9000, mergeRxBuffers: false });
    expect(hasFeature(m.features, VIRTIO_NET_F.MTU)).toBe(true);
    expect(hasFeature(m.features, VIRTIO_NET_F.MRG_RXBUF)).toBe(false);
    expect(m.readConfig(VIRTIO_NET_CONFIG.MTU, 2)).toBe(9000);
  });

  it('exposes mac, status LINK_UP and one queue pair, read-only', () => {
    const net = new VirtioNet({ backend: new FakeBackend(), mac: MAC });
    expect(net.configSize).toBe(12);
    expect([0, 1, 2, 3, 4, 5].map((i) => net.readConfig(i, 1))).toEqual([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    expect(net.readConfig(VIRTIO_NET_CONFIG.STATUS, 2)).toBe(1);
    expect(net.readConfig(VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS, 2)).toBe(1);
    expect(net.readConfig(VIRTIO_NET_CONFIG.MTU, 2)).toBe(0);
    net.writeConfig(0, 4, 0);
    expect(net.readConfig(0, 4)).toBe(0x12005452);
    expect(() => net.readConfig(11, 2)).toThrow(RangeError);
    expect(() => net.writeConfig(0, 1, 256)).toThrow(/value/);
    expect(net.macString).toBe(MAC);
  });

  it('picks a random locally administered unicast MAC by default', () => {
    const a = new VirtioNet({ backend: new FakeBackend() });
    const b = new VirtioNet({ backend: new FakeBackend() });
    expect(a.mac[0] & 3).toBe(2);
    expect(a.macString).not.toBe(b.macString);
  });

  it('names bad options', () => {
    const backend = new FakeBackend();
    expect(() => new VirtioNet(undefined as never)).toThrow(/options must be an object/);
    expect(() => new VirtioNet({} as never)).toThrow(/options.backend/);
    expect(() => new VirtioNet({ backend: { send() {} } as never })).toThrow(/options.backend.onFrame/);
    expect(() => new VirtioNet({ backend, mac: 'zz:00:00:00:00:00' })).toThrow(/options.mac/);
    expect(() => new VirtioNet({ backend, mac: new Uint8Array(5) })).toThrow(/options.mac must have 6 bytes/);
    expect(() => new VirtioNet({ backend, mtu: 67 })).toThrow(/options.mtu/);
    expect(() => new VirtioNet({ backend, queueSize: 1 })).toThrow(/options.queueSize/);
    expect(() => new VirtioNet({ backend, rxQueueBytes: 100 })).toThrow(/options.rxQueueBytes/);
    expect(() => new VirtioNet({ backend, mergeRxBuffers: 1 as never })).toThrow(/options.mergeRxBuffers/);
  });

  it('raises a configuration change when the link goes down and drops frames both ways while down', () => {
    const { net, rx, tx, backend, ctx } = setup();
    net.setLinkUp(false);
    expect(net.readConfig(VIRTIO_NET_CONFIG.STATUS, 2)).toBe(0);
    expect(ctx.configChanges).toBe(1);
    rx.add([], [2048]);
    net.notify(0);
    expect(net.receive(ethFrame(net.mac, PEER, 50))).toBe(false);
    tx.add([withHeader(ethFrame(PEER, net.mac, 50))]);
    net.notify(1);
    expect(backend.sent.length).toBe(0);
    expect(net.stats.rxNotReady).toBe(1);
    expect(net.stats.txLinkDown).toBe(1);
    net.setLinkUp(true);
    expect(ctx.configChanges).toBe(2);
    expect(() => net.setLinkUp('yes' as never)).toThrow(TypeError);
  });
});

describe('VirtioNet transmit', () => {
  it('strips the header and sends each frame, returning chains with length 0', () => {
    const { net, tx, backend, ctx } = setup();
    const f1 = ethFrame(PEER, net.mac, 100);
    const f2 = ethFrame(BROADCAST, net.mac, 1500, 3);
    const a = tx.add([withHeader(f1)]);
    const hdr = new Uint8Array(NET_HDR_BYTES);
    const b = tx.add([hdr, f2.subarray(0, 20), f2.subarray(20)]); // header and frame split over three buffers
    net.notify(1);
    expect(tx.used()).toEqual([{ id: a.head, len: 0 }, { id: b.head, len: 0 }]);
    expect(backend.sent).toEqual([f1, f2]);
    expect(ctx.interrupts).toEqual([1]);
    expect(net.stats).toMatchObject({ txChains: 2, txFrames: 2, txBytes: f1.length + f2.length });
  });

  it('drops chains shorter than the header and frames outside [14, 65550] bytes', () => {
    const { net, tx, backend } = setup({}, undefined, 0x80000);
    tx.add([new Uint8Array(11)]);
    tx.add([new Uint8Array(0)]); // one empty buffer
    tx.add([withHeader(new Uint8Array(13))]);
    tx.add([withHeader(ethFrame(PEER, net.mac, 65551 - 14))]);
    const okMax = ethFrame(PEER, net.mac, 65550 - 14);
    const okMin = ethFrame(PEER, net.mac, 0);
    tx.add([withHeader(okMax)]);
    tx.add([withHeader(okMin)]);
    net.notify(1);
    expect(tx.used().length).toBe(6);
    expect(backend.sent).toEqual([okMax, okMin]);
    expect(net.stats).toMatchObject({ txBadHeader: 2, txTooShort: 1, txTooLong: 1, txFrames: 2 });
  });

  it('counts a throwing backend and keeps serving', () => {
    const { net, tx, backend } = setup();
    backend.throwOnSend = true;
    tx.add([withHeader(ethFrame(PEER, net.mac, 10))]);
    tx.add([withHeader(ethFrame(PEER, net.mac, 10))]);
    net.notify(1);
    expect(tx.used().length).toBe(2);
    expect(net.stats.txErrors).toBe(2);
    expect((net.lastSendError as Error).message).toBe('backend broke');
  });
});

describe('VirtioNet receive', () => {
  it('without MRG_RXBUF: one chain per frame, header zeroed with num_buffers 1', () => {
    const { net, rx, backend, ctx } = setup({}, NO_MRG);
    const bufs = [rx.add([], [NET_HDR_BYTES, 1514]), rx.add([], [1526])];
    net.notify(0);
    const f1 = ethFrame(net.mac, PEER, 1500);
    const f2 = ethFrame(net.mac, PEER, 60, 9);
    backend.inject(f1);
    backend.inject(f2);
    const used = rx.used();
    expect(used).toEqual([{ id: bufs[0].head, len: 12 + f1.length }, { id: bufs[1].head, len: 12 + f2.length }]);
    const got = written(rx, bufs[0], used[0].len);
    expect([...got.subarray(0, 10)].every((x) => x === 0)).toBe(true);
    expect(numBuffers(got)).toBe(1);
    expect(got.subarray(12)).toEqual(f1);
    expect(written(rx, bufs[1], used[1].len).subarray(12)).toEqual(f2);
    expect(ctx.interrupts).toEqual([0, 0]);
    expect(net.stats).toMatchObject({ rxFrames: 2, rxBytes: f1.length + f2.length });
    expect(rx.ram.guardsIntact()).toBe(true);
  });

  it('without MRG_RXBUF: drops a frame that does not fit and keeps the chain for the next', () => {
    const { net, rx, backend } = setup({}, NO_MRG);
    const small = rx.add([], [200]);
    const tiny = rx.add([], [20]); // cannot hold header + 14: returned unused
    net.notify(0);
    backend.inject(ethFrame(net.mac, PEER, 500));
    expect(net.stats.rxTooBig).toBe(1);
    expect(rx.used()).toEqual([]);
    const f = ethFrame(net.mac, PEER, 100);
    backend.inject(f);
    expect(rx.used()).toEqual([{ id: small.head, len: 12 + f.length }]);
    backend.inject(f);
    expect(rx.used()).toEqual([{ id: tiny.head, len: 0 }]);
    expect(net.stats.rxShortBuffers).toBe(1);
    expect(net.rxPending).toBe(1);
  });

  it('with MRG_RXBUF: spreads a frame over several buffers, num_buffers in the first, published together', () => {
    const { net, rx, backend } = setup();
    const bufs = [rx.add([], [1000]), rx.add([], [600, 400]), rx.add([], [1000]), rx.add([], [1000])];
    net.notify(0);
    const f = ethFrame(net.mac, PEER, 2500);
    const idxBefore = rx.usedIdx();
    backend.inject(f);
    expect(rx.usedIdx()).toBe(idxBefore + 3);
    const used = rx.used();
    expect(used).toEqual([{ id: bufs[0].head, len: 1000 }, { id: bufs[1].head, len: 1000 }, { id: bufs[2].head, len: 12 + f.length - 2000 }]);
    const bytes = new Uint8Array(12 + f.length);
    bytes.set(written(rx, bufs[0], 1000), 0);
    bytes.set(written(rx, bufs[1], 1000), 1000);
    bytes.set(written(rx, bufs[2], used[2].len), 2000);
    expect(numBuffers(bytes)).toBe(3);
    expect(bytes.subarray(12)).toEqual(f);
    // a small frame then fits the fourth buffer alone
    const g = ethFrame(net.mac, PEER, 46);
    backend.inject(g);
    const u = rx.used();
    expect(u).toEqual([{ id: bufs[3].head, len: 12 + g.length }]);
    expect(numBuffers(written(rx, bufs[3], 12))).toBe(1);
  });

  it('with MRG_RXBUF: holds buffers until enough are posted, then delivers', () => {
    const { net, rx, backend, ctx } = setup();
    rx.add([], [500]);
    net.notify(0);
    backend.inject(ethFrame(net.mac, PEER, 1400));
    expect(rx.used()).toEqual([]);
    expect(net.rxPending).toBe(1);
    rx.add([], [8]); // shorter than a header: returned unused
    rx.add([], [500]);
    net.notify(0);
    expect(rx.used().length).toBe(1);
    rx.add([], [500]);
    net.notify(0);
    expect(rx.used().map((u) => u.len)).toEqual([500, 500, 12 + 1414 - 1000]);
    expect(net.stats.rxShortBuffers).toBe(1);
    expect(net.rxPending).toBe(0);
    expect(ctx.interrupts.filter((i) => i === 0).length).toBe(2);
  });

  it('with MRG_RXBUF: drops a frame larger than all the buffers the queue can hold', () => {
    const { net, rx, backend } = setup({ queueSize: 4 });
    for (let i = 0; i < 4; i++) rx.add([], [100]);
    net.notify(0);
    backend.inject(ethFrame(net.mac, PEER, 1000));
    expect(net.stats.rxTooBig).toBe(1);
    const f = ethFrame(net.mac, PEER, 150);
    backend.inject(f);
    expect(rx.used().map((u) => u.len)).toEqual([100, 12 + f.length - 100]);
  });

  it('queues at most rxQueueFrames / rxQueueBytes frames without buffers, then drops and counts', () => {
    const { net, rx, backend } = setup({ rxQueueFrames: 3, rxQueueBytes: 70000 });
    for (let i = 0; i < 5; i++) backend.inject(ethFrame(net.mac, PEER, 100, i));
    expect(net.rxPending).toBe(3);
    expect(net.stats.rxQueueFull).toBe(2);
    const big = setup({ rxQueueFrames: 100, rxQueueBytes: 70000 });
    big.backend.inject(ethFrame(big.net.mac, PEER, 60000));
    big.backend.inject(ethFrame(big.net.mac, PEER, 20000));
    expect(big.net.stats.rxQueueFull).toBe(1);
    const posted: Posted[] = [];
    for (let i = 0; i < 3; i++) posted.push(rx.add([], [2048]));
    net.notify(0);
    const used = rx.used();
    expect(used.length).toBe(3);
    for (let i = 0; i < 3; i++) expect(written(rx, posted[i], used[i].len).subarray(12)).toEqual(ethFrame(net.mac, PEER, 100, i));
  });

  it('drops invalid frames from the backend and frames before the driver is up', () => {
    const backend = new FakeBackend();
    const net = new VirtioNet({ backend, mac: MAC });
    backend.inject(ethFrame(net.mac, PEER, 10));
    expect(net.stats.rxNotReady).toBe(1);
    backend.inject(new Uint8Array(13));
    backend.inject(new Uint8Array(65551));
    expect(net.stats.rxInvalid).toBe(2);
    expect(() => net.receive('x' as never)).toThrow(TypeError);
  });

  it('drops waiting frames and held buffers at reset, and starts afresh', () => {
    const { net, rx, backend } = setup();
    rx.add([], [100]);
    net.notify(0);
    backend.inject(ethFrame(net.mac, PEER, 500)); // holds the 100-byte buffer, waits
    backend.inject(ethFrame(net.mac, PEER, 50));
    expect(net.rxPending).toBe(2);
    net.reset();
    expect(net.rxPending).toBe(0);
    expect(net.stats.rxReset).toBe(2);
    backend.inject(ethFrame(net.mac, PEER, 50));
    expect(net.stats.rxNotReady).toBe(1);
    const [rx2, tx2] = driversFor(net, { size: 16 });
    activate(net, [rx2, tx2]);
    const p = rx2.add([], [200]);
    net.notify(0);
    const f = ethFrame(net.mac, PEER, 60);
    backend.inject(f);
    expect(rx2.used()).toEqual([{ id: p.head, len: 12 + f.length }]);
  });

  it('defers past its turn budget and reports a broken ring once', async () => {
    const { net, rx, backend, ctx } = setup({ queueSize: 128, rxQueueFrames: 200 });
    for (let i = 0; i < 100; i++) backend.inject(ethFrame(net.mac, PEER, 20));
    for (let i = 0; i < 100; i++) rx.add([], [64]);
    net.notify(0);
    expect(rx.used().length).toBe(64);
    await new Promise((r) => setImmediate(r));
    expect(rx.used().length).toBe(36);
    rx.setAvailIdx(rx.availIdx + 300);
    backend.inject(ethFrame(net.mac, PEER, 20));
    backend.inject(ethFrame(net.mac, PEER, 20));
    expect(ctx.resets.length).toBe(1);
    expect(ctx.resets[0]).toMatch(/^avail-idx/);
  });
});

describe('SplitQueue.pushUsedBatch', () => {
  it('checks every entry before writing and publishes used.idx once', () => {
    const net = new VirtioNet({ backend: new FakeBackend(), queueSize: 8 });
    const [d] = driversFor(net);
    const q = d.enable();
    d.add([], [10]);
    d.add([], [10]);
    const a = q.pop()!;
    const b = q.pop()!;
    expect(() => q.pushUsedBatch([{ chain: a, len: 1 }, { chain: b, len: 11 }])).toThrow(/items\[1\].len/);
    expect(() => q.pushUsedBatch([{ chain: a, len: 1 }, { chain: a, len: 1 }])).toThrow(/items\[1\].chain/);
    expect(() => q.pushUsedBatch([{ chain: {} as never, len: 0 }])).toThrow(/items\[0\].chain/);
    expect(d.usedIdx()).toBe(0);
    expect(q.pushUsedBatch([{ chain: a, len: 3 }, { chain: b, len: 4 }])).toBe(true);
    expect(d.usedIdx()).toBe(2);
    expect(d.used()).toEqual([{ id: a.head, len: 3 }, { id: b.head, len: 4 }]);
    expect(q.inFlight).toBe(0);
    expect(() => q.pushUsed(a, 0)).toThrow(/already returned/);
    expect(q.pushUsedBatch([])).toBe(true);
  });
});

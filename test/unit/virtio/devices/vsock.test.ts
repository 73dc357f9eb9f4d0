/** VirtioVsock over real SplitQueues, the test driver standing in for the guest. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_DEVICE_TYPE } from '../../../../src/virtio/index.js';
import { VirtioVsock, type VirtioVsockOptions } from '../../../../src/virtio/devices/vsock.js';
import { VSOCK_HOST_CID, VSOCK_OP, VSOCK_SHUTDOWN } from '../../../../src/virtio/devices/vsock-packet.js';
import type { VsockBackend, VsockChannel, VsockHostEnd } from '../../../../src/vsock/backend.js';
import { GuestVsock, RecordingEnd, sleep, until } from './vsock-util.js';
import { text } from './harness.js';

/** A backend accepting every port with a RecordingEnd (or refusing ports in `refuse`). */
class TestBackend implements VsockBackend {
  readonly ends: RecordingEnd[] = [];
  readonly channels: VsockChannel[] = [];
  refuse = new Set<number>();
  readonly connect = (port: number, channel: VsockChannel): VsockHostEnd | undefined => {
    if (this.refuse.has(port)) return undefined;
    const e = new RecordingEnd();
    this.ends.push(e);
    this.channels.push(channel);
    return e;
  };
}

function setup(opts: Partial<VirtioVsockOptions> = {}, rxBuffers = 16) {
  const backend = new TestBackend();
  const dev = new VirtioVsock({ guestCid: 3, backend, ...opts });
  const g = new GuestVsock(dev, rxBuffers);
  return { backend, dev, g };
}

/** The guest connects from port `gp` to host port `hp`; returns the host end and channel. */
function guestConnect(s: ReturnType<typeof setup>, gp = 1000, hp = 52) {
  s.g.send({ op: VSOCK_OP.REQUEST, srcPort: gp, dstPort: hp });
  const [resp] = s.g.recv();
  expect(resp.h).toMatchObject({ op: VSOCK_OP.RESPONSE, srcCid: VSOCK_HOST_CID, dstCid: 3, srcPort: hp, dstPort: gp, bufAlloc: s.dev.bufAlloc });
  return { end: s.backend.ends.at(-1)!, ch: s.backend.channels.at(-1)! };
}

describe('VirtioVsock', () => {
  it('has three queues, no features and guest_cid in its configuration', () => {
    const dev = new VirtioVsock({ guestCid: 0x1234567, backend: new TestBackend() });
    expect(dev.deviceType).toBe(VIRTIO_DEVICE_TYPE.VSOCK);
    expect(dev.features).toBe(0n);
    expect(dev.queueSizes).toEqual([128, 128, 128]);
    expect(dev.configSize).toBe(8);
    expect(dev.readConfig(0, 4)).toBe(0x1234567);
    expect(dev.readConfig(4, 4)).toBe(0);
    dev.writeConfig(0, 4, 9);
    expect(dev.readConfig(0, 4)).toBe(0x1234567);
    expect(() => dev.readConfig(8, 1)).toThrow(RangeError);
    expect(() => new VirtioVsock({ guestCid: 2, backend: new TestBackend() })).toThrow(/options.guestCid/);
    expect(() => new VirtioVsock({ backend: new TestBackend() } as never)).toThrow(/options.guestCid/);
    expect(() => new VirtioVsock({ guestCid: 3, backend: {} as never })).toThrow(/options.backend/);
    expect(() => new VirtioVsock({ guestCid: 3, backend: new TestBackend(), bufAlloc: 10 })).toThrow(/options.bufAlloc/);
    expect(() => dev.connectToGuest(1, 2, new RecordingEnd())).toThrow(/not serving/);
    expect(() => dev.connectToGuest(-1, 2, new RecordingEnd())).toThrow(/guestPort/);
  });

  it('guest → host: REQUEST/RESPONSE, data both ways, fwd_cnt and credit updates', () => {
    const s = setup({ bufAlloc: 4096 });
    const { end, ch } = guestConnect(s);
    expect(s.dev.connections).toBe(1);
    s.g.send({ srcPort: 1000 }, text('hello'));
    expect(end.text()).toBe('hello');
    expect(ch.write(text('world'))).toBe(true);
    const [rw] = s.g.recv();
    expect(rw.h).toMatchObject({ op: VSOCK_OP.RW, len: 5, srcPort: 52, dstPort: 1000, fwdCnt: 5, bufAlloc: 4096 });
    expect(Buffer.from(rw.payload).toString()).toBe('world');
    // A quarter of the buffer delivered unannounced: CREDIT_UPDATE.
    s.g.send({ srcPort: 1000 }, new Uint8Array(1100));
    const [cu] = s.g.recv();
    expect(cu.h).toMatchObject({ op: VSOCK_OP.CREDIT_UPDATE, fwdCnt: 1105 });
    s.g.send({ op: VSOCK_OP.CREDIT_REQUEST, srcPort: 1000 });
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.CREDIT_UPDATE, fwdCnt: 1105 });
    expect(s.dev.stats).toMatchObject({ bytesToHost: 1105, bytesToGuest: 5, established: 1, rstSent: 0 });
    expect(s.g.ctx.resets).toEqual([]);
  });

  it('refuses a guest connection the backend refuses (sync, async, throwing) with RST', async () => {
    const s = setup();
    s.backend.refuse.add(99);
    s.g.send({ op: VSOCK_OP.REQUEST, srcPort: 7, dstPort: 99 });
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.RST, srcPort: 99, dstPort: 7 });
    const asyncBackend: VsockBackend = { connect: async () => undefined };
    const dev2 = new VirtioVsock({ guestCid: 3, backend: asyncBackend });
    const g2 = new GuestVsock(dev2);
    g2.send({ op: VSOCK_OP.REQUEST, srcPort: 7, dstPort: 99 });
    await until(() => g2.recv().length > 0);
    expect(g2.received[0].h.op).toBe(VSOCK_OP.RST);
    const dev3 = new VirtioVsock({ guestCid: 3, backend: { connect: () => { throw new Error('boom'); } } });
    const g3 = new GuestVsock(dev3);
    g3.send({ op: VSOCK_OP.REQUEST, srcPort: 7, dstPort: 99 });
    expect(g3.recv()[0].h.op).toBe(VSOCK_OP.RST);
    expect(dev3.stats).toMatchObject({ hostErrors: 1, refused: 1 });
    expect([s.dev.connections, dev2.connections, dev3.connections]).toEqual([0, 0, 0]);
  });

  it('host → guest: REQUEST, RESPONSE → connected(), data both ways', () => {
    const s = setup();
    const end = new RecordingEnd();
    const ch = s.dev.connectToGuest(5000, 2 ** 30, end);
    const [req] = s.g.recv();
    expect(req.h).toMatchObject({ op: VSOCK_OP.REQUEST, srcPort: 2 ** 30, dstPort: 5000, bufAlloc: s.dev.bufAlloc });
    expect(() => s.dev.connectToGuest(5000, 2 ** 30, new RecordingEnd())).toThrow(/already connected/);
    expect(s.dev.hostPortInUse(2 ** 30)).toBe(true);
    ch.write(text('early')); // held until the guest answers
    expect(s.g.recv()).toEqual([]);
    s.g.send({ op: VSOCK_OP.RESPONSE, srcPort: 5000, dstPort: 2 ** 30 });
    expect(end.connects).toBe(1);
    const [rw] = s.g.recv();
    expect(Buffer.from(rw.payload).toString()).toBe('early');
    s.g.send({ srcPort: 5000, dstPort: 2 ** 30 }, text('reply'));
    expect(end.text()).toBe('reply');
  });

  it('never sends more than the guest credit; write() backpressures and drain() follows credit', () => {
    const s = setup({ hostTxLimit: 4096 });
    s.g.bufAlloc = 100;
    const { end, ch } = guestConnect(s);
    expect(ch.write(new Uint8Array(250).fill(7))).toBe(false);
    let got = s.g.recv();
    expect(got.map((p) => p.h.len)).toEqual([100]);
    expect(s.dev.bufferedBytes).toBe(150);
    expect(end.drains).toBe(0);
    s.g.consume(1000, 100);
    s.g.send({ op: VSOCK_OP.CREDIT_UPDATE, srcPort: 1000 });
    got = s.g.recv();
    expect(got.map((p) => p.h.len)).toEqual([100]);
    expect(end.drains).toBe(0); // 50 held, credit 0: still blocked
    s.g.consume(1000, 100);
    s.g.send({ op: VSOCK_OP.CREDIT_UPDATE, srcPort: 1000 });
    expect(s.g.recv().map((p) => p.h.len)).toEqual([50]);
    expect(end.drains).toBe(1);
    expect(s.dev.stats.bytesToGuest).toBe(250);
  });

  it('a guest that ignores the credit it was given is reset, and the device holds at most bufAlloc', () => {
    const s = setup({ bufAlloc: 4096 });
    const { end } = guestConnect(s);
    end.accept = false; // the host stops taking data: nothing is acknowledged
    s.g.send({ srcPort: 1000 }, new Uint8Array(1000));
    expect(s.dev.bufferedBytes).toBe(0); // handed over, then paused
    for (let i = 0; i < 3; i++) s.g.send({ srcPort: 1000 }, new Uint8Array(1000));
    expect(s.dev.bufferedBytes).toBe(3000);
    expect(s.g.recv()).toEqual([]); // no credit update: nothing was delivered since
    s.g.send({ srcPort: 1000 }, new Uint8Array(1000)); // 5000 > 4096
    expect(s.dev.stats.creditViolations).toBe(1);
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.RST, srcPort: 52, dstPort: 1000 });
    expect(end.closed).toEqual(['guest exceeded its credit']);
    expect(s.dev.connections).toBe(0);
    expect(s.dev.bufferedBytes).toBe(0);
    for (let i = 0; i < 50; i++) s.g.send({ srcPort: 1000 }, new Uint8Array(1000)); // keeps going: RST each, no state
    expect(s.dev.bufferedBytes).toBe(0);
  });

  it('resumes delivery when the host end resumes, then credits the guest', () => {
    const s = setup({ bufAlloc: 4096 });
    const { end, ch } = guestConnect(s);
    end.accept = false;
    s.g.send({ srcPort: 1000 }, new Uint8Array(1000));
    s.g.send({ srcPort: 1000 }, new Uint8Array(2000));
    expect(end.chunks.length).toBe(1);
    end.accept = true;
    ch.resume();
    expect(end.chunks.length).toBe(2);
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.CREDIT_UPDATE, fwdCnt: 3000 });
  });

  it('resets a host REQUEST the guest never answers (connect timeout)', async () => {
    const s = setup({ connectTimeoutMs: 20 });
    const end = new RecordingEnd();
    s.dev.connectToGuest(5000, 2 ** 30, end);
    expect(s.g.recv()[0].h.op).toBe(VSOCK_OP.REQUEST);
    await sleep(40);
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.RST, srcPort: 2 ** 30, dstPort: 5000 });
    expect(end.closed).toEqual(['connect timeout']);
    expect(s.dev.stats.connectTimeouts).toBe(1);
    expect(s.dev.connections).toBe(0);
    s.g.send({ op: VSOCK_OP.RESPONSE, srcPort: 5000, dstPort: 2 ** 30 }); // too late
    expect(s.g.recv()[0].h.op).toBe(VSOCK_OP.RST);
    expect(end.connects).toBe(0);
  });

  it('drops or resets malformed packets and counts them, without throwing', () => {
    const s = setup();
    guestConnect(s);
    s.g.sendRaw([new Uint8Array(20)]);
    expect(s.dev.stats.truncatedHeader).toBe(1);
    s.g.sendRaw([new Uint8Array(0)]); // no readable bytes at all
    expect(s.dev.stats.truncatedHeader).toBe(2);
    s.g.send({ op: VSOCK_OP.REQUEST, srcPort: 1, srcCid: 4 });
    s.g.send({ op: VSOCK_OP.REQUEST, srcPort: 1, dstCid: 5 });
    expect(s.dev.stats.badCid).toBe(2);
    expect(s.g.recv()).toEqual([]); // dropped silently
    s.g.send({ op: 99, srcPort: 2 });
    s.g.send({ op: VSOCK_OP.REQUEST, type: 2, srcPort: 3 });
    s.g.send({ op: VSOCK_OP.RW, srcPort: 4, len: 65537 });
    s.g.send({ op: VSOCK_OP.RW, srcPort: 5, len: 100 }, text('short'));
    s.g.send({ op: VSOCK_OP.RW, srcPort: 6 }, text('no connection'));
    s.g.send({ op: VSOCK_OP.RST, srcPort: 7 }); // RST to nothing: ignored
    const got = s.g.recv();
    expect(got.map((p) => [p.h.op, p.h.dstPort])).toEqual([[3, 2], [3, 3], [3, 4], [3, 5], [3, 6]]);
    expect(s.dev.stats).toMatchObject({ badOp: 1, badType: 1, oversize: 1, truncatedPayload: 1, unexpected: 1, rstReceived: 1 });
    // An unknown op on a live connection resets it.
    s.g.send({ op: 0, srcPort: 1000 });
    expect(s.backend.ends[0].closed).toEqual(['protocol error']);
    expect(s.dev.connections).toBe(0);
    expect(s.g.ctx.resets).toEqual([]);
  });

  it('survives random packets (fuzz) with bounded state', () => {
    const s = setup({ maxConnections: 8, maxControlPackets: 16 }, 0);
    let seed = 1;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < 2000; i++) {
      const op = Math.floor(rnd() * 10);
      const len = rnd() < 0.1 ? Math.floor(rnd() * 70000) : Math.floor(rnd() * 64);
      s.g.send({ op, srcPort: Math.floor(rnd() * 12), dstPort: Math.floor(rnd() * 3), len, flags: Math.floor(rnd() * 4), bufAlloc: Math.floor(rnd() * 2 ** 32) }, new Uint8Array(Math.floor(rnd() * 64)));
    }
    expect(s.dev.connections).toBeLessThanOrEqual(8);
    expect(s.dev.pendingControl).toBeLessThanOrEqual(16);
    expect(s.g.ctx.resets).toEqual([]);
    s.g.postRx(32);
    expect(s.g.recv().length).toBeGreaterThan(0);
  });

  it('bounds connections and the control queue', () => {
    const s = setup({ maxConnections: 2, maxControlPackets: 16 }, 0);
    for (let p = 0; p < 40; p++) s.g.send({ op: VSOCK_OP.REQUEST, srcPort: p });
    expect(s.dev.connections).toBe(2);
    expect(s.dev.stats.tooManyConnections).toBe(38);
    expect(s.dev.pendingControl).toBe(16);
    expect(s.dev.stats.controlDropped).toBe(40 - 16);
  });

  it('shutdown: guest SEND → end(); host end() → SHUTDOWN SEND; guest SHUTDOWN both → RST', () => {
    const s = setup();
    const { end, ch } = guestConnect(s);
    s.g.send({ srcPort: 1000 }, text('last'));
    s.g.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 1000, flags: VSOCK_SHUTDOWN.SEND });
    expect(end.text()).toBe('last');
    expect(end.ended).toBe(1);
    ch.write(text('bye'));
    ch.end();
    const got = s.g.recv();
    expect(got.map((p) => p.h.op)).toEqual([VSOCK_OP.RW, VSOCK_OP.SHUTDOWN]);
    expect(got[1].h.flags).toBe(VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND); // both sides done
    s.g.send({ op: VSOCK_OP.RST, srcPort: 1000 });
    expect(end.closed).toEqual(['reset by the guest']);
    expect(s.dev.connections).toBe(0);

    const t = guestConnect(s, 1001);
    t.ch.end();
    expect(s.g.recv()[0].h).toMatchObject({ op: VSOCK_OP.SHUTDOWN, flags: VSOCK_SHUTDOWN.SEND });
    s.g.send({ srcPort: 1001 }, text('still talking'));
    expect(t.end.text()).toBe('still talking');
    s.g.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 1001, flags: VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND });
    expect(s.g.recv()[0].h.op).toBe(VSOCK_OP.RST);
    expect(t.end.closed).toEqual(['shut down']);
  });

  it('resets a host SHUTDOWN the guest never answers with RST (shutdown timeout)', async () => {
    const s = setup({ shutdownTimeoutMs: 20 });
    const { end, ch } = guestConnect(s);
    s.g.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 1000, flags: VSOCK_SHUTDOWN.SEND });
    ch.end();
    expect(s.g.recv()[0].h.flags).toBe(VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND);
    await sleep(40);
    expect(s.g.recv()[0].h.op).toBe(VSOCK_OP.RST);
    expect(end.closed).toEqual(['shutdown timeout']);
    expect(s.dev.stats.shutdownTimeouts).toBe(1);
  });

  it('reset and transportReset close every connection; the event queue gets TRANSPORT_RESET', () => {
    const s = setup();
    const a = guestConnect(s, 1000);
    const b = guestConnect(s, 1001);
    s.dev.transportReset();
    expect([a.end.closed, b.end.closed]).toEqual([['transport reset'], ['transport reset']]);
    expect(s.dev.connections).toBe(0);
    expect(s.g.recv()).toEqual([]); // no RSTs: the event says it all
    s.g.postEvent(2); // too short
    s.g.postEvent();
    expect(s.g.events()).toEqual([{ id: -1, len: 0 }, { id: 0, len: 4 }]);
    expect(s.dev.stats.events).toBe(1);
    const c = guestConnect(s, 1002);
    c.ch.write(text('x'));
    s.dev.reset();
    expect(c.end.closed).toEqual(['device reset']);
    expect(s.dev.connections).toBe(0);
    expect(c.ch.write(text('after reset'))).toBe(true); // ignored
    expect(s.dev.bufferedBytes).toBe(0);
  });

  it('a host end that throws is reset and counted; a late async accept is closed', async () => {
    const s = setup();
    const { end } = guestConnect(s);
    end.data = () => {
      throw new Error('sink failed');
    };
    s.g.send({ srcPort: 1000 }, text('x'));
    expect(s.g.recv()[0].h.op).toBe(VSOCK_OP.RST);
    expect(s.dev.stats.hostErrors).toBe(1);
    expect(s.dev.connections).toBe(0);

    let resolve!: (e: VsockHostEnd) => void;
    const dev = new VirtioVsock({ guestCid: 3, backend: { connect: () => new Promise((r) => (resolve = r)) } });
    const g = new GuestVsock(dev);
    g.send({ op: VSOCK_OP.REQUEST, srcPort: 9, dstPort: 52 });
    dev.reset();
    const late = new RecordingEnd();
    resolve(late);
    await sleep(1);
    expect(late.closed).toEqual(['connection closed before it was accepted']);
    expect(dev.connections).toBe(0);
  });

  it('a host close() is an RST to the guest; the host end is not told again', () => {
    const s = setup();
    const { end, ch } = guestConnect(s);
    ch.close();
    ch.close();
    expect(s.g.recv().map((p) => [p.h.op, p.h.dstPort])).toEqual([[VSOCK_OP.RST, 1000]]);
    expect(end.closed).toEqual([]);
    expect(s.dev.connections).toBe(0);
    expect(s.dev.hostPortInUse(52)).toBe(false);
  });
});

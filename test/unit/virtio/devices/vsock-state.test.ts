/** VirtioVsock snapshot/restore: connections dropped, TRANSPORT_RESET on the event queue, CID override. */
import { describe, expect, it } from 'vitest';
import { VIRTIO_VSOCK_CONFIG, VirtioVsock, type VirtioVsockState } from '../../../../src/virtio/devices/vsock.js';
import { VSOCK_EVENT, VSOCK_OP } from '../../../../src/virtio/devices/vsock-packet.js';
import type { VsockBackend, VsockChannel, VsockHostEnd } from '../../../../src/vsock/backend.js';
import { restoreDevice, snapshotDevice } from '../state-helpers.js';
import { GuestVsock, RecordingEnd } from './vsock-util.js';
import { text } from './harness.js';

class Backend implements VsockBackend {
  readonly ends: RecordingEnd[] = [];
  readonly channels: VsockChannel[] = [];
  readonly connect = (_port: number, channel: VsockChannel): VsockHostEnd => {
    const e = new RecordingEnd();
    this.ends.push(e);
    this.channels.push(channel);
    return e;
  };
}

/** A device with one established connection (guest port 1000 → host port 52) and an event buffer posted. */
function connected() {
  const backend = new Backend();
  const dev = new VirtioVsock({ guestCid: 3, backend });
  const g = new GuestVsock(dev);
  g.send({ op: VSOCK_OP.REQUEST, srcPort: 1000, dstPort: 52 });
  expect(g.recv().map((p) => p.h.op)).toEqual([VSOCK_OP.RESPONSE]);
  g.send({ srcPort: 1000, dstPort: 52 }, text('before'));
  g.postEvent();
  return { backend, dev, g, end: backend.ends[0], ch: backend.channels[0] };
}

describe('VirtioVsock state', () => {
  it('the device a snapshot is taken of keeps its connections and goes on after resume', async () => {
    const { dev, g, end, ch } = connected();
    const snap = await snapshotDevice(dev, [g.rx, g.tx, g.ev]);
    expect(snap.device).toEqual({ failed: false, guestCid: 3 });
    expect(ch.write(text('held'))).toBe(true); // quiesced: waits
    expect(g.recv()).toEqual([]);
    dev.resume();
    expect(ch.write(text(' and more'))).toBe(true);
    expect(g.recv().map((p) => new TextDecoder().decode(p.payload)).join('')).toBe('held and more');
    expect(end.text()).toBe('before');
    expect(g.events()).toEqual([]);
  });

  it('a restored device has no connections, posts TRANSPORT_RESET and shows the new CID', async () => {
    const { dev, g } = connected();
    const snap = await snapshotDevice(dev, [g.rx, g.tx, g.ev]);
    const backend = new Backend();
    const clone = new VirtioVsock({ guestCid: 99, backend });
    restoreDevice(clone, [g.rx, g.tx, g.ev], snap, 0n, { guestCid: 7 });
    Object.assign(g, { dev: clone });
    expect(clone.guestCid).toBe(7);
    expect(clone.readConfig(VIRTIO_VSOCK_CONFIG.GUEST_CID, 4)).toBe(7);
    expect(clone.connections).toBe(0);
    expect(g.events()).toEqual([{ id: VSOCK_EVENT.TRANSPORT_RESET, len: 4 }]);
    expect(clone.stats.events).toBe(1);
    // the guest's old socket is gone on this side: its data is answered with RST
    g.send({ srcPort: 1000, dstPort: 52 }, text('after')); // src_cid: the new CID
    expect(g.recv().map((p) => p.h.op)).toEqual([VSOCK_OP.RST]);
    expect(backend.ends).toEqual([]);
    // new connections work with the new CID
    g.send({ op: VSOCK_OP.REQUEST, srcPort: 1001, dstPort: 52 });
    expect(g.recv().map((p) => [p.h.op, p.h.dstCid])).toEqual([[VSOCK_OP.RESPONSE, 7]]);
  });

  it('the event waits for an event buffer; without DRIVER_OK there is none to send', async () => {
    const backend = new Backend();
    const dev = new VirtioVsock({ guestCid: 3, backend });
    const g = new GuestVsock(dev);
    const snap = await snapshotDevice(dev, [g.rx, g.tx, g.ev]);
    const clone = new VirtioVsock({ guestCid: 3, backend: new Backend() });
    restoreDevice(clone, [g.rx, g.tx, g.ev], snap, 0n);
    Object.assign(g, { dev: clone });
    expect(g.events()).toEqual([]);
    g.postEvent();
    expect(g.events()).toEqual([{ id: VSOCK_EVENT.TRANSPORT_RESET, len: 4 }]);
    const idle = new VirtioVsock({ guestCid: 3, backend: new Backend() });
    idle.prepareRestore(snap.device as VirtioVsockState, undefined)();
    idle.resume();
    expect(idle.stats.events).toBe(0);
  });

  it('a restore closes connections the device had (host ends told)', async () => {
    const { dev, g, end } = connected();
    const snap = await snapshotDevice(dev, [g.rx, g.tx, g.ev]);
    dev.prepareRestore(snap.device as VirtioVsockState, undefined)();
    expect(end.closed).toEqual(['transport reset']);
    expect(dev.connections).toBe(0);
  });

  it('refuses hostile states and overrides, naming the field', () => {
    const dev = new VirtioVsock({ guestCid: 5, backend: new Backend() });
    for (const [state, overrides, msg] of [
      [{ failed: false, guestCid: 2 }, undefined, /state.guestCid/],
      [{ failed: false, guestCid: 2 ** 32 - 1 }, undefined, /state.guestCid/],
      [{ failed: false, guestCid: '3' }, undefined, /state.guestCid must be an integer/],
      [{ guestCid: 3 }, undefined, /state.failed/],
      [{ failed: false, guestCid: 3 }, { guestCid: 1 }, /overrides.guestCid/],
      [{ failed: false, guestCid: 3 }, 7, /overrides must be an object/],
    ] as const) {
      expect(() => dev.prepareRestore(state as never, undefined, overrides as never), msg.source).toThrow(msg);
    }
    expect(dev.guestCid).toBe(5);
  });
});

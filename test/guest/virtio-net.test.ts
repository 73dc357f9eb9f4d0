/**
 * The C virtio-net fixture (guests/src/virtio-net.c → guests/out/virtio-net.elf, with the
 * shared driver in guests/src/include/virtio.c) on a PC whose VirtioNet sits on a
 * NetSwitch port. A second port of the same switch is played by the test: it answers the
 * guest's broadcast "vmmapi virtio-net ping" (ethertype 0x88b5) with a "pong from the host"
 * unicast from a made-up MAC, and then sees the guest's "ping 2" come back unicast to that
 * MAC. Run once per queue-notification path (KVM_IOEVENTFD, plain exits), once without
 * MRG_RXBUF on offer, once with frames that are not a pong ahead of it (ignored, their
 * buffers posted again), and once with a host that never answers (the guest's bounded wait
 * ends in FAIL, debug-exit value 1).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NetSwitch, VirtioNet, formatMac, parseMac, type NetSwitchPort, type Pc } from '../../src/index.js';
import { fixture } from '../helpers.js';
import { capturedPc } from './guests.js';

const MiB = 2 ** 20;
const GUEST_MAC = '52:54:00:12:34:56';
const HOST_MAC = '02:00:00:00:00:02';
const ETHERTYPE = 0x88b5;
const PING = 'vmmapi virtio-net ping';
const PONG = 'pong from the host';

const pcs: Pc[] = [];
const ports: NetSwitchPort[] = [];
afterEach(() => {
  for (const pc of pcs.splice(0)) pc.destroy();
  for (const p of ports.splice(0)) p.close();
});

/** Debug-exit status for a value the guest writes to port 0x501. */
const status = (value: number): number => value * 2 + 1;

interface Frame {
  dst: string;
  src: string;
  type: number;
  payload: string;
  length: number;
}

function parse(f: Uint8Array): Frame {
  return {
    dst: formatMac(f.subarray(0, 6)),
    src: formatMac(f.subarray(6, 12)),
    type: (f[12] << 8) | f[13],
    payload: new TextDecoder().decode(f.subarray(14)),
    length: f.length,
  };
}

function frame(dst: Uint8Array, src: string, type: number, payload: string): Uint8Array {
  const text = new TextEncoder().encode(payload);
  const f = new Uint8Array(14 + text.length);
  f.set(dst, 0);
  f.set(parseMac(src), 6);
  f[12] = type >> 8;
  f[13] = type & 0xff;
  f.set(text, 14);
  return f;
}

/**
 * A PC with the guest's VirtioNet on switch port "guest" and the test on port "host",
 * which records every frame and answers a ping with the frames `answer(ping)` returns.
 */
function netPc(opts: { notify: 'ioeventfd' | 'exit'; mergeRxBuffers?: boolean; answer?: (ping: Uint8Array) => Uint8Array[] }) {
  const sw = new NetSwitch();
  const guestPort = sw.port('guest');
  const host = sw.port('host');
  ports.push(guestPort, host);
  const seen: Frame[] = [];
  host.onFrame((f) => {
    const p = parse(f);
    seen.push(p);
    if (p.type === ETHERTYPE && p.payload === PING) {
      for (const reply of opts.answer?.(f) ?? []) host.send(reply);
    }
  });
  const m = capturedPc(pcs, { memory: 16 * MiB });
  const net = new VirtioNet({ backend: guestPort, mac: GUEST_MAC, mergeRxBuffers: opts.mergeRxBuffers });
  const dev = m.addVirtioDevice(net, { notify: opts.notify });
  return { m, sw, net, dev, seen };
}

/** The pong the well-behaved host sends: to the ping's source, from HOST_MAC. */
const pong = (ping: Uint8Array): Uint8Array => frame(ping.subarray(6, 12), HOST_MAC, ETHERTYPE, PONG);

describe('virtio-net fixture: ping, pong, ping 2 over a NetSwitch', () => {
  it.each([
    ['ioeventfd', true],
    ['exit', true],
    ['ioeventfd', false],
  ] as const)('notify by %s, MRG_RXBUF offered: %s', async (notify, merge) => {
    const { m, sw, net, dev, seen } = netPc({ notify, mergeRxBuffers: merge, answer: (ping) => [pong(ping)] });
    m.loadMultiboot(fixture('virtio-net.elf'), { cmdline: 'wait=20' });
    const result = await m.run({ timeoutMs: 60_000 });
    sw.flush(); // frames the guest sent just before it exited
    const text = m.out.text;
    expect(text, text).toMatch(/virtio-net: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });

    expect(text.startsWith('virtio-net: start\n')).toBe(true);
    expect(text).toMatch(/^pci 00:[01][0-9a-f]\.0 1af4:1041$/m);
    // VERSION_1 and MAC, STATUS (bits 5, 16) and MRG_RXBUF (bit 15) when offered
    const driverFeatures = merge ? '0x0000000100018020' : '0x0000000100010020';
    expect(text).toMatch(new RegExp(`^virtio-net: driver features ${driverFeatures}, queue 0 size 8 \\(max 256\\), queue 1 size 8 \\(max 256\\), status 0x0f$`, 'm'));
    expect(text).toContain(`virtio-net: mac ${GUEST_MAC}, link up (status 0x0001), ${merge ? 'MRG_RXBUF' : 'no MRG_RXBUF'}\n`);
    expect(text).toContain('virtio-net: 4 receive buffers of 1526 bytes posted on queue 0\n');
    expect(text).toContain('virtio-net: sent ping to ff:ff:ff:ff:ff:ff (36 bytes)\n');
    expect(text).toMatch(
      new RegExp(`^virtio-net: pong from ${HOST_MAC} to ${GUEST_MAC} \\(32 bytes, buffer [0-3], num_buffers 1\\): "${PONG}"$`, 'm'),
    );
    expect(text).toContain(`virtio-net: sent ping 2 to ${HOST_MAC} (20 bytes)\nvirtio-net: PASS\n`);
    expect(text).not.toMatch(/error|ignoring/);

    // what the host's port saw: the broadcast ping, then "ping 2" unicast to the pong's source
    expect(seen).toEqual([
      { dst: 'ff:ff:ff:ff:ff:ff', src: GUEST_MAC, type: ETHERTYPE, payload: PING, length: 36 },
      { dst: HOST_MAC, src: GUEST_MAC, type: ETHERTYPE, payload: 'ping 2', length: 20 },
    ]);
    // ping flooded; pong (to the learned guest MAC) and ping 2 (to the learned host MAC) unicast
    expect(sw.stats).toMatchObject({ frames: 3, flooded: 1, unicast: 2, hairpin: 0, queueFull: 0, noReceiver: 0 });
    expect(sw.lookup(parseMac(GUEST_MAC))).toBe('guest');
    expect(sw.lookup(parseMac(HOST_MAC))).toBe('host');
    expect(net.stats).toMatchObject({ txChains: 2, txFrames: 2, txBytes: 36 + 20, rxFrames: 1, rxBytes: 32, rxNotReady: 0, rxTooBig: 0, rxShortBuffers: 0 });
    expect(dev.errors).toEqual([]);
  });

  it('frames that are not a pong are ignored and their buffers posted again', async () => {
    // five of them before the pong: more than the four receive buffers, so reposting is needed
    const junk = (ping: Uint8Array) => [
      frame(ping.subarray(6, 12), HOST_MAC, 0x0800, 'pong, but IPv4'),
      ...[1, 2, 3, 4].map((i) => frame(ping.subarray(6, 12), HOST_MAC, ETHERTYPE, `nope ${i}`)),
      pong(ping),
    ];
    const { m, sw, net, dev, seen } = netPc({ notify: 'ioeventfd', answer: junk });
    m.loadMultiboot(fixture('virtio-net.elf'), { cmdline: 'wait=20 bogus' });
    const result = await m.run({ timeoutMs: 60_000 });
    sw.flush();
    const text = m.out.text;
    expect(text, text).toMatch(/virtio-net: PASS\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(0) });
    expect(text).toContain("virtio-net: ignoring command-line word 'bogus'\n");
    expect(text).toContain(`virtio-net: ignoring a frame from ${HOST_MAC} (28 bytes, ethertype 0x0800)\n`);
    expect(text.match(new RegExp(`^virtio-net: ignoring a frame from ${HOST_MAC} \\(20 bytes, ethertype 0x88b5\\)$`, 'gm'))).toHaveLength(4);
    expect(text).toMatch(new RegExp(`^virtio-net: pong from ${HOST_MAC} to ${GUEST_MAC} \\(32 bytes, buffer [0-3], num_buffers 1\\): "${PONG}"$`, 'm'));
    expect(seen.map((f) => f.payload)).toEqual([PING, 'ping 2']);
    expect(net.stats).toMatchObject({ txFrames: 2, rxFrames: 6, rxQueueFull: 0, rxTooBig: 0 });
    expect(dev.errors).toEqual([]);
  });

  it('nobody answers: the bounded wait ends in FAIL no pong', async () => {
    const { m, sw, net, dev, seen } = netPc({ notify: 'ioeventfd' });
    m.loadMultiboot(fixture('virtio-net.elf'), { cmdline: 'wait=1' });
    const result = await m.run({ timeoutMs: 60_000 });
    sw.flush();
    const text = m.out.text;
    expect(text, text).toMatch(/virtio-net: waiting up to 1 s for a pong\nvirtio-net: no pong within 1 s\nvirtio-net: FAIL no pong\n$/);
    expect(result).toEqual({ reason: 'debug-exit', status: status(1) });
    expect(seen.map((f) => f.payload)).toEqual([PING]);
    expect(net.stats).toMatchObject({ txFrames: 1, rxFrames: 0 });
    expect(dev.errors).toEqual([]);
  });

  it('a PC without a virtio-net device: FAIL naming it', async () => {
    const m = capturedPc(pcs, { memory: 16 * MiB });
    m.loadMultiboot(fixture('virtio-net.elf'));
    const result = await m.run({ timeoutMs: 30_000 });
    expect(result).toEqual({ reason: 'debug-exit', status: status(1) });
    expect(m.out.text).toMatch(/virtio-net: FAIL no virtio-net device\n$/);
  });
});

/** UnixMuxer end to end: real Unix sockets in a temp dir, the test driver as the guest. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnixMuxer, MUXER_FIRST_LOCAL_PORT } from '../../../src/vsock/unix-muxer.js';
import { VSOCK_OP, VSOCK_SHUTDOWN } from '../../../src/virtio/devices/vsock-packet.js';
import { GuestVsock, sleep, until } from '../virtio/devices/vsock-util.js';
import { text } from '../virtio/devices/harness.js';

let dir: string;
let muxer: UnixMuxer;
const servers: Server[] = [];
const clients: Socket[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vmmapi-vsock-'));
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await muxer?.close();
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
  rmSync(dir, { recursive: true, force: true });
});

/** A host program listening on `path`, collecting its connections and their data. */
async function hostListener(path: string) {
  const conns: { sock: Socket; data: string; ended: boolean }[] = [];
  const server = createServer((sock) => {
    const c = { sock, data: '', ended: false };
    conns.push(c);
    sock.on('data', (d) => (c.data += d.toString()));
    sock.on('end', () => (c.ended = true));
    sock.on('error', () => {});
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(path, r));
  return conns;
}

/** A host client on the muxer socket, collecting what it reads. */
function hostClient(path: string) {
  const sock = connect(path);
  clients.push(sock);
  const c = { sock, data: '', closed: false };
  sock.on('data', (d) => (c.data += d.toString()));
  sock.on('error', () => {});
  sock.on('close', () => (c.closed = true));
  return c;
}

const payload = (g: GuestVsock) => g.received.filter((p) => p.h.op === VSOCK_OP.RW).map((p) => Buffer.from(p.payload).toString()).join('');

describe('UnixMuxer', () => {
  it('checks its options and owns a device with the cid', async () => {
    expect(() => new UnixMuxer({ cid: 3 } as never)).toThrow(/options.socket/);
    expect(() => new UnixMuxer({ socket: 'x', cid: 1 })).toThrow(/options.guestCid/);
    expect(() => new UnixMuxer({ socket: 'x', cid: 3, firstLineTimeoutMs: 0 })).toThrow(/options.firstLineTimeoutMs/);
    muxer = new UnixMuxer({ socket: join(dir, 'missing', 'v.sock'), cid: 7 });
    expect(muxer.device.guestCid).toBe(7);
    await expect(muxer.listen()).rejects.toThrow(/cannot listen on vsock socket/);
  });

  it('guest → host port P goes to <socket>_P, both ways, with EOF as SHUTDOWN', async () => {
    const sock = join(dir, 'v.sock');
    const conns = await hostListener(`${sock}_52`);
    muxer = new UnixMuxer({ socket: sock, cid: 3 });
    const g = new GuestVsock(muxer.device);
    g.send({ op: VSOCK_OP.REQUEST, srcPort: 1000, dstPort: 52 });
    await until(() => g.recv().length > 0 || g.received.length > 0);
    expect(g.received[0].h).toMatchObject({ op: VSOCK_OP.RESPONSE, srcPort: 52, dstPort: 1000 });
    await until(() => conns.length === 1);
    g.send({ srcPort: 1000 }, text('ping'));
    await until(() => conns[0].data === 'ping');
    conns[0].sock.write('pong');
    await until(() => (g.recv(), payload(g) === 'pong'));
    conns[0].sock.end();
    await until(() => (g.recv(), g.received.some((p) => p.h.op === VSOCK_OP.SHUTDOWN)));
    expect(g.received.at(-1)!.h.flags).toBe(VSOCK_SHUTDOWN.SEND);
    g.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 1000, flags: VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND });
    await until(() => conns[0].ended);
    expect(muxer.device.connections).toBe(0);
    expect(muxer.stats.guestConnections).toBe(1);
  });

  it('refuses a guest connection to a port nobody listens on with RST', async () => {
    muxer = new UnixMuxer({ socket: join(dir, 'v.sock'), cid: 3 });
    const g = new GuestVsock(muxer.device);
    g.send({ op: VSOCK_OP.REQUEST, srcPort: 1000, dstPort: 53 });
    await until(() => g.recv().length > 0);
    expect(g.received[0].h).toMatchObject({ op: VSOCK_OP.RST, srcPort: 53, dstPort: 1000 });
    expect(muxer.stats.guestRefused).toBe(1);
  });

  it('host client: CONNECT <port> → REQUEST; RESPONSE → OK <local port>; relays both ways', async () => {
    const sock = join(dir, 'v.sock');
    muxer = new UnixMuxer({ socket: sock, cid: 3 });
    const g = new GuestVsock(muxer.device);
    await muxer.listen();
    const c = hostClient(sock);
    c.sock.write('CONNECT 7000\nfirst');
    await until(() => g.recv().length > 0);
    const req = g.received[0].h;
    expect(req).toMatchObject({ op: VSOCK_OP.REQUEST, dstPort: 7000, srcPort: MUXER_FIRST_LOCAL_PORT });
    expect(c.data).toBe('');
    g.send({ op: VSOCK_OP.RESPONSE, srcPort: 7000, dstPort: req.srcPort });
    await until(() => c.data === `OK ${req.srcPort}\n`);
    await until(() => (g.recv(), payload(g) === 'first'));
    g.send({ srcPort: 7000, dstPort: req.srcPort }, text('hi host'));
    await until(() => c.data.endsWith('hi host'));
    // A second client gets the next local port; its EOF is a SHUTDOWN SEND to the guest.
    const c2 = hostClient(sock);
    c2.sock.write('CONNECT 7000\n');
    await until(() => (g.recv(), g.received.some((p) => p.h.op === VSOCK_OP.REQUEST && p.h.srcPort === req.srcPort + 1)));
    g.send({ op: VSOCK_OP.RESPONSE, srcPort: 7000, dstPort: req.srcPort + 1 });
    await until(() => c2.data === `OK ${req.srcPort + 1}\n`);
    c2.sock.destroy();
    await until(() => (g.recv(), g.received.some((p) => p.h.op === VSOCK_OP.SHUTDOWN && p.h.srcPort === req.srcPort + 1)));
    expect(g.received.at(-1)!.h.flags).toBe(VSOCK_SHUTDOWN.SEND);
    g.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 7000, dstPort: req.srcPort + 1, flags: VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND });
    await until(() => (g.recv(), g.received.at(-1)!.h.op === VSOCK_OP.RST));
    expect(muxer.device.connections).toBe(1);
    // A guest RST closes the client.
    g.send({ op: VSOCK_OP.RST, srcPort: 7000, dstPort: req.srcPort });
    await until(() => c.closed);
    expect(muxer.stats).toMatchObject({ hostClients: 2, hostConnected: 2 });
  });

  it('closes a client with a malformed or overlong first line, or one the guest refuses', async () => {
    const sock = join(dir, 'v.sock');
    muxer = new UnixMuxer({ socket: sock, cid: 3, device: { connectTimeoutMs: 30 } });
    const g = new GuestVsock(muxer.device);
    await muxer.listen();
    const bad = hostClient(sock);
    bad.sock.write('HELLO 7000\n');
    const long = hostClient(sock);
    long.sock.write('CONNECT 7'.padEnd(100, '0'));
    const big = hostClient(sock);
    big.sock.write('CONNECT 99999999999\n');
    await until(() => bad.closed && long.closed && big.closed);
    expect(muxer.stats.badRequests).toBe(3);
    const refused = hostClient(sock);
    refused.sock.write('CONNECT 8000\n');
    await until(() => g.recv().length > 0);
    const req = g.received[0].h;
    g.send({ op: VSOCK_OP.RST, srcPort: 8000, dstPort: req.srcPort });
    await until(() => refused.closed);
    expect(refused.data).toBe('');
    const ignored = hostClient(sock); // the guest never answers: connect timeout
    ignored.sock.write('CONNECT 8001\n');
    await until(() => ignored.closed);
    expect(muxer.stats.hostConnectFailed).toBe(2);
    expect(muxer.device.stats.connectTimeouts).toBe(1);
  });

  it('backpressure: a client streaming into a guest without credit is paused, not buffered', async () => {
    const sock = join(dir, 'v.sock');
    muxer = new UnixMuxer({ socket: sock, cid: 3, device: { hostTxLimit: 16384 } });
    const g = new GuestVsock(muxer.device);
    g.bufAlloc = 8192;
    await muxer.listen();
    const c = hostClient(sock);
    c.sock.write('CONNECT 7000\n');
    await until(() => g.recv().length > 0);
    const req = g.received[0].h;
    g.send({ op: VSOCK_OP.RESPONSE, srcPort: 7000, dstPort: req.srcPort });
    await until(() => c.data.startsWith('OK'));
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    let written = 0;
    const pump = () => {
      while (written < 4 * 1024 * 1024 && c.sock.write(chunk)) written += chunk.length;
    };
    c.sock.on('drain', () => {
      written += chunk.length;
      pump();
    });
    pump();
    await sleep(200);
    g.recv();
    const got = () => g.received.filter((p) => p.h.op === VSOCK_OP.RW).reduce((n, p) => n + p.h.len, 0);
    expect(got()).toBe(8192); // exactly the credit
    expect(muxer.device.bufferedBytes).toBeLessThanOrEqual(8192 + 64 * 1024); // the credit window plus one socket read
    // The guest consumes and credits: more flows, never past the credit.
    for (let round = 0; round < 5; round++) {
      g.consume(7000, 8192);
      g.send({ op: VSOCK_OP.CREDIT_UPDATE, srcPort: 7000, dstPort: req.srcPort });
      await until(() => (g.recv(), got() === 8192 * (round + 2)));
      expect(muxer.device.bufferedBytes).toBeLessThanOrEqual(8192 + 64 * 1024);
    }
    await sleep(50);
    g.recv();
    expect(got()).toBe(8192 * 6);
    expect(written).toBeLessThan(4 * 1024 * 1024); // the client was stopped by backpressure
  });

  it('backpressure: a host program that stops reading stalls the guest through credit, within bufAlloc', async () => {
    const sock = join(dir, 'v.sock');
    const conns = await hostListener(`${sock}_52`);
    muxer = new UnixMuxer({ socket: sock, cid: 3, device: { bufAlloc: 16384 } });
    const g = new GuestVsock(muxer.device);
    g.send({ op: VSOCK_OP.REQUEST, srcPort: 1000, dstPort: 52 });
    await until(() => (g.recv(), conns.length === 1 && g.received.length > 0));
    let total = 0;
    conns[0].sock.removeAllListeners('data');
    conns[0].sock.on('data', (d) => (total += d.length));
    conns[0].sock.pause();
    // A well-behaved guest: sends only within the device's advertised credit.
    let sent = 0;
    const credit = () => {
      const last = g.received.filter((p) => p.h.op !== VSOCK_OP.RST).at(-1)!.h;
      return last.bufAlloc - (sent - last.fwdCnt);
    };
    const t0 = Date.now();
    while (Date.now() - t0 < 300) {
      g.recv();
      const n = Math.min(4096, credit());
      if (n > 0) {
        g.send({ srcPort: 1000 }, new Uint8Array(n).fill(0x62));
        sent += n;
      } else await sleep(5);
      expect(muxer.device.bufferedBytes).toBeLessThanOrEqual(16384);
    }
    expect(muxer.device.stats.creditViolations).toBe(0);
    expect(sent).toBeLessThan(4 * 1024 * 1024); // stalled: the kernel and socket buffers plus 16 KiB (about 200 KiB here)
    expect(credit()).toBe(0);
    conns[0].sock.resume();
    await until(() => total === sent);
    await until(() => (g.recv(), credit() > 0)); // the device credits the guest again
  });
});

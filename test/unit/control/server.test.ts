/**
 * The control socket's server and client (src/control/server.ts, client.ts) over real Unix
 * sockets, with a stand-in handler: replies in order, errors that keep the connection,
 * hostile input (overlong lines, floods, many clients, clients that vanish mid-request), the
 * socket path's life (stale removed, live and non-sockets refused, removed on close, mode
 * 0600), and the client's failures (missing socket, nobody listening, no reply, bad reply).
 */
import { spawnSync } from 'node:child_process';
import { createServer, connect, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ControlServer, type ControlHandler } from '../../../src/control/server.js';
import { ControlClientError, sendControlRequest } from '../../../src/control/client.js';
import { SocketPathError } from '../../../src/control/socket-path.js';
import type { ControlRequest } from '../../../src/control/protocol.js';

const tmp = mkdtempSync(join(tmpdir(), 'vmmapi-ctl-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let n = 0;
const sockPath = (): string => join(tmp, `s${n++}.sock`);
const servers: ControlServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

async function listen(handler: ControlHandler, opts = {}): Promise<ControlServer> {
  const s = await ControlServer.listen(sockPath(), handler, opts);
  servers.push(s);
  return s;
}

/** A handler that answers with the command and counts what it did. */
function echo(delayMs = 0): ControlHandler & { seen: ControlRequest[] } {
  const seen: ControlRequest[] = [];
  const h = async (req: ControlRequest) => {
    seen.push(req);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
    return { reply: { ok: true as const, cmd: req.cmd } };
  };
  return Object.assign(h, { seen });
}

/** Connect, send `text` raw, collect reply lines until the server closes or `count` lines came. */
function raw(path: string, text: string | Uint8Array, count = Infinity): Promise<{ lines: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    const lines: string[] = [];
    const done = (closed: boolean): void => {
      s.destroy();
      resolve({ lines, closed });
    };
    s.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? done(true) : reject(e)));
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      if (lines.length >= count) done(false);
    });
    s.on('close', () => done(true));
    s.write(text);
  });
}

describe('ControlServer', () => {
  it('one reply per request, in order, on one connection; blank lines are ignored', async () => {
    const h = echo();
    const s = await listen(h);
    const r = await raw(s.path, '{"cmd":"info"}\n\n{"cmd":"pause"}\r\n{"cmd":"resume"}\n', 3);
    expect(r.lines.map((l) => JSON.parse(l))).toEqual([
      { ok: true, cmd: 'info' },
      { ok: true, cmd: 'pause' },
      { ok: true, cmd: 'resume' },
    ]);
    expect(h.seen.map((q) => q.cmd)).toEqual(['info', 'pause', 'resume']);
  });

  it('bad JSON and unknown commands get ok:false and the connection stays usable; a throwing handler too', async () => {
    const s = await listen(async (req) => {
      if (req.cmd === 'stop') throw new Error('cannot stop now');
      return { reply: { ok: true, cmd: req.cmd } };
    });
    const r = await raw(s.path, 'not json\n{"cmd":"fly"}\n{"cmd":"stop"}\n{"cmd":"info"}\n', 4);
    const replies = r.lines.map((l) => JSON.parse(l) as { ok: boolean; error?: string });
    expect(replies[0]).toMatchObject({ ok: false, error: expect.stringMatching(/^bad request: not JSON/) });
    expect(replies[1]).toEqual({ ok: false, error: 'unknown command "fly" (commands: pause, resume, snapshot, stop, info)' });
    expect(replies[2]).toEqual({ ok: false, error: 'stop: cannot stop now' });
    expect(replies[3]).toEqual({ ok: true, cmd: 'info' });
  });

  it('a line longer than 64 KiB: one error reply, then the connection is closed; the requests before it are answered', async () => {
    const h = echo();
    const s = await listen(h);
    const r = await raw(s.path, `{"cmd":"info"}\n${'x'.repeat(70_000)}\n{"cmd":"pause"}\n`);
    expect(r.closed).toBe(true);
    expect(r.lines.map((l) => JSON.parse(l))).toEqual([{ ok: true, cmd: 'info' }, { ok: false, error: 'request line longer than 65536 bytes; closing the connection' }]);
    expect(h.seen.map((q) => q.cmd)).toEqual(['info']);
  });

  it('a flood of 16 MiB without a newline is cut off at the bound (the server does not buffer it)', async () => {
    const s = await listen(echo());
    const before = process.memoryUsage().rss;
    const r = await raw(s.path, new Uint8Array(16 * 2 ** 20).fill(0x61));
    expect(r.lines).toEqual(['{"ok":false,"error":"request line longer than 65536 bytes; closing the connection"}']);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 2 ** 20); // the client's own 16 MiB buffer, not more
    for (let i = 0; i < 100 && s.clients > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.clients).toBe(0);
    // still serving
    expect(await sendControlRequest(s.path, { cmd: 'info' })).toEqual({ ok: true, cmd: 'info' });
  });

  it('many clients at once are all answered; past maxClients one gets an error reply', async () => {
    const h = echo(20);
    const s = await listen(h);
    const replies = await Promise.all(Array.from({ length: 30 }, () => sendControlRequest(s.path, { cmd: 'info' })));
    expect(replies.every((r) => r.ok)).toBe(true);
    expect(h.seen).toHaveLength(30);

    const few = await listen(echo(200), { maxClients: 2 });
    const all = await Promise.all(Array.from({ length: 4 }, () => sendControlRequest(few.path, { cmd: 'info' })));
    expect(all.filter((r) => r.ok)).toHaveLength(2);
    expect(all.filter((r) => !r.ok)).toEqual([
      { ok: false, error: 'too many control clients (at most 2 at once); try again' },
      { ok: false, error: 'too many control clients (at most 2 at once); try again' },
    ]);
    expect(few.rejected).toBe(2);
  });

  it('a client that disconnects mid-request: the request completes, its follow-up runs, the server keeps serving', async () => {
    let after = 0;
    let finished = 0;
    const s = await listen(async (req) => {
      await new Promise((r) => setTimeout(r, 100));
      finished++;
      return { reply: { ok: true, cmd: req.cmd }, after: () => after++ };
    });
    const c = connect(s.path);
    await new Promise((r) => c.once('connect', r));
    c.write('{"cmd":"stop"}\n{"cmd":"info"}\n');
    await new Promise((r) => setTimeout(r, 20));
    c.destroy();
    await new Promise((r) => setTimeout(r, 200));
    expect(finished).toBe(1); // the second request was never read
    expect(after).toBe(1);
    for (let i = 0; i < 100 && s.clients > 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(s.clients).toBe(0);
    expect(await sendControlRequest(s.path, { cmd: 'info' })).toEqual({ ok: true, cmd: 'info' });
  });

  it('a connection is not read while its request is handled (a client that never reads replies is held back by its socket)', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const s = await listen(async (req) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      return { reply: { ok: true, cmd: req.cmd, pad: 'p'.repeat(1000) } };
    });
    const c: Socket = connect(s.path);
    await new Promise((r) => c.once('connect', r));
    c.write('{"cmd":"info"}\n'.repeat(5000)); // replies never read: ~5 MB of them
    await new Promise((r) => setTimeout(r, 500));
    expect(maxInFlight).toBe(1);
    c.destroy();
  });

  it('an idle connection is closed after idleMs', async () => {
    const s = await listen(echo(), { idleMs: 100 });
    const r = await raw(s.path, '');
    expect(r).toEqual({ lines: [], closed: true });
  });

  it('the socket path: mode 0600, removed on close; a stale socket is replaced; a live one and a non-socket are refused', async () => {
    const s = await listen(echo());
    expect(statSync(s.path).mode & 0o777).toBe(0o600);
    await expect(ControlServer.listen(s.path, echo())).rejects.toThrow(new SocketPathError(`control socket '${s.path}' is in use: another process is listening on it`));
    await s.close();
    expect(existsSync(s.path)).toBe(false);

    // a stale socket: what a killed process leaves (the file, nobody listening)
    const stale = sockPath();
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(stale).isSocket()).toBe(true);
    await expect(sendControlRequest(stale, { cmd: 'info' })).rejects.toThrow(/nobody is listening on it/);
    const revived = await ControlServer.listen(stale, echo(), { what: '--api-socket' });
    servers.push(revived);
    expect(await sendControlRequest(stale, { cmd: 'info' })).toEqual({ ok: true, cmd: 'info' });

    const file = join(tmp, 'plain-file');
    writeFileSync(file, 'data');
    await expect(ControlServer.listen(file, echo(), { what: '--api-socket' })).rejects.toThrow(`--api-socket '${file}' exists and is not a socket (not removed)`);
    expect(existsSync(file)).toBe(true);
    await expect(ControlServer.listen(join(tmp, 'x'.repeat(120)), echo())).rejects.toThrow(/too long for a Unix socket/);
  });
});

describe('sendControlRequest', () => {
  it('a missing socket, a stale one: ControlClientError naming the path', async () => {
    const missing = join(tmp, 'missing.sock');
    await expect(sendControlRequest(missing, { cmd: 'info' })).rejects.toThrow(new ControlClientError(`cannot connect to '${missing}': no such socket`));
    const file = join(tmp, 'not-a-socket');
    writeFileSync(file, '');
    await expect(sendControlRequest(file, { cmd: 'info' })).rejects.toThrow(/^cannot connect to '.*not-a-socket': /);
  });

  it('no reply within the timeout; a server that closes without replying; a reply that is not JSON', async () => {
    const quiet = sockPath();
    const conns: Socket[] = [];
    const srv = createServer((c) => conns.push(c));
    await new Promise<void>((r) => srv.listen(quiet, () => r()));
    await expect(sendControlRequest(quiet, { cmd: 'info' }, { timeoutMs: 150 })).rejects.toThrow(`no reply from '${quiet}' within 0.15 s`);
    for (const c of conns) c.destroy();
    await new Promise<void>((r) => srv.close(() => r()));

    const closing = sockPath();
    const srv2 = createServer((c) => c.destroy());
    await new Promise<void>((r) => srv2.listen(closing, () => r()));
    await expect(sendControlRequest(closing, { cmd: 'info' })).rejects.toThrow(`'${closing}' closed the connection without a reply`);
    await new Promise<void>((r) => srv2.close(() => r()));

    const garbage = sockPath();
    const srv3 = createServer((c) => c.resume().end('hello\n'));
    await new Promise<void>((r) => srv3.listen(garbage, () => r()));
    await expect(sendControlRequest(garbage, { cmd: 'info' })).rejects.toThrow(`'${garbage}' sent a reply that is not JSON`);
    await new Promise<void>((r) => srv3.close(() => r()));
  });
});

/**
 * A {@link VsockBackend} in Firecracker's convention (its docs/vsock.md): the guest's vsock
 * is a family of Unix sockets on the host.
 *
 * - Guest → host: a guest connection to host port P is a connection to the Unix socket
 *   `<socket>_P`, which some host program listens on; nobody listening (or any connect
 *   error) refuses the guest with RST.
 * - Host → guest: the muxer listens on `<socket>`. A client writes `CONNECT <port>\n`; the
 *   muxer opens a connection from a fresh local port (from 2^30 up, skipping ports in use)
 *   to that guest port and, once the guest answers RESPONSE, writes `OK <local port>\n` and
 *   relays bytes both ways. A malformed first line (or none within firstLineTimeoutMs, or
 *   more than {@link MUXER_MAX_LINE} bytes without a newline) closes the client, and so does
 *   a guest RST or connect timeout.
 *
 * Relaying is backpressured, never buffered without bound: when the guest's credit is used
 * up (VsockChannel.write answers false) the muxer pauses reading the Unix socket until the
 * device drains; when the Unix socket's write buffer is full the device stops delivering
 * (the guest's credit then runs out). A Unix socket's EOF is a vsock SHUTDOWN (send), and a
 * guest SHUTDOWN (send) ends the Unix socket's writable side (sockets are half-open).
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { rmSync } from 'node:fs';
import { VirtioVsock, type VirtioVsockOptions } from '../virtio/devices/vsock.js';
import type { VsockBackend, VsockChannel, VsockGuestConnector, VsockHostEnd } from './backend.js';

/** The longest first line (`CONNECT <port>\n`) a host client may send, in bytes. */
export const MUXER_MAX_LINE = 32;

/** The first local port the muxer hands out to host-initiated connections. */
export const MUXER_FIRST_LOCAL_PORT = 2 ** 30;

/** Options of {@link UnixMuxer}. */
export interface UnixMuxerOptions {
  /** The Unix socket path host clients connect to; guest connections to port P go to `<socket>_P`. */
  readonly socket: string;
  /** The guest's CID (given to the device). */
  readonly cid: number;
  /** Further device options (limits, timeouts). */
  readonly device?: Omit<VirtioVsockOptions, 'guestCid' | 'backend'>;
  /** How long a host client has to send its CONNECT line, ms in [1, 600000] (default 5000). */
  readonly firstLineTimeoutMs?: number;
}

/** Counters of a {@link UnixMuxer}. */
export interface MuxerStats {
  /** Guest connections relayed to `<socket>_P`. */
  guestConnections: number;
  /** Guest connections refused (no listener at `<socket>_P`). */
  guestRefused: number;
  /** Host clients accepted on `<socket>`. */
  hostClients: number;
  /** Host clients closed for a bad, missing or overlong CONNECT line. */
  badRequests: number;
  /** Host clients whose guest connection failed (RST, timeout, device not ready). */
  hostConnectFailed: number;
  /** Host clients answered OK. */
  hostConnected: number;
}

const CONNECT_LINE = /^CONNECT ([0-9]{1,10})$/;

/** The Firecracker-convention Unix socket backend (see the module documentation). */
export class UnixMuxer implements VsockBackend {
  /** The device this muxer serves (created by the constructor, with the muxer as its backend). */
  readonly device: VirtioVsock;
  /** The host clients' socket path. */
  readonly socket: string;
  /** The CONNECT line timeout, ms. */
  readonly firstLineTimeoutMs: number;
  /** Counters. */
  readonly stats: MuxerStats = { guestConnections: 0, guestRefused: 0, hostClients: 0, badRequests: 0, hostConnectFailed: 0, hostConnected: 0 };
  readonly #sockets = new Set<Socket>();
  #connector: VsockGuestConnector | undefined;
  #server: Server | undefined;
  #nextPort = MUXER_FIRST_LOCAL_PORT;

  /** A muxer for `options.socket` and a device for guest `options.cid`; TypeError / RangeError naming a bad option. */
  constructor(options: UnixMuxerOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    if (typeof options.socket !== 'string' || options.socket.length === 0) throw new TypeError('options.socket must be a non-empty path string');
    this.socket = options.socket;
    const t = options.firstLineTimeoutMs ?? 5000;
    if (typeof t !== 'number' || !Number.isInteger(t) || t < 1 || t > 600_000) {
      throw new RangeError(`options.firstLineTimeoutMs must be an integer in [1, 600000], got ${String(t)}`);
    }
    this.firstLineTimeoutMs = t;
    if (options.device !== undefined && (typeof options.device !== 'object' || options.device === null)) {
      throw new TypeError('options.device must be an object');
    }
    this.device = new VirtioVsock({ ...options.device, guestCid: options.cid, backend: this });
  }

  /** Called by the device: how the muxer opens connections to the guest. */
  attach(device: VsockGuestConnector): void {
    this.#connector = device;
  }

  /** Guest connects to host port `port`: connect to `<socket>_<port>`, or refuse. */
  readonly connect = (port: number, channel: VsockChannel): Promise<VsockHostEnd | undefined> =>
    new Promise((resolve) => {
      const sock = netConnect({ path: `${this.socket}_${port}`, allowHalfOpen: true });
      this.#track(sock);
      let settled = false;
      sock.once('connect', () => {
        settled = true;
        this.stats.guestConnections++;
        resolve(this.#relay(sock, channel));
      });
      sock.once('error', () => {
        if (!settled) {
          settled = true;
          this.stats.guestRefused++;
          resolve(undefined);
        }
        sock.destroy();
      });
    });

  /**
   * Listen on `<socket>` for host clients (an old socket file there is removed first). Error
   * naming the path if it cannot listen, or if already listening.
   */
  async listen(): Promise<void> {
    if (this.#server) throw new Error('the muxer is already listening');
    try {
      rmSync(this.socket, { force: true });
    } catch {
      /* listen reports it */
    }
    const server = createServer({ allowHalfOpen: true }, (sock) => this.#hostClient(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new Error(`cannot listen on vsock socket '${this.socket}': ${e.message}`, { cause: e })));
      server.listen(this.socket, () => {
        server.removeAllListeners('error');
        resolve();
      });
    });
    server.on('error', () => {});
    this.#server = server;
  }

  /** Stop listening and drop every relayed socket (the device resets their connections). */
  async close(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of [...this.#sockets]) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      rmSync(this.socket, { force: true });
    } catch {
      /* best effort */
    }
  }

  #track(sock: Socket): void {
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
  }

  /** Relay between `sock` and `channel`; returns the host end for the device. */
  #relay(sock: Socket, channel: VsockChannel): VsockHostEnd {
    let gone = false;
    const end: VsockHostEnd = {
      data: (bytes) => sock.write(bytes),
      end: () => sock.end(),
      close: () => {
        gone = true;
        // Let what was already written reach the peer, then go.
        sock.end(() => sock.destroy());
        setTimeout(() => sock.destroy(), 5000).unref();
      },
      drain: () => sock.resume(),
    };
    sock.on('data', (d: Buffer) => {
      if (!channel.write(d)) sock.pause();
    });
    sock.on('drain', () => channel.resume());
    sock.on('end', () => channel.end());
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      if (gone) return;
      gone = true;
      channel.close();
    });
    return end;
  }

  /** A host client on `<socket>`: read `CONNECT <port>\n`, connect to the guest, answer OK. */
  #hostClient(sock: Socket): void {
    this.#track(sock);
    this.stats.hostClients++;
    let line = Buffer.alloc(0);
    const bad = (): void => {
      this.stats.badRequests++;
      sock.destroy();
    };
    const timer = setTimeout(bad, this.firstLineTimeoutMs);
    timer.unref();
    sock.on('error', () => sock.destroy());
    sock.on('close', () => clearTimeout(timer));
    const onData = (d: Buffer): void => {
      line = Buffer.concat([line, d]);
      const nl = line.indexOf(0x0a);
      if (nl < 0) {
        if (line.length > MUXER_MAX_LINE) {
          clearTimeout(timer);
          bad();
        }
        return;
      }
      clearTimeout(timer);
      sock.off('data', onData);
      sock.pause();
      const m = nl <= MUXER_MAX_LINE ? CONNECT_LINE.exec(line.subarray(0, nl).toString('latin1').replace(/\r$/, '')) : null;
      const port = m ? Number(m[1]) : -1;
      if (port < 0 || port > 0xffffffff) return bad();
      this.#toGuest(sock, port, new Uint8Array(line.subarray(nl + 1)));
    };
    sock.on('data', onData);
  }

  #toGuest(sock: Socket, guestPort: number, leftover: Uint8Array): void {
    const connector = this.#connector;
    const hostPort = connector ? this.#allocPort(connector) : undefined;
    if (!connector || hostPort === undefined) {
      this.stats.hostConnectFailed++;
      sock.destroy();
      return;
    }
    let channel: VsockChannel | undefined;
    let connected = false;
    const end: VsockHostEnd = {
      data: (bytes) => sock.write(bytes),
      end: () => sock.end(),
      close: () => {
        if (!connected) this.stats.hostConnectFailed++;
        inner?.close('');
        if (!inner) sock.destroy();
      },
      connected: () => {
        connected = true;
        this.stats.hostConnected++;
        sock.write(`OK ${hostPort}\n`);
        const blocked = leftover.length > 0 && !channel!.write(leftover);
        inner = this.#relay(sock, channel!);
        if (!blocked) sock.resume();
      },
      drain: () => sock.resume(),
    };
    let inner: VsockHostEnd | undefined;
    try {
      channel = connector.connectToGuest(guestPort, hostPort, end);
    } catch {
      this.stats.hostConnectFailed++;
      sock.destroy();
      return;
    }
    sock.once('close', () => {
      if (!connected) channel?.close();
    });
  }

  /** The next local port from 2^30 that has no connection (wrapping below 2^32). */
  #allocPort(connector: VsockGuestConnector): number | undefined {
    for (let i = 0; i < 65536; i++) {
      const p = this.#nextPort;
      this.#nextPort = p >= 0xfffffffe ? MUXER_FIRST_LOCAL_PORT : p + 1;
      if (!connector.hostPortInUse(p)) return p;
    }
    return undefined;
  }
}

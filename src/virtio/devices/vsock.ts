/**
 * virtio-vsock (virtio 1.2 §5.10), stream sockets only: rx (queue 0) carries packets to the
 * guest, tx (queue 1) packets from it, event (queue 2) the TRANSPORT_RESET event. The
 * configuration space is guest_cid (le64). No device feature bits are offered: without
 * VIRTIO_VSOCK_F_SEQPACKET the driver uses STREAM only (VERSION_1 is the transport's).
 *
 * Connections are keyed by (host port, guest port) and follow the state machine of
 * {@link VsockConnState}; the host end of each is a {@link VsockHostEnd} from the
 * {@link VsockBackend} (guest-initiated) or from {@link VirtioVsock.connectToGuest}.
 *
 * Flow control, both ways (§5.10.6.3):
 * - host → guest: the device sends at most buf_alloc - (tx_cnt - fwd_cnt) of the guest's
 *   latest header, and holds at most {@link VirtioVsock.hostTxLimit} (or the credit, if
 *   less) before {@link VsockChannel.write} answers false: the backend stops reading its
 *   source instead of the device buffering.
 * - guest → host: the device advertises {@link VirtioVsock.bufAlloc} per connection and
 *   never holds more; a guest that sends beyond the credit it was given has that connection
 *   reset (`creditViolations`). fwd_cnt advances as the host end takes the bytes; a
 *   CREDIT_UPDATE goes out when a quarter of the buffer has been freed unannounced, or when
 *   the guest asks (CREDIT_REQUEST).
 *
 * Shutdown: a guest SHUTDOWN with SEND reaches the host end as end() once its queued data
 * is delivered; the host's {@link VsockChannel.end} becomes SHUTDOWN SEND once its queued
 * data is out. When both directions are over (the guest shut down both, or each side its
 * sending half) the device answers RST and forgets the connection; if the host ends after
 * the guest, it sends SHUTDOWN with both flags and waits shutdownTimeoutMs for the guest's
 * RST. {@link VsockChannel.close} and every protocol error are an RST at once.
 *
 * Hostile input ends in a counter, never an exception: a header shorter than 44 bytes is
 * dropped (`truncatedHeader`), a wrong src/dst CID is dropped (`badCid`); an unknown type or
 * op, len over 64 KiB or past the chain's bytes, or a packet the connection's state does not
 * allow, resets that pair (RST, and the connection if there is one). A REQUEST beyond
 * {@link VirtioVsock.maxConnections} is refused with RST. Packets for the guest wait in a
 * bounded control queue ({@link VirtioVsock.maxControlPackets}; the excess is dropped and
 * counted) and data waits in its connection, so a guest that posts no rx buffers costs
 * bounded memory. A guest that never answers a host REQUEST, or never answers the host's
 * SHUTDOWN with RST, is reset after a timeout.
 *
 * Snapshots (as Firecracker does them): the state holds the guest CID only. The device
 * restored from it has no connections and, once resumed with the driver up, posts
 * TRANSPORT_RESET on the event queue; the driver then resets its sockets and re-reads
 * guest_cid, which a clone may have changed ({@link VirtioVsockOverrides}). The device the
 * snapshot was taken from keeps its connections.
 */
import type { DescriptorChain } from '../chain.js';
import { VIRTIO_DEVICE_TYPE, type VirtioContext, type VirtioDevice } from '../device.js';
import type { SplitQueue } from '../queue.js';
import type { VsockBackend, VsockChannel, VsockGuestConnector, VsockHostEnd } from '../../vsock/backend.js';
import { ConfigSpace, checkConfigAccess, checkConfigValue, type ConfigAccessSize } from './config-space.js';
import { DeviceCore, checkContext, checkQueueIndex, type ChainHandler } from './core.js';
import { checkOptions, intOption, queueSizeOption } from './options.js';
import { checkDeviceState, checkNothingInFlight, checkOverrides, type DeviceStateBase } from './state.js';
import { checkInt } from '../../pci/util.js';
import { VsockConnection, connKey } from './vsock-connection.js';
import {
  VSOCK_HDR_BYTES, VSOCK_HOST_CID, VSOCK_MAX_PAYLOAD, VSOCK_MIN_GUEST_CID, VSOCK_OP, VSOCK_QUEUE, VSOCK_SHUTDOWN, VSOCK_TYPE,
  decodeHeader, encodeHeader, type VsockHeader,
} from './vsock-packet.js';

/**
 * The state of a {@link VirtioVsock} (its queues are the transport's). Connections are not
 * part of it: their host ends are sockets of the process that took the snapshot. A restored
 * device starts with none and tells the guest VIRTIO_VSOCK_EVENT_TRANSPORT_RESET.
 */
export interface VirtioVsockState extends DeviceStateBase {
  /** The guest's CID in the configuration space. */
  guestCid: number;
}

/** What a restore may change ({@link VirtioVsock.prepareRestore}): a clone's own identity. */
export interface VirtioVsockOverrides {
  /** A new guest CID for the restored device, in [3, 2^32 - 2]; default the state's. */
  readonly guestCid?: number;
}

/** Byte offsets of struct virtio_vsock_config, and its size. */
export const VIRTIO_VSOCK_CONFIG = { GUEST_CID: 0, SIZE: 8 } as const;

/** Options of {@link VirtioVsock}. */
export interface VirtioVsockOptions {
  /** The guest's CID, in [3, 2^32 - 2]. */
  readonly guestCid: number;
  /** The host side: accepts guest connections, may open connections to the guest. */
  readonly backend: VsockBackend;
  /** Size of each queue: a power of two in [4, 32768] (default 128). */
  readonly queueSize?: number;
  /** Connections at once, in [1, 65536] (default 1024). */
  readonly maxConnections?: number;
  /** The receive buffer advertised per connection (guest → host bytes held), in [4 KiB, 16 MiB] (default 64 KiB). */
  readonly bufAlloc?: number;
  /** Host → guest bytes held per connection before write() answers false, in [4 KiB, 16 MiB] (default 64 KiB). */
  readonly hostTxLimit?: number;
  /** Control packets (RESPONSE, RST, SHUTDOWN, credit) waiting for rx buffers, in [16, 65536] (default 1024). */
  readonly maxControlPackets?: number;
  /** How long a host REQUEST waits for the guest's RESPONSE, ms in [1, 600000] (default 2000). */
  readonly connectTimeoutMs?: number;
  /** How long the host's SHUTDOWN waits for the guest's RST, ms in [1, 600000] (default 2000). */
  readonly shutdownTimeoutMs?: number;
}

/** Counters of a {@link VirtioVsock} (cumulative across resets). */
export interface VsockStats {
  /** Packets taken from the tx queue. */
  txPackets: number;
  /** Packets written to the rx queue. */
  rxPackets: number;
  /** Events written to the event queue. */
  events: number;
  /** tx chains shorter than a header (dropped). */
  truncatedHeader: number;
  /** Packets whose src_cid is not the guest's or dst_cid not the host's (dropped). */
  badCid: number;
  /** Packets of a type other than STREAM (reset). */
  badType: number;
  /** Packets with an unknown op (reset). */
  badOp: number;
  /** Packets with len over 64 KiB (reset). */
  oversize: number;
  /** Packets with len past the chain's readable bytes (reset). */
  truncatedPayload: number;
  /** Packets the connection's state does not allow, or for no connection (reset). */
  unexpected: number;
  /** Guest data beyond the credit the device gave (connection reset). */
  creditViolations: number;
  /** Guest REQUESTs the backend refused. */
  refused: number;
  /** Guest REQUESTs refused because the connection table was full. */
  tooManyConnections: number;
  /** Host REQUESTs the guest did not answer in time. */
  connectTimeouts: number;
  /** Host SHUTDOWNs the guest did not answer with RST in time. */
  shutdownTimeouts: number;
  /** Control packets dropped because the control queue was full. */
  controlDropped: number;
  /** rx or event chains too short for a header or event (returned empty). */
  shortBuffers: number;
  /** RST packets sent to the guest. */
  rstSent: number;
  /** RST packets from the guest. */
  rstReceived: number;
  /** Guest bytes delivered to host ends. */
  bytesToHost: number;
  /** Host bytes delivered to the guest. */
  bytesToGuest: number;
  /** Host bytes dropped (the guest shut down its receive side). */
  bytesDropped: number;
  /** Exceptions thrown by host ends or the backend (caught; the connection is reset). */
  hostErrors: number;
  /** Connections that reached `established`. */
  established: number;
}

/** Chains served per turn before the rest is deferred to setImmediate. */
const TURN_BUDGET = 64;

/** A packet for the guest waiting in the control queue; credit fields are filled when written. */
interface Control {
  op: number;
  hostPort: number;
  guestPort: number;
  flags: number;
  conn: VsockConnection | undefined;
}

/** Whether `c` is closed (a call, so TypeScript does not narrow across host callbacks that may close it). */
function isClosed(c: VsockConnection): boolean {
  return c.state === 'closed';
}

function checkPort(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be an integer in [0, 2^32 - 1], got ${v}`);
  return v;
}

/** The virtio socket device (see the module documentation). */
export class VirtioVsock implements VirtioDevice, VsockGuestConnector {
  /** {@link VIRTIO_DEVICE_TYPE}.VSOCK. */
  readonly deviceType: number = VIRTIO_DEVICE_TYPE.VSOCK;
  /** No device-specific features (STREAM only). */
  readonly features: bigint = 0n;
  /** rx, tx and event. */
  readonly queueSizes: readonly number[];
  /** struct virtio_vsock_config: 8 bytes. */
  readonly configSize: number = VIRTIO_VSOCK_CONFIG.SIZE;
  /** The most connections at once. */
  readonly maxConnections: number;
  /** The receive buffer advertised per connection. */
  readonly bufAlloc: number;
  /** Host → guest bytes held per connection before write() answers false. */
  readonly hostTxLimit: number;
  /** The most control packets waiting for rx buffers. */
  readonly maxControlPackets: number;
  /** Host REQUEST timeout, ms. */
  readonly connectTimeoutMs: number;
  /** Host SHUTDOWN timeout, ms. */
  readonly shutdownTimeoutMs: number;
  /** Counters. */
  readonly stats: VsockStats = {
    txPackets: 0, rxPackets: 0, events: 0, truncatedHeader: 0, badCid: 0, badType: 0, badOp: 0, oversize: 0,
    truncatedPayload: 0, unexpected: 0, creditViolations: 0, refused: 0, tooManyConnections: 0, connectTimeouts: 0,
    shutdownTimeouts: 0, controlDropped: 0, shortBuffers: 0, rstSent: 0, rstReceived: 0, bytesToHost: 0, bytesToGuest: 0,
    bytesDropped: 0, hostErrors: 0, established: 0,
  };
  readonly #backend: VsockBackend;
  readonly #config = new ConfigSpace(VIRTIO_VSOCK_CONFIG.SIZE);
  readonly #core = new DeviceCore(3);
  readonly #conns = new Map<number, VsockConnection>();
  /** Connections per host port. */
  readonly #hostPorts = new Map<number, number>();
  /** Connections that may have data for the guest, in round-robin order. */
  readonly #ready = new Set<VsockConnection>();
  readonly #control: Control[] = [];
  #pendingEvents = 0;
  #guestCid: number;
  #inRx = false;
  #rxAgain = false;
  readonly #rxHandler: ChainHandler = (chain, q) => this.#rxChain(chain, q);
  readonly #txHandler: ChainHandler = (chain, q) => this.#txChain(chain, q);
  readonly #eventHandler: ChainHandler = (chain, q) => this.#eventChain(chain, q);
  readonly #rxReady = (): boolean => this.#hasRxWork();
  readonly #eventReady = (): boolean => this.#pendingEvents > 0;

  /** A vsock device for guest `options.guestCid`; TypeError / RangeError naming a bad option. */
  constructor(options: VirtioVsockOptions) {
    const o = checkOptions<VirtioVsockOptions>(options, false);
    if (o.guestCid === undefined) throw new TypeError('options.guestCid is required');
    this.#guestCid = intOption('guestCid', o.guestCid, VSOCK_MIN_GUEST_CID, 0xfffffffe, 0);
    if (typeof o.backend !== 'object' || o.backend === null || typeof o.backend.connect !== 'function') {
      throw new TypeError('options.backend must be a VsockBackend (an object with a connect function)');
    }
    this.#backend = o.backend;
    const size = queueSizeOption(o.queueSize, 4, 128);
    this.queueSizes = [size, size, size];
    this.maxConnections = intOption('maxConnections', o.maxConnections, 1, 65536, 1024);
    this.bufAlloc = intOption('bufAlloc', o.bufAlloc, 4096, 16 * 1024 * 1024, 64 * 1024);
    this.hostTxLimit = intOption('hostTxLimit', o.hostTxLimit, 4096, 16 * 1024 * 1024, 64 * 1024);
    this.maxControlPackets = intOption('maxControlPackets', o.maxControlPackets, 16, 65536, 1024);
    this.connectTimeoutMs = intOption('connectTimeoutMs', o.connectTimeoutMs, 1, 600_000, 2000);
    this.shutdownTimeoutMs = intOption('shutdownTimeoutMs', o.shutdownTimeoutMs, 1, 600_000, 2000);
    this.#config.setU64(VIRTIO_VSOCK_CONFIG.GUEST_CID, this.guestCid);
    o.backend.attach?.(this);
  }

  /** The guest's CID. */
  get guestCid(): number {
    return this.#guestCid;
  }

  /** Open connections (any state but closed). */
  get connections(): number {
    return this.#conns.size;
  }
  /** Control packets waiting for rx buffers. */
  get pendingControl(): number {
    return this.#control.length;
  }
  /** Bytes held for all connections, both directions (bounded by the limits above). */
  get bufferedBytes(): number {
    let n = 0;
    for (const c of this.#conns.values()) n += c.toHostBytes + c.toGuestBytes;
    return n;
  }

  /** Read guest_cid (RangeError outside the 8 bytes). */
  readConfig(offset: number, size: ConfigAccessSize): number {
    return this.#config.read(offset, size);
  }
  /** guest_cid is read-only: writes are checked and ignored. */
  writeConfig(offset: number, size: ConfigAccessSize, value: number): void {
    checkConfigAccess(this.configSize, offset, size);
    checkConfigValue(size, value);
  }

  /** Start serving the three queues. */
  activate(ctx: VirtioContext): void {
    this.#closeAll('device reset');
    this.#core.activate(ctx);
    this.#pumpTx();
    this.#pumpRx();
    this.#pumpEvent();
  }

  /** The driver notified rx (0: new buffers), tx (1: packets) or event (2: new buffers). */
  notify(index: number): void {
    switch (checkQueueIndex(index, 3)) {
      case VSOCK_QUEUE.RX: return this.#pumpRx();
      case VSOCK_QUEUE.TX: return this.#pumpTx();
      default: return this.#pumpEvent();
    }
  }

  /** Stop serving: every connection is closed (host ends hear close('device reset')). */
  reset(): void {
    this.#closeAll('device reset');
    this.#pendingEvents = 0;
    this.#core.reset();
  }

  /**
   * Post VIRTIO_VSOCK_EVENT_TRANSPORT_RESET (after a snapshot restore, or whenever the host
   * wants the guest to drop its connections): every connection is closed on the host side
   * (close('transport reset')) without RSTs, and one event waits for an event buffer.
   */
  transportReset(): void {
    this.#closeAll('transport reset');
    this.#pendingEvents = 1;
    this.#pumpEvent();
  }

  /** Stop serving (host data keeps queueing within the limits); nothing is ever in flight. */
  quiesce(): Promise<void> {
    this.#core.pause();
    return Promise.resolve();
  }

  /** Serve again: first the event a restore left pending, then packets from the guest and to it. */
  resume(): void {
    this.#core.resume();
    this.#pumpEvent();
    this.#pumpTx();
    this.#pumpRx();
  }

  /** The device's state (see {@link VirtioVsockState}). */
  snapshot(): VirtioVsockState {
    return { failed: this.#core.failedActivation, guestCid: this.#guestCid };
  }

  /**
   * Check `state` (and `overrides`) and return the function that applies it: connections
   * are closed (host ends hear close('transport reset')), the CID set, the restored
   * activation `ctx` taken up with one TRANSPORT_RESET event pending for resume().
   */
  prepareRestore(state: VirtioVsockState, ctx: VirtioContext | undefined, overrides: VirtioVsockOverrides = {}): () => void {
    const s = checkDeviceState(state);
    const o = checkOverrides<VirtioVsockOverrides>(overrides);
    const saved = checkInt(s.guestCid, 'state.guestCid', VSOCK_MIN_GUEST_CID, 0xfffffffe);
    const cid = o.guestCid === undefined ? saved : checkInt(o.guestCid, 'overrides.guestCid', VSOCK_MIN_GUEST_CID, 0xfffffffe);
    if (ctx) checkContext(ctx, 3);
    checkNothingInFlight(ctx);
    return () => {
      this.#closeAll('transport reset');
      this.#core.restore(ctx, s.failed);
      this.#guestCid = cid;
      this.#config.setU64(VIRTIO_VSOCK_CONFIG.GUEST_CID, cid);
      this.#pendingEvents = ctx ? 1 : 0;
    };
  }

  /** True if host port `hostPort` has a connection. */
  hostPortInUse(hostPort: number): boolean {
    return this.#hostPorts.has(hostPort);
  }

  #add(conn: VsockConnection): void {
    this.#conns.set(conn.key, conn);
    this.#hostPorts.set(conn.hostPort, (this.#hostPorts.get(conn.hostPort) ?? 0) + 1);
  }

  /**
   * Open a connection from host port `hostPort` to guest port `guestPort` (ports are u32):
   * sends REQUEST; `end` hears connected() on RESPONSE, close(reason) on RST or after
   * connectTimeoutMs. Error if the device is not serving, the pair is in use or there are
   * maxConnections already; TypeError / RangeError for bad arguments.
   */
  connectToGuest(guestPort: number, hostPort: number, end: VsockHostEnd): VsockChannel {
    checkPort('guestPort', guestPort);
    checkPort('hostPort', hostPort);
    if (typeof end !== 'object' || end === null || typeof end.data !== 'function' || typeof end.close !== 'function' || typeof end.end !== 'function') {
      throw new TypeError('end must be a VsockHostEnd (data, end and close functions)');
    }
    if (!this.#core.serving) throw new Error('the vsock device is not serving (driver not ready)');
    if (this.#conns.has(connKey(hostPort, guestPort))) throw new Error(`host port ${hostPort} is already connected to guest port ${guestPort}`);
    if (this.#conns.size >= this.maxConnections) throw new Error(`too many vsock connections (${this.maxConnections})`);
    const conn = new VsockConnection(hostPort, guestPort, 'connecting-out');
    conn.end = end;
    this.#add(conn);
    conn.timer = setTimeout(() => {
      if (conn.state !== 'connecting-out') return;
      this.stats.connectTimeouts++;
      this.#abort(conn, 'connect timeout');
    }, this.connectTimeoutMs);
    conn.timer.unref?.();
    this.#queue(VSOCK_OP.REQUEST, conn, 0);
    return this.#channel(conn);
  }

  // ---- host-facing channel ----

  #channel(conn: VsockConnection): VsockChannel {
    return {
      hostPort: conn.hostPort,
      guestPort: conn.guestPort,
      write: (bytes) => this.#hostWrite(conn, bytes),
      resume: () => {
        if (isClosed(conn)) return;
        conn.hostPaused = false;
        this.#flushToHost(conn);
      },
      end: () => {
        if (isClosed(conn) || conn.hostSendDone) return;
        conn.hostSendDone = true;
        this.#maybeShutdown(conn);
      },
      close: () => {
        if (!isClosed(conn)) this.#abort(conn, 'host closed', true, false);
      },
    };
  }

  #hostWrite(conn: VsockConnection, bytes: Uint8Array): boolean {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    if (isClosed(conn) || conn.hostSendDone) return true;
    if (conn.guestRecvDone) {
      this.stats.bytesDropped += bytes.length;
      return true;
    }
    if (bytes.length > 0) {
      conn.toGuest.push(bytes.slice());
      conn.toGuestBytes += bytes.length;
      this.#ready.add(conn);
      this.#pumpRx();
    }
    if (isClosed(conn)) return true;
    const room = conn.toGuestBytes < this.#txWindow(conn);
    if (!room) conn.hostBlocked = true;
    return room;
  }

  /** How much host → guest data a connection may hold: its credit, at most hostTxLimit. */
  #txWindow(conn: VsockConnection): number {
    return conn.state === 'established' ? Math.min(this.hostTxLimit, conn.peerCredit) : this.hostTxLimit;
  }

  #maybeDrain(conn: VsockConnection): void {
    if (!conn.hostBlocked || isClosed(conn) || conn.toGuestBytes >= this.#txWindow(conn)) return;
    conn.hostBlocked = false;
    this.#callHost(conn, (e) => e.drain?.());
  }

  /**
   * Once the host has ended and its data is out: SHUTDOWN SEND, or, if the guest is done
   * sending too, SHUTDOWN both ways and wait (shutdownTimeoutMs) for the guest's RST.
   */
  #maybeShutdown(conn: VsockConnection): void {
    if (!conn.hostSendDone || conn.hostShutdownSent || conn.toGuestBytes > 0 || conn.state !== 'established') return;
    conn.hostShutdownSent = true;
    if (!conn.guestSendDone) {
      this.#queue(VSOCK_OP.SHUTDOWN, conn, VSOCK_SHUTDOWN.SEND);
      return;
    }
    conn.state = 'closing';
    this.#queue(VSOCK_OP.SHUTDOWN, conn, VSOCK_SHUTDOWN.RCV | VSOCK_SHUTDOWN.SEND);
    conn.timer = setTimeout(() => {
      if (conn.state !== 'closing') return;
      this.stats.shutdownTimeouts++;
      this.#abort(conn, 'shutdown timeout');
    }, this.shutdownTimeoutMs);
    conn.timer.unref?.();
  }

  /** Call the host end, catching what it throws (the connection is then reset). */
  #callHost(conn: VsockConnection, fn: (end: VsockHostEnd) => void): void {
    if (!conn.end) return;
    try {
      fn(conn.end);
    } catch {
      this.stats.hostErrors++;
      this.#abort(conn, 'host end threw', true, false);
    }
  }

  // ---- connection bookkeeping ----

  /** Forget `conn` (RST to the guest if `rst`); the host end hears close(reason) if `tell`. */
  #abort(conn: VsockConnection, reason: string, rst = true, tell = true): void {
    if (isClosed(conn)) return;
    if (rst) this.#queueRst(conn.hostPort, conn.guestPort);
    this.#forget(conn);
    if (tell && conn.end) {
      try {
        conn.end.close(reason);
      } catch {
        this.stats.hostErrors++;
      }
    }
  }

  #forget(conn: VsockConnection): void {
    conn.state = 'closed';
    conn.clear();
    this.#conns.delete(conn.key);
    const n = (this.#hostPorts.get(conn.hostPort) ?? 1) - 1;
    if (n > 0) this.#hostPorts.set(conn.hostPort, n);
    else this.#hostPorts.delete(conn.hostPort);
    this.#ready.delete(conn);
  }

  #closeAll(reason: string): void {
    const all = [...this.#conns.values()];
    this.#control.length = 0;
    for (const c of all) this.#abort(c, reason, false);
  }

  #queue(op: number, conn: VsockConnection, flags: number): void {
    this.#push({ op, hostPort: conn.hostPort, guestPort: conn.guestPort, flags, conn });
  }

  #queueRst(hostPort: number, guestPort: number): void {
    this.#push({ op: VSOCK_OP.RST, hostPort, guestPort, flags: 0, conn: undefined });
  }

  #push(c: Control): void {
    if (this.#control.length >= this.maxControlPackets) {
      this.stats.controlDropped++;
      return;
    }
    this.#control.push(c);
    if (c.op === VSOCK_OP.CREDIT_UPDATE && c.conn) c.conn.creditQueued = true;
    this.#pumpRx();
  }

  #queueCredit(conn: VsockConnection): void {
    if (!conn.creditQueued) this.#queue(VSOCK_OP.CREDIT_UPDATE, conn, 0);
  }

  // ---- queues ----

  #pumpTx(): void {
    this.#core.serve(VSOCK_QUEUE.TX, TURN_BUDGET, this.#txHandler);
  }

  #pumpEvent(): void {
    this.#core.serve(VSOCK_QUEUE.EVENT, TURN_BUDGET, this.#eventHandler, this.#eventReady);
  }

  #pumpRx(): void {
    if (this.#inRx) {
      this.#rxAgain = true;
      return;
    }
    this.#inRx = true;
    try {
      this.#rxAgain = false;
      this.#core.serve(VSOCK_QUEUE.RX, TURN_BUDGET, this.#rxHandler, this.#rxReady);
    } finally {
      this.#inRx = false;
    }
    if (this.#rxAgain) this.#core.later(VSOCK_QUEUE.RX, () => this.#pumpRx());
  }

  /** Drop control packets of connections that are gone (except RSTs) and check for work. */
  #hasRxWork(): boolean {
    const q = this.#control;
    while (q.length > 0 && q[0].op !== VSOCK_OP.RST && q[0].conn?.state === 'closed') q.shift();
    return q.length > 0 || this.#readyConn() !== undefined;
  }

  /** The first connection that can send data now; prunes the others from the ready set. */
  #readyConn(): VsockConnection | undefined {
    for (const c of this.#ready) {
      if (c.state === 'established' && c.toGuestBytes > 0 && c.peerCredit > 0) return c;
      if (c.state === 'closed' || c.toGuestBytes === 0) this.#ready.delete(c);
      else if (c.state === 'established') this.#ready.delete(c); // no credit: re-added on a credit update
    }
    return undefined;
  }

  #header(op: number, hostPort: number, guestPort: number, len: number, flags: number, conn: VsockConnection | undefined): VsockHeader {
    return {
      srcCid: VSOCK_HOST_CID, dstCid: this.guestCid, srcPort: hostPort, dstPort: guestPort, len, type: VSOCK_TYPE.STREAM, op, flags,
      bufAlloc: conn ? this.bufAlloc : 0, fwdCnt: conn ? conn.fwdCnt : 0,
    };
  }

  #rxChain(chain: DescriptorChain, q: SplitQueue): boolean {
    if (chain.writableBytes < VSOCK_HDR_BYTES) {
      this.stats.shortBuffers++;
      return q.pushUsed(chain, 0);
    }
    const ctl = this.#control.shift();
    if (ctl) {
      const conn = ctl.conn && !isClosed(ctl.conn) ? ctl.conn : undefined;
      chain.writeBytes(encodeHeader(this.#header(ctl.op, ctl.hostPort, ctl.guestPort, 0, ctl.flags, conn)));
      if (conn) {
        conn.advertisedFwdCnt = conn.fwdCnt;
        if (ctl.op === VSOCK_OP.CREDIT_UPDATE) conn.creditQueued = false;
      }
      if (ctl.op === VSOCK_OP.RST) this.stats.rstSent++;
      this.stats.rxPackets++;
      return q.pushUsed(chain, VSOCK_HDR_BYTES);
    }
    const conn = this.#readyConn();
    if (!conn) return q.pushUsed(chain, 0); // not reached: serve() asked #hasRxWork first
    const n = Math.min(conn.toGuestBytes, conn.peerCredit, chain.writableBytes - VSOCK_HDR_BYTES, VSOCK_MAX_PAYLOAD);
    chain.writeBytes(encodeHeader(this.#header(VSOCK_OP.RW, conn.hostPort, conn.guestPort, n, 0, conn)));
    let off = VSOCK_HDR_BYTES;
    let left = n;
    while (left > 0) {
      const b = conn.toGuest[0];
      const take = Math.min(b.length, left);
      chain.writeBytes(b.subarray(0, take), off);
      if (take === b.length) conn.toGuest.shift();
      else conn.toGuest[0] = b.subarray(take);
      off += take;
      left -= take;
    }
    conn.toGuestBytes -= n;
    conn.txCnt = (conn.txCnt + n) >>> 0;
    conn.advertisedFwdCnt = conn.fwdCnt;
    this.stats.bytesToGuest += n;
    this.stats.rxPackets++;
    this.#ready.delete(conn); // round robin: to the back
    if (conn.toGuestBytes > 0) this.#ready.add(conn);
    const pushed = q.pushUsed(chain, VSOCK_HDR_BYTES + n);
    this.#maybeDrain(conn);
    this.#maybeShutdown(conn);
    return pushed;
  }

  #eventChain(chain: DescriptorChain, q: SplitQueue): boolean {
    if (chain.writableBytes < 4) {
      this.stats.shortBuffers++;
      return q.pushUsed(chain, 0);
    }
    chain.writeBytes(new Uint8Array(4)); // VIRTIO_VSOCK_EVENT_TRANSPORT_RESET = 0
    this.#pendingEvents--;
    this.stats.events++;
    return q.pushUsed(chain, 4);
  }

  #txChain(chain: DescriptorChain, q: SplitQueue): boolean {
    this.stats.txPackets++;
    const packet = this.#parse(chain);
    // Read everything before the chain goes back: the driver may reuse the buffers at once.
    const pushed = q.pushUsed(chain, 0);
    if (packet) this.#packet(packet.h, packet.payload);
    return pushed;
  }

  /** The header and payload of a tx chain, or undefined (counted, reset) if it is malformed. */
  #parse(chain: DescriptorChain): { h: VsockHeader; payload: Uint8Array | undefined } | undefined {
    if (chain.readableBytes < VSOCK_HDR_BYTES) {
      this.stats.truncatedHeader++;
      return undefined;
    }
    const h = decodeHeader(chain.readBytes(VSOCK_HDR_BYTES));
    if (h.srcCid !== this.guestCid || h.dstCid !== VSOCK_HOST_CID) {
      this.stats.badCid++;
      return undefined;
    }
    if (h.len > VSOCK_MAX_PAYLOAD) {
      this.stats.oversize++;
      this.#resetPair(h);
      return undefined;
    }
    if (h.len > chain.readableBytes - VSOCK_HDR_BYTES) {
      this.stats.truncatedPayload++;
      this.#resetPair(h);
      return undefined;
    }
    if (h.type !== VSOCK_TYPE.STREAM) {
      this.stats.badType++;
      this.#resetPair(h);
      return undefined;
    }
    const payload = h.op === VSOCK_OP.RW && h.len > 0 ? chain.readBytes(h.len, VSOCK_HDR_BYTES) : undefined;
    return { h, payload };
  }

  /** Reset the pair `h` names: its connection if there is one, and an RST unless `h` is one. */
  #resetPair(h: VsockHeader): void {
    const conn = this.#conns.get(connKey(h.dstPort, h.srcPort));
    if (conn) this.#abort(conn, 'protocol error', h.op !== VSOCK_OP.RST);
    else if (h.op !== VSOCK_OP.RST) this.#queueRst(h.dstPort, h.srcPort);
  }

  #unexpected(h: VsockHeader): void {
    this.stats.unexpected++;
    this.#resetPair(h);
  }

  #packet(h: VsockHeader, payload: Uint8Array | undefined): void {
    const conn = this.#conns.get(connKey(h.dstPort, h.srcPort));
    if (h.op === VSOCK_OP.REQUEST) return this.#request(h, conn);
    if (h.op === VSOCK_OP.RST) {
      this.stats.rstReceived++;
      if (conn) this.#abort(conn, 'reset by the guest', false);
      return;
    }
    if (h.op < VSOCK_OP.RESPONSE || h.op > VSOCK_OP.CREDIT_REQUEST) {
      this.stats.badOp++;
      return this.#resetPair(h);
    }
    if (!conn || conn.state === 'connecting-in') return this.#unexpected(h);
    conn.updatePeer(h.bufAlloc, h.fwdCnt);
    switch (h.op) {
      case VSOCK_OP.RESPONSE:
        if (conn.state !== 'connecting-out') return this.#unexpected(h);
        clearTimeout(conn.timer);
        conn.timer = undefined;
        conn.state = 'established';
        this.stats.established++;
        this.#callHost(conn, (e) => e.connected?.());
        if (!isClosed(conn)) this.#maybeShutdown(conn);
        break;
      case VSOCK_OP.SHUTDOWN:
        if (conn.state === 'connecting-out') return this.#unexpected(h);
        this.#shutdown(conn, h.flags);
        return;
      case VSOCK_OP.RW:
        if (conn.state === 'connecting-out' || conn.guestSendDone) return this.#unexpected(h);
        if (conn.state === 'closing') return; // we said we receive no more: drop
        if (conn.unadvertised + h.len > this.bufAlloc) {
          this.stats.creditViolations++;
          this.#abort(conn, 'guest exceeded its credit');
          return;
        }
        if (payload) {
          conn.rxCnt = (conn.rxCnt + h.len) >>> 0;
          conn.toHost.push(payload);
          conn.toHostBytes += h.len;
          this.#flushToHost(conn);
        }
        break;
      case VSOCK_OP.CREDIT_REQUEST:
        this.#queueCredit(conn);
        break;
      default: // CREDIT_UPDATE: the fields were taken above
        break;
    }
    if (isClosed(conn)) return;
    if (conn.toGuestBytes > 0 && conn.peerCredit > 0) {
      this.#ready.add(conn);
      this.#pumpRx();
    }
    this.#maybeDrain(conn);
  }

  #shutdown(conn: VsockConnection, flags: number): void {
    if (flags & VSOCK_SHUTDOWN.RCV) {
      conn.guestRecvDone = true;
      this.stats.bytesDropped += conn.toGuestBytes;
      conn.toGuest.length = 0;
      conn.toGuestBytes = 0;
    }
    if (flags & VSOCK_SHUTDOWN.SEND) conn.guestSendDone = true;
    const done = (conn.guestRecvDone && conn.guestSendDone) || conn.state === 'closing' || (conn.guestSendDone && conn.hostShutdownSent);
    if (!done) {
      this.#flushToHost(conn);
      this.#maybeDrain(conn);
      return;
    }
    // Both directions are over: hand the host what the guest sent (held within bufAlloc, so
    // even past a pause), answer RST and forget the connection, as Linux's transport does.
    conn.hostPaused = false;
    this.#flushToHost(conn);
    if (!isClosed(conn)) this.#abort(conn, 'shut down');
  }

  #request(h: VsockHeader, existing: VsockConnection | undefined): void {
    if (existing) return this.#unexpected(h);
    if (this.#conns.size >= this.maxConnections) {
      this.stats.tooManyConnections++;
      return this.#queueRst(h.dstPort, h.srcPort);
    }
    const conn = new VsockConnection(h.dstPort, h.srcPort, 'connecting-in');
    conn.updatePeer(h.bufAlloc, h.fwdCnt);
    this.#add(conn);
    const accept = (end: VsockHostEnd | undefined): void => {
      if (end === undefined || end === null) return refuse();
      if (conn.state !== 'connecting-in') {
        try {
          end.close('connection closed before it was accepted');
        } catch {
          this.stats.hostErrors++;
        }
        return;
      }
      conn.end = end;
      conn.state = 'established';
      this.stats.established++;
      this.#queue(VSOCK_OP.RESPONSE, conn, 0);
      this.#maybeShutdown(conn); // the backend may have ended already
    };
    const refuse = (): void => {
      this.stats.refused++;
      if (conn.state === 'connecting-in') this.#abort(conn, 'refused');
    };
    let r: ReturnType<VsockBackend['connect']>;
    try {
      r = this.#backend.connect(h.dstPort, this.#channel(conn));
    } catch {
      this.stats.hostErrors++;
      return refuse();
    }
    if (r instanceof Promise) {
      r.then(accept, () => {
        this.stats.hostErrors++;
        refuse();
      });
    } else accept(r);
  }

  #flushToHost(conn: VsockConnection): void {
    while (conn.toHost.length > 0 && !conn.hostPaused && !isClosed(conn)) {
      const b = conn.toHost.shift()!;
      conn.toHostBytes -= b.length;
      conn.fwdCnt = (conn.fwdCnt + b.length) >>> 0;
      this.stats.bytesToHost += b.length;
      let more = true;
      this.#callHost(conn, (e) => {
        more = e.data(b) !== false;
      });
      if (!more) conn.hostPaused = true;
    }
    if (isClosed(conn)) return;
    if (conn.toHost.length === 0 && conn.guestSendDone && !conn.hostToldEnd) {
      conn.hostToldEnd = true;
      this.#callHost(conn, (e) => e.end());
      if (isClosed(conn)) return;
    }
    if (((conn.fwdCnt - conn.advertisedFwdCnt) >>> 0) >= this.bufAlloc / 4) this.#queueCredit(conn);
  }
}

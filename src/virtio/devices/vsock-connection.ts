/**
 * One virtio-vsock stream connection's state and its two credit accounts (virtio 1.2
 * §5.10.6.3), as {@link VirtioVsock} keeps it. Counters are u32 and wrap, as the spec's do.
 */
import type { VsockHostEnd } from '../../vsock/backend.js';

/**
 * Where a connection is:
 * - `connecting-in`: the guest sent REQUEST; the backend has not yet accepted or refused.
 * - `connecting-out`: the host sent REQUEST; waiting for the guest's RESPONSE (timer).
 * - `established`: data flows both ways.
 * - `closing`: both sides are done sending and the host sent SHUTDOWN (both directions);
 *   waiting for the guest's RST (timer).
 * - `closed`: forgotten by the device; every later call on it is ignored.
 */
export type VsockConnState = 'connecting-in' | 'connecting-out' | 'established' | 'closing' | 'closed';

/** The map key of a (host port, guest port) pair. */
export function connKey(hostPort: number, guestPort: number): number {
  return hostPort * 2 ** 32 + guestPort;
}

/** One connection (see the module documentation). */
export class VsockConnection {
  /** The state. */
  state: VsockConnState;
  /** The host end, once there is one. */
  end: VsockHostEnd | undefined;
  /** Pending timeout (connect or shutdown). */
  timer: NodeJS.Timeout | undefined;

  // Guest → host: what the device grants and holds.
  /** Bytes received from the guest (u32). */
  rxCnt = 0;
  /** Bytes handed to the host end (u32): our fwd_cnt. */
  fwdCnt = 0;
  /** The fwd_cnt in the last header written to the rx ring. */
  advertisedFwdCnt = 0;
  /** Guest bytes waiting for the host end. */
  readonly toHost: Uint8Array[] = [];
  /** Bytes in {@link toHost}. */
  toHostBytes = 0;
  /** The host end returned false from data(): wait for resume(). */
  hostPaused = false;
  /** The guest sent SHUTDOWN SEND (deliver end() after the queued data). */
  guestSendDone = false;
  /** The guest sent SHUTDOWN RCV: host data is dropped. */
  guestRecvDone = false;
  /** end() was already given to the host end. */
  hostToldEnd = false;
  /** A CREDIT_UPDATE is already queued. */
  creditQueued = false;

  // Host → guest: the guest's credit and what waits for it.
  /** The guest's buf_alloc, from its latest header. */
  peerBufAlloc = 0;
  /** The guest's fwd_cnt, from its latest header. */
  peerFwdCnt = 0;
  /** Bytes sent to the guest (u32). */
  txCnt = 0;
  /** Host bytes waiting for guest credit and rx buffers. */
  readonly toGuest: Uint8Array[] = [];
  /** Bytes in {@link toGuest}. */
  toGuestBytes = 0;
  /** write() returned false: tell the host end drain() when there is room. */
  hostBlocked = false;
  /** The host called end(): shut down once {@link toGuest} is empty. */
  hostSendDone = false;
  /** The host's SHUTDOWN is queued. */
  hostShutdownSent = false;

  /** A connection between `hostPort` and `guestPort`, in `state`. */
  constructor(readonly hostPort: number, readonly guestPort: number, state: VsockConnState) {
    this.state = state;
  }

  /** The map key. */
  get key(): number {
    return connKey(this.hostPort, this.guestPort);
  }

  /** Bytes the guest can still take: buf_alloc - (tx_cnt - fwd_cnt), never negative. */
  get peerCredit(): number {
    const inFlight = (this.txCnt - this.peerFwdCnt) >>> 0;
    return Math.max(0, this.peerBufAlloc - inFlight);
  }

  /** Record the credit fields of a header from the guest. */
  updatePeer(bufAlloc: number, fwdCnt: number): void {
    this.peerBufAlloc = bufAlloc;
    this.peerFwdCnt = fwdCnt;
  }

  /** Bytes the guest has sent that our last advertised fwd_cnt does not yet cover. */
  get unadvertised(): number {
    return (this.rxCnt - this.advertisedFwdCnt) >>> 0;
  }

  /** Drop what is queued both ways (the connection is going away). */
  clear(): void {
    this.toHost.length = 0;
    this.toHostBytes = 0;
    this.toGuest.length = 0;
    this.toGuestBytes = 0;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

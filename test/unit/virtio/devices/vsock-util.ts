/**
 * The guest's side of virtio-vsock for tests: a GuestDriver per queue (rx, tx, event),
 * packets encoded and decoded as a guest driver would, rx buffers kept posted, and a
 * recording VsockHostEnd.
 */
import type { VirtioVsock } from '../../../../src/virtio/devices/vsock.js';
import {
  VSOCK_HDR_BYTES, VSOCK_HOST_CID, VSOCK_OP, VSOCK_QUEUE, VSOCK_TYPE, decodeHeader, encodeHeader, type VsockHeader,
} from '../../../../src/virtio/devices/vsock-packet.js';
import type { VsockHostEnd } from '../../../../src/vsock/backend.js';
import type { GuestDriver, Posted } from '../driver.js';
import { activate, driversFor, type FakeContext } from './harness.js';

/** A packet as the guest received it. */
export interface RxPacket {
  h: VsockHeader;
  payload: Uint8Array;
}

/** The guest driver of one VirtioVsock. */
export class GuestVsock {
  readonly rx: GuestDriver;
  readonly tx: GuestDriver;
  readonly ev: GuestDriver;
  readonly ctx: FakeContext;
  /** The guest's advertised receive buffer (every header it sends carries it). */
  bufAlloc = 64 * 1024;
  /** Bytes the guest has "consumed", per guest port (carried as fwd_cnt). */
  readonly fwd = new Map<number, number>();
  readonly #rxPosted = new Map<number, Posted>();
  readonly #evPosted = new Map<number, Posted>();
  readonly received: RxPacket[] = [];

  /** Activate `dev` over fresh queues; post `rxBuffers` rx buffers of `rxLen` bytes (0: none). */
  constructor(readonly dev: VirtioVsock, readonly rxBuffers = 16, readonly rxLen = VSOCK_HDR_BYTES + 4096) {
    [this.rx, this.tx, this.ev] = driversFor(dev, { ramBytes: 0x100000, size: 64 });
    this.ctx = activate(dev, [this.rx, this.tx, this.ev]);
    this.postRx(rxBuffers);
  }

  /** Post `n` rx buffers and notify. */
  postRx(n: number, len = this.rxLen): void {
    for (let i = 0; i < n; i++) {
      const p = this.rx.add([], [len]);
      this.#rxPosted.set(p.head, p);
    }
    if (n > 0) this.dev.notify(VSOCK_QUEUE.RX);
  }

  /** Post one event buffer of `len` bytes and notify. */
  postEvent(len = 8): void {
    const p = this.ev.add([], [len]);
    this.#evPosted.set(p.head, p);
    this.dev.notify(VSOCK_QUEUE.EVENT);
  }

  /** Event ids delivered so far (each used event buffer's le32). */
  events(): { id: number; len: number }[] {
    return this.ev.used().map((u) => {
      const p = this.#evPosted.get(u.id)!;
      return { id: u.len >= 4 ? this.ev.mem.readU32(p.inBufs[0].gpa) : -1, len: u.len };
    });
  }

  /** A header from the guest (cid `cid`) with defaults filled in. */
  header(h: Partial<VsockHeader>, cid = this.dev.guestCid): VsockHeader {
    return {
      srcCid: cid, dstCid: VSOCK_HOST_CID, srcPort: 1000, dstPort: 52, len: 0, type: VSOCK_TYPE.STREAM, op: VSOCK_OP.RW, flags: 0,
      bufAlloc: this.bufAlloc, fwdCnt: this.fwd.get(h.srcPort ?? 1000) ?? 0, ...h,
    };
  }

  /** Send one packet (header fields over the defaults; len defaults to the payload's). */
  send(h: Partial<VsockHeader>, payload: Uint8Array = new Uint8Array(0)): void {
    const hdr = this.header({ len: payload.length, ...h });
    this.sendRaw(payload.length > 0 ? [encodeHeader(hdr), payload] : [encodeHeader(hdr)]);
  }

  /** Post raw readable buffers on tx and notify. */
  sendRaw(bufs: Uint8Array[]): void {
    this.tx.add(bufs);
    this.dev.notify(VSOCK_QUEUE.TX);
    this.tx.used();
  }

  /** Packets the device delivered since the last call (rx buffers are reposted). */
  recv(): RxPacket[] {
    const out: RxPacket[] = [];
    for (const u of this.rx.used()) {
      const p = this.#rxPosted.get(u.id)!;
      this.#rxPosted.delete(u.id);
      const bytes = this.rx.mem.readBytes(p.inBufs[0].gpa, u.len);
      if (u.len >= VSOCK_HDR_BYTES) out.push({ h: decodeHeader(bytes), payload: bytes.slice(VSOCK_HDR_BYTES) });
      else out.push({ h: decodeHeader(new Uint8Array(VSOCK_HDR_BYTES)), payload: new Uint8Array(0) });
    }
    this.received.push(...out);
    if (out.length > 0 && this.rxBuffers > 0) this.postRx(out.length);
    return out;
  }

  /** Mark `n` bytes on guest port `port` consumed (raises the fwd_cnt the guest sends). */
  consume(port: number, n: number): void {
    this.fwd.set(port, ((this.fwd.get(port) ?? 0) + n) >>> 0);
  }
}

/** A VsockHostEnd that records what the device does with it. */
export class RecordingEnd implements VsockHostEnd {
  readonly chunks: Uint8Array[] = [];
  ended = 0;
  closed: string[] = [];
  connects = 0;
  drains = 0;
  /** What data() answers. */
  accept = true;
  data(bytes: Uint8Array): boolean {
    this.chunks.push(bytes);
    return this.accept;
  }
  end(): void {
    this.ended++;
  }
  close(reason: string): void {
    this.closed.push(reason);
  }
  connected(): void {
    this.connects++;
  }
  drain(): void {
    this.drains++;
  }
  /** All data received, as one string. */
  text(): string {
    return Buffer.concat(this.chunks).toString();
  }
}

/** Wait until `cond` holds (polling every few ms), at most `ms`. */
export async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Sleep `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

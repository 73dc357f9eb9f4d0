/** Test helpers for virtio-net: a recording backend, frame builders, and header/frame readers. */
import type { NetBackend } from '../../../../src/net/index.js';
import { NET_HDR_BYTES } from '../../../../src/virtio/devices/index.js';
import type { GuestDriver, Posted } from '../driver.js';

/** A NetBackend that records what is sent and lets the test inject frames. */
export class FakeBackend implements NetBackend {
  readonly sent: Uint8Array[] = [];
  receiver: ((frame: Uint8Array) => void) | undefined;
  closed = false;
  throwOnSend = false;
  send(frame: Uint8Array): void {
    if (this.throwOnSend) throw new Error('backend broke');
    this.sent.push(frame);
  }
  onFrame(cb: ((frame: Uint8Array) => void) | undefined): void {
    this.receiver = cb;
  }
  close(): void {
    this.closed = true;
  }
  /** Deliver `frame` to the device, as the outside would. */
  inject(frame: Uint8Array): void {
    this.receiver!(frame);
  }
}

/** An Ethernet frame from `src` to `dst` (6-byte arrays) with `payload` bytes of pattern `seed`. */
export function ethFrame(dst: Uint8Array, src: Uint8Array, payload: number, seed = 1): Uint8Array {
  const f = new Uint8Array(14 + payload);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental EtherType
  for (let i = 0; i < payload; i++) f[14 + i] = (i * 7 + seed) & 0xff;
  return f;
}

/** The broadcast MAC. */
export const BROADCAST = new Uint8Array(6).fill(0xff);

/** A 12-byte virtio_net_hdr (all zero) followed by `frame`, as a driver transmits it. */
export function withHeader(frame: Uint8Array): Uint8Array {
  const b = new Uint8Array(NET_HDR_BYTES + frame.length);
  b.set(frame, NET_HDR_BYTES);
  return b;
}

/** The bytes the device wrote into the writable buffers of `posted`, `len` of them. */
export function written(d: GuestDriver, posted: Posted, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let at = 0;
  for (const b of posted.inBufs) {
    if (at >= len) break;
    const n = Math.min(b.len, len - at);
    out.set(d.mem.readBytes(b.gpa, n), at);
    at += n;
  }
  return out;
}

/** num_buffers of a received header. */
export function numBuffers(hdr: Uint8Array): number {
  return hdr[10] | (hdr[11] << 8);
}

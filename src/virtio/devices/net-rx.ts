/**
 * Writing one received frame into the guest's receive buffers (virtio 1.2 §5.1.6.3–4): a
 * zeroed virtio_net_hdr (num_buffers filled) and the frame, in one chain, or with
 * MRG_RXBUF spread over as many chains as it takes, all returned to the used ring together.
 *
 * Chains popped but not yet used (MRG_RXBUF: the frame needs more buffers than the driver
 * has posted so far) are held here until more arrive; a reset makes them stale, and
 * {@link NetReceiver.forget} drops them.
 */
import type { DescriptorChain } from '../chain.js';
import type { SplitQueue } from '../queue.js';
import { MIN_FRAME_BYTES } from '../../net/frame.js';
import { NET_HDR_BYTES, NET_HDR_NUM_BUFFERS } from './net-constants.js';

/**
 * What became of a frame: written to the guest; waiting (no, or not enough, receive buffers
 * yet: try again when the driver posts more); or dropped because the guest's buffers cannot
 * hold it (a chain too short without MRG_RXBUF, or all of the queue's buffers too short).
 */
export type RxOutcome = 'delivered' | 'noBuffers' | 'tooBig';

/** Receive buffers the driver posted that can hold nothing; returned with length 0. */
export interface RxBufferCounters {
  /** Receive chains returned unused because they were too short for a header (and, without MRG_RXBUF, a minimal frame). */
  rxShortBuffers: number;
}

/** Writes frames into one receive queue's chains. */
export class NetReceiver {
  readonly #counters: RxBufferCounters;
  #held: DescriptorChain[] = [];
  #heldBytes = 0;
  readonly #hdr = new Uint8Array(NET_HDR_BYTES);

  /** A receiver counting unusable buffers in `counters`. */
  constructor(counters: RxBufferCounters) {
    this.#counters = counters;
  }

  /** Chains popped and held for the next frame. */
  get held(): number {
    return this.#held.length;
  }

  /** The heads of the held chains, in order (for a snapshot). */
  get heldHeads(): number[] {
    return this.#held.map((c) => c.head);
  }

  /** Hold `chains` again (a restore: the queue gave them back with reclaim), in order. */
  restoreHeld(chains: readonly DescriptorChain[]): void {
    this.forget();
    for (const c of chains) this.#hold(c);
  }

  /** Forget held chains (the queue was reset: they are stale). */
  forget(): void {
    this.#held = [];
    this.#heldBytes = 0;
  }

  /** Put `frame` into `q`'s receive buffers, merging several with `merge` (MRG_RXBUF). */
  deliver(q: SplitQueue, frame: Uint8Array, merge: boolean): RxOutcome {
    return merge ? this.#merged(q, frame) : this.#single(q, frame);
  }

  #next(q: SplitQueue, minBytes: number): DescriptorChain | null {
    for (;;) {
      const chain = q.pop();
      if (!chain) return null;
      if (chain.writableBytes >= minBytes) return chain;
      this.#counters.rxShortBuffers++;
      q.pushUsed(chain, 0);
    }
  }

  #single(q: SplitQueue, frame: Uint8Array): RxOutcome {
    const chain = this.#held.shift() ?? this.#next(q, NET_HDR_BYTES + MIN_FRAME_BYTES);
    this.#heldBytes = 0;
    if (!chain) return 'noBuffers';
    const need = NET_HDR_BYTES + frame.length;
    if (chain.writableBytes < need) {
      this.#hold(chain);
      return 'tooBig';
    }
    this.#writeHeader(chain, 1);
    chain.writeBytes(frame, NET_HDR_BYTES);
    q.pushUsed(chain, need);
    return 'delivered';
  }

  #merged(q: SplitQueue, frame: Uint8Array): RxOutcome {
    const need = NET_HDR_BYTES + frame.length;
    while (this.#heldBytes < need) {
      if (this.#held.length >= q.size) return 'tooBig'; // every buffer the queue can have is held
      const chain = this.#next(q, NET_HDR_BYTES);
      if (!chain) return 'noBuffers';
      this.#hold(chain);
    }
    let count = 0;
    for (let have = 0; have < need; count++) have += this.#held[count].writableBytes;
    const used = this.#held.slice(0, count);
    this.#held = this.#held.slice(count);
    this.#heldBytes = this.#held.reduce((s, c) => s + c.writableBytes, 0);
    const items: { chain: DescriptorChain; len: number }[] = [];
    let at = 0; // frame bytes written so far
    for (const [i, chain] of used.entries()) {
      let len = 0;
      if (i === 0) {
        this.#writeHeader(chain, count);
        len = NET_HDR_BYTES;
      }
      const w = chain.writeBytes(frame.subarray(at, at + chain.writableBytes - len), len);
      at += w;
      items.push({ chain, len: len + w });
    }
    q.pushUsedBatch(items);
    return 'delivered';
  }

  #hold(chain: DescriptorChain): void {
    this.#held.push(chain);
    this.#heldBytes += chain.writableBytes;
  }

  #writeHeader(chain: DescriptorChain, numBuffers: number): void {
    const h = this.#hdr;
    h.fill(0);
    h[NET_HDR_NUM_BUFFERS] = numBuffers & 0xff;
    h[NET_HDR_NUM_BUFFERS + 1] = numBuffers >>> 8;
    chain.writeBytes(h, 0);
  }
}

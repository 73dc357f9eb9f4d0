/**
 * Ethernet frame limits and a bounded FIFO of frames, shared by virtio-net and the network
 * backends. A frame here is a complete Ethernet frame (destination MAC, source MAC,
 * EtherType, payload) without the FCS and without any virtio header.
 */

/** The shortest frame accepted: an Ethernet header (two MACs and the EtherType). */
export const MIN_FRAME_BYTES = 14;

/**
 * The longest frame accepted: 65535 bytes of IP packet plus the Ethernet header and one
 * VLAN tag, with a byte of slack (the limit QEMU's backends use, 65550).
 */
export const MAX_FRAME_BYTES = 65550;

/** True if `n` is a frame length within [{@link MIN_FRAME_BYTES}, {@link MAX_FRAME_BYTES}]. */
export function validFrameLength(n: number): boolean {
  return n >= MIN_FRAME_BYTES && n <= MAX_FRAME_BYTES;
}

/** Limits of a {@link FrameQueue}. */
export interface FrameQueueLimits {
  /** The most frames held (≥ 1). */
  readonly frames: number;
  /** The most bytes held, summed over the frames (≥ MAX_FRAME_BYTES is sensible). */
  readonly bytes: number;
}

/**
 * A FIFO of frames bounded by both a frame count and a byte total. {@link FrameQueue.push}
 * refuses what does not fit (the caller drops and counts it); it never grows past its limits.
 */
export class FrameQueue {
  /** The bounds. */
  readonly limits: FrameQueueLimits;
  #items: Uint8Array[] = [];
  #head = 0;
  #bytes = 0;

  /** An empty queue with `limits`. */
  constructor(limits: FrameQueueLimits) {
    this.limits = limits;
  }

  /** Frames held. */
  get length(): number {
    return this.#items.length - this.#head;
  }
  /** Bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Append `frame` if both limits allow it; false (nothing kept) otherwise. */
  push(frame: Uint8Array): boolean {
    if (this.length >= this.limits.frames || this.#bytes + frame.length > this.limits.bytes) return false;
    this.#items.push(frame);
    this.#bytes += frame.length;
    return true;
  }

  /** The oldest frame, or undefined. */
  peek(): Uint8Array | undefined {
    return this.#items[this.#head];
  }

  /** Remove and return the oldest frame, or undefined. */
  shift(): Uint8Array | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const f = this.#items[this.#head++];
    this.#bytes -= f.length;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return f;
  }

  /** Drop everything; returns how many frames were dropped. */
  clear(): number {
    const n = this.length;
    this.#items = [];
    this.#head = 0;
    this.#bytes = 0;
    return n;
  }
}

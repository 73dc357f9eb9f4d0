/** A bounded FIFO of bytes with bulk push and consume, for device input buffering. */
export class ByteRing {
  /** The most bytes it holds. */
  readonly capacity: number;
  readonly #buf: Uint8Array;
  #head = 0;
  #length = 0;

  /** An empty ring of `capacity` (≥ 1) bytes. */
  constructor(capacity: number) {
    this.capacity = capacity;
    this.#buf = new Uint8Array(capacity);
  }

  /** Bytes held. */
  get length(): number {
    return this.#length;
  }

  /** Append as much of `bytes` as fits; returns how many bytes were taken (the rest is not). */
  push(bytes: Uint8Array): number {
    const n = Math.min(bytes.length, this.capacity - this.#length);
    const buf = this.#buf;
    const tail = (this.#head + this.#length) % this.capacity;
    const first = Math.min(n, this.capacity - tail);
    buf.set(bytes.subarray(0, first), tail);
    buf.set(bytes.subarray(first, n), 0);
    this.#length += n;
    return n;
  }

  /** The oldest bytes as up to two views (no copy), valid until the next push or consume. */
  peek(): Uint8Array[] {
    const end = this.#head + this.#length;
    if (end <= this.capacity) return [this.#buf.subarray(this.#head, end)];
    return [this.#buf.subarray(this.#head), this.#buf.subarray(0, end - this.capacity)];
  }

  /** Drop the oldest `n` (≤ length) bytes. */
  consume(n: number): void {
    const k = Math.min(n, this.#length);
    this.#head = (this.#head + k) % this.capacity;
    this.#length -= k;
    if (this.#length === 0) this.#head = 0;
  }

  /** A copy of the bytes held, oldest first. */
  toBytes(): Uint8Array {
    const out = new Uint8Array(this.#length);
    let at = 0;
    for (const part of this.peek()) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Drop everything. */
  clear(): void {
    this.#head = this.#length = 0;
  }
}

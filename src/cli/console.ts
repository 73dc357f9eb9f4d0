/** The host side of the guest's consoles: bounded output sinks and the serial input. */
import { closeSync, openSync, writeSync } from 'node:fs';

/** What a {@link ByteSink} writes to: a Node Writable's `write` and `once('drain')` (e.g. process.stdout). */
export interface ByteSinkTarget {
  /** Queue `chunk`; false once the target wants no more until it emits 'drain'. */
  write(chunk: Uint8Array): boolean;
  /** Call `listener` once when the target can take more. */
  once(event: 'drain', listener: () => void): unknown;
}

/** Options for {@link ByteSink.stream}. */
export interface ByteSinkOptions {
  /** Most bytes held while the target applies backpressure; more are dropped (default {@link SINK_MAX_BUFFERED}). */
  maxBuffered?: number;
  /** Called once, at the first byte dropped, with the number of bytes then buffered. */
  onFirstDrop?: (buffered: number) => void;
}

/** Default bound on the bytes a {@link ByteSink} holds for a target that does not keep up: 1 MiB. */
export const SINK_MAX_BUFFERED = 2 ** 20;

/** Bytes per chunk handed to the target. */
const CHUNK = 4096;

/**
 * Bytes from the guest, batched and flushed on the next turn of the event loop. The sink
 * respects the target's backpressure: while the target has not drained, bytes wait here, at
 * most `maxBuffered` of them; the rest are dropped and counted ({@link dropped}), so a reader
 * that never reads costs at most that much memory and never blocks the event loop.
 */
export class ByteSink {
  readonly #target: ByteSinkTarget;
  readonly #close: () => void;
  readonly #max: number;
  readonly #onFirstDrop: ((buffered: number) => void) | undefined;
  readonly #queue: Uint8Array[] = [];
  #queued = 0;
  #buf = new Uint8Array(CHUNK);
  #len = 0;
  #scheduled = false;
  #waiting = false;
  #broken = false;
  #dropped = 0;

  private constructor(target: ByteSinkTarget, close: () => void, opts: ByteSinkOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const { maxBuffered = SINK_MAX_BUFFERED, onFirstDrop } = opts;
    if (typeof maxBuffered !== 'number' || !Number.isSafeInteger(maxBuffered) || maxBuffered < CHUNK)
      throw new RangeError(`opts.maxBuffered must be an integer of at least ${CHUNK}, got ${String(maxBuffered)}`);
    if (onFirstDrop !== undefined && typeof onFirstDrop !== 'function') throw new TypeError('opts.onFirstDrop must be a function');
    this.#target = target;
    this.#close = close;
    this.#max = maxBuffered;
    this.#onFirstDrop = onFirstDrop;
  }

  /**
   * A sink writing to a stream `target` (a Writable, or anything with its `write`/`once`).
   * Throws TypeError/RangeError naming a bad argument.
   */
  static stream(target: ByteSinkTarget, opts: ByteSinkOptions = {}): ByteSink {
    if (typeof target !== 'object' || target === null || typeof target.write !== 'function' || typeof target.once !== 'function')
      throw new TypeError('target must be a writable stream');
    return new ByteSink(target, () => {}, opts);
  }

  /** A sink writing to stdout; after a write error (EPIPE: nobody reads) output is discarded and the guest keeps running. */
  static stdout(opts: ByteSinkOptions = {}): ByteSink {
    const sink = ByteSink.stream(process.stdout, opts);
    process.stdout.on('error', () => sink.#discard());
    return sink;
  }

  /**
   * A sink writing to `path`, synchronously: truncated first, or appended to with
   * `opts.append` (a restored guest continuing its output). Throws a Node error if it cannot be opened.
   */
  static file(path: string, opts: { append?: boolean } = {}): ByteSink {
    const fd = openSync(path, opts.append ? 'a' : 'w');
    const target: ByteSinkTarget = { write: (c) => (writeSync(fd, c), true), once: () => undefined };
    return new ByteSink(target, () => closeSync(fd), {});
  }

  /** Bytes held here, waiting for the target (at most `maxBuffered`). */
  get buffered(): number {
    return this.#queued + this.#len;
  }

  /** Bytes dropped because the target did not keep up. */
  get dropped(): number {
    return this.#dropped;
  }

  /** Queue one byte (dropped, and counted, when `maxBuffered` bytes are already waiting). */
  push(byte: number): void {
    if (this.#broken) return;
    if (this.buffered >= this.#max) return this.#drop();
    this.#buf[this.#len++] = byte;
    if (this.#len === CHUNK) this.#stage();
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Hand what is queued to the target, as far as its backpressure allows. */
  flush(): void {
    this.#scheduled = false;
    this.#stage();
    while (!this.#waiting && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      this.#queued -= chunk.length;
      if (!this.#target.write(chunk)) this.#wait();
    }
  }

  /** Write out everything still held (at most `maxBuffered` bytes, regardless of backpressure) and release the destination. */
  close(): void {
    this.#stage();
    for (const chunk of this.#queue.splice(0)) if (!this.#broken) this.#target.write(chunk);
    this.#queued = 0;
    this.#close();
  }

  /** Move the batch being filled to the queue. */
  #stage(): void {
    if (this.#len === 0) return;
    this.#queue.push(this.#buf.slice(0, this.#len));
    this.#queued += this.#len;
    this.#len = 0;
  }

  /** Stop writing until the target drains. */
  #wait(): void {
    this.#waiting = true;
    this.#target.once('drain', () => {
      this.#waiting = false;
      this.flush();
    });
  }

  #drop(): void {
    if (this.#dropped++ === 0) this.#onFirstDrop?.(this.buffered);
  }

  /** The target failed: hold nothing more. */
  #discard(): void {
    this.#broken = true;
    this.#queue.length = 0;
    this.#queued = 0;
    this.#len = 0;
  }
}

/** Ctrl-A: the escape byte of the terminal (as in QEMU's -nographic). */
const ESCAPE = 0x01;

/**
 * Stdin as the serial line. On a terminal it switches to raw mode (restored by
 * {@link SerialInput.close}, and on process exit) and interprets Ctrl-A x (quit) and
 * Ctrl-A Ctrl-A (a literal Ctrl-A). Elsewhere bytes pass through unchanged.
 */
export class SerialInput {
  readonly #raw: boolean;
  readonly #onData: (chunk: Buffer) => void;
  #escaped = false;
  #closed = false;
  readonly #restore = (): void => {
    if (this.#raw && process.stdin.isTTY) process.stdin.setRawMode(false);
  };

  /** Start reading stdin: bytes go to `send`; Ctrl-A x calls `quit`. */
  constructor(send: (bytes: Uint8Array) => void, quit: () => void) {
    this.#raw = process.stdin.isTTY === true;
    if (this.#raw) {
      process.stdin.setRawMode(true);
      process.on('exit', this.#restore);
    }
    this.#onData = (chunk: Buffer) => {
      if (!this.#raw) return void send(chunk);
      const out: number[] = [];
      for (const b of chunk) {
        if (this.#escaped) {
          this.#escaped = false;
          if (b === 0x78 || b === 0x58) return void quit();
          out.push(b === ESCAPE ? ESCAPE : b);
        } else if (b === ESCAPE) {
          this.#escaped = true;
        } else {
          out.push(b);
        }
      }
      if (out.length) send(Uint8Array.from(out));
    };
    process.stdin.on('data', this.#onData);
    process.stdin.on('error', () => {});
  }

  /** Stop reading and restore the terminal. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    process.stdin.removeListener('data', this.#onData);
    process.stdin.pause();
    this.#restore();
    process.removeListener('exit', this.#restore);
  }
}

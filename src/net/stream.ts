/**
 * QEMU's stream-socket network protocol (`-netdev stream`, `-netdev socket`; what `passt`
 * speaks on its Unix socket): each Ethernet frame preceded by its length as a 32-bit
 * big-endian number. {@link StreamFrameDecoder} reassembles frames from arbitrary chunks
 * with a buffer never larger than one frame; {@link StreamSocketBackend} runs it over a
 * connected stream (a Unix socket from {@link StreamSocketBackend.connect}, or any Duplex).
 */
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { NetBackend } from './backend.js';
import { MAX_FRAME_BYTES, MIN_FRAME_BYTES, validFrameLength } from './frame.js';
import { checkOptions, intOption } from '../virtio/devices/options.js';

/** Bytes of the length prefix. */
export const STREAM_LENGTH_BYTES = 4;

/** Prefix `frame` with its 32-bit big-endian length (a fresh array). */
export function encodeStreamFrame(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(STREAM_LENGTH_BYTES + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length, false);
  out.set(frame, STREAM_LENGTH_BYTES);
  return out;
}

/** Counters of a {@link StreamFrameDecoder}. */
export interface StreamDecoderStats {
  /** Complete frames handed out. */
  frames: number;
  /** Frames shorter than 14 bytes (skipped; the stream stays in step). */
  runts: number;
  /** Length prefixes above the maximum (the decoder stops: the stream cannot be trusted). */
  oversize: number;
}

/**
 * Reassembles length-prefixed frames. {@link push} takes chunks of any size and calls
 * `onFrame` with each complete frame (a fresh array). A length above `maxFrameBytes`
 * puts the decoder in its failed state: it returns false from then on and takes nothing.
 */
export class StreamFrameDecoder {
  /** Counters. */
  readonly stats: StreamDecoderStats = { frames: 0, runts: 0, oversize: 0 };
  /** The largest length accepted. */
  readonly maxFrameBytes: number;
  readonly #onFrame: (frame: Uint8Array) => void;
  readonly #prefix = new Uint8Array(STREAM_LENGTH_BYTES);
  #prefixHave = 0;
  #frame: Uint8Array | undefined;
  #frameHave = 0;
  #failed = false;

  /** A decoder handing frames to `onFrame`, accepting lengths up to `maxFrameBytes` (default 65550). */
  constructor(onFrame: (frame: Uint8Array) => void, maxFrameBytes = MAX_FRAME_BYTES) {
    if (typeof onFrame !== 'function') throw new TypeError('onFrame must be a function');
    this.#onFrame = onFrame;
    this.maxFrameBytes = intOption('maxFrameBytes', maxFrameBytes, 1, 0x7fffffff, MAX_FRAME_BYTES);
  }

  /** True once an oversize length was seen. */
  get failed(): boolean {
    return this.#failed;
  }
  /** Bytes held for an incomplete prefix or frame (at most 4 + maxFrameBytes). */
  get buffered(): number {
    return this.#frame ? STREAM_LENGTH_BYTES + this.#frameHave : this.#prefixHave;
  }

  /** Consume `chunk`; false if the stream is (now) broken by an oversize length. */
  push(chunk: Uint8Array): boolean {
    if (!(chunk instanceof Uint8Array)) throw new TypeError('chunk must be a Uint8Array');
    let at = 0;
    while (!this.#failed && at < chunk.length) {
      if (!this.#frame) {
        const n = Math.min(STREAM_LENGTH_BYTES - this.#prefixHave, chunk.length - at);
        this.#prefix.set(chunk.subarray(at, at + n), this.#prefixHave);
        this.#prefixHave += n;
        at += n;
        if (this.#prefixHave < STREAM_LENGTH_BYTES) break;
        this.#prefixHave = 0;
        const p = this.#prefix;
        const len = ((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]) >>> 0;
        if (len > this.maxFrameBytes) {
          this.stats.oversize++;
          this.#failed = true;
          break;
        }
        this.#frame = new Uint8Array(len);
        this.#frameHave = 0;
      }
      const f = this.#frame;
      const n = Math.min(f.length - this.#frameHave, chunk.length - at);
      f.set(chunk.subarray(at, at + n), this.#frameHave);
      this.#frameHave += n;
      at += n;
      if (this.#frameHave === f.length) {
        this.#frame = undefined;
        if (f.length >= MIN_FRAME_BYTES) {
          this.stats.frames++;
          this.#onFrame(f);
        } else this.stats.runts++;
      }
    }
    return !this.#failed;
  }
}

/** Options of {@link StreamSocketBackend}. */
export interface StreamSocketOptions {
  /** Bytes the socket may hold unsent before frames are dropped, in [65554, 256 MiB] (default 1 MiB). */
  readonly maxWriteBuffer?: number;
}

/** Counters of a {@link StreamSocketBackend}. */
export interface StreamSocketStats {
  /** Frames written to the socket, and their bytes (without prefixes). */
  txFrames: number;
  txBytes: number;
  /** Frames dropped: invalid length, closed socket, or too much unsent data. */
  txDropped: number;
  /** Frames read from the socket. */
  rxFrames: number;
  /** Frames read while no receiver was set (dropped). */
  rxNoReceiver: number;
  /** Frames of fewer than 14 bytes in the stream (skipped). */
  rxRunts: number;
  /** Oversize lengths (each closed the connection). */
  rxOversize: number;
  /** Socket errors (each closed the connection). */
  errors: number;
  /** Receivers that threw (the exception is swallowed). */
  receiverErrors: number;
}

/** A NetBackend over a connected stream carrying QEMU's length-prefixed frames. */
export class StreamSocketBackend implements NetBackend {
  /** Counters. */
  readonly stats: StreamSocketStats = { txFrames: 0, txBytes: 0, txDropped: 0, rxFrames: 0, rxNoReceiver: 0, rxRunts: 0, rxOversize: 0, errors: 0, receiverErrors: 0 };
  /** Unsent bytes allowed before frames are dropped. */
  readonly maxWriteBuffer: number;
  readonly #stream: Duplex;
  readonly #decoder: StreamFrameDecoder;
  #receiver: ((frame: Uint8Array) => void) | undefined;
  #closed = false;
  #lastError: unknown;
  readonly #closeListeners: (() => void)[] = [];

  /**
   * Connect to the Unix socket at `path` (e.g. one `passt` or `qemu -netdev stream,server=on`
   * listens on). Rejects with the connection error.
   */
  static connect(path: string, options?: StreamSocketOptions): Promise<StreamSocketBackend> {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    checkOptions<StreamSocketOptions>(options, true);
    return new Promise((resolve, reject) => {
      const sock: Socket = netConnect({ path });
      const fail = (e: Error): void => reject(e);
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.off('error', fail);
        resolve(new StreamSocketBackend(sock, options));
      });
    });
  }

  /** Run over `stream`, already connected (a net.Socket or any Duplex of bytes). */
  constructor(stream: Duplex, options?: StreamSocketOptions) {
    if (typeof stream !== 'object' || stream === null || typeof stream.write !== 'function' || typeof stream.on !== 'function') {
      throw new TypeError('stream must be a connected Duplex (e.g. a net.Socket)');
    }
    const o = checkOptions<StreamSocketOptions>(options, true);
    this.maxWriteBuffer = intOption('maxWriteBuffer', o.maxWriteBuffer, MAX_FRAME_BYTES + STREAM_LENGTH_BYTES, 256 * 1024 * 1024, 1024 * 1024);
    this.#stream = stream;
    this.#decoder = new StreamFrameDecoder((f) => this.#deliver(f));
    stream.on('data', (chunk: Buffer | string) => this.#data(chunk));
    stream.on('error', (e: unknown) => {
      this.stats.errors++;
      this.#lastError = e;
      this.close();
    });
    stream.on('close', () => this.close());
    stream.on('end', () => this.close());
  }

  /** True once closed (by close(), the peer, an error or an oversize length). */
  get closed(): boolean {
    return this.#closed;
  }
  /** The socket error that closed the backend, if one did. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Call `cb` once when the backend closes (at once if it already has). */
  onClose(cb: () => void): void {
    if (typeof cb !== 'function') throw new TypeError('cb must be a function');
    if (this.#closed) queueMicrotask(cb);
    else this.#closeListeners.push(cb);
  }

  /** Write `frame` with its length prefix; dropped (counted) if invalid, closed, or too much is unsent. */
  send(frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array) || !validFrameLength(frame.length) || this.#closed
      || this.#stream.writableLength + frame.length + STREAM_LENGTH_BYTES > this.maxWriteBuffer) {
      this.stats.txDropped++;
      return;
    }
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    this.#stream.write(encodeStreamFrame(frame));
  }

  /** Set (or with undefined, clear) the receiver of incoming frames. */
  onFrame(cb: ((frame: Uint8Array) => void) | undefined): void {
    if (cb !== undefined && typeof cb !== 'function') throw new TypeError('cb must be a function or undefined');
    this.#receiver = cb;
  }

  /** Close the connection; idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#receiver = undefined;
    this.#stream.destroy();
    for (const cb of this.#closeListeners.splice(0)) {
      try {
        cb();
      } catch {
        /* a listener's trouble is its own */
      }
    }
  }

  #data(chunk: Buffer | string): void {
    if (this.#closed) return;
    if (typeof chunk === 'string') chunk = Buffer.from(chunk);
    const before = this.#decoder.stats.runts;
    const ok = this.#decoder.push(chunk);
    this.stats.rxRunts += this.#decoder.stats.runts - before;
    if (!ok) {
      this.stats.rxOversize++;
      this.close();
    }
  }

  #deliver(frame: Uint8Array): void {
    this.stats.rxFrames++;
    const cb = this.#receiver;
    if (!cb) {
      this.stats.rxNoReceiver++;
      return;
    }
    try {
      cb(frame);
    } catch {
      this.stats.receiverErrors++;
    }
  }
}

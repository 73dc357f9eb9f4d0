/**
 * A NetBackend on an existing TAP interface (created beforehand, e.g. `ip tuntap add dev
 * tap0 mode tap user $USER`): the addon opens /dev/net/tun non-blocking and binds it to the
 * interface (IFF_TAP | IFF_NO_PI: each read or write is one bare Ethernet frame).
 *
 * Frames from the interface: an FdWatcher (uv_poll on the main thread's event loop) wakes
 * the backend, which reads at most `maxReadsPerWakeup` frames before letting the loop run
 * again (the watcher fires again while more are queued). Frames to the interface are
 * written at once; a write the kernel refuses (EAGAIN: its queue is full; EIO: the link is
 * down) drops the frame and counts it. A read error other than EAGAIN closes the backend.
 */
import { KvmError } from '../errors.js';
import { native, type NativeFdWatcher, type NativeFileFd } from '../kvm/native.js';
import type { NetBackend } from './backend.js';
import { MAX_FRAME_BYTES, validFrameLength } from './frame.js';
import { checkOptions, intOption } from '../virtio/devices/options.js';

/** Options of {@link TapBackend}. */
export interface TapBackendOptions {
  /** Frames read per event-loop wakeup, at most, in [1, 4096] (default 64). */
  readonly maxReadsPerWakeup?: number;
}

/** Counters of a {@link TapBackend}. */
export interface TapStats {
  /** Frames written to the interface, and their bytes. */
  txFrames: number;
  txBytes: number;
  /** Frames dropped on the way out (invalid length, closed, or a refused write). */
  txDropped: number;
  /** Frames read from the interface. */
  rxFrames: number;
  /** Reads outside [14, 65550] bytes, or while no receiver was set (dropped). */
  rxDropped: number;
  /** Wakeups that stopped at maxReadsPerWakeup with frames possibly left. */
  rxBudgetHits: number;
  /** Receivers that threw (the exception is swallowed). */
  receiverErrors: number;
}

function errnoCode(e: unknown): string | undefined {
  return e instanceof KvmError ? e.code : undefined;
}

/** A NetBackend bound to an existing TAP interface. */
export class TapBackend implements NetBackend {
  /** The interface name. */
  readonly name: string;
  /** The most frames read per wakeup. */
  readonly maxReadsPerWakeup: number;
  /** Counters. */
  readonly stats: TapStats = { txFrames: 0, txBytes: 0, txDropped: 0, rxFrames: 0, rxDropped: 0, rxBudgetHits: 0, receiverErrors: 0 };
  readonly #file: NativeFileFd;
  readonly #watcher: NativeFdWatcher;
  #receiver: ((frame: Uint8Array) => void) | undefined;
  #closed = false;
  #lastError: unknown;

  /**
   * Attach to the TAP interface `name` (1-15 bytes). Throws KvmError: ENODEV if there is no
   * such interface, EPERM / EBUSY / EINVAL from TUNSETIFF (no permission, already attached
   * elsewhere without multi-queue, not a TAP), or open's errno for /dev/net/tun.
   */
  constructor(name: string, options?: TapBackendOptions) {
    if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
    if (name.length === 0 || Buffer.byteLength(name) > 15) throw new RangeError(`name must have 1 to 15 bytes, got ${JSON.stringify(name)}`);
    const o = checkOptions<TapBackendOptions>(options, true);
    this.maxReadsPerWakeup = intOption('maxReadsPerWakeup', o.maxReadsPerWakeup, 1, 4096, 64);
    this.name = name;
    const n = native();
    this.#file = new n.FileFd(n.tapOpen(name, false));
    try {
      this.#watcher = new n.FdWatcher(this.#file.fd, (err) => this.#readable(err));
    } catch (e) {
      this.#file.close();
      throw e;
    }
  }

  /** True once closed (by close() or a read error). */
  get closed(): boolean {
    return this.#closed;
  }
  /** The error that closed the backend, or the last refused write's. */
  get lastError(): unknown {
    return this.#lastError;
  }

  /** Write `frame` to the interface; dropped (counted) if invalid, closed or refused. */
  send(frame: Uint8Array): void {
    if (!(frame instanceof Uint8Array) || !validFrameLength(frame.length) || this.#closed) {
      this.stats.txDropped++;
      return;
    }
    try {
      this.#file.write(frame);
      this.stats.txFrames++;
      this.stats.txBytes += frame.length;
    } catch (e) {
      this.stats.txDropped++;
      this.#lastError = e;
    }
  }

  /** Set (or with undefined, clear) the receiver of incoming frames. */
  onFrame(cb: ((frame: Uint8Array) => void) | undefined): void {
    if (cb !== undefined && typeof cb !== 'function') throw new TypeError('cb must be a function or undefined');
    this.#receiver = cb;
  }

  /** Stop watching and close the fd (the interface itself stays); idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#receiver = undefined;
    this.#watcher.close();
    this.#file.close();
  }

  #readable(err: number | null): void {
    if (this.#closed) return;
    if (err !== null) {
      this.#lastError = new Error(`poll on ${this.name} failed: errno ${err}`);
      this.close();
      return;
    }
    for (let i = 0; i < this.maxReadsPerWakeup; i++) {
      let frame: Uint8Array;
      try {
        frame = new Uint8Array(this.#file.read(MAX_FRAME_BYTES));
      } catch (e) {
        const code = errnoCode(e);
        if (code === 'EAGAIN' || code === 'EINTR') return;
        this.#lastError = e;
        this.close();
        return;
      }
      if (frame.length === 0) return;
      this.#deliver(frame);
      if (this.#closed) return;
    }
    this.stats.rxBudgetHits++;
  }

  #deliver(frame: Uint8Array): void {
    const cb = this.#receiver;
    if (!validFrameLength(frame.length) || !cb) {
      this.stats.rxDropped++;
      return;
    }
    this.stats.rxFrames++;
    try {
      cb(frame);
    } catch {
      this.stats.receiverErrors++;
    }
  }
}

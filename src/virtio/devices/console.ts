/**
 * virtio-console (virtio 1.2 §5.3) with a single port and no MULTIPORT: receiveq0 (queue 0)
 * carries host input to the guest, transmitq0 (queue 1) guest output to the host.
 *
 * Output: each transmit chain's readable bytes, at most {@link VirtioConsole.maxTxBytes} of
 * them (the excess is dropped and counted), go to `options.output`, and the chain returns
 * with used length 0. Input: {@link VirtioConsole.input} buffers up to
 * {@link VirtioConsole.inputLimit} bytes (the excess is dropped and counted) and hands them
 * out as the guest posts receive buffers — across resets too: input typed before the driver
 * is up waits for it.
 *
 * Configuration (12 bytes): cols (le16 at 0), rows (le16 at 2), max_nr_ports (le32 at 4,
 * always 1) and emerg_wr (le32 at 8): with F_EMERG_WRITE, always offered, a write covering
 * byte 8 outputs that one byte, even before the driver is set up (§5.3.5.1). F_SIZE is
 * offered when cols and rows are given. The field order is the virtio 1.2 one (cols first);
 * Linux read the two the other way round until its commit 5326ab737a47.
 *
 * Snapshots keep the pending input bytes and the size; input that arrives while the device
 * is quiesced waits in the buffer.
 *
 * Exceptions thrown by `output` are caught and counted (`outputErrors`, and
 * {@link VirtioConsole.lastOutputError}): a failing sink must not wedge the guest's queue.
 * Guest errors never throw: chains without the right kind of buffer are returned with used
 * length 0 and counted, and a QueueError ends the activation with needsReset.
 */
import type { DescriptorChain } from '../chain.js';
import { VIRTIO_DEVICE_TYPE, type VirtioContext, type VirtioDevice } from '../device.js';
import type { SplitQueue } from '../queue.js';
import { ByteRing } from './byte-ring.js';
import { ConfigSpace, checkConfigAccess, checkConfigValue, type ConfigAccessSize } from './config-space.js';
import { DeviceCore, checkContext, checkQueueIndex, type ChainHandler } from './core.js';
import { featureBits, hasFeature } from './features.js';
import { checkOptions, intOption, queueSizeOption } from './options.js';
import { checkDeviceState, checkNothingInFlight, type DeviceStateBase } from './state.js';
import { stateBytes, toBase64 } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';

/** The state of a {@link VirtioConsole}: pending input and the console size (its queues are the transport's). */
export interface VirtioConsoleState extends DeviceStateBase {
  /** Input bytes waiting for receive buffers, oldest first, base64 (at most inputLimit bytes). */
  input: string;
  /** cols in the configuration space (0 without F_SIZE). */
  cols: number;
  /** rows in the configuration space (0 without F_SIZE). */
  rows: number;
}

/** Feature bit numbers of the console device (§5.3.3). */
export const VIRTIO_CONSOLE_F = {
  /** cols and rows are valid. */
  SIZE: 0,
  /** Several ports and the control queues (not implemented here). */
  MULTIPORT: 1,
  /** emerg_wr is valid. */
  EMERG_WRITE: 2,
} as const;

/** Byte offsets of struct virtio_console_config (virtio 1.2 order), and its size. */
export const VIRTIO_CONSOLE_CONFIG = { COLS: 0, ROWS: 2, MAX_NR_PORTS: 4, EMERG_WR: 8, SIZE: 12 } as const;

/** Queue indices of port 0. */
export const VIRTIO_CONSOLE_QUEUE = { RECEIVE: 0, TRANSMIT: 1 } as const;

/** Options of {@link VirtioConsole}. */
export interface VirtioConsoleOptions {
  /** Receives the guest's output (a fresh array per call). */
  readonly output: (bytes: Uint8Array) => void;
  /** Console width for F_SIZE, in [1, 65535]; give both cols and rows or neither. */
  readonly cols?: number;
  /** Console height for F_SIZE, in [1, 65535]. */
  readonly rows?: number;
  /** Size of each queue: a power of two in [1, 32768] (default 64). */
  readonly queueSize?: number;
  /** Input bytes buffered while the guest has no receive buffer, in [1, 16 MiB] (default 64 KiB). */
  readonly inputLimit?: number;
  /** Output bytes taken from one transmit chain, in [1, 16 MiB] (default 64 KiB). */
  readonly maxTxBytes?: number;
}

/** Counters of a {@link VirtioConsole} (cumulative across resets). */
export interface ConsoleStats {
  /** Transmit chains served. */
  txChains: number;
  /** Bytes given to `output` (transmit queue and emerg_wr). */
  outputBytes: number;
  /** Transmit bytes dropped past maxTxBytes of a chain. */
  txTruncated: number;
  /** Calls to `output` that threw. */
  outputErrors: number;
  /** Bytes written through emerg_wr. */
  emergWrites: number;
  /** Input bytes accepted into the buffer. */
  inputBytes: number;
  /** Input bytes dropped because the buffer was full. */
  inputDropped: number;
  /** Receive chains served. */
  rxChains: number;
  /** Input bytes delivered to the guest. */
  delivered: number;
  /** Chains without the buffers their queue needs (no writable bytes on receive, no readable on transmit). */
  empty: number;
}

/** Chains served per turn before the rest is deferred to setImmediate. */
const TURN_BUDGET = 64;

function checkDimension(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 1 || v > 0xffff) throw new RangeError(`${name} must be an integer in [1, 65535], got ${v}`);
  return v;
}

/** The virtio console device, single port. */
export class VirtioConsole implements VirtioDevice {
  /** {@link VIRTIO_DEVICE_TYPE}.CONSOLE. */
  readonly deviceType: number = VIRTIO_DEVICE_TYPE.CONSOLE;
  /** EMERG_WRITE, plus SIZE when cols and rows were given. */
  readonly features: bigint;
  /** receiveq0 and transmitq0. */
  readonly queueSizes: readonly number[];
  /** struct virtio_console_config: 12 bytes. */
  readonly configSize: number = VIRTIO_CONSOLE_CONFIG.SIZE;
  /** The most input bytes buffered. */
  readonly inputLimit: number;
  /** The most output bytes taken from one transmit chain. */
  readonly maxTxBytes: number;
  /** Counters. */
  readonly stats: ConsoleStats = {
    txChains: 0, outputBytes: 0, txTruncated: 0, outputErrors: 0, emergWrites: 0, inputBytes: 0, inputDropped: 0,
    rxChains: 0, delivered: 0, empty: 0,
  };
  readonly #output: (bytes: Uint8Array) => void;
  readonly #config = new ConfigSpace(VIRTIO_CONSOLE_CONFIG.SIZE);
  readonly #input: ByteRing;
  readonly #core = new DeviceCore(2);
  #negotiated = 0n;
  #lastOutputError: unknown;
  readonly #receive: ChainHandler = (chain, q) => this.#receiveChain(chain, q);
  readonly #transmit: ChainHandler = (chain, q) => this.#transmitChain(chain, q);
  readonly #hasInput = (): boolean => this.#input.length > 0;

  /** A console writing guest output to `options.output`; TypeError / RangeError naming a bad option. */
  constructor(options: VirtioConsoleOptions) {
    const o = checkOptions<VirtioConsoleOptions>(options, false);
    if (typeof o.output !== 'function') throw new TypeError('options.output must be a function');
    this.#output = o.output;
    if ((o.cols === undefined) !== (o.rows === undefined)) throw new TypeError('options.cols and options.rows must be given together');
    const sized = o.cols !== undefined;
    if (sized) {
      this.#config.setU16(VIRTIO_CONSOLE_CONFIG.COLS, checkDimension('options.cols', o.cols));
      this.#config.setU16(VIRTIO_CONSOLE_CONFIG.ROWS, checkDimension('options.rows', o.rows));
    }
    this.#config.setU32(VIRTIO_CONSOLE_CONFIG.MAX_NR_PORTS, 1);
    this.features = featureBits(VIRTIO_CONSOLE_F.EMERG_WRITE) | (sized ? featureBits(VIRTIO_CONSOLE_F.SIZE) : 0n);
    const size = queueSizeOption(o.queueSize, 1, 64);
    this.queueSizes = [size, size];
    this.inputLimit = intOption('inputLimit', o.inputLimit, 1, 16 * 1024 * 1024, 64 * 1024);
    this.maxTxBytes = intOption('maxTxBytes', o.maxTxBytes, 1, 16 * 1024 * 1024, 64 * 1024);
    this.#input = new ByteRing(this.inputLimit);
  }

  /** Input bytes waiting for receive buffers. */
  get buffered(): number {
    return this.#input.length;
  }
  /** The last exception `output` threw (undefined if none). */
  get lastOutputError(): unknown {
    return this.#lastOutputError;
  }
  /** The console width in the configuration space (0 without F_SIZE). */
  get cols(): number {
    return this.#config.read(VIRTIO_CONSOLE_CONFIG.COLS, 2);
  }
  /** The console height in the configuration space (0 without F_SIZE). */
  get rows(): number {
    return this.#config.read(VIRTIO_CONSOLE_CONFIG.ROWS, 2);
  }

  /**
   * Feed guest input: buffers what fits within inputLimit (the rest is dropped and counted)
   * and delivers to posted receive buffers right away. Returns the bytes accepted.
   */
  input(bytes: Uint8Array): number {
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    const taken = this.#input.push(bytes);
    this.stats.inputBytes += taken;
    this.stats.inputDropped += bytes.length - taken;
    this.#pumpReceive();
    return taken;
  }

  /**
   * Change cols and rows (each in [1, 65535]); with F_SIZE negotiated, raise a configuration
   * change so the driver re-reads them. Error if F_SIZE is not offered (no initial size).
   */
  resize(cols: number, rows: number): void {
    const c = checkDimension('cols', cols);
    const r = checkDimension('rows', rows);
    if (!hasFeature(this.features, VIRTIO_CONSOLE_F.SIZE)) throw new Error('resize needs F_SIZE: give options.cols and options.rows');
    this.#config.setU16(VIRTIO_CONSOLE_CONFIG.COLS, c);
    this.#config.setU16(VIRTIO_CONSOLE_CONFIG.ROWS, r);
    if (this.#core.serving && hasFeature(this.#negotiated, VIRTIO_CONSOLE_F.SIZE)) this.#core.ctx!.configChanged();
  }

  /** Read the configuration space (emerg_wr reads 0; RangeError outside the 12 bytes). */
  readConfig(offset: number, size: ConfigAccessSize): number {
    return this.#config.read(offset, size);
  }

  /** A write covering emerg_wr's low byte (offset 8) outputs that byte; other fields are read-only. */
  writeConfig(offset: number, size: ConfigAccessSize, value: number): void {
    checkConfigAccess(this.configSize, offset, size);
    checkConfigValue(size, value);
    const at = VIRTIO_CONSOLE_CONFIG.EMERG_WR;
    if (offset <= at && at < offset + size) {
      this.stats.emergWrites++;
      this.#emit(Uint8Array.of((value >>> (8 * (at - offset))) & 0xff));
    }
  }

  /** Start serving both queues. */
  activate(ctx: VirtioContext): void {
    this.#core.activate(ctx);
    this.#negotiated = ctx.features;
    this.#pumpTransmit();
    this.#pumpReceive();
  }

  /** The driver notified receiveq0 (0: new receive buffers) or transmitq0 (1: output). */
  notify(index: number): void {
    if (checkQueueIndex(index, 2) === VIRTIO_CONSOLE_QUEUE.RECEIVE) this.#pumpReceive();
    else this.#pumpTransmit();
  }

  /** Stop serving; buffered input is kept for the next activation. */
  reset(): void {
    this.#core.reset();
    this.#negotiated = 0n;
  }

  /** Stop serving (nothing is ever in flight); input keeps being buffered. */
  quiesce(): Promise<void> {
    this.#core.pause();
    return Promise.resolve();
  }

  /** Serve again: output posted meanwhile, then buffered input. */
  resume(): void {
    this.#core.resume();
    this.#pumpTransmit();
    this.#pumpReceive();
  }

  /** The device's state (see {@link VirtioConsoleState}). */
  snapshot(): VirtioConsoleState {
    return { failed: this.#core.failedActivation, input: toBase64(this.#input.toBytes()), cols: this.cols, rows: this.rows };
  }

  /**
   * Check `state` — input within inputLimit, a size only with F_SIZE offered — and return
   * the function that applies it and takes up the restored activation `ctx`.
   */
  prepareRestore(state: VirtioConsoleState, ctx: VirtioContext | undefined): () => void {
    const s = checkDeviceState(state);
    const input = stateBytes(s.input, 'state.input', this.inputLimit);
    const sized = hasFeature(this.features, VIRTIO_CONSOLE_F.SIZE);
    const cols = checkInt(s.cols, 'state.cols', sized ? 1 : 0, sized ? 0xffff : 0);
    const rows = checkInt(s.rows, 'state.rows', sized ? 1 : 0, sized ? 0xffff : 0);
    if (ctx) checkContext(ctx, 2);
    checkNothingInFlight(ctx);
    return () => {
      this.#core.restore(ctx, s.failed);
      this.#negotiated = ctx?.features ?? 0n;
      this.#input.clear();
      this.#input.push(input);
      if (sized) {
        this.#config.setU16(VIRTIO_CONSOLE_CONFIG.COLS, cols);
        this.#config.setU16(VIRTIO_CONSOLE_CONFIG.ROWS, rows);
      }
    };
  }

  #pumpReceive(): void {
    this.#core.serve(VIRTIO_CONSOLE_QUEUE.RECEIVE, TURN_BUDGET, this.#receive, this.#hasInput);
  }

  #pumpTransmit(): void {
    this.#core.serve(VIRTIO_CONSOLE_QUEUE.TRANSMIT, TURN_BUDGET, this.#transmit);
  }

  #receiveChain(chain: DescriptorChain, q: SplitQueue): boolean {
    this.stats.rxChains++;
    if (chain.writableBytes === 0) {
      this.stats.empty++;
      return q.pushUsed(chain, 0);
    }
    let n = 0;
    for (const part of this.#input.peek()) {
      const w = chain.writeBytes(part, n);
      n += w;
      if (w < part.length) break;
    }
    this.#input.consume(n);
    this.stats.delivered += n;
    return q.pushUsed(chain, n);
  }

  #transmitChain(chain: DescriptorChain, q: SplitQueue): boolean {
    this.stats.txChains++;
    if (chain.readableBytes === 0) this.stats.empty++;
    const n = Math.min(chain.readableBytes, this.maxTxBytes);
    this.stats.txTruncated += chain.readableBytes - n;
    const bytes = chain.readBytes(n);
    const pushed = q.pushUsed(chain, 0);
    this.#emit(bytes);
    return pushed;
  }

  #emit(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    this.stats.outputBytes += bytes.length;
    try {
      this.#output(bytes);
    } catch (e) {
      this.stats.outputErrors++;
      this.#lastOutputError = e;
    }
  }
}

/**
 * virtio-net (virtio 1.2 §5.1) with one queue pair and no control queue: receiveq0 (queue
 * 0) carries frames from a {@link NetBackend} to the guest, transmitq0 (queue 1) the
 * guest's frames to the backend.
 *
 * Offered features: MAC, STATUS, MRG_RXBUF (unless `mergeRxBuffers: false`), MTU when
 * `mtu` is given, and VERSION_1, so every buffer starts with the 12-byte virtio_net_hdr.
 * No offloads: the driver sends frames with complete checksums and no GSO, and the device
 * hands it the same. Configuration (12 bytes): mac (0-5), status (le16 at 6: LINK_UP),
 * max_virtqueue_pairs (le16 at 8: 1), mtu (le16 at 10); all read-only.
 *
 * Transmit: each chain's readable part is the header (ignored: nothing it could ask for
 * was offered) and one frame. Chains shorter than the header, and frames outside [14,
 * 65550] bytes, are dropped and counted; every chain returns with used length 0.
 *
 * Receive: frames from the backend wait in a queue bounded by `rxQueueFrames` and
 * `rxQueueBytes` until the guest posts receive buffers; past those bounds, and while the
 * driver is not up or the link is down, frames are dropped and counted. Reset drops the
 * waiting frames, and so does a snapshot: its state does not hold them.
 *
 * A restore may give the device a new MAC ({@link VirtioNetOverrides}, for a clone): the
 * configuration space shows it and, when the driver negotiated VIRTIO_NET_F_MAC, resume()
 * raises a configuration change. Drivers read the MAC when they probe the device (Linux
 * does not read it again on a configuration change), so a running guest keeps using the
 * old address until it re-probes; restore clones before their guests' drivers come up, or
 * give each clone's guest its address some other way. Guest errors never throw: a QueueError ends the activation with needsReset.
 */
import type { DescriptorChain } from '../chain.js';
import { VIRTIO_DEVICE_TYPE, VIRTIO_F_VERSION_1, type VirtioContext, type VirtioDevice } from '../device.js';
import type { SplitQueue } from '../queue.js';
import { checkBackend, type NetBackend } from '../../net/backend.js';
import { FrameQueue, MAX_FRAME_BYTES, MIN_FRAME_BYTES, validFrameLength } from '../../net/frame.js';
import { formatMac, parseMac, randomMac } from '../../net/mac.js';
import { ConfigSpace, checkConfigAccess, checkConfigValue, type ConfigAccessSize } from './config-space.js';
import { DeviceCore, checkContext, checkQueueIndex, type ChainHandler } from './core.js';
import { featureBits, hasFeature } from './features.js';
import { NET_HDR_BYTES, NET_MTU_RANGE, VIRTIO_NET_CONFIG, VIRTIO_NET_F, VIRTIO_NET_QUEUE, VIRTIO_NET_S } from './net-constants.js';
import { NetReceiver } from './net-rx.js';
import { boolOption, checkOptions, intOption, queueSizeOption } from './options.js';
import { checkDeviceState, checkHeldChains, checkNothingInFlight, checkOverrides, type DeviceStateBase } from './state.js';
import { stateBool } from '../../pci/state-check.js';

/**
 * The state of a {@link VirtioNet} (its queues are the transport's). Frames waiting for
 * receive buffers are not part of it: they are dropped, as a network may drop any frame.
 */
export interface VirtioNetState extends DeviceStateBase {
  /** The MAC address in the configuration space, "xx:xx:xx:xx:xx:xx". */
  mac: string;
  /** The link state (configuration status LINK_UP). */
  linkUp: boolean;
  /** Receive chains the device held for the next frame, by head, in order. */
  heldRx: number[];
}

/** What a restore may change ({@link VirtioNet.prepareRestore}): a clone's own identity. */
export interface VirtioNetOverrides {
  /** A new MAC address for the restored device (string or 6 bytes); default the state's. */
  readonly mac?: string | Uint8Array;
}

/** Options of {@link VirtioNet}. */
export interface VirtioNetOptions {
  /** Where frames go and come from. */
  readonly backend: NetBackend;
  /** The MAC address ("52:54:00:12:34:56" or 6 bytes; default a random locally administered one). */
  readonly mac?: string | Uint8Array;
  /** Report this maximum MTU (VIRTIO_NET_F_MTU), in [68, 65535]; default: not offered. */
  readonly mtu?: number;
  /** Offer VIRTIO_NET_F_MRG_RXBUF (default true). */
  readonly mergeRxBuffers?: boolean;
  /** Size of each queue: a power of two in [2, 32768] (default 256). */
  readonly queueSize?: number;
  /** Frames waiting for receive buffers, at most, in [1, 65536] (default 256). */
  readonly rxQueueFrames?: number;
  /** Bytes of frames waiting for receive buffers, at most, in [65550, 256 MiB] (default 1 MiB). */
  readonly rxQueueBytes?: number;
}

/** Counters of a {@link VirtioNet} (cumulative across resets). */
export interface NetStats {
  /** Transmit chains served. */
  txChains: number;
  /** Frames given to the backend, and their bytes. */
  txFrames: number;
  txBytes: number;
  /** Transmit chains shorter than the 12-byte header (dropped). */
  txBadHeader: number;
  /** Transmitted frames shorter than 14 bytes (dropped). */
  txTooShort: number;
  /** Transmitted frames longer than 65550 bytes (dropped). */
  txTooLong: number;
  /** Transmitted frames dropped because the link is down. */
  txLinkDown: number;
  /** Calls to backend.send that threw. */
  txErrors: number;
  /** Frames written to the guest, and their bytes (without headers). */
  rxFrames: number;
  rxBytes: number;
  /** Frames from the backend outside [14, 65550] bytes (dropped). */
  rxInvalid: number;
  /** Frames dropped because the driver was not up or the link was down. */
  rxNotReady: number;
  /** Frames dropped because the waiting queue was full. */
  rxQueueFull: number;
  /** Frames dropped because the guest's receive buffers cannot hold them. */
  rxTooBig: number;
  /** Waiting frames dropped by a reset. */
  rxReset: number;
  /** Receive chains returned unused because they were too short for a header (and, without MRG_RXBUF, a minimal frame). */
  rxShortBuffers: number;
}

/** Chains (transmit) or frames (receive) served per turn before the rest is deferred to setImmediate. */
const TURN_BUDGET = 64;

/** The virtio network device, one queue pair. */
export class VirtioNet implements VirtioDevice {
  /** {@link VIRTIO_DEVICE_TYPE}.NET. */
  readonly deviceType: number = VIRTIO_DEVICE_TYPE.NET;
  /** MAC, STATUS, VERSION_1, and MRG_RXBUF and MTU as configured. */
  readonly features: bigint;
  /** receiveq0 and transmitq0. */
  readonly queueSizes: readonly number[];
  /** mac, status, max_virtqueue_pairs, mtu: 12 bytes. */
  readonly configSize: number = VIRTIO_NET_CONFIG.SIZE;
  /** The backend the device sends to and receives from. */
  readonly backend: NetBackend;
  /** The MAC address (a copy). */
  readonly mac: Uint8Array;
  /** Counters. */
  readonly stats: NetStats = {
    txChains: 0, txFrames: 0, txBytes: 0, txBadHeader: 0, txTooShort: 0, txTooLong: 0, txLinkDown: 0, txErrors: 0,
    rxFrames: 0, rxBytes: 0, rxInvalid: 0, rxNotReady: 0, rxQueueFull: 0, rxTooBig: 0, rxReset: 0, rxShortBuffers: 0,
  };
  readonly #config = new ConfigSpace(VIRTIO_NET_CONFIG.SIZE);
  readonly #core = new DeviceCore(2);
  readonly #pending: FrameQueue;
  readonly #rx: NetReceiver;
  #merge = false;
  #negotiated = 0n;
  #linkUp = true;
  #lastSendError: unknown;
  #configChangePending = false;
  readonly #transmit: ChainHandler = (chain, q) => this.#transmitChain(chain, q);

  /** A network device on `options.backend`; TypeError / RangeError naming a bad option. */
  constructor(options: VirtioNetOptions) {
    const o = checkOptions<VirtioNetOptions>(options, false);
    this.backend = checkBackend(o.backend, 'options.backend');
    this.mac = o.mac === undefined ? randomMac() : parseMac(o.mac, 'options.mac');
    const mtu = o.mtu === undefined ? undefined : intOption('mtu', o.mtu, NET_MTU_RANGE.MIN, NET_MTU_RANGE.MAX, 0);
    const merge = boolOption('mergeRxBuffers', o.mergeRxBuffers, true);
    const size = queueSizeOption(o.queueSize, 2, 256);
    this.queueSizes = [size, size];
    this.#pending = new FrameQueue({
      frames: intOption('rxQueueFrames', o.rxQueueFrames, 1, 65536, 256),
      bytes: intOption('rxQueueBytes', o.rxQueueBytes, MAX_FRAME_BYTES, 256 * 1024 * 1024, 1024 * 1024),
    });
    this.features = featureBits(VIRTIO_NET_F.MAC, VIRTIO_NET_F.STATUS, VIRTIO_F_VERSION_1)
      | (merge ? featureBits(VIRTIO_NET_F.MRG_RXBUF) : 0n)
      | (mtu !== undefined ? featureBits(VIRTIO_NET_F.MTU) : 0n);
    this.#config.bytes.set(this.mac, VIRTIO_NET_CONFIG.MAC);
    this.#config.setU16(VIRTIO_NET_CONFIG.STATUS, VIRTIO_NET_S.LINK_UP);
    this.#config.setU16(VIRTIO_NET_CONFIG.MAX_VIRTQUEUE_PAIRS, 1);
    if (mtu !== undefined) this.#config.setU16(VIRTIO_NET_CONFIG.MTU, mtu);
    this.#rx = new NetReceiver(this.stats);
    this.backend.onFrame((frame) => this.receive(frame));
  }

  /** The MAC address as "xx:xx:xx:xx:xx:xx". */
  get macString(): string {
    return formatMac(this.mac);
  }
  /** Frames waiting for receive buffers. */
  get rxPending(): number {
    return this.#pending.length;
  }
  /** Whether the link is up (configuration status LINK_UP). */
  get linkUp(): boolean {
    return this.#linkUp;
  }
  /** The last exception backend.send threw (undefined if none). */
  get lastSendError(): unknown {
    return this.#lastSendError;
  }

  /**
   * Set the link state: the status field's LINK_UP bit, with a configuration change
   * interrupt if the driver negotiated STATUS. While down, frames are dropped both ways.
   */
  setLinkUp(up: boolean): void {
    if (typeof up !== 'boolean') throw new TypeError(`up must be a boolean, got ${typeof up}`);
    if (up === this.#linkUp) return;
    this.#linkUp = up;
    this.#config.setU16(VIRTIO_NET_CONFIG.STATUS, up ? VIRTIO_NET_S.LINK_UP : 0);
    if (!up) this.stats.rxNotReady += this.#pending.clear();
    if (this.#core.serving && hasFeature(this.#negotiated, VIRTIO_NET_F.STATUS)) this.#core.ctx!.configChanged();
  }

  /**
   * A frame for the guest (what the backend's onFrame delivers; callable directly): queued
   * for the receive queue and written at once if buffers are posted. Returns false if it was
   * dropped (invalid length, driver not up, link down, queue full; each counted).
   */
  receive(frame: Uint8Array): boolean {
    if (!(frame instanceof Uint8Array)) throw new TypeError('frame must be a Uint8Array');
    if (!validFrameLength(frame.length)) {
      this.stats.rxInvalid++;
      return false;
    }
    if (!this.#core.serving || !this.#linkUp) {
      this.stats.rxNotReady++;
      return false;
    }
    if (!this.#pending.push(frame)) {
      this.stats.rxQueueFull++;
      return false;
    }
    this.#pumpReceive();
    return true;
  }

  /** Read the configuration space (RangeError outside the 12 bytes). */
  readConfig(offset: number, size: ConfigAccessSize): number {
    return this.#config.read(offset, size);
  }

  /** Every field is read-only for a VERSION_1 driver: writes are checked and ignored. */
  writeConfig(offset: number, size: ConfigAccessSize, value: number): void {
    checkConfigAccess(this.configSize, offset, size);
    checkConfigValue(size, value);
  }

  /** Start serving both queues. */
  activate(ctx: VirtioContext): void {
    this.#core.activate(ctx);
    this.#forget();
    this.#negotiated = ctx.features;
    this.#merge = hasFeature(ctx.features, VIRTIO_NET_F.MRG_RXBUF);
    this.#pumpTransmit();
  }

  /** The driver notified receiveq0 (0: new receive buffers) or transmitq0 (1: frames to send). */
  notify(index: number): void {
    if (checkQueueIndex(index, 2) === VIRTIO_NET_QUEUE.RECEIVE) this.#pumpReceive();
    else this.#pumpTransmit();
  }

  /** Stop serving; frames waiting for receive buffers are dropped (counted in rxReset). */
  reset(): void {
    this.#core.reset();
    this.#forget();
    this.#negotiated = 0n;
    this.#merge = false;
  }

  /** Stop serving (frames from the backend keep waiting, within the bounds); nothing is in flight. */
  quiesce(): Promise<void> {
    this.#core.pause();
    return Promise.resolve();
  }

  /** Serve again (and raise the configuration change a new MAC left pending). */
  resume(): void {
    this.#core.resume();
    if (this.#configChangePending && this.#core.serving) this.#core.ctx!.configChanged();
    this.#configChangePending = false;
    this.#pumpTransmit();
    this.#pumpReceive();
  }

  /** The device's state (see {@link VirtioNetState}); held chains only of a receive queue still running. */
  snapshot(): VirtioNetState {
    const rxq = this.#core.serving ? this.#core.ctx!.queues[VIRTIO_NET_QUEUE.RECEIVE] : undefined;
    const heldRx = rxq?.enabled && !rxq.error ? this.#rx.heldHeads : [];
    return { failed: this.#core.failedActivation, mac: this.macString, linkUp: this.#linkUp, heldRx };
  }

  /**
   * Check `state` (and `overrides`) and return the function that applies it and takes up
   * the restored activation `ctx`: the held receive chains must be exactly the receive
   * queue's in-flight ones. Frames waiting in this device are dropped (counted in rxReset).
   */
  prepareRestore(state: VirtioNetState, ctx: VirtioContext | undefined, overrides: VirtioNetOverrides = {}): () => void {
    const s = checkDeviceState(state);
    const saved = parseMac(s.mac, 'state.mac');
    const linkUp = stateBool(s.linkUp, 'state.linkUp');
    const o = checkOverrides<VirtioNetOverrides>(overrides);
    const mac = o.mac === undefined ? saved : parseMac(o.mac, 'overrides.mac');
    if (ctx) checkContext(ctx, 2);
    const held = checkHeldChains(s.heldRx, 'state.heldRx', ctx, VIRTIO_NET_QUEUE.RECEIVE);
    checkNothingInFlight(ctx, [VIRTIO_NET_QUEUE.RECEIVE]);
    return () => {
      this.#core.restore(ctx, s.failed);
      this.#forget();
      this.#negotiated = ctx?.features ?? 0n;
      this.#merge = hasFeature(this.#negotiated, VIRTIO_NET_F.MRG_RXBUF);
      this.#rx.restoreHeld(held.map((h) => ctx!.queues[VIRTIO_NET_QUEUE.RECEIVE]!.reclaim(h)));
      this.#linkUp = linkUp;
      this.#config.setU16(VIRTIO_NET_CONFIG.STATUS, linkUp ? VIRTIO_NET_S.LINK_UP : 0);
      this.mac.set(mac);
      this.#config.bytes.set(mac, VIRTIO_NET_CONFIG.MAC);
      this.#configChangePending = formatMac(mac) !== formatMac(saved) && hasFeature(this.#negotiated, VIRTIO_NET_F.MAC);
    };
  }

  #forget(): void {
    this.stats.rxReset += this.#pending.clear();
    this.#rx.forget();
  }

  #pumpTransmit(): void {
    this.#core.serve(VIRTIO_NET_QUEUE.TRANSMIT, TURN_BUDGET, this.#transmit);
  }

  #pumpReceive(): void {
    const q = this.#core.queue(VIRTIO_NET_QUEUE.RECEIVE);
    if (!q) return;
    const before = q.nextUsed;
    try {
      for (let turn = 0; this.#pending.length > 0; turn++) {
        if (turn >= TURN_BUDGET) {
          this.#core.later(VIRTIO_NET_QUEUE.RECEIVE, () => this.#pumpReceive());
          break;
        }
        const frame = this.#pending.peek()!;
        const outcome = this.#rx.deliver(q, frame, this.#merge);
        if (outcome === 'noBuffers') {
          if (q.enableNotifications()) continue; // buffers raced with the check
          break;
        }
        this.#pending.shift();
        if (outcome === 'tooBig') this.stats.rxTooBig++;
        else {
          this.stats.rxFrames++;
          this.stats.rxBytes += frame.length;
        }
      }
    } catch (e) {
      this.#core.fail(e);
      return;
    }
    if (q.nextUsed !== before) this.#core.interrupt(VIRTIO_NET_QUEUE.RECEIVE);
  }

  #transmitChain(chain: DescriptorChain, q: SplitQueue): boolean {
    const s = this.stats;
    s.txChains++;
    const n = chain.readableBytes - NET_HDR_BYTES;
    let frame: Uint8Array | undefined;
    if (n < 0) s.txBadHeader++;
    else if (n < MIN_FRAME_BYTES) s.txTooShort++;
    else if (n > MAX_FRAME_BYTES) s.txTooLong++;
    else if (!this.#linkUp) s.txLinkDown++;
    else frame = chain.readBytes(n, NET_HDR_BYTES);
    const pushed = q.pushUsed(chain, 0);
    if (frame) this.#send(frame);
    return pushed;
  }

  #send(frame: Uint8Array): void {
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    try {
      this.backend.send(frame);
    } catch (e) {
      this.stats.txErrors++;
      this.#lastSendError = e;
    }
  }
}

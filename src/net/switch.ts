/**
 * An in-process learning L2 switch: connects the network devices of one or more VMs in the
 * same process. Each {@link NetSwitch.port} is a {@link NetBackend}.
 *
 * A frame sent into a port teaches the switch that its source MAC lives there (a table of at
 * most `maxMacs` entries, the least recently learned evicted first), then goes to the port
 * that learned its destination MAC, or to every other port when the destination is a group
 * address (broadcast, multicast) or unknown. A frame is never sent back out of the port it
 * came in on. Delivery is asynchronous: each port has an outgoing queue bounded by frames
 * and bytes (past that, frames are dropped and counted), drained from setImmediate, so a
 * receiver that answers at once cannot recurse into the sender. {@link NetSwitch.flush}
 * drains synchronously.
 */
import type { NetBackend } from './backend.js';
import { FrameQueue, validFrameLength } from './frame.js';
import { isGroupMac, macKey } from './mac.js';
import { checkOptions, intOption } from '../virtio/devices/options.js';

/** Options of {@link NetSwitch}. */
export interface NetSwitchOptions {
  /** MAC table entries, at most, in [1, 1 << 20] (default 4096). */
  readonly maxMacs?: number;
  /** Frames queued towards one port, at most, in [1, 65536] (default 256). */
  readonly queueFrames?: number;
  /** Bytes queued towards one port, at most, in [65550, 256 MiB] (default 1 MiB). */
  readonly queueBytes?: number;
}

/** Counters of a {@link NetSwitch}. */
export interface NetSwitchStats {
  /** Frames sent into ports. */
  frames: number;
  /** Frames with a length outside [14, 65550] (dropped). */
  invalid: number;
  /** Frames that went to one learned port. */
  unicast: number;
  /** Frames flooded (group or unknown destination). */
  flooded: number;
  /** Frames whose destination was learned on the port they came from (dropped). */
  hairpin: number;
  /** Copies dropped because a port's queue was full. */
  queueFull: number;
  /** Copies handed to a port's receiver. */
  delivered: number;
  /** Copies dropped because the port had no receiver. */
  noReceiver: number;
  /** Receivers that threw (the exception is swallowed). */
  receiverErrors: number;
}

/** One port of a {@link NetSwitch}: a NetBackend for one device. */
export interface NetSwitchPort extends NetBackend {
  /** The port's name (given, or "port<N>"). */
  readonly name: string;
  /** True after close(). */
  readonly closed: boolean;
  /** Frames waiting to be delivered to this port's receiver. */
  readonly queued: number;
}

class Port implements NetSwitchPort {
  readonly queue: FrameQueue;
  receiver: ((frame: Uint8Array) => void) | undefined;
  closed = false;
  constructor(readonly name: string, readonly sw: NetSwitch, queueFrames: number, queueBytes: number) {
    this.queue = new FrameQueue({ frames: queueFrames, bytes: queueBytes });
  }
  get queued(): number {
    return this.queue.length;
  }
  send(frame: Uint8Array): void {
    if (!this.closed) this.sw.forward(this, frame);
  }
  onFrame(cb: ((frame: Uint8Array) => void) | undefined): void {
    if (cb !== undefined && typeof cb !== 'function') throw new TypeError('cb must be a function or undefined');
    this.receiver = cb;
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.receiver = undefined;
    this.queue.clear();
    this.sw.detach(this);
  }
}

/** The in-process learning switch. */
export class NetSwitch {
  /** The MAC table bound. */
  readonly maxMacs: number;
  /** Counters. */
  readonly stats: NetSwitchStats = {
    frames: 0, invalid: 0, unicast: 0, flooded: 0, hairpin: 0, queueFull: 0, delivered: 0, noReceiver: 0, receiverErrors: 0,
  };
  readonly #queueFrames: number;
  readonly #queueBytes: number;
  readonly #ports = new Set<Port>();
  readonly #macs = new Map<number, Port>();
  readonly #dirty = new Set<Port>();
  #scheduled = false;
  #count = 0;

  /** A switch with no ports; TypeError / RangeError naming a bad option. */
  constructor(options?: NetSwitchOptions) {
    const o = checkOptions<NetSwitchOptions>(options, true);
    this.maxMacs = intOption('maxMacs', o.maxMacs, 1, 1 << 20, 4096);
    this.#queueFrames = intOption('queueFrames', o.queueFrames, 1, 65536, 256);
    this.#queueBytes = intOption('queueBytes', o.queueBytes, 65550, 256 * 1024 * 1024, 1024 * 1024);
  }

  /** Open ports. */
  get portCount(): number {
    return this.#ports.size;
  }
  /** Learned MAC addresses. */
  get macCount(): number {
    return this.#macs.size;
  }

  /** A new port (a NetBackend for one device); `name` defaults to "port<N>". */
  port(name?: string): NetSwitchPort {
    if (name !== undefined && typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
    const p = new Port(name ?? `port${this.#count}`, this, this.#queueFrames, this.#queueBytes);
    this.#count++;
    this.#ports.add(p);
    return p;
  }

  /** The name of the port that learned `mac` (6 bytes at `offset` of `bytes`), or undefined. */
  lookup(bytes: Uint8Array, offset = 0): string | undefined {
    return this.#macs.get(macKey(bytes, offset))?.name;
  }

  /** Deliver every queued frame now (otherwise this happens from setImmediate). */
  flush(): void {
    for (let round = 0; this.#dirty.size > 0 && round < 1024; round++) {
      const ports = [...this.#dirty];
      this.#dirty.clear();
      for (const p of ports) this.#drain(p);
    }
    if (this.#dirty.size > 0) this.#schedule();
  }

  /** @internal A frame sent into `from`. */
  forward(from: Port, frame: Uint8Array): void {
    const s = this.stats;
    s.frames++;
    if (!(frame instanceof Uint8Array) || !validFrameLength(frame.length)) {
      s.invalid++;
      return;
    }
    if (!isGroupMac(frame, 6)) this.#learn(macKey(frame, 6), from);
    const to = isGroupMac(frame, 0) ? undefined : this.#macs.get(macKey(frame, 0));
    if (to === from) {
      s.hairpin++;
      return;
    }
    if (to) {
      s.unicast++;
      this.#enqueue(to, frame);
      return;
    }
    s.flooded++;
    for (const p of this.#ports) if (p !== from) this.#enqueue(p, frame);
  }

  /** @internal `port` closed: forget it and what it learned. */
  detach(port: Port): void {
    this.#ports.delete(port);
    this.#dirty.delete(port);
    for (const [k, p] of this.#macs) if (p === port) this.#macs.delete(k);
  }

  #learn(key: number, port: Port): void {
    const had = this.#macs.get(key);
    if (had === port) return;
    if (had) this.#macs.delete(key);
    else if (this.#macs.size >= this.maxMacs) this.#macs.delete(this.#macs.keys().next().value!);
    this.#macs.set(key, port);
  }

  #enqueue(port: Port, frame: Uint8Array): void {
    if (!port.queue.push(frame)) {
      this.stats.queueFull++;
      return;
    }
    this.#dirty.add(port);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.flush();
    });
  }

  #drain(port: Port): void {
    // only what is queued now: a receiver that sends back towards this port cannot hold the loop
    for (let n = port.queue.length; n > 0; n--) {
      const f = port.queue.shift()!;
      const cb = port.receiver;
      if (!cb) {
        this.stats.noReceiver++;
        continue;
      }
      this.stats.delivered++;
      try {
        cb(f);
      } catch {
        this.stats.receiverErrors++;
      }
    }
    if (port.queue.length > 0) this.#dirty.add(port);
  }
}

/**
 * The device side of a virtio 1.x split virtqueue (§2.7), over guest memory, without KVM.
 *
 * A transport (virtio-pci, virtio-mmio) keeps one {@link SplitQueue} per queue and maps
 * its per-queue registers onto it: queue_size → {@link SplitQueue.size}, queue_desc /
 * queue_driver / queue_device → {@link SplitQueue.descAddr}, {@link SplitQueue.availAddr},
 * {@link SplitQueue.usedAddr}, queue_enable = 1 → {@link SplitQueue.enable}, device reset
 * → {@link SplitQueue.reset}. The device then runs:
 *
 * ```ts
 * queue.disableNotifications();
 * do {
 *   for (let chain; (chain = queue.pop()); ) queue.pushUsed(chain, serve(chain));
 * } while (queue.enableNotifications()); // true: buffers arrived while notifications were off
 * if (queue.needsNotification()) irq.raise();
 * ```
 *
 * (A device that never calls enable/disableNotifications is correct too: notifications
 * stay enabled, and with EVENT_IDX {@link SplitQueue.pop} keeps avail_event current.)
 *
 * Guest misbehaviour ends in a dropped request (counted in {@link SplitQueue.errors}) or
 * a {@link QueueError}; see errors.ts for which is which. Misuse by the device itself
 * (wrong argument types, returning a chain twice) is a TypeError or RangeError naming
 * the argument.
 */
import {
  MAX_QUEUE_SIZE, RING_ALIGN, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY, ringBytes, type QueueFeatures,
} from './constants.js';
import { DescriptorChain, walkChain, type ChainLimits, type ChainOwner, type WalkedChain } from './chain.js';
import { QueueError, newQueueErrors, type DropReason, type QueueErrors } from './errors.js';
import { DescriptorTable, guestWritable, inMemory, type QueueMemory } from './memory.js';
import { checkQueueState, type CheckedQueueState, type SplitQueueState } from './queue-state.js';
import { openRings, type Rings } from './ring.js';
import { toHex } from '../pci/state-check.js';

/** Limits a device sets for its queue. */
export interface SplitQueueOptions {
  /** The largest size the device offers (queue_size after reset): a power of two in [1, 32768]. */
  readonly maxSize: number;
  /** The most bytes (readable plus writable) one chain may describe; default 2^32 - 1, at most that. */
  readonly maxChainBytes?: number;
  /** The most descriptors one indirect table may hold; default 32768, in [1, 32768]. */
  readonly maxIndirectEntries?: number;
}

/** Ring positions to start from instead of 0 (restoring a saved queue; tests). */
export interface QueueStart {
  /** The device's next available-ring index (a u16). */
  readonly availIdx: number;
  /** The device's next used-ring index (a u16); written to used.idx by enable(). */
  readonly usedIdx: number;
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function checkU16(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`${name} must be an integer in [0, 0xffff], got ${v}`);
  return v;
}

function checkAddress(name: string, v: unknown): number {
  const n = typeof v === 'bigint' && v >= 0n && v < 1n << 64n ? Number(v) : v;
  if (typeof n !== 'number') throw new TypeError(`${name} must be a number or a bigint, got ${typeof v}`);
  if (!Number.isInteger(n) || n < 0 || n > 2 ** 64) throw new RangeError(`${name} must be an integer in [0, 2^64), got ${String(v)}`);
  return n;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** One split virtqueue: the transport's registers for it, and the device's ring state. */
export class SplitQueue {
  /** Dropped requests so far, in total and by reason (kept across resets). */
  readonly errors: QueueErrors = newQueueErrors();
  /** The largest size the device offers. */
  readonly maxSize: number;
  /** The most bytes one chain may describe. */
  readonly maxChainBytes: number;
  /** The most descriptors one indirect table may hold. */
  readonly maxIndirectEntries: number;

  readonly #mem: QueueMemory;
  #size: number;
  #descAddr = 0;
  #availAddr = 0;
  #usedAddr = 0;
  #enabled = false;
  #error: QueueError | undefined;
  #features: QueueFeatures = { eventIdx: false, indirectDesc: false };
  #owner: ChainOwner;
  // State of the enabled queue.
  #rings: Rings | undefined;
  #table: DescriptorTable | undefined;
  #limits: ChainLimits | undefined;
  #nextAvail = 0;
  /** The last avail.idx read; entries in [nextAvail, availSeen) are known published. */
  #availSeen = 0;
  #nextUsed = 0;
  /** used.idx when needsNotification() last ran. */
  #signalled = 0;
  #pushedSinceSignal = 0;
  #notify = true;
  #inFlight = new Uint8Array(0);
  #inFlightCount = 0;
  /** In-flight chains of a restored state, until the device takes them back with reclaim(). */
  #reclaimable = new Map<number, WalkedChain>();

  /** A queue over `mem` with the device's `options`; it starts reset (size = maxSize, disabled). */
  constructor(mem: QueueMemory, options: SplitQueueOptions) {
    if (typeof mem !== 'object' || mem === null || typeof mem.isBacked !== 'function') {
      throw new TypeError('mem must be a QueueMemory (a GuestMemory or another GuestMemoryAccess)');
    }
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const { maxSize, maxChainBytes = 0xffff_ffff, maxIndirectEntries = MAX_QUEUE_SIZE } = options;
    if (typeof maxSize !== 'number') throw new TypeError(`options.maxSize must be a number, got ${typeof maxSize}`);
    if (!isPowerOfTwo(maxSize) || maxSize > MAX_QUEUE_SIZE) {
      throw new RangeError(`options.maxSize must be a power of two in [1, ${MAX_QUEUE_SIZE}], got ${maxSize}`);
    }
    if (typeof maxChainBytes !== 'number') throw new TypeError(`options.maxChainBytes must be a number, got ${typeof maxChainBytes}`);
    if (!Number.isInteger(maxChainBytes) || maxChainBytes < 0 || maxChainBytes > 0xffff_ffff) {
      throw new RangeError(`options.maxChainBytes must be an integer in [0, 2^32 - 1], got ${maxChainBytes}`);
    }
    if (typeof maxIndirectEntries !== 'number') {
      throw new TypeError(`options.maxIndirectEntries must be a number, got ${typeof maxIndirectEntries}`);
    }
    if (!Number.isInteger(maxIndirectEntries) || maxIndirectEntries < 1 || maxIndirectEntries > MAX_QUEUE_SIZE) {
      throw new RangeError(`options.maxIndirectEntries must be an integer in [1, ${MAX_QUEUE_SIZE}], got ${maxIndirectEntries}`);
    }
    this.#mem = mem;
    this.maxSize = maxSize;
    this.maxChainBytes = maxChainBytes;
    this.maxIndirectEntries = maxIndirectEntries;
    this.#size = maxSize;
    this.#owner = this.#newOwner();
  }

  /** queue_size: the driver may write any u16; enable() checks it. Changing it while enabled is a `ring-moved` QueueError. */
  get size(): number {
    return this.#size;
  }
  set size(value: number) {
    const v = checkU16('size', value);
    this.#checkUnchanged('size', this.#size, v);
    this.#size = v;
  }
  /** queue_desc: guest-physical address of the descriptor table (`ring-moved` if changed while enabled). */
  get descAddr(): number {
    return this.#descAddr;
  }
  set descAddr(value: number | bigint) {
    const v = checkAddress('descAddr', value);
    this.#checkUnchanged('descAddr', this.#descAddr, v);
    this.#descAddr = v;
  }
  /** queue_driver: guest-physical address of the available ring (`ring-moved` if changed while enabled). */
  get availAddr(): number {
    return this.#availAddr;
  }
  set availAddr(value: number | bigint) {
    const v = checkAddress('availAddr', value);
    this.#checkUnchanged('availAddr', this.#availAddr, v);
    this.#availAddr = v;
  }
  /** queue_device: guest-physical address of the used ring (`ring-moved` if changed while enabled). */
  get usedAddr(): number {
    return this.#usedAddr;
  }
  set usedAddr(value: number | bigint) {
    const v = checkAddress('usedAddr', value);
    this.#checkUnchanged('usedAddr', this.#usedAddr, v);
    this.#usedAddr = v;
  }

  /** queue_enable: true once enable() succeeded, until reset(). */
  get enabled(): boolean {
    return this.#enabled;
  }
  /** The error that stopped the queue, or undefined; cleared by reset(). */
  get error(): QueueError | undefined {
    return this.#error;
  }
  /** The features given to enable(). */
  get features(): QueueFeatures {
    return this.#features;
  }
  /** The device's next available-ring index (u16). */
  get nextAvail(): number {
    return this.#nextAvail;
  }
  /** The device's next used-ring index (u16): the value of used.idx it last wrote. */
  get nextUsed(): number {
    return this.#nextUsed;
  }
  /** Chains popped and not yet returned with pushUsed(). */
  get inFlight(): number {
    return this.#inFlightCount;
  }

  /**
   * The driver wrote queue_enable = 1: check the configuration and start the queue with
   * the negotiated `features`, at ring positions `start` (default 0, 0). Writes used.flags
   * = 0, used.idx and (with EVENT_IDX) avail_event. Throws a QueueError — `bad-config`
   * (size not a power of two in [1, maxSize], a misaligned ring) or `ring-unmapped` (a ring
   * not in guest memory, or the used ring in read-only memory) — and the queue stays
   * stopped until reset(). Does nothing if the
   * queue is already enabled or stopped.
   */
  enable(features: QueueFeatures, start: QueueStart = { availIdx: 0, usedIdx: 0 }): void {
    if (typeof features !== 'object' || features === null) throw new TypeError('features must be a QueueFeatures object');
    if (typeof features.eventIdx !== 'boolean') throw new TypeError('features.eventIdx must be a boolean');
    if (typeof features.indirectDesc !== 'boolean') throw new TypeError('features.indirectDesc must be a boolean');
    if (typeof start !== 'object' || start === null) throw new TypeError('start must be an object');
    const availIdx = checkU16('start.availIdx', start.availIdx);
    const usedIdx = checkU16('start.usedIdx', start.usedIdx);
    if (this.#enabled || this.#error) return;
    const size = this.#size;
    if (!isPowerOfTwo(size) || size > this.maxSize) {
      throw this.#stop(new QueueError('bad-config', `queue size ${size} is not a power of two in [1, ${this.maxSize}]`));
    }
    const addrs = { desc: this.#descAddr, avail: this.#availAddr, used: this.#usedAddr };
    for (const area of ['desc', 'avail', 'used'] as const) {
      if (addrs[area] % RING_ALIGN[area] !== 0) {
        throw this.#stop(new QueueError('bad-config', `${area} ring address ${hex(addrs[area])} is not ${RING_ALIGN[area]}-byte aligned`));
      }
    }
    this.#features = { eventIdx: features.eventIdx, indirectDesc: features.indirectDesc };
    this.#limits = this.#limitsFor(size, features.indirectDesc);
    try {
      this.#map();
      this.#nextAvail = this.#availSeen = availIdx;
      this.#nextUsed = this.#signalled = usedIdx;
      this.#pushedSinceSignal = 0;
      this.#notify = true;
      this.#inFlight = new Uint8Array(size);
      this.#inFlightCount = 0;
      const rings = this.#rings!;
      rings.setUsedFlags(0);
      rings.publishUsedIdx(usedIdx);
      if (features.eventIdx) rings.setAvailEvent(availIdx);
    } catch (e) {
      throw this.#fail(e);
    }
    this.#enabled = true;
  }

  /**
   * Take fresh views of the rings after the VMM changed guest memory's segments (views
   * taken by enable() would still show the old buffers). A `ring-unmapped` QueueError if a
   * ring is no longer backed. Does nothing unless the queue is enabled and running.
   */
  remap(): void {
    if (!this.#enabled || this.#error) return;
    try {
      this.#map();
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * The next available chain, validated, or null if there is none (or the queue is not
   * running). Malformed chains are dropped on the way (counted in {@link errors}; those
   * with a usable head are returned to the used ring with length 0), at most `size` of
   * them per call. With EVENT_IDX and notifications enabled, sets avail_event to the new
   * position. Throws a QueueError (`avail-idx`, `memory`) that stops the queue.
   */
  pop(): DescriptorChain | null {
    if (!this.#enabled || this.#error) return null;
    const rings = this.#rings!;
    const size = this.#size;
    let consumed = 0;
    let chain: DescriptorChain | null = null;
    try {
      while (consumed < size) {
        if (this.#nextAvail === this.#availSeen) {
          const idx = rings.availIdx();
          const pending = (idx - this.#nextAvail) & 0xffff;
          if (pending > size) throw this.#availIdxError(idx);
          this.#availSeen = idx;
          if (pending === 0) break;
        }
        const head = rings.availEntry(this.#nextAvail & (size - 1));
        this.#nextAvail = (this.#nextAvail + 1) & 0xffff;
        consumed++;
        if (head >= size) {
          this.#drop('headIndex');
          continue;
        }
        if (this.#inFlight[head]) {
          this.#drop('headInFlight');
          continue;
        }
        const walked = walkChain(this.#mem, this.#table!, head, this.#limits!);
        if (typeof walked === 'string') {
          this.#drop(walked);
          this.#putUsed(head, 0);
          continue;
        }
        this.#inFlight[head] = 1;
        this.#inFlightCount++;
        chain = new DescriptorChain(this.#mem, head, walked, this.#owner);
        break;
      }
      if (consumed > 0 && this.#features.eventIdx && this.#notify) rings.setAvailEvent(this.#nextAvail);
    } catch (e) {
      throw this.#fail(e);
    }
    return chain;
  }

  /**
   * Return `chain` to the driver through the used ring with `len` bytes written (0 to
   * chain.writableBytes): the element is written before used.idx is published. Returns
   * false, doing nothing, if the queue was reset since the chain was popped or is stopped.
   * RangeError if the chain was already returned. Throws a `memory` QueueError if the used
   * ring vanished.
   */
  pushUsed(chain: DescriptorChain, len: number): boolean {
    if (!(chain instanceof DescriptorChain)) throw new TypeError('chain must be a DescriptorChain from pop()');
    if (typeof len !== 'number') throw new TypeError(`len must be a number, got ${typeof len}`);
    if (!Number.isInteger(len) || len < 0 || len > chain.writableBytes) {
      throw new RangeError(`len must be an integer in [0, ${chain.writableBytes}] (the chain's writable bytes), got ${len}`);
    }
    if (chain.owner !== this.#owner || !this.#enabled || this.#error) return false;
    if (!this.#inFlight[chain.head]) throw new RangeError(`chain ${chain.head} was already returned with pushUsed`);
    try {
      this.#putUsed(chain.head, len);
    } catch (e) {
      throw this.#fail(e);
    }
    this.#inFlight[chain.head] = 0;
    this.#inFlightCount--;
    return true;
  }

  /**
   * Return several chains at once, in order, publishing used.idx once after all their
   * elements are written: the driver never sees part of the batch (virtio-net's merged
   * receive buffers must appear together). Each entry is checked as in {@link pushUsed}
   * before anything is written (TypeError / RangeError naming `items[i]`). Returns false,
   * writing nothing, if the queue was reset since the chains were popped or is stopped.
   */
  pushUsedBatch(items: readonly { readonly chain: DescriptorChain; readonly len: number }[]): boolean {
    if (!Array.isArray(items)) throw new TypeError('items must be an array of { chain, len }');
    const seen = new Set<number>();
    let stale = false;
    items.forEach(({ chain, len }, i) => {
      if (!(chain instanceof DescriptorChain)) throw new TypeError(`items[${i}].chain must be a DescriptorChain from pop()`);
      if (typeof len !== 'number') throw new TypeError(`items[${i}].len must be a number, got ${typeof len}`);
      if (!Number.isInteger(len) || len < 0 || len > chain.writableBytes) {
        throw new RangeError(`items[${i}].len must be an integer in [0, ${chain.writableBytes}] (the chain's writable bytes), got ${len}`);
      }
      if (chain.owner !== this.#owner) stale = true;
      else if (!this.#inFlight[chain.head] || seen.has(chain.head)) throw new RangeError(`items[${i}].chain (${chain.head}) was already returned`);
      seen.add(chain.head);
    });
    if (stale || !this.#enabled || this.#error) return false;
    if (items.length === 0) return true;
    const rings = this.#rings!;
    try {
      for (const { chain, len } of items) {
        rings.writeUsed(this.#nextUsed & (this.#size - 1), chain.head, len);
        this.#nextUsed = (this.#nextUsed + 1) & 0xffff;
      }
      rings.publishUsedIdx(this.#nextUsed);
    } catch (e) {
      throw this.#fail(e);
    }
    this.#pushedSinceSignal += items.length;
    for (const { chain } of items) this.#inFlight[chain.head] = 0;
    this.#inFlightCount -= items.length;
    return true;
  }

  /**
   * Whether the driver wants an interrupt for the used elements added since the last call:
   * with EVENT_IDX, if used.idx moved past used_event; otherwise unless avail.flags has
   * VIRTQ_AVAIL_F_NO_INTERRUPT. False if nothing was added. Call once after a batch of
   * pushUsed() (dropped chains count as added elements too).
   */
  needsNotification(): boolean {
    if (!this.#enabled || this.#error || this.#pushedSinceSignal === 0) return false;
    const now = this.#nextUsed;
    const old = this.#signalled;
    const wrapped = this.#pushedSinceSignal > 0xffff;
    this.#signalled = now;
    this.#pushedSinceSignal = 0;
    try {
      if (this.#features.eventIdx) {
        const event = this.#rings!.usedEvent();
        return wrapped || ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
      }
      return (this.#rings!.availFlags() & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * Ask the driver to notify again (EVENT_IDX: avail_event = next available index;
   * otherwise clear VIRTQ_USED_F_NO_NOTIFY), then re-read avail.idx. Returns true if
   * buffers are pending — ones the driver may have added without notifying while
   * notifications were off — so the device must pop again. Throws like pop().
   */
  enableNotifications(): boolean {
    if (!this.#enabled || this.#error) return false;
    this.#notify = true;
    const rings = this.#rings!;
    try {
      if (this.#features.eventIdx) rings.setAvailEvent(this.#nextAvail);
      else rings.setUsedFlags(0);
      // The store above is sequentially consistent: it is ordered before this load.
      const idx = rings.availIdx();
      const pending = (idx - this.#nextAvail) & 0xffff;
      if (pending > this.#size) throw this.#availIdxError(idx);
      this.#availSeen = idx;
      return pending !== 0;
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * Tell the driver not to notify while the device is polling: set VIRTQ_USED_F_NO_NOTIFY;
   * with EVENT_IDX, stop advancing avail_event (the driver notifies at most once more).
   */
  disableNotifications(): void {
    if (!this.#enabled || this.#error) return;
    this.#notify = false;
    if (this.#features.eventIdx) return;
    try {
      this.#rings!.setUsedFlags(VIRTQ_USED_F_NO_NOTIFY);
    } catch (e) {
      throw this.#fail(e);
    }
  }

  /**
   * Device reset: back to size = maxSize, addresses 0, disabled, no error. Chains popped
   * before the reset can no longer be returned (pushUsed gives false). Guest memory is not
   * touched; {@link errors} keeps counting.
   */
  reset(): void {
    this.#enabled = false;
    this.#error = undefined;
    this.#size = this.maxSize;
    this.#descAddr = this.#availAddr = this.#usedAddr = 0;
    this.#features = { eventIdx: false, indirectDesc: false };
    this.#owner = this.#newOwner();
    this.#rings = this.#table = this.#limits = undefined;
    this.#nextAvail = this.#availSeen = this.#nextUsed = this.#signalled = 0;
    this.#pushedSinceSignal = 0;
    this.#notify = true;
    this.#inFlight = new Uint8Array(0);
    this.#inFlightCount = 0;
    this.#reclaimable = new Map();
  }

  // ---------------------------------------------------------------- snapshot

  /**
   * A JSON-safe copy of the registers and ring positions (see {@link SplitQueueState}). A
   * stopped queue lists nothing in flight: its chains can never be returned.
   */
  snapshot(): SplitQueueState {
    const inFlight: number[] = [];
    if (!this.#error) {
      this.#inFlight.forEach((held, head) => {
        if (held) inFlight.push(head);
      });
    }
    const e = this.#error;
    return {
      size: this.#size, descAddr: toHex(this.#descAddr), availAddr: toHex(this.#availAddr), usedAddr: toHex(this.#usedAddr),
      enabled: this.#enabled, eventIdx: this.#features.eventIdx, indirectDesc: this.#features.indirectDesc,
      nextAvail: this.#nextAvail, availSeen: this.#availSeen, nextUsed: this.#nextUsed, signalled: this.#signalled,
      pushedSinceSignal: this.#pushedSinceSignal, notificationsEnabled: this.#notify, inFlight,
      error: e ? { kind: e.kind, message: e.message } : null,
    };
  }

  /**
   * Check `state` (from {@link snapshot}) against this queue's limits and its guest memory,
   * which must already hold the rings, and return the function that applies it. For a
   * running queue the chains listed in flight must still be valid chains in that memory;
   * the device takes them back with {@link reclaim}. Applying writes nothing to guest
   * memory: the queue goes on from the saved positions as if it had never stopped. Chains
   * popped before the restore go stale (pushUsed gives false). TypeError/RangeError naming
   * the field, changing nothing.
   */
  prepareRestore(state: SplitQueueState): () => void {
    const c = checkQueueState(state, this.maxSize, this.#mem);
    const walked = this.#walkInFlight(c);
    return () => this.#apply(c, walked);
  }

  /** Restore a state from {@link snapshot} (checked as {@link prepareRestore} does). */
  restore(state: SplitQueueState): void {
    this.prepareRestore(state)();
  }

  /**
   * Take back the chain at `head`, which a restored state listed as in flight, as a
   * {@link DescriptorChain} (a device that held it when the snapshot was taken holds it
   * again). RangeError if the restore listed no such chain or it was taken back already.
   */
  reclaim(head: number): DescriptorChain {
    checkU16('head', head);
    const walked = this.#reclaimable.get(head);
    if (!walked) throw new RangeError(`head ${head} is not an in-flight chain of the restored state (or was reclaimed already)`);
    this.#reclaimable.delete(head);
    return new DescriptorChain(this.#mem, head, walked, this.#owner);
  }

  /** Heads of restored in-flight chains not reclaimed yet, ascending. */
  get unreclaimed(): number[] {
    return [...this.#reclaimable.keys()];
  }

  #walkInFlight(c: CheckedQueueState): Map<number, WalkedChain> {
    const out = new Map<number, WalkedChain>();
    if (c.inFlight.length === 0) return out;
    const table = new DescriptorTable(this.#mem, c.desc, c.size);
    const limits = this.#limitsFor(c.size, c.indirectDesc);
    c.inFlight.forEach((head, i) => {
      const w = walkChain(this.#mem, table, head, limits);
      if (typeof w === 'string') throw new RangeError(`state.inFlight[${i}]: the chain at head ${head} in guest memory is not valid (${w})`);
      out.set(head, w);
    });
    return out;
  }

  #apply(c: CheckedQueueState, walked: Map<number, WalkedChain>): void {
    this.reset();
    this.#size = c.size;
    this.#descAddr = c.desc;
    this.#availAddr = c.avail;
    this.#usedAddr = c.used;
    this.#enabled = c.enabled;
    this.#error = c.error;
    this.#features = { eventIdx: c.eventIdx, indirectDesc: c.indirectDesc };
    this.#nextAvail = c.nextAvail;
    this.#availSeen = c.availSeen;
    this.#nextUsed = c.nextUsed;
    this.#signalled = c.signalled;
    this.#pushedSinceSignal = c.pushedSinceSignal;
    this.#notify = c.notify;
    if (!c.enabled || c.error) return;
    this.#limits = this.#limitsFor(c.size, c.indirectDesc);
    this.#map();
    this.#inFlight = new Uint8Array(c.size);
    for (const h of c.inFlight) this.#inFlight[h] = 1;
    this.#inFlightCount = c.inFlight.length;
    this.#reclaimable = walked;
  }

  #limitsFor(size: number, indirectDesc: boolean): ChainLimits {
    return { size, indirectDesc, maxIndirectEntries: this.maxIndirectEntries, maxChainBytes: this.maxChainBytes };
  }

  /** Check the three rings are backed and open views of them. */

  #map(): void {
    const bytes = ringBytes(this.#size);
    const areas = [['desc', this.#descAddr, bytes.desc], ['avail', this.#availAddr, bytes.avail], ['used', this.#usedAddr, bytes.used]] as const;
    for (const [area, gpa, len] of areas) {
      if (!inMemory(this.#mem, gpa, len)) {
        throw this.#stop(new QueueError('ring-unmapped', `${area} ring ${hex(gpa)}+${hex(len)} is not in guest memory`));
      }
    }
    if (!guestWritable(this.#mem, this.#usedAddr, bytes.used)) {
      throw this.#stop(new QueueError('ring-unmapped', `used ring ${hex(this.#usedAddr)}+${hex(bytes.used)} is in read-only memory`));
    }
    this.#table = new DescriptorTable(this.#mem, this.#descAddr, this.#size);
    this.#rings = openRings(this.#mem, this.#size, this.#availAddr, this.#usedAddr);
  }

  #putUsed(head: number, len: number): void {
    this.#rings!.writeUsed(this.#nextUsed & (this.#size - 1), head, len);
    this.#nextUsed = (this.#nextUsed + 1) & 0xffff;
    this.#rings!.publishUsedIdx(this.#nextUsed);
    this.#pushedSinceSignal++;
  }

  #drop(reason: DropReason): void {
    this.errors[reason]++;
    this.errors.dropped++;
  }

  #availIdxError(idx: number): QueueError {
    return this.#stop(new QueueError(
      'avail-idx',
      `avail.idx ${idx} is ${(idx - this.#nextAvail) & 0xffff} entries ahead of the device's ${this.#nextAvail} (queue size ${this.#size})`,
    ));
  }

  #checkUnchanged(name: string, current: number, next: number): void {
    if (!this.#enabled || current === next) return;
    throw this.#stop(new QueueError('ring-moved', `${name} changed from ${hex(current)} to ${hex(next)} while the queue is enabled`));
  }

  /** Stop the queue with `err` (keeping an earlier error) and return `err` to throw. */
  #stop(err: QueueError): QueueError {
    this.#error ??= err;
    return err;
  }

  /** `cause` as a QueueError (a host error under guest memory becomes `memory`), stopping the queue. */
  #fail(cause: unknown): QueueError {
    return this.#stop(toQueueError(cause));
  }

  #newOwner(): ChainOwner {
    const owner: ChainOwner = {
      fail: (cause) => (owner === this.#owner ? this.#fail(cause) : toQueueError(cause)),
    };
    return owner;
  }
}

function toQueueError(cause: unknown): QueueError {
  if (cause instanceof QueueError) return cause;
  const what = cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause);
  return new QueueError('memory', `guest memory access failed under a validated ring or buffer (${what})`, cause);
}

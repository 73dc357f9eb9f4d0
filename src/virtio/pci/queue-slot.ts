/**
 * One queue's registers in the common configuration (queue_size, queue_msix_vector,
 * queue_enable, queue_desc / queue_driver / queue_device) over its {@link SplitQueue}.
 *
 * The registers are kept here as the driver wrote them (each 64-bit address as two u32
 * halves, exact) and handed to the queue when the driver enables it. While the queue is
 * enabled the driver must not change them: such a write is passed on to the queue, which
 * stops with a `ring-moved` {@link QueueError}, returned to the caller to report.
 *
 * Each device reset retires the SplitQueue (reset, so it stays stopped: pop() gives
 * nothing and pushUsed() false) and starts a new one, so a device that kept a reference
 * from before the reset cannot take chains of the driver's next session.
 */
import { nested, stateHex, stateObject, toHex } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';
import type { QueueFeatures } from '../constants.js';
import { QueueError } from '../errors.js';
import type { QueueMemory } from '../memory.js';
import { SplitQueue } from '../queue.js';
import type { SplitQueueState } from '../queue-state.js';
import { VIRTIO_MSI_NO_VECTOR } from './constants.js';

/** The state of one queue's registers and its queue, for a snapshot. */
export interface QueueSlotState {
  /** queue_msix_vector (0xffff: none). */
  vector: number;
  /** queue_size as the driver wrote it. */
  size: number;
  /** queue_desc as written, hex. */
  desc: string;
  /** queue_driver as written, hex. */
  driver: string;
  /** queue_device as written, hex. */
  device: string;
  /** The queue itself. */
  queue: SplitQueueState;
}

/** A checked slot state: the restored queue (a new one, not yet in use) and the function that installs it. */
export interface PreparedSlot {
  /** The queue the slot will hold. */
  readonly queue: SplitQueue;
  /** Install the registers and the queue. */
  readonly commit: () => void;
}

const U64_MAX = 2n ** 64n - 1n;

/** Which ring address register. */
export type QueueAddressName = 'desc' | 'driver' | 'device';

/** The per-queue registers of one queue, and its SplitQueue. */
export class QueueSlot {
  /** queue_msix_vector (VIRTIO_MSI_NO_VECTOR when unmapped). */
  vector = VIRTIO_MSI_NO_VECTOR;
  readonly #mem: QueueMemory;
  readonly #maxSize: number;
  #queue: SplitQueue;
  #size: number;
  readonly #addr = { desc: [0, 0], driver: [0, 0], device: [0, 0] };

  /** The registers of a queue over `mem` of at most `maxSize` entries. */
  constructor(mem: QueueMemory, maxSize: number) {
    this.#mem = mem;
    this.#maxSize = maxSize;
    this.#queue = new SplitQueue(mem, { maxSize });
    this.#size = maxSize;
  }

  /** The queue of the current session (its maxSize is the device's size for it). */
  get queue(): SplitQueue {
    return this.#queue;
  }

  /** queue_size as written (the maximum after reset). */
  get size(): number {
    return this.#size;
  }

  /** queue_enable: 1 once enabled. */
  get enabled(): boolean {
    return this.queue.enabled;
  }

  /** A queue_size write of the u16 `value`; a QueueError if the queue is enabled and it differs. */
  writeSize(value: number): QueueError | undefined {
    this.#size = value;
    return this.#forward(() => (this.queue.size = value));
  }

  /** Half `half` (0 low, 1 high) of an address register. */
  readAddress(name: QueueAddressName, half: 0 | 1): number {
    return this.#addr[name][half];
  }

  /** A write of u32 `value` to half `half` of an address register; a QueueError as for writeSize. */
  writeAddress(name: QueueAddressName, half: 0 | 1, value: number): QueueError | undefined {
    this.#addr[name][half] = value;
    const v = this.#address(name);
    return this.#forward(() => {
      if (name === 'desc') this.queue.descAddr = v;
      else if (name === 'driver') this.queue.availAddr = v;
      else this.queue.usedAddr = v;
    });
  }

  /**
   * queue_enable = 1: program the queue from the registers and enable it with `features`.
   * A QueueError (bad size, misaligned or unmapped ring) leaves it stopped until reset.
   */
  enable(features: QueueFeatures): QueueError | undefined {
    if (this.queue.enabled) return undefined;
    return this.#forward(() => {
      const q = this.queue;
      q.size = this.#size;
      q.descAddr = this.#address('desc');
      q.availAddr = this.#address('driver');
      q.usedAddr = this.#address('device');
      q.enable(features);
    });
  }

  /** A JSON-safe copy of the registers and the queue (see {@link QueueSlotState}). */
  snapshot(): QueueSlotState {
    const a = (name: QueueAddressName) => toHex(this.#address(name));
    return { vector: this.vector, size: this.#size, desc: a('desc'), driver: a('driver'), device: a('device'), queue: this.#queue.snapshot() };
  }

  /**
   * Check `state` for this slot — `vector` must be NO_VECTOR or below `vectors`; a running
   * queue must use the ring `features` negotiated — and restore its queue into a new
   * SplitQueue (nothing else sees it until commit). TypeError/RangeError naming the field.
   */
  prepareRestore(state: QueueSlotState, vectors: number, features: QueueFeatures | undefined): PreparedSlot {
    const s = stateObject(state, 'state');
    const vector = checkInt(s.vector, 'state.vector', 0, 0xffff);
    if (vector !== VIRTIO_MSI_NO_VECTOR && vector >= vectors) throw new RangeError(`state.vector must be below ${vectors} or 0xffff, got ${vector}`);
    const size = checkInt(s.size, 'state.size', 0, 0xffff);
    const addr = { desc: stateHex(s.desc, 'state.desc', U64_MAX), driver: stateHex(s.driver, 'state.driver', U64_MAX), device: stateHex(s.device, 'state.device', U64_MAX) };
    const queue = new SplitQueue(this.#mem, { maxSize: this.#maxSize });
    nested('state.queue', () => queue.restore(s.queue as SplitQueueState));
    if (queue.enabled && !features) throw new RangeError('state.queue.enabled: a queue cannot be enabled before FEATURES_OK');
    if (queue.enabled && features && (queue.features.eventIdx !== features.eventIdx || queue.features.indirectDesc !== features.indirectDesc)) {
      throw new RangeError('state.queue: its eventIdx/indirectDesc are not the negotiated features');
    }
    const commit = () => {
      this.#queue.reset();
      this.#queue = queue;
      this.vector = vector;
      this.#size = size;
      for (const name of ['desc', 'driver', 'device'] as const) this.#addr[name] = [Number(addr[name] & 0xffff_ffffn), Number(addr[name] >> 32n)];
    };
    return { queue, commit };
  }

  /** Device reset: registers back to their initial values; the queue is retired and replaced. */
  reset(): void {
    this.#queue.reset();
    this.#queue = new SplitQueue(this.#mem, { maxSize: this.#maxSize });
    this.vector = VIRTIO_MSI_NO_VECTOR;
    this.#size = this.#maxSize;
    for (const a of Object.values(this.#addr)) a.fill(0);
  }

  #address(name: QueueAddressName): bigint {
    const [lo, hi] = this.#addr[name];
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  #forward(f: () => void): QueueError | undefined {
    try {
      f();
      return undefined;
    } catch (e) {
      if (e instanceof QueueError) return e;
      throw e;
    }
  }
}

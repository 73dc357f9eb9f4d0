/**
 * The common configuration structure (`virtio_pci_common_cfg`, virtio 1.2 §4.1.4.3) as
 * registers over the function's feature, queue and status state.
 *
 * The driver must access each field with its natural width (§4.1.3.1): u8 fields with
 * 1-byte, le16 with 2-byte, le32 with 4-byte accesses; a 64-bit field as its two 32-bit
 * halves (or, here, also as one 8-byte access). Any other access — the wrong width, an
 * offset inside a field, past the structure, a write to a read-only field — reads 0 and
 * is ignored, and {@link CommonConfig.read} / {@link CommonConfig.write} report it so the
 * function can count it.
 *
 * Per-queue registers show the queue queue_select names; for a queue that does not exist
 * they all read 0 (queue_size 0 tells the driver so) and ignore writes. A vector register
 * write of NO_VECTOR or of a vector the MSI-X table has is kept; any other value is
 * replaced by NO_VECTOR, which the driver reads back as the mapping failure.
 */
import type { QueueError } from '../errors.js';
import { CommonCfg, VIRTIO_MSI_NO_VECTOR } from './constants.js';
import type { FeatureNegotiation } from './features.js';
import type { QueueAddressName, QueueSlot } from './queue-slot.js';

/** What the common configuration needs from its function. */
export interface CommonConfigHost {
  /** device_status. */
  readonly status: number;
  /** config_generation. */
  readonly generation: number;
  /** A device_status write (u8). */
  writeStatus(value: number): void;
  /** queue_enable = 1 for queue `index`. Returns false if refused (e.g. before FEATURES_OK). */
  enableQueue(index: number): boolean;
  /** A register write stopped queue `index` with `error` (its rings moved while enabled). */
  queueFault(index: number, error: QueueError): void;
}

interface Field {
  readonly size: 1 | 2 | 4;
  read(): number;
  /** Absent for read-only fields; returns false if the write was refused. */
  write?(value: number): boolean | void;
}

/** The common configuration registers of one function (see the module comment). */
export class CommonConfig {
  /** config_msix_vector. */
  msixConfig = VIRTIO_MSI_NO_VECTOR;
  /** queue_select (any u16). */
  queueSelect = 0;
  readonly #features: FeatureNegotiation;
  readonly #slots: readonly QueueSlot[];
  readonly #vectors: number;
  readonly #host: CommonConfigHost;
  readonly #fields = new Map<number, Field>();

  /** Registers over `features` and queue `slots`, with `msixVectors` MSI-X vectors (0: none). */
  constructor(features: FeatureNegotiation, slots: readonly QueueSlot[], msixVectors: number, host: CommonConfigHost) {
    this.#features = features;
    this.#slots = slots;
    this.#vectors = msixVectors;
    this.#host = host;
    const f = this.#fields;
    const C = CommonCfg;
    const slot = () => this.#slots[this.queueSelect] as QueueSlot | undefined;
    f.set(C.DEVICE_FEATURE_SELECT, { size: 4, read: () => features.deviceSelect, write: (v) => void (features.deviceSelect = v) });
    f.set(C.DEVICE_FEATURE, { size: 4, read: () => features.deviceWord });
    f.set(C.DRIVER_FEATURE_SELECT, { size: 4, read: () => features.driverSelect, write: (v) => void (features.driverSelect = v) });
    f.set(C.DRIVER_FEATURE, { size: 4, read: () => features.driverWord, write: (v) => features.writeDriverWord(v) });
    f.set(C.CONFIG_MSIX_VECTOR, { size: 2, read: () => this.msixConfig, write: (v) => void (this.msixConfig = this.#vector(v)) });
    f.set(C.NUM_QUEUES, { size: 2, read: () => slots.length });
    f.set(C.DEVICE_STATUS, { size: 1, read: () => host.status, write: (v) => host.writeStatus(v) });
    f.set(C.CONFIG_GENERATION, { size: 1, read: () => host.generation });
    f.set(C.QUEUE_SELECT, { size: 2, read: () => this.queueSelect, write: (v) => void (this.queueSelect = v) });
    f.set(C.QUEUE_SIZE, {
      size: 2,
      read: () => slot()?.size ?? 0,
      write: (v) => this.#queueWrite((s) => s.writeSize(v)),
    });
    f.set(C.QUEUE_MSIX_VECTOR, {
      size: 2,
      read: () => slot()?.vector ?? 0,
      write: (v) => {
        const s = slot();
        if (!s) return false;
        s.vector = this.#vector(v);
      },
    });
    f.set(C.QUEUE_ENABLE, {
      size: 2,
      read: () => (slot()?.enabled ? 1 : 0),
      write: (v) => v === 1 && slot() !== undefined && host.enableQueue(this.queueSelect),
    });
    f.set(C.QUEUE_NOTIFY_OFF, { size: 2, read: () => (slot() ? this.queueSelect : 0) });
    const addresses: [number, QueueAddressName][] = [[C.QUEUE_DESC, 'desc'], [C.QUEUE_DRIVER, 'driver'], [C.QUEUE_DEVICE, 'device']];
    for (const [at, name] of addresses) {
      for (const half of [0, 1] as const) {
        f.set(at + 4 * half, {
          size: 4,
          read: () => slot()?.readAddress(name, half) ?? 0,
          write: (v) => this.#queueWrite((s) => s.writeAddress(name, half, v)),
        });
      }
    }
    f.set(C.QUEUE_NOTIFY_DATA, { size: 2, read: () => (slot() ? this.queueSelect : 0) });
    f.set(C.QUEUE_RESET, { size: 2, read: () => 0 });
  }

  /**
   * A driver read of `size` bytes at `offset` (within the structure's page): the value, or
   * undefined for an access the structure does not define (the caller answers 0).
   */
  read(offset: number, size: number): number | bigint | undefined {
    const field = this.#fields.get(offset);
    if (!field) return undefined;
    if (field.size === size) return field.read();
    if (size === 8 && this.#is64(offset)) {
      const hi = this.#fields.get(offset + 4)!;
      return (BigInt(hi.read()) << 32n) | BigInt(field.read());
    }
    return undefined;
  }

  /**
   * A driver write of `size` bytes of `value` (already reduced to the access width) at
   * `offset`. Returns false when the access is not one the structure defines, the field is
   * read-only, or the write was refused.
   */
  write(offset: number, size: number, value: number | bigint): boolean {
    const field = this.#fields.get(offset);
    if (!field?.write) return false;
    if (field.size === size) return field.write(Number(value)) !== false;
    if (size === 8 && this.#is64(offset)) {
      const v = BigInt(value);
      const lo = field.write(Number(v & 0xffff_ffffn)) !== false;
      const hi = this.#fields.get(offset + 4)!.write!(Number(v >> 32n)) !== false;
      return lo && hi;
    }
    return false;
  }

  /** Device reset: vectors NO_VECTOR, queue_select 0 (queues and features are reset by their owners). */
  reset(): void {
    this.msixConfig = VIRTIO_MSI_NO_VECTOR;
    this.queueSelect = 0;
  }

  #is64(offset: number): boolean {
    return offset === CommonCfg.QUEUE_DESC || offset === CommonCfg.QUEUE_DRIVER || offset === CommonCfg.QUEUE_DEVICE;
  }

  #vector(v: number): number {
    return v < this.#vectors ? v : VIRTIO_MSI_NO_VECTOR;
  }

  #queueWrite(f: (s: QueueSlot) => QueueError | undefined): boolean {
    const index = this.queueSelect;
    const s = this.#slots[index];
    if (!s) return false;
    const err = f(s);
    if (err) this.#host.queueFault(index, err);
    return true;
  }
}

/**
 * The options, counters and platform-facing shapes of {@link VirtioPciFunction}, and the
 * checks its constructor makes on the device and the options (TypeError or RangeError
 * naming the argument).
 */
import type { IrqLine } from '../../devices/device.js';
import type { MsiSink } from '../../pci/msix.js';
import { checkInt } from '../../pci/util.js';
import { MAX_QUEUE_SIZE, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../constants.js';
import { VIRTIO_F_VERSION_1, type VirtioDevice } from '../device.js';
import type { QueueMemory } from '../memory.js';
import { VIRTIO_PCI_MAX_DEVICE_TYPE, VIRTIO_PCI_UNSUPPORTED_FEATURES } from './constants.js';
import { VIRTIO_PCI_MAX_QUEUES, VIRTIO_PCI_PAGE } from './layout.js';
import type { VirtioPciFunction } from './function.js';

/** The feature bits the transport itself offers on top of the device's. */
export const VIRTIO_PCI_TRANSPORT_FEATURES =
  (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_F_EVENT_IDX)) | (1n << BigInt(VIRTIO_F_INDIRECT_DESC));

/** Options for {@link VirtioPciFunction}. */
export interface VirtioPciOptions {
  /** Guest memory the queues and buffers live in. */
  memory: QueueMemory;
  /** Where MSI-X messages go (the platform: KVM_SIGNAL_MSI or an irqfd route). */
  msi: MsiSink;
  /** MSI-X vectors, 0-2048; default queues + 1 (one per queue and one for configuration). 0: no MSI-X capability (then `intx` is required). */
  msixVectors?: number;
  /** The INTx line (INTA#) for drivers that do not enable MSI-X; without it there is no interrupt pin. */
  intx?: IrqLine;
  /** Subsystem id (u16); default 0x1100. */
  subsystemId?: number;
  /** Called with the reason (and the error, if there was one) each time the device is marked DEVICE_NEEDS_RESET. */
  onError?: (reason: string, error?: unknown) => void;
}

/** What a {@link VirtioPciFunction} saw so far. */
export interface VirtioPciCounters {
  /** Notify writes ignored: no such queue, off a queue's address, queue not enabled, or before DRIVER_OK. */
  badNotifies: number;
  /** Times DEVICE_NEEDS_RESET was requested (ctx.needsReset, queue errors, device exceptions). */
  needsReset: number;
  /** FEATURES_OK writes refused. */
  refusedFeatures: number;
  /** BAR accesses the structures do not define, and refused register writes (all ignored). */
  ignoredAccesses: number;
  /** Device resets (device_status = 0, or {@link VirtioPciFunction.reset}). */
  resets: number;
  /** Times the device was activated (DRIVER_OK). */
  activations: number;
}

/** Where the notify structure is, for the platform's fast path (posted writes, KVM_IOEVENTFD). */
export interface VirtioPciNotifyRegion {
  /** BAR index. */
  readonly bar: number;
  /** Offset of queue 0's notify address in the BAR. */
  readonly offset: number;
  /** Bytes of the structure. */
  readonly length: number;
  /** Queue q's address is `offset + q × multiplier`. */
  readonly multiplier: number;
}

/** Check a device model's declarations. */
export function checkDevice(device: VirtioDevice): void {
  if (typeof device !== 'object' || device === null) throw new TypeError('device must be a VirtioDevice');
  checkInt(device.deviceType, 'device.deviceType', 1, VIRTIO_PCI_MAX_DEVICE_TYPE);
  if (typeof device.features !== 'bigint' || device.features < 0n) throw new TypeError('device.features must be a non-negative bigint');
  for (const { bit, name } of VIRTIO_PCI_UNSUPPORTED_FEATURES) {
    if ((device.features >> BigInt(bit)) & 1n) throw new RangeError(`device.features offers ${name} (bit ${bit}), which this transport does not implement`);
  }
  if (!Array.isArray(device.queueSizes)) throw new TypeError('device.queueSizes must be an array');
  if (device.queueSizes.length > VIRTIO_PCI_MAX_QUEUES) {
    throw new RangeError(`device.queueSizes must have at most ${VIRTIO_PCI_MAX_QUEUES} queues, got ${device.queueSizes.length}`);
  }
  device.queueSizes.forEach((s, i) => {
    checkInt(s, `device.queueSizes[${i}]`, 1, MAX_QUEUE_SIZE);
    if ((s & (s - 1)) !== 0) throw new RangeError(`device.queueSizes[${i}] must be a power of two, got ${s}`);
  });
  checkInt(device.configSize, 'device.configSize', 0, VIRTIO_PCI_PAGE);
  for (const m of ['readConfig', 'writeConfig', 'activate', 'notify', 'reset'] as const) {
    if (typeof device[m] !== 'function') throw new TypeError(`device.${m} must be a function`);
  }
}

/** Check `opts` for a device with `queues` queues; returns the MSI-X vector count. */
export function checkOptions(opts: VirtioPciOptions, queues: number): number {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const { memory, msi, intx, onError } = opts;
  if (typeof memory !== 'object' || memory === null || typeof memory.isBacked !== 'function') throw new TypeError('opts.memory must be a QueueMemory');
  const vectors = checkInt(opts.msixVectors ?? Math.min(queues + 1, 2048), 'opts.msixVectors', 0, 2048);
  if (vectors > 0 && (typeof msi !== 'object' || msi === null || typeof msi.signal !== 'function')) {
    throw new TypeError('opts.msi must be an MsiSink (signal(addressLo, addressHi, data))');
  }
  if (intx !== undefined && (typeof intx !== 'object' || intx === null || typeof intx.set !== 'function')) throw new TypeError('opts.intx must be an IrqLine');
  if (vectors === 0 && intx === undefined) throw new RangeError('opts.msixVectors is 0, so opts.intx is required (the device would have no interrupt)');
  if (onError !== undefined && typeof onError !== 'function') throw new TypeError('opts.onError must be a function');
  return vectors;
}

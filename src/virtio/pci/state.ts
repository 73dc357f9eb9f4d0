/**
 * The snapshot state of a {@link VirtioPciFunction} — configuration space with its BARs,
 * MSI-X, the common configuration's registers, every queue, and the device model's own
 * state — and the checks of its transport-level fields.
 */
import type { PciConfigSpaceState } from '../../pci/config-space.js';
import type { MsixState } from '../../pci/msix.js';
import { stateArray } from '../../pci/state-check.js';
import { checkInt } from '../../pci/util.js';
import { VIRTIO_ISR, VIRTIO_MSI_NO_VECTOR, VIRTIO_STATUS } from './constants.js';
import type { FeatureNegotiationState } from './features.js';
import type { QueueSlotState } from './queue-slot.js';

/** The state of one virtio-pci function (see the module comment). */
export interface VirtioPciFunctionState {
  /** Configuration space: command, BAR addresses as the guest programmed them, MSI-X control, capability registers. */
  config: PciConfigSpaceState;
  /** The MSI-X table and pending bits, or null for a function without MSI-X. */
  msix: MsixState | null;
  /** device_status. */
  status: number;
  /** config_generation (u8). */
  configGeneration: number;
  /** The feature registers and the negotiated features. */
  features: FeatureNegotiationState;
  /** config_msix_vector. */
  configMsixVector: number;
  /** queue_select. */
  queueSelect: number;
  /** ISR status (bits 0-1). */
  isr: number;
  /** Each queue's registers and ring state, by index. */
  queues: QueueSlotState[];
  /** The device model's own state (VirtioDevice.snapshot). */
  device: unknown;
}

/** The transport's scalar fields of a {@link VirtioPciFunctionState}, checked. */
export interface CheckedTransportFields {
  /** device_status. */
  readonly status: number;
  /** config_generation. */
  readonly generation: number;
  /** config_msix_vector. */
  readonly configVector: number;
  /** queue_select. */
  readonly queueSelect: number;
  /** ISR status. */
  readonly isr: number;
  /** The queue states, one per queue, not yet checked. */
  readonly queues: readonly unknown[];
}

const S = VIRTIO_STATUS;
const STATUS_BITS = S.ACKNOWLEDGE | S.DRIVER | S.DRIVER_OK | S.FEATURES_OK | S.DEVICE_NEEDS_RESET | S.FAILED;

/**
 * Check the scalar fields of `s` for a function with `queueCount` queues and `vectors`
 * MSI-X vectors whose features were (`negotiated`) or were not accepted: status bits a
 * driver can reach (FEATURES_OK exactly when features were negotiated, DRIVER_OK only
 * after it), vectors in range, one queue state per queue.
 */
export function checkTransportFields(s: Record<string, unknown>, queueCount: number, vectors: number, negotiated: boolean): CheckedTransportFields {
  const status = checkInt(s.status, 'state.status', 0, 0xff);
  if (status & ~STATUS_BITS) throw new RangeError(`state.status has bits no driver can set: 0x${(status & ~STATUS_BITS).toString(16)}`);
  if (((status & S.FEATURES_OK) !== 0) !== negotiated) throw new RangeError('state.status: FEATURES_OK must be set exactly when state.features.negotiated is');
  if (status & S.DRIVER_OK && !(status & S.FEATURES_OK)) throw new RangeError('state.status: DRIVER_OK without FEATURES_OK');
  const configVector = checkInt(s.configMsixVector, 'state.configMsixVector', 0, 0xffff);
  if (configVector !== VIRTIO_MSI_NO_VECTOR && configVector >= vectors) throw new RangeError(`state.configMsixVector must be below ${vectors} or 0xffff, got ${configVector}`);
  return {
    status,
    generation: checkInt(s.configGeneration, 'state.configGeneration', 0, 0xff),
    configVector,
    queueSelect: checkInt(s.queueSelect, 'state.queueSelect', 0, 0xffff),
    isr: checkInt(s.isr, 'state.isr', 0, VIRTIO_ISR.QUEUE | VIRTIO_ISR.CONFIG),
    queues: stateArray(s.queues, 'state.queues', queueCount, queueCount),
  };
}

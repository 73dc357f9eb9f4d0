/**
 * The contract between a virtio transport (src/virtio/pci/: the modern virtio-pci transport)
 * and a virtio device model (src/virtio/devices/: blk, rng, console, or a user's own).
 *
 * A device never sees the transport's registers, BARs or interrupt vectors: it declares its
 * type, its feature bits, its queues and its configuration space, and once the driver has set
 * DRIVER_OK it gets a {@link VirtioContext} with the queues, the guest memory and the means to
 * interrupt the driver. Like every device in vmmapi it is a pure state machine over that
 * context: unit tests drive it with synthetic queues and no KVM.
 *
 * Lifecycle, as the transport drives it:
 * 1. The driver negotiates features (the transport offers `features` plus the transport's
 *    own bits: VIRTIO_F_VERSION_1, and the ring features it implements) and sets up queues.
 * 2. DRIVER_OK: {@link VirtioDevice.activate} with the negotiated features and the queues.
 * 3. Each driver notification of queue `i`: {@link VirtioDevice.notify}(i). The device pops
 *    chains, answers them (now or later: I/O may be asynchronous), pushes them to the used
 *    ring and calls {@link VirtioContext.interrupt}(i).
 * 4. Reset (the driver writes 0 to device_status, or the transport resets): {@link
 *    VirtioDevice.reset}. The device drops its queues and in-flight requests; completions of
 *    requests started before the reset are ignored by the queue (pushUsed returns false).
 *
 * Snapshots (optional members): quiesce() → snapshot() → resume() on the running device;
 * prepareRestore(state, ctx)() then resume() on the device a snapshot is restored into, in
 * place of activate().
 */
import type { SplitQueue } from './queue.js';
import type { QueueMemory } from './memory.js';

/** Virtio device type numbers (virtio 1.2 §5) of the devices vmmapi models. */
export const VIRTIO_DEVICE_TYPE = { NET: 1, BLOCK: 2, CONSOLE: 3, ENTROPY: 4, VSOCK: 19 } as const;

/** Feature bit number of VIRTIO_F_VERSION_1 (a modern, virtio 1.x device; always offered). */
export const VIRTIO_F_VERSION_1 = 32;

/** What a device is given when the driver has set DRIVER_OK. */
export interface VirtioContext {
  /** The negotiated feature bits (driver's choice within what was offered). */
  readonly features: bigint;
  /**
   * The device's queues, by index; `undefined` for a queue the driver did not enable. Each is
   * configured and enabled with the negotiated ring features.
   */
  readonly queues: readonly (SplitQueue | undefined)[];
  /** Guest memory, for the buffers the descriptor chains point at. */
  readonly memory: QueueMemory;
  /**
   * Tell the driver that queue `index` has new used buffers. The transport applies
   * notification suppression (SplitQueue.needsNotification) and picks the MSI-X vector or
   * the legacy interrupt.
   */
  interrupt(index: number): void;
  /** The device configuration changed: bump the config generation and raise the config interrupt. */
  configChanged(): void;
  /**
   * Something the driver did makes the device unusable until it resets it (a QueueError, a
   * malformed request the spec says is fatal): set DEVICE_NEEDS_RESET and raise the config
   * interrupt. `reason` is counted and reported through the transport's 'error' hook.
   */
  needsReset(reason: string): void;
}

/** A virtio device model, as a transport drives it (see the module documentation). */
export interface VirtioDevice {
  /** The virtio device type ({@link VIRTIO_DEVICE_TYPE}); virtio-pci device ID 0x1040 + type. */
  readonly deviceType: number;
  /** Device-specific feature bits offered to the driver (the transport adds its own). */
  readonly features: bigint;
  /** The maximum size of each queue (a power of two, at most 32768); its length is the queue count. */
  readonly queueSizes: readonly number[];
  /** Bytes of device-specific configuration space (0 if none). */
  readonly configSize: number;
  /** Read `size` bytes of configuration space at `offset` (within configSize; little-endian). */
  readConfig(offset: number, size: 1 | 2 | 4): number;
  /** Write configuration space (most fields are read-only: ignore those writes). */
  writeConfig(offset: number, size: 1 | 2 | 4, value: number): void;
  /** The driver set DRIVER_OK: start serving. */
  activate(ctx: VirtioContext): void;
  /** The driver notified queue `index` (only after activate). */
  notify(index: number): void;
  /** Stop serving and forget all queue state; a later activate starts afresh. */
  reset(): void;
  /**
   * Optional: true while the device waits for host work it started (file I/O) that completes
   * on the event loop; the platform then keeps the main thread's event loop free (see
   * VcpuRunner.addHostWorkProbe). Read often: keep it a field read.
   */
  readonly hostWorkPending?: boolean;
  /**
   * Optional: stop taking new chains (notifications and host input are held, not served)
   * and resolve once every request already in flight has been pushed to its used ring.
   * A snapshot takes the device's state only after this; {@link resume} goes on.
   */
  quiesce?(): Promise<void>;
  /**
   * Optional: serve again after {@link quiesce} or a restore — pick up whatever waits in the
   * rings and in the host's buffers, and raise what a restore left pending (a configuration
   * change, an event). Without it the device is taken to need no resuming.
   */
  resume?(): void;
  /** Optional (snapshots need it): the device's own state, JSON-safe, taken after quiesce(). */
  snapshot?(): unknown;
  /**
   * Optional (restores need it): check `state` (from {@link snapshot} of a device like this
   * one) against this device and return the function that applies it. `ctx` is the restored
   * activation when the state has DRIVER_OK (its queues already restored), else undefined;
   * `overrides` are the device's own (a clone's new MAC, CID...). Applying must not touch
   * the queues or interrupt: the device stays quiet until {@link resume}. Throws
   * TypeError/RangeError naming the field, changing nothing.
   */
  prepareRestore?(state: unknown, ctx: VirtioContext | undefined, overrides?: unknown): () => void;
}

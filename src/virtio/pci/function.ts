/**
 * The modern virtio-pci transport (virtio 1.2 §4.1): a {@link PciFunction} that puts a
 * {@link VirtioDevice} on the PCI bus. Pure: no KVM; the platform connects it.
 *
 * Identity: vendor 0x1af4, device 0x1040 + device type, revision 1, subsystem vendor
 * 0x1af4 and subsystem id 0x1100 (or `subsystemId`), class code by device type
 * ({@link virtioPciClassCode}), interrupt pin INTA# when an INTx line is given.
 *
 * Registers: one 64-bit memory BAR (BAR 0) holds the common configuration, ISR status,
 * device configuration, notify structure and the MSI-X table and PBA (layout.ts). The
 * capability list has the COMMON, NOTIFY, ISR, DEVICE (if any) and PCI_CFG vendor
 * capabilities, then MSI-X (unless `msixVectors` is 0).
 *
 * Device status, as the function enforces it:
 * - Writing 0 resets: the device ({@link VirtioDevice.reset}), every queue and its
 *   registers, the features, both vector kinds (NO_VECTOR), queue_select, ISR. The reset
 *   is complete when the write returns (status reads 0 at once). A context handed to the
 *   device earlier goes dead: its calls do nothing, and its queues stay stopped (each
 *   session gets new SplitQueues), so late completions are dropped. MSI-X state belongs
 *   to PCI and is kept ({@link VirtioPciFunction.reset} is the function-level reset).
 * - Other writes can only add bits (the driver must not clear them; clearing writes
 *   keep them). DEVICE_NEEDS_RESET cannot be set by the driver.
 * - FEATURES_OK is refused — left clear, for the driver to read back — when the driver
 *   accepted a bit not offered or did not accept VIRTIO_F_VERSION_1. Once it is set the
 *   features are fixed: driver_feature writes are ignored.
 * - DRIVER_OK needs FEATURES_OK (otherwise the bit is ignored); setting it activates the
 *   device with a {@link VirtioContext}.
 * - queue_enable = 1 is taken only after FEATURES_OK (it needs the negotiated ring
 *   features); a queue that fails to start (size not a power of two ≤ the maximum, a
 *   misaligned or unmapped ring) stays disabled and the device needs a reset.
 *
 * DEVICE_NEEDS_RESET is set by {@link VirtioContext.needsReset}, by a queue that fails to
 * enable or whose registers are rewritten while it runs, and by any exception a device
 * method throws (a QueueError the device let through, or a bug): each is counted, kept in
 * {@link VirtioPciFunction.lastError} and passed to `onError`; after DRIVER_OK the first
 * one also raises the configuration interrupt. The function keeps forwarding
 * notifications meanwhile: a stopped queue serves nothing, the others go on.
 *
 * Notifications: a write of any width to `notify.offset + 4 × q` notifies queue q (the
 * address, not the value, names the queue, as an ioeventfd without data match would). One
 * that names no queue, is not on a queue's address, reaches a queue that is not enabled,
 * or comes before DRIVER_OK is ignored and counted in `counters.badNotifies`.
 *
 * Guest accesses never throw: malformed BAR numbers, offsets and sizes read all-ones
 * (outside the BAR) or 0 (inside it) and writes are ignored; accesses the common or
 * device configuration do not define are counted in `counters.ignoredAccesses`.
 */
import type { AccessSize } from '../../devices/device.js';
import { allOnes } from '../../devices/io-util.js';
import type { PciFunction } from '../../pci/bus.js';
import { PciConfigSpace } from '../../pci/config-space.js';
import { Msix } from '../../pci/msix.js';
import { nested, stateObject } from '../../pci/state-check.js';
import { checkInt, isAccessSize, toUintN } from '../../pci/util.js';
import { queueFeatures } from '../constants.js';
import type { VirtioContext, VirtioDevice } from '../device.js';
import type { QueueError } from '../errors.js';
import type { QueueMemory } from '../memory.js';
import type { SplitQueue } from '../queue.js';
import { addVirtioCapabilities, type VirtioPciCapabilityOffsets } from './capabilities.js';
import { CommonConfig } from './common-config.js';
import {
  VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID, VIRTIO_PCI_DEVICE_ID_BASE, VIRTIO_PCI_REVISION_ID, VIRTIO_PCI_VENDOR_ID, VIRTIO_STATUS,
  virtioPciClassCode,
} from './constants.js';
import { DeviceConfigWindow } from './device-config.js';
import { FeatureNegotiation } from './features.js';
import { InterruptRouter, type InterruptCounters } from './interrupts.js';
import { VIRTIO_PCI_NOTIFY_MULTIPLIER, VIRTIO_PCI_PAGE, virtioPciLayout, type VirtioPciLayout } from './layout.js';
import {
  VIRTIO_PCI_TRANSPORT_FEATURES, checkDevice, checkOptions, type VirtioPciCounters, type VirtioPciNotifyRegion, type VirtioPciOptions,
} from './options.js';
import { QueueSlot, type QueueSlotState } from './queue-slot.js';
import { checkTransportFields, type VirtioPciFunctionState } from './state.js';

function message(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** A virtio device on the PCI bus through the modern virtio-pci transport (see the module comment). */
export class VirtioPciFunction implements PciFunction {
  /** The function's configuration space. */
  readonly config: PciConfigSpace;
  /** The device model. */
  readonly device: VirtioDevice;
  /** Where everything is in BAR 0. */
  readonly layout: VirtioPciLayout;
  /** Where the virtio capabilities are in configuration space. */
  readonly capabilities: VirtioPciCapabilityOffsets;
  /** The MSI-X capability and table, or undefined when `msixVectors` is 0. */
  readonly msix: Msix | undefined;
  /** Every feature bit offered: the device's plus {@link VIRTIO_PCI_TRANSPORT_FEATURES}. */
  readonly offeredFeatures: bigint;
  /** What was seen so far. */
  readonly counters: VirtioPciCounters = { badNotifies: 0, needsReset: 0, refusedFeatures: 0, ignoredAccesses: 0, resets: 0, activations: 0 };

  readonly #memory: QueueMemory;
  readonly #onError: ((reason: string, error?: unknown) => void) | undefined;
  readonly #features: FeatureNegotiation;
  readonly #slots: QueueSlot[];
  /** The queues as this session's context shows them (filled in as queues are enabled; a new array per reset). */
  #active: (SplitQueue | undefined)[];
  readonly #common: CommonConfig;
  readonly #deviceConfig: DeviceConfigWindow;
  readonly #irq: InterruptRouter;
  #status = 0;
  #generation = 0;
  /** Bumped by every reset: contexts of earlier activations go dead. */
  #epoch = 0;
  #lastError: string | undefined;
  #lastRefusal: string | undefined;

  /** Put `device` behind a virtio-pci function (TypeError/RangeError naming a bad argument). */
  constructor(device: VirtioDevice, opts: VirtioPciOptions) {
    checkDevice(device);
    const vectors = checkOptions(opts, device.queueSizes.length);
    const { memory, msi, intx, onError } = opts;
    const queues = device.queueSizes.length;

    this.device = device;
    this.#memory = memory;
    this.#onError = onError;
    this.layout = virtioPciLayout(queues, device.configSize, vectors);
    this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR_ID,
      deviceId: VIRTIO_PCI_DEVICE_ID_BASE + device.deviceType,
      classCode: virtioPciClassCode(device.deviceType),
      revisionId: VIRTIO_PCI_REVISION_ID,
      subsystemVendorId: VIRTIO_PCI_VENDOR_ID,
      subsystemId: opts.subsystemId ?? VIRTIO_PCI_DEFAULT_SUBSYSTEM_ID,
      interruptPin: intx ? 1 : 0,
    });
    this.config.setBar(this.layout.bar, { kind: 'mem64', size: this.layout.barSize });
    this.capabilities = addVirtioCapabilities(this.config, this.layout, this);
    const { msixTable, msixPba } = this.layout;
    this.msix = msixTable && msixPba
      ? new Msix(this.config, { vectors, table: { bar: this.layout.bar, offset: msixTable.offset }, pba: { bar: this.layout.bar, offset: msixPba.offset }, sink: msi })
      : undefined;

    this.offeredFeatures = device.features | VIRTIO_PCI_TRANSPORT_FEATURES;
    this.#features = new FeatureNegotiation(this.offeredFeatures);
    this.#slots = device.queueSizes.map((size) => new QueueSlot(memory, size));
    this.#active = new Array(queues).fill(undefined);
    this.#irq = new InterruptRouter(this.config, this.msix, intx);
    this.#deviceConfig = new DeviceConfigWindow(device, device.configSize, (what, f, fallback) => this.#call(what, f, fallback));
    const self = this;
    this.#common = new CommonConfig(this.#features, this.#slots, vectors, {
      get status() {
        return self.#status;
      },
      get generation() {
        return self.#generation;
      },
      writeStatus: (v) => this.#writeStatus(v),
      enableQueue: (i) => this.#enableQueue(i),
      queueFault: (i, e) => this.#queueFault(i, e),
    });
  }

  // ------------------------------------------------------------------ state, for the platform and tests

  /** device_status. */
  get status(): number {
    return this.#status;
  }

  /** The negotiated features once the driver's FEATURES_OK was accepted, else undefined. */
  get negotiatedFeatures(): bigint | undefined {
    return this.#features.negotiated;
  }

  /** config_generation (u8). */
  get configGeneration(): number {
    return this.#generation;
  }

  /** ISR status (without clearing it, unlike a driver read). */
  get isr(): number {
    return this.#irq.isr;
  }

  /** Whether the INTx line is asserted. */
  get intxLevel(): boolean {
    return this.#irq.intxLevel;
  }

  /** How interrupts were raised so far. */
  get interruptCounters(): Readonly<InterruptCounters> {
    return this.#irq.counters;
  }

  /** Why DEVICE_NEEDS_RESET was last requested, or undefined. */
  get lastError(): string | undefined {
    return this.#lastError;
  }

  /** Why FEATURES_OK was last refused, or undefined. */
  get lastRefusal(): string | undefined {
    return this.#lastRefusal;
  }

  /** The SplitQueue behind queue `index` in the current session (each reset starts a new one; RangeError if there is none). */
  queue(index: number): SplitQueue {
    checkInt(index, 'index', 0, this.#slots.length - 1);
    return this.#slots[index].queue;
  }

  /**
   * The notify structure: queue q is notified by a write at BAR `bar` offset
   * `offset + q × multiplier`. The platform may register those addresses as posted
   * writes or KVM_IOEVENTFDs and call {@link notifyQueue} when they fire.
   */
  notifyRegion(): VirtioPciNotifyRegion {
    const n = this.layout.notify;
    return Object.freeze({ bar: this.layout.bar, offset: n.offset, length: n.length, multiplier: VIRTIO_PCI_NOTIFY_MULTIPLIER });
  }

  /**
   * Queue `index` was notified by a path other than a BAR write (an ioeventfd): the same
   * as the driver's write at its notify address. RangeError for an index that is not a
   * queue; a notification the function cannot take (before DRIVER_OK, queue disabled) is
   * counted in badNotifies.
   */
  notifyQueue(index: number): void {
    checkInt(index, 'index', 0, this.#slots.length - 1);
    this.#notify(index);
  }

  /**
   * The device configuration changed (for a device model without a context yet, or the
   * platform): bump config_generation and, after DRIVER_OK, raise the configuration
   * interrupt. The context's configChanged does the same.
   */
  configChanged(): void {
    this.#generation = (this.#generation + 1) & 0xff;
    if (this.#status & VIRTIO_STATUS.DRIVER_OK) this.#irq.config(this.#common.msixConfig);
  }

  /** Function-level reset (e.g. the platform's machine reset): the device reset, then configuration space (and MSI-X) to power-on values. */
  reset(): void {
    this.#reset();
    this.config.reset();
  }

  // ------------------------------------------------------------------ snapshot

  /**
   * Stop the device taking new chains and wait for its requests in flight
   * ({@link VirtioDevice.quiesce}); take the {@link snapshot} after this, then {@link resume}.
   */
  async quiesce(): Promise<void> {
    await this.device.quiesce?.();
  }

  /** Let the device serve again after quiesce() or a restore ({@link VirtioDevice.resume}). */
  resume(): void {
    this.device.resume?.();
  }

  /**
   * The whole function's state, JSON-safe (see {@link VirtioPciFunctionState}), the
   * device's included. Take it after {@link quiesce}. TypeError if the device model has no
   * snapshot support.
   */
  snapshot(): VirtioPciFunctionState {
    const device = this.#snapshotDevice();
    return {
      config: this.config.snapshot(), msix: this.msix?.snapshot() ?? null, status: this.#status, configGeneration: this.#generation,
      features: this.#features.snapshot(), configMsixVector: this.#common.msixConfig, queueSelect: this.#common.queueSelect,
      isr: this.#irq.isr, queues: this.#slots.map((s) => s.snapshot()), device,
    };
  }

  /**
   * Check `state` (from {@link snapshot} of a function like this one, over guest memory
   * that already holds its rings) and return the function that applies it: configuration
   * space (the platform's BAR listeners move the BAR), MSI-X, registers, queues, and the
   * device, which with DRIVER_OK is re-activated on the restored queues without a reset.
   * Nothing is served or interrupted until {@link resume}. `overrides` go to the device's
   * prepareRestore. TypeError/RangeError naming the field, changing nothing.
   */
  prepareRestore(state: VirtioPciFunctionState, overrides?: unknown): () => void {
    if (typeof this.device.prepareRestore !== 'function') throw new TypeError('the device model has no snapshot support (prepareRestore)');
    const s = stateObject(state, 'state');
    const config = nested('state.config', () => this.config.prepareRestore(s.config as never));
    const msix = this.#prepareMsix(s.msix);
    const { negotiated, commit: features } = nested('state.features', () => this.#features.prepareRestore(s.features as never));
    const t = checkTransportFields(s, this.#slots.length, this.msix?.vectors ?? 0, negotiated !== undefined);
    const ring = negotiated === undefined ? undefined : queueFeatures(negotiated);
    const slots = t.queues.map((q, i) => nested(`state.queues[${i}]`, () => this.#slots[i].prepareRestore(q as QueueSlotState, this.msix?.vectors ?? 0, ring)));
    const active = slots.map((p) => (p.queue.enabled ? p.queue : undefined));
    if (!(t.status & VIRTIO_STATUS.DRIVER_OK)) {
      slots.forEach((p, i) => {
        if (p.queue.inFlight > 0) throw new RangeError(`state.queues[${i}].queue.inFlight must be empty before DRIVER_OK (no device took chains)`);
      });
    }
    const epoch = this.#epoch + 1;
    const ctx = t.status & VIRTIO_STATUS.DRIVER_OK ? this.#context(epoch, negotiated!, active) : undefined;
    const device = nested('state.device', () => this.device.prepareRestore!(s.device, ctx, overrides));
    return () => {
      this.#epoch = epoch;
      config();
      msix?.();
      features();
      for (const p of slots) p.commit();
      this.#active = active;
      this.#status = t.status;
      this.#generation = t.generation;
      this.#common.msixConfig = t.configVector;
      this.#common.queueSelect = t.queueSelect;
      this.#irq.restore(t.isr);
      device();
    };
  }

  /** Restore a state from {@link snapshot} (checked as {@link prepareRestore} does); then {@link resume} it. */
  restore(state: VirtioPciFunctionState, overrides?: unknown): void {
    this.prepareRestore(state, overrides)();
  }

  #snapshotDevice(): unknown {
    if (typeof this.device.snapshot !== 'function' || typeof this.device.prepareRestore !== 'function') {
      throw new TypeError('the device model has no snapshot support (snapshot and prepareRestore)');
    }
    return this.device.snapshot();
  }

  #prepareMsix(state: unknown): (() => void) | undefined {
    if (!this.msix) {
      if (state !== null) throw new RangeError('state.msix must be null: this function has no MSI-X');
      return undefined;
    }
    const msix = this.msix;
    return nested('state.msix', () => msix.prepareRestore(state as never));
  }

  // ------------------------------------------------------------------ BAR accesses

  /** A guest read in BAR `bar` (see the module comment; never throws for guest values). */
  readBar(bar: number, offset: number, size: AccessSize): number | bigint {
    const L = this.layout;
    if (bar !== L.bar || !isAccessSize(size) || !Number.isSafeInteger(offset) || offset < 0 || offset >= L.barSize) return allOnes(size);
    const fromMsix = this.msix?.read(bar, offset, size);
    if (fromMsix !== undefined) return fromMsix;
    const v = this.#read(offset, size);
    if (v === undefined) {
      this.counters.ignoredAccesses++;
      return size === 8 ? 0n : 0;
    }
    return size === 8 ? BigInt(v) : Number(v);
  }

  /** A guest write in BAR `bar` (never throws for guest values). */
  writeBar(bar: number, offset: number, size: AccessSize, value: number | bigint): void {
    const L = this.layout;
    if (bar !== L.bar || !isAccessSize(size) || !Number.isSafeInteger(offset) || offset < 0 || offset >= L.barSize) return;
    if (this.msix?.write(bar, offset, size, value)) return;
    if (!this.#write(offset, size, toUintN(value, size))) this.counters.ignoredAccesses++;
  }

  #read(offset: number, size: AccessSize): number | bigint | undefined {
    const { common, isr, device, notify } = this.layout;
    if (offset < common.offset + VIRTIO_PCI_PAGE) return this.#common.read(offset - common.offset, size);
    if (offset === isr.offset) return this.#irq.readIsr();
    if (offset >= device.offset && offset < device.offset + device.length) {
      const r = this.#deviceConfig.read(offset - device.offset, size);
      if (r.irregular) this.counters.ignoredAccesses++;
      return r.value;
    }
    if (offset >= notify.offset && offset < notify.offset + notify.length) return 0;
    return undefined;
  }

  #write(offset: number, size: AccessSize, value: bigint): boolean {
    const { common, device, notify } = this.layout;
    if (offset < common.offset + VIRTIO_PCI_PAGE) return this.#common.write(offset - common.offset, size, size === 8 ? value : Number(value));
    if (offset >= device.offset && offset < device.offset + device.length) return this.#deviceConfig.write(offset - device.offset, size, value);
    if (offset >= notify.offset && offset < notify.offset + VIRTIO_PCI_PAGE) {
      const rel = offset - notify.offset;
      const q = rel / VIRTIO_PCI_NOTIFY_MULTIPLIER;
      if (Number.isInteger(q) && q < this.#slots.length) this.#notify(q);
      else this.counters.badNotifies++;
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ device status

  #writeStatus(value: number): void {
    const S = VIRTIO_STATUS;
    if (value === 0) {
      this.#reset();
      return;
    }
    const old = this.#status;
    this.#status |= value & (S.ACKNOWLEDGE | S.DRIVER | S.FAILED);
    if (value & S.FEATURES_OK && !(old & S.FEATURES_OK)) {
      const refusal = this.#features.finish();
      if (refusal === undefined) this.#status |= S.FEATURES_OK;
      else {
        this.counters.refusedFeatures++;
        this.#lastRefusal = refusal;
      }
    }
    if (value & S.DRIVER_OK && !(old & S.DRIVER_OK)) {
      if (this.#status & S.FEATURES_OK) {
        this.#status |= S.DRIVER_OK;
        this.#activate();
      } else this.counters.ignoredAccesses++;
    }
  }

  #activate(): void {
    const ctx = this.#context(this.#epoch, this.#features.negotiated!, this.#active);
    this.counters.activations++;
    this.#call('activate', () => this.device.activate(ctx), undefined);
  }

  /** The context of the activation of `epoch`: dead once a reset moves the epoch on. */
  #context(epoch: number, negotiated: bigint, queues: readonly (SplitQueue | undefined)[]): VirtioContext {
    const live = () => epoch === this.#epoch;
    const queueCount = this.#slots.length;
    return Object.freeze({
      features: negotiated,
      queues,
      memory: this.#memory,
      interrupt: (index: number) => {
        checkInt(index, 'index', 0, queueCount - 1);
        if (live()) this.#queueInterrupt(index);
      },
      configChanged: () => {
        if (live()) this.configChanged();
      },
      needsReset: (reason: string) => {
        if (live()) this.#needsReset(String(reason));
      },
    });
  }

  #reset(): void {
    this.#epoch++;
    this.counters.resets++;
    this.#call('reset', () => this.device.reset(), undefined);
    for (const s of this.#slots) s.reset();
    this.#active = new Array(this.#slots.length).fill(undefined);
    this.#features.reset();
    this.#common.reset();
    this.#irq.reset();
    this.#status = 0;
  }

  #needsReset(reason: string, error?: unknown): void {
    this.counters.needsReset++;
    this.#lastError = reason;
    const first = !(this.#status & VIRTIO_STATUS.DEVICE_NEEDS_RESET);
    this.#status |= VIRTIO_STATUS.DEVICE_NEEDS_RESET;
    this.#onError?.(reason, error);
    if (first && this.#status & VIRTIO_STATUS.DRIVER_OK) this.#irq.config(this.#common.msixConfig);
  }

  // ------------------------------------------------------------------ queues

  #enableQueue(index: number): boolean {
    const negotiated = this.#features.negotiated;
    if (negotiated === undefined) return false;
    const slot = this.#slots[index];
    if (slot.enabled) return true;
    const err = slot.enable(queueFeatures(negotiated));
    if (err) this.#queueFault(index, err);
    else this.#active[index] = slot.queue;
    return true;
  }

  #queueFault(index: number, error: QueueError): void {
    this.#needsReset(`queue ${index}: ${error.message}`, error);
  }

  #notify(index: number): void {
    if (!(this.#status & VIRTIO_STATUS.DRIVER_OK) || !this.#active[index]) {
      this.counters.badNotifies++;
      return;
    }
    this.#call('notify', () => this.device.notify(index), undefined);
  }

  #queueInterrupt(index: number): void {
    const q = this.#active[index];
    if (!q || !(this.#status & VIRTIO_STATUS.DRIVER_OK)) return;
    const need = this.#call('needsNotification', () => q.needsNotification(), false);
    if (need) this.#irq.queue(this.#slots[index].vector);
  }

  /** Run a device (or queue) method; an exception marks the device DEVICE_NEEDS_RESET and gives `fallback`. */
  #call<T>(what: string, f: () => T, fallback: T): T {
    try {
      return f();
    } catch (e) {
      this.#needsReset(`${what}: ${message(e)}`, e);
      return fallback;
    }
  }
}

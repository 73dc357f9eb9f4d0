/**
 * Virtio devices on the PC's PCI bus: each {@link VirtioDevice} behind a modern virtio-pci
 * function (src/virtio/pci/), its MSI-X through the PC's MSI sink (KVM_SIGNAL_MSI), and its
 * queue notifications on the cheapest path the host has:
 *
 * - `ioeventfd` (default where KVM has KVM_CAP_IOEVENTFD): KVM absorbs the guest's 2-byte
 *   write to a queue's notify address — the vCPU does not exit — and the main thread's event
 *   loop hands the queue to the device (Vm.addIoEventFd). The registrations follow the BAR
 *   when the guest moves it. A write of another width still reaches the BAR through an exit.
 * - `posted`: the notify page's writes go to the runner's ordered posted-write ring; the vCPU
 *   goes on at once, the main thread delivers them in order.
 * - `exit`: the plain path, each notify a round trip to the main thread (for comparison).
 *
 * Snapshots: {@link PcVirtio.quiesce} before the PCI state is taken (`PcPci.snapshot` holds
 * the virtio functions' states), {@link PcVirtio.resume} after it, or after `PcPci.restore`
 * once everything else is restored. The ioeventfds follow a restored BAR as they follow a
 * guest's BAR move.
 */
import type { Vm } from '../vm.js';
import type { VcpuRunner } from '../runner/runner.js';
import type { VirtioDevice } from '../virtio/device.js';
import { VirtioPciFunction } from '../virtio/pci/function.js';
import type { IoEventFd } from '../io-events.js';
import { KVM_CAP } from '../kvm/constants.js';
import { formatPciAddress } from '../pci/bus.js';
import type { PcPci, PcPciDevice } from './pci.js';

/** How a virtio device's queue notifications reach it. */
export type VirtioNotifyPath = 'ioeventfd' | 'posted' | 'exit';

/** Options for {@link PcVirtio.add}. */
export interface PcVirtioOptions {
  /** PCI device number 1-31 (default: the lowest free). */
  slot?: number;
  /** How queue notifications arrive (default `ioeventfd` where KVM has it, else `posted`). */
  notify?: VirtioNotifyPath;
}

/** A virtio device the PC carries. */
export interface PcVirtioDevice {
  /** The device model. */
  readonly device: VirtioDevice;
  /** Its PCI function (the transport). */
  readonly function: VirtioPciFunction;
  /** Where it sits on the bus and where its BARs went. */
  readonly pci: PcPciDevice;
  /** The notification path in use. */
  readonly notify: VirtioNotifyPath;
  /** Driver errors reported by the transport (a device put in NEEDS_RESET), newest last, at most 16. */
  readonly errors: readonly string[];
}

const NOTIFY_WIDTH = 2;
const MAX_ERRORS = 16;

/** The PC's virtio devices (one owner: Pc). */
export class PcVirtio {
  readonly #vm: Vm;
  readonly #pci: PcPci;
  readonly #runner: VcpuRunner;
  readonly #devices: PcVirtioDevice[] = [];
  #ioeventfdRefused = 0;

  /** Virtio devices for the PC of `vm`, on `pci`, served by `runner`. */
  constructor(vm: Vm, pci: PcPci, runner: VcpuRunner) {
    this.#vm = vm;
    this.#pci = pci;
    this.#runner = runner;
  }

  /** Queue notify addresses KVM refused an ioeventfd for (a guest moved a BAR over another's). */
  get ioeventfdRefused(): number {
    return this.#ioeventfdRefused;
  }

  /** The devices added so far. */
  get devices(): readonly PcVirtioDevice[] {
    return this.#devices;
  }

  /**
   * Stop every device taking new chains and wait for what they have in flight (the block
   * devices' file operations): call it with the vCPUs paused, before `pci.snapshot()`;
   * interrupts for the completions still go out (into KVM's state, saved after this).
   */
  async quiesce(): Promise<void> {
    await Promise.all(this.#devices.map((d) => d.function.quiesce()));
  }

  /**
   * Let every device serve again: after quiesce() and the snapshot, or after `pci.restore()`
   * once KVM's state is back (a restored device may interrupt at once: a vsock
   * TRANSPORT_RESET, a new MAC's configuration change, buffers waiting in the rings).
   */
  resume(): void {
    for (const d of this.#devices) d.function.resume();
  }

  /** The "bb:dd.f" address of `device` (the key of its overrides in `pci.restore`), or undefined if it is not here. */
  addressOf(device: VirtioDevice): string | undefined {
    const d = this.#devices.find((x) => x.device === device);
    return d && formatPciAddress(d.pci.address);
  }

  /** Put `device` on the PCI bus behind a virtio-pci function (before the machine runs). */
  add(device: VirtioDevice, opts: PcVirtioOptions = {}): PcVirtioDevice {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const notify = opts.notify ?? (this.#vm.checkExtension(KVM_CAP.IOEVENTFD) > 0 ? 'ioeventfd' : 'posted');
    if (notify !== 'ioeventfd' && notify !== 'posted' && notify !== 'exit') {
      throw new TypeError(`opts.notify must be 'ioeventfd', 'posted' or 'exit', got ${String(notify)}`);
    }
    const errors: string[] = [];
    const fn = new VirtioPciFunction(device, {
      memory: this.#vm.memory,
      msi: this.#pci.msi,
      onError: (reason) => {
        errors.push(reason);
        if (errors.length > MAX_ERRORS) errors.shift();
      },
    });
    const region = fn.notifyRegion();
    const pci = this.#pci.add(fn, {
      slot: opts.slot,
      posted: notify === 'posted' ? [{ bar: region.bar, offset: region.offset, length: region.length }] : undefined,
    });
    if (notify === 'ioeventfd') this.#followNotify(fn, pci, device.queueSizes.length);
    if ('hostWorkPending' in device) this.#runner.addHostWorkProbe(() => device.hostWorkPending === true);
    const entry: PcVirtioDevice = Object.freeze({ device, function: fn, pci, notify, errors });
    this.#devices.push(entry);
    return entry;
  }

  /** Keep one ioeventfd per queue at the notify addresses of the BAR's current place. */
  #followNotify(fn: VirtioPciFunction, pci: PcPciDevice, queues: number): void {
    const region = fn.notifyRegion();
    let regs: IoEventFd[] = [];
    const place = (base: number | undefined): void => {
      for (const r of regs) r.close();
      regs = [];
      if (base === undefined) return;
      for (let q = 0; q < queues; q++) {
        try {
          regs.push(this.#vm.addIoEventFd({ space: 'mmio', addr: base + region.offset + q * region.multiplier, length: NOTIFY_WIDTH }, () => fn.notifyQueue(q)));
        } catch {
          // the guest put the BAR where KVM already has a registration (over another device's
          // notify page): this queue's notifications exit to the BAR instead, if it is mapped
          this.#ioeventfdRefused++;
        }
      }
    };
    place(pci.bars.find((b) => b.bar === region.bar)?.address);
    fn.config.onBarChange((c) => {
      if (c.bar === region.bar) place(c.address);
    });
  }
}

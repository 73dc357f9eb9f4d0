/**
 * How a virtio-pci function interrupts the driver (virtio 1.2 §4.1.4.5, §4.1.5.3-4):
 *
 * - With MSI-X enabled, a queue interrupt signals the queue's vector and a configuration
 *   interrupt the config vector, through {@link Msix.signal} (a masked vector pends there);
 *   an event mapped to NO_VECTOR raises nothing. ISR status is not used.
 * - Otherwise the ISR bit (0 for queues, 1 for configuration) is set and the INTx line is
 *   asserted while ISR is non-zero, unless the command register's INTx-disable bit is set;
 *   the PCI status register's interrupt bit follows ISR. Reading ISR clears it and drops
 *   the line. The line is never asserted while MSI-X is enabled; enabling MSI-X with the
 *   line up drops it at the next interrupt or ISR read (the MSI-X capability tells no
 *   one of its writes).
 */
import type { IrqLine } from '../../devices/device.js';
import type { Msix } from '../../pci/msix.js';
import type { PciConfigSpace } from '../../pci/config-space.js';
import { VIRTIO_ISR, VIRTIO_MSI_NO_VECTOR } from './constants.js';

/** What an {@link InterruptRouter} did so far. */
export interface InterruptCounters {
  /** Vector signals handed to MSI-X (delivered, pended or dropped there: see Msix.counters). */
  msix: number;
  /** Interrupts raised through ISR (and INTx when there is a line). */
  isr: number;
  /** Interrupts not raised because MSI-X is enabled and the event is mapped to NO_VECTOR. */
  noVector: number;
}

/** ISR status, the INTx line and MSI-X vector selection of one function. */
export class InterruptRouter {
  /** What was raised so far. */
  readonly counters: InterruptCounters = { msix: 0, isr: 0, noVector: 0 };
  readonly #config: PciConfigSpace;
  readonly #msix: Msix | undefined;
  readonly #intx: IrqLine | undefined;
  #isr = 0;
  #level = false;

  /** A router for the function with `config`, its MSI-X (if any) and its INTx line (if any). */
  constructor(config: PciConfigSpace, msix: Msix | undefined, intx: IrqLine | undefined) {
    this.#config = config;
    this.#msix = msix;
    this.#intx = intx;
    config.onCommandChange(() => this.#update());
  }

  /** The ISR status byte, without clearing it. */
  get isr(): number {
    return this.#isr;
  }

  /** Whether the INTx line is asserted now. */
  get intxLevel(): boolean {
    return this.#level;
  }

  /** Raise a queue interrupt on `vector` (the queue's queue_msix_vector). */
  queue(vector: number): void {
    this.#raise(vector, VIRTIO_ISR.QUEUE);
  }

  /** Raise a configuration-change interrupt on `vector` (config_msix_vector). */
  config(vector: number): void {
    this.#raise(vector, VIRTIO_ISR.CONFIG);
  }

  /** A driver read of ISR status: its value, cleared, and the line dropped. */
  readIsr(): number {
    const v = this.#isr;
    this.#isr = 0;
    this.#update();
    return v;
  }

  /** Restore ISR status `isr` (from a snapshot; bits 0-1) and set the line and status bit to match. */
  restore(isr: number): void {
    this.#isr = isr & (VIRTIO_ISR.QUEUE | VIRTIO_ISR.CONFIG);
    this.#update();
  }

  /** Device reset: ISR cleared, line dropped. */
  reset(): void {
    this.#isr = 0;
    this.#update();
  }

  #raise(vector: number, isrBit: number): void {
    const msix = this.#msix;
    if (msix?.enabled) {
      this.#update(); // drop a line left asserted from before MSI-X was enabled
      if (vector === VIRTIO_MSI_NO_VECTOR) {
        this.counters.noVector++;
        return;
      }
      this.counters.msix++;
      msix.signal(vector);
      return;
    }
    this.counters.isr++;
    this.#isr |= isrBit;
    this.#update();
  }

  #update(): void {
    const pending = this.#isr !== 0;
    this.#config.setInterruptStatus(pending);
    const level = pending && !this.#config.intxDisabled && !this.#msix?.enabled;
    if (level === this.#level) return;
    this.#level = level;
    this.#intx?.set(level);
  }
}

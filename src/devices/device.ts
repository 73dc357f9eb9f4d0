/**
 * The contract between a bus and the device emulators registered on it.
 *
 * A device sees register *offsets* relative to the start of the range it was registered
 * at, never its absolute port or guest-physical address (vm-superio's rule). Devices are
 * pure state machines: they can be unit-tested without KVM.
 */

/** Access widths a bus delivers: 1, 2, 4 or 8 bytes. */
export type AccessSize = 1 | 2 | 4 | 8;

/** A userspace device emulator that can be registered on a {@link PioBus} or MMIO bus. */
export interface Device {
  /**
   * Read `size` bytes at `offset` (relative to the registered base).
   * Returns the value as a number (sizes 1, 2, 4) or a bigint/number for size 8.
   * Must not throw for guest-controlled offsets or sizes: an undefined register reads as
   * all-ones or zero, as the hardware would.
   */
  read(offset: number, size: AccessSize): number | bigint;
  /** Write `value` (`size` bytes) at `offset` (relative to the registered base). */
  write(offset: number, size: AccessSize, value: number | bigint): void;
}

/**
 * An interrupt line a device drives. The platform decides what it is connected to
 * (KVM_IRQ_LINE on an in-kernel PIC/IOAPIC pin, an MSI, or a test's recorder).
 */
export interface IrqLine {
  /** Drive the line: `true` asserts it, `false` deasserts it (level semantics). */
  set(level: boolean): void;
}

/** An {@link IrqLine} that records its level; handy for tests and for polling. */
export class RecordingIrqLine implements IrqLine {
  /** The current level. */
  level = false;
  /** Every transition, in order. */
  readonly history: boolean[] = [];
  /** Record and apply a new level. */
  set(level: boolean): void {
    if (level !== this.level) this.history.push(level);
    this.level = level;
  }
}

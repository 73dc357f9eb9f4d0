/** Interrupt lines wired to KVM's in-kernel PIC and IOAPIC. */
import type { IrqLine } from '../devices/device.js';
import type { Vm } from '../vm.js';

/**
 * An {@link IrqLine} that drives ISA IRQ/GSI `irq` of the VM's in-kernel PIC and IOAPIC
 * (KVM_IRQ_LINE). Only level changes reach KVM; after the VM is destroyed it does nothing.
 */
export class KvmIrqLine implements IrqLine {
  readonly #vm: Vm;
  readonly #irq: number;
  #level = false;

  /** Wire a line to input `irq` of `vm` (which needs an in-kernel irqchip). */
  constructor(vm: Vm, irq: number) {
    if (!vm.irqchip) throw new RangeError('KvmIrqLine needs a VM with an in-kernel irqchip');
    if (!Number.isInteger(irq) || irq < 0 || irq > 23) throw new RangeError(`irq must be an integer 0-23, got ${irq}`);
    this.#vm = vm;
    this.#irq = irq;
  }

  /** The current level. */
  get level(): boolean {
    return this.#level;
  }

  /** Assert (`true`) or deassert (`false`) the line. */
  set(level: boolean): void {
    if (level === this.#level) return;
    this.#level = level;
    if (!this.#vm.destroyed) this.#vm.irqLine(this.#irq, level);
  }
}

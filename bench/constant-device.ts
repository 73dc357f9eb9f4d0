/** A device that answers every read with a constant: loaded inside vCPU workers by the bench. */
import type { AccessSize, Device } from '../src/devices/device.js';

/** Reads return `options.value`; writes are counted. */
export class ConstantDevice implements Device {
  readonly value: number;
  writes = 0;
  constructor(options?: { value?: number }) {
    this.value = options?.value ?? 0x42;
  }
  read(_offset: number, _size: AccessSize): number {
    return this.value;
  }
  write(): void {
    this.writes++;
  }
}

/**
 * The PC platform's fixed layout: where RAM goes, which I/O ports and IRQs the devices
 * use. One place to read the machine's map.
 */

import { buildFirmwareE820, EXTENDED_START, HIGH_MEMORY_START, LOW_MEMORY_END } from '../boot/e820.js';

/** RAM below 4 GiB ends here at most (the E820 map's hole); the rest is placed at {@link HIGH_RAM_BASE}. */
export const LOW_RAM_LIMIT = LOW_MEMORY_END;
/** Where RAM beyond {@link LOW_RAM_LIMIT} goes: 4 GiB. */
export const HIGH_RAM_BASE = HIGH_MEMORY_START;
/** Smallest supported guest RAM: 1 MiB. */
export const MIN_MEMORY = EXTENDED_START;
/** Largest supported guest RAM: 1 TiB. */
export const MAX_MEMORY = 2 ** 40;
/** Guest RAM sizes must be a multiple of this (the page size). */
export const MEMORY_ALIGN = 0x1000;
/** Largest supported vCPU count (one MADT Local APIC entry each; ACPI ids 0-253). */
export const MAX_CPUS = 254;

/** Where the ACPI tables go for a direct Linux boot (the RSDP first, inside the BIOS scan area). */
export const ACPI_TABLES_AT = 0xe_0000;
/** The in-kernel IOAPIC (KVM's fixed address) and its id in the MADT. */
export const IOAPIC = { id: 0, address: 0xfec0_0000, gsiBase: 0 } as const;

/** I/O ports of the platform devices (base and length). */
export const PORTS = {
  /**
   * i8042 keyboard controller: 0x60 data, 0x64 status/command. Port 0x61 (system control
   * port B) lies inside the range but KVM serves it (see {@link KVM_PORTS}): guest accesses
   * never reach the i8042's own port B.
   */
  i8042: { base: 0x60, length: 5 },
  /** CMOS/RTC: 0x70 index, 0x71 data. */
  cmos: { base: 0x70, length: 2 },
  /** POST diagnostic codes. */
  post: { base: 0x80, length: 1 },
  /** COM1 16550A UART. */
  com1: { base: 0x3f8, length: 8 },
  /** QEMU/Bochs debug console (SeaBIOS's log). */
  debugcon: { base: 0x402, length: 1 },
  /**
   * QEMU isa-debug-exit at its default iobase 0x501, iosize 2; `createPc({ debugExit })`
   * and `vmmapi run --debug-exit` move it.
   */
  debugExit: { base: 0x501, length: 2 },
  /** fw_cfg: 0x510 selector (16-bit writes), 0x511 data. */
  fwCfg: { base: 0x510, length: 2 },
  /** ACPI PM1a event block (0x600 status, 0x602 enable) and control block (0x604). */
  acpiPm: { base: 0x600, length: 6 },
  /** PCI reset control register (RST_CNT). */
  reset: { base: 0xcf9, length: 1 },
} as const;

/**
 * I/O ports KVM's in-kernel devices serve on the PC: guest accesses there never reach a
 * userspace device, so none may be registered over them.
 */
export const KVM_PORTS = {
  /** Master 8259 PIC. */
  picMaster: { base: 0x20, length: 2 },
  /** i8254 PIT: channels 0-2 and the mode register. */
  pit: { base: 0x40, length: 4 },
  /**
   * System control port B (KVM_PIT_SPEAKER_DUMMY): bit 0 gates PIT channel 2, bit 1 speaker
   * enable, bit 4 refresh clock, bit 5 channel 2's output.
   */
  speaker: { base: 0x61, length: 1 },
  /** Slave 8259 PIC. */
  picSlave: { base: 0xa0, length: 2 },
  /** The PICs' edge/level control registers. */
  elcr: { base: 0x4d0, length: 2 },
} as const;

/** ISA IRQs of the platform devices. */
export const IRQS = {
  /** i8042 keyboard. */
  keyboard: 1,
  /** COM1. */
  com1: 4,
  /** ACPI SCI (as described in the FADT/MADT). */
  sci: 9,
  /** i8042 aux (mouse). */
  mouse: 12,
} as const;

/** One contiguous RAM range. */
export interface RamRange {
  /** Guest-physical start. */
  gpa: number;
  /** Length in bytes. */
  length: number;
}

/**
 * Split `bytes` of RAM into the PC layout: `[0, min(bytes, 3 GiB))`, then the rest at 4 GiB.
 * Returns one or two ranges: the RAM of the E820 map firmware gets (src/boot/e820.ts
 * `buildFirmwareE820`, the one owner of the split). RangeError below 1 MiB.
 */
export function ramRanges(bytes: number): RamRange[] {
  return buildFirmwareE820(bytes, { lowMemEnd: LOW_RAM_LIMIT }).map((e) => ({ gpa: e.addr, length: e.size }));
}

/** Format a byte count the way error messages show it (e.g. `64 KiB`, `3 MiB`, `4097 bytes`). */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size && n % size === 0) return `${n / size} ${unit}`;
  }
  return `${n} bytes`;
}

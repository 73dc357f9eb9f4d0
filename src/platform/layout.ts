/**
 * The PC platform's fixed layout: where RAM goes, which I/O ports and IRQs the devices
 * use, where the PCI windows are. One place to read the machine's map.
 *
 * Guest-physical memory map (`ram` = the machine's RAM size):
 *
 * | range                          | what                                                      |
 * |--------------------------------|-----------------------------------------------------------|
 * | 0 - min(ram, 3 GiB)            | RAM (E820 reserves the EBDA and 0xf0000-0xfffff; the ACPI tables sit at 0xe0000 for a direct Linux boot) |
 * | 0xc000_0000 - 0xdfff_ffff      | PCI MMIO window for 32-bit BARs ({@link PCI_MMIO32_WINDOW}) |
 * | 0xe000_0000 - 0xe00f_ffff      | PCI ECAM, bus 0 ({@link PCI_ECAM}; MCFG, E820 reserved)    |
 * | 0xe010_0000 - 0xfebf_ffff      | free (SeaBIOS, which knows none of these windows, places BARs downwards from 0xfec00000) |
 * | 0xfec0_0000 - 0xfec0_0fff      | IOAPIC (in KVM)                                           |
 * | 0xfed0_0000 - 0xfedf_ffff      | left free (where a PC's HPET and chipset registers live)  |
 * | 0xfee0_0000 - 0xfeef_ffff      | local APICs / MSI address range (in KVM)                  |
 * | 0xfeff_c000 - 0xfeff_ffff      | KVM's real-mode identity map and TSS (src/vm.ts)          |
 * | 0xff00_0000 - 0xffff_ffff      | BIOS ROM (up to 16 MiB, ending at 4 GiB)                  |
 * | 4 GiB - 4 GiB + ram − 3 GiB    | RAM beyond 3 GiB                                          |
 * | 1 GiB-aligned above that, 32 GiB | PCI MMIO window for 64-bit BARs ({@link pciMmio64Window}) |
 *
 * I/O ports: the devices in {@link PORTS} (all below 0x1000), the in-kernel ones in
 * {@link KVM_PORTS}, and the PCI I/O window 0xc000-0xffff ({@link PCI_IO_WINDOW}).
 */

import { buildFirmwareE820, E820Type, EXTENDED_START, HIGH_MEMORY_START, LOW_MEMORY_END, type E820Entry } from '../boot/e820.js';

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
  /** PCI configuration mechanism #1: CONFIG_ADDRESS (32-bit accesses only). */
  pciConfigAddress: { base: 0xcf8, length: 1 },
  /** PCI reset control register (RST_CNT), between the config ports. */
  reset: { base: 0xcf9, length: 1 },
  /** PCI configuration mechanism #1: CONFIG_DATA. */
  pciConfigData: { base: 0xcfc, length: 4 },
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

/**
 * Guest-physical ranges KVM serves itself (or keeps for itself) on the PC: no userspace
 * device may be mapped over them (a BAR programmed there is left unmapped).
 */
export const KVM_MMIO = {
  /** The in-kernel IOAPIC's registers. */
  ioapic: { base: IOAPIC.address, length: 0x1000 },
  /** The local APICs' registers and the MSI address range. */
  lapic: { base: 0xfee0_0000, length: 0x10_0000 },
  /** KVM's real-mode identity map page and TSS (KVM_SET_IDENTITY_MAP_ADDR / KVM_SET_TSS_ADDR in src/vm.ts). */
  kvmPrivate: { base: 0xfeff_c000, length: 0x4000 },
} as const;

/** An address window `[base, base + size)`. */
export interface PciWindowRange {
  /** First address (port, for the I/O window). */
  readonly base: number;
  /** Bytes (ports). */
  readonly size: number;
}

/**
 * The PCI ECAM window: bus 0 only (1 MiB), announced in the ACPI MCFG and reserved in the
 * E820 map (and in `\_SB.MBRD`'s _CRS), clear of RAM and of the 32-bit window.
 */
export const PCI_ECAM = { base: 0xe000_0000, size: 1 << 20, buses: 1 } as const;
/** The MMIO window for 32-bit BARs: 512 MiB right above the largest low RAM. */
export const PCI_MMIO32_WINDOW: PciWindowRange = Object.freeze({ base: 0xc000_0000, size: 0x2000_0000 });
/** The I/O port window for I/O BARs: 0xc000-0xffff, as on QEMU's PC. */
export const PCI_IO_WINDOW: PciWindowRange = Object.freeze({ base: 0xc000, size: 0x4000 });
/** Size of the MMIO window for 64-bit BARs: 32 GiB. */
export const PCI_MMIO64_SIZE = 2 ** 35;
/** Alignment of the 64-bit window's base: 1 GiB (a huge page). */
export const PCI_MMIO64_ALIGN = 2 ** 30;

/** Where the PCI bus's windows are on a PC with a given amount of RAM. */
export interface PcPciLayout {
  /** The ECAM window (bus 0). */
  readonly ecam: PciWindowRange;
  /** 32-bit BARs. */
  readonly mmio32: PciWindowRange;
  /** 64-bit BARs: above all RAM. */
  readonly mmio64: PciWindowRange;
  /** I/O BARs. */
  readonly io: PciWindowRange;
}

/**
 * The 64-bit BAR window for `memoryBytes` of RAM: {@link PCI_MMIO64_SIZE} bytes from the
 * first 1 GiB boundary at or above both 4 GiB and the end of the RAM relocated there.
 */
export function pciMmio64Window(memoryBytes: number): PciWindowRange {
  const ramEnd = ramRanges(memoryBytes).reduce((end, r) => Math.max(end, r.gpa + r.length), 0);
  const base = Math.ceil(Math.max(ramEnd, HIGH_RAM_BASE) / PCI_MMIO64_ALIGN) * PCI_MMIO64_ALIGN;
  return Object.freeze({ base, size: PCI_MMIO64_SIZE });
}

/** The PCI windows of a PC with `memoryBytes` of RAM (RangeError below 1 MiB). */
export function pciLayout(memoryBytes: number): PcPciLayout {
  return Object.freeze({
    ecam: Object.freeze({ base: PCI_ECAM.base, size: PCI_ECAM.size }),
    mmio32: PCI_MMIO32_WINDOW,
    mmio64: pciMmio64Window(memoryBytes),
    io: PCI_IO_WINDOW,
  });
}

/**
 * What the PC's E820 map for a directly booted OS reserves besides the standard PC ranges
 * (src/boot/e820.ts `buildE820`): the ECAM window, which Linux only uses for MMCONFIG when
 * the E820 map (or a motherboard device's _CRS) reserves it.
 */
export function pcReservedE820(): E820Entry[] {
  return [{ addr: PCI_ECAM.base, size: PCI_ECAM.size, type: E820Type.RESERVED }];
}

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

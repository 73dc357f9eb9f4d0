/**
 * The numbers of PCI configuration space: sizes, the type-0 header's register offsets,
 * and the command and status register bits (PCI Local Bus Specification 3.0, §6.1-6.2).
 */

/** Bytes of a function's configuration space (conventional + extended). */
export const PCI_CONFIG_SIZE = 0x1000;
/** Bytes of the conventional configuration space. */
export const PCI_CONVENTIONAL_SIZE = 0x100;
/** Where the first capability goes (the end of the type-0 header). */
export const PCI_CAPABILITIES_START = 0x40;
/** Where the extended capability list starts. */
export const PCI_EXTENDED_CAPABILITIES_START = 0x100;
/** Number of BARs in a type-0 header. */
export const PCI_BAR_COUNT = 6;
/** One past the highest address a 64-bit BAR may be mapped at (the MMIO bus's limit). */
export const PCI_MMIO64_LIMIT = 2 ** 52;
/** One past the highest I/O port (the x86 port space). */
export const PCI_IO_LIMIT = 0x10000;

/** Offsets of the type-0 header's registers. */
export const PciReg = {
  /** Vendor id (u16). */
  VENDOR_ID: 0x00,
  /** Device id (u16). */
  DEVICE_ID: 0x02,
  /** Command register (u16). */
  COMMAND: 0x04,
  /** Status register (u16). */
  STATUS: 0x06,
  /** Revision id (u8). */
  REVISION_ID: 0x08,
  /** Programming interface (u8), the low byte of the class code. */
  PROG_IF: 0x09,
  /** Sub-class (u8). */
  SUBCLASS: 0x0a,
  /** Base class (u8). */
  CLASS: 0x0b,
  /** Cache line size (u8). */
  CACHE_LINE_SIZE: 0x0c,
  /** Latency timer (u8). */
  LATENCY_TIMER: 0x0d,
  /** Header type (u8); bit 7 marks a multi-function device. */
  HEADER_TYPE: 0x0e,
  /** Built-in self test (u8). */
  BIST: 0x0f,
  /** BAR0 (u32); BAR n is at `BAR0 + 4n`. */
  BAR0: 0x10,
  /** CardBus CIS pointer (u32). */
  CARDBUS_CIS: 0x28,
  /** Subsystem vendor id (u16). */
  SUBSYSTEM_VENDOR_ID: 0x2c,
  /** Subsystem id (u16). */
  SUBSYSTEM_ID: 0x2e,
  /** Expansion ROM base address (u32). */
  EXPANSION_ROM: 0x30,
  /** Capabilities pointer (u8). */
  CAPABILITIES_POINTER: 0x34,
  /** Interrupt line (u8), written by firmware/OS, unused by the device. */
  INTERRUPT_LINE: 0x3c,
  /** Interrupt pin (u8). */
  INTERRUPT_PIN: 0x3d,
  /** Minimum grant (u8). */
  MIN_GNT: 0x3e,
  /** Maximum latency (u8). */
  MAX_LAT: 0x3f,
} as const;

/** Command register bits. */
export const PciCommand = {
  /** I/O space decode enable. */
  IO: 0x1,
  /** Memory space decode enable. */
  MEMORY: 0x2,
  /** Bus master (DMA) enable. */
  BUS_MASTER: 0x4,
  /** Parity error response. */
  PARITY_ERROR_RESPONSE: 0x40,
  /** SERR# enable. */
  SERR: 0x100,
  /** INTx emulation disable. */
  INTX_DISABLE: 0x400,
} as const;

/** Status register bits. */
export const PciStatus = {
  /** INTx asserted (read-only). */
  INTERRUPT: 0x8,
  /** A capability list is present (read-only). */
  CAPABILITIES_LIST: 0x10,
  /** Master data parity error (write-1-to-clear). */
  MASTER_DATA_PARITY_ERROR: 0x100,
  /** Signaled target abort (write-1-to-clear). */
  SIGNALED_TARGET_ABORT: 0x800,
  /** Received target abort (write-1-to-clear). */
  RECEIVED_TARGET_ABORT: 0x1000,
  /** Received master abort (write-1-to-clear). */
  RECEIVED_MASTER_ABORT: 0x2000,
  /** Signaled system error (write-1-to-clear). */
  SIGNALED_SYSTEM_ERROR: 0x4000,
  /** Detected parity error (write-1-to-clear). */
  DETECTED_PARITY_ERROR: 0x8000,
} as const;

/** Command bits a guest may write. */
export const PCI_COMMAND_WRITABLE = 0x0547;
/** Status bits that are write-1-to-clear. */
export const PCI_STATUS_W1C = 0xf900;

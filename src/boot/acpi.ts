/**
 * A minimal, valid set of ACPI tables for a KVM guest with an in-kernel LAPIC/IOAPIC:
 * RSDP (ACPI 2.0+), XSDT, RSDT, FADT (revision 6), FACS, DSDT (optionally with `\_S5`),
 * MADT (revision 4) and, with a PCI host bridge (`opts.pci`), MCFG.
 *
 * Layout, from `at` upwards, each table 16-byte aligned (FACS 64-byte aligned):
 * RSDP (unless `rsdpAt` is given), XSDT, RSDT, FADT, FACS, DSDT, MADT, MCFG.
 *
 * The DSDT (AML from src/boot/aml.ts) holds, with `opts.pci`:
 *
 * ```
 * Scope (\_SB) {
 *   Device (PCI0) {                      // the host bridge: segment 0, buses from 0
 *     Name (_HID, EisaId ("PNP0A08"))    // PCI Express root bridge
 *     Name (_CID, EisaId ("PNP0A03"))    // PCI root bridge
 *     Name (_SEG, 0)  Name (_BBN, 0)  Name (_UID, 0)
 *     Name (_CRS, ResourceTemplate () {
 *       WordBusNumber (0 - endBus)
 *       IO (Decode16, 0xCF8, 0xCF8, 1, 8)  // configuration mechanism #1, consumed
 *       WordIO (the I/O window)  DWordMemory (the 32-bit window)  QWordMemory (the 64-bit window)
 *     })
 *   }
 *   Device (MBRD) {                      // motherboard resources: the ECAM window
 *     Name (_HID, EisaId ("PNP0C02"))  Name (_UID, 0)
 *     Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, ecamBase, ecamLength) })
 *   }
 * }
 * Name (_S5, Package (4) { s5SleepType, 0, 0, 0 })
 * ```
 *
 * and the MCFG one allocation: ECAM at `ecamBase` for segment 0, buses 0 to `endBus`.
 *
 * Where the RSDP must live: Linux finds it through `boot_params.acpi_rsdp_addr` when set,
 * otherwise (no EFI) it scans the BIOS area `0xE0000-0xFFFFF` on 16-byte boundaries, so put
 * `at` (or `rsdpAt`) there unless the loader passes the address explicitly.
 *
 * The FADT describes a full (not hardware-reduced) ACPI platform with the PM1a event and
 * control blocks at I/O ports (defaults 0x600/0x604), SMI_CMD 0 (always in ACPI mode, so the
 * VMM's PM1a control register must read with SCI_EN set), SCI on ISA IRQ 9, the reset
 * register at I/O port 0xCF9 with value 0x06, and no PM timer unless `pmTimerPort` is given.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import * as aml from './aml.js';
import { alignUp, hex, overlaps, requireAddress } from './util.js';

/** The IOAPIC described by the MADT. */
export interface AcpiIoApic {
  /** IOAPIC id (0-255). */
  id: number;
  /** MMIO base address, normally 0xFEC00000. */
  address: number;
  /** First GSI it serves, normally 0. */
  gsiBase: number;
}

/** An address window `[base, base + size)`. */
export interface AcpiWindow {
  /** First address. */
  base: number;
  /** Bytes (ports for the I/O window), at least 1. */
  size: number;
}

/** The PCI host bridge the DSDT (`\_SB.PCI0`) and the MCFG describe: segment 0, buses from 0. */
export interface AcpiPciHostBridge {
  /** Guest-physical base of the ECAM window (bus 0's configuration space), 1 MiB aligned. */
  ecamBase: number;
  /** Last bus number the ECAM window covers (1 MiB per bus), 0-255. Default 0. */
  endBus?: number;
  /** The I/O port window for BARs (the config ports 0xcf8-0xcff are added as consumed). */
  io: AcpiWindow;
  /** The MMIO window for BARs below 4 GiB. */
  mmio32: AcpiWindow;
  /** The MMIO window for 64-bit BARs (optional). */
  mmio64?: AcpiWindow;
}

/** Options for {@link buildAcpiTables}. */
export interface AcpiOptions {
  /** Guest-physical address where the tables start (below 4 GiB). */
  at: number;
  /** Put the RSDP here instead of at `at` (16-byte aligned, below 4 GiB). */
  rsdpAt?: number;
  /** Number of vCPUs, 1-254: one Local APIC entry each, ACPI processor UID = APIC id = index. */
  cpus: number;
  /** The IOAPIC. */
  ioapic: AcpiIoApic;
  /** Local APIC MMIO base. Default 0xFEE00000. */
  lapicAddress?: number;
  /** OEM ID, up to 6 ASCII characters (space padded). Default `'VMMAPI'`. */
  oemId?: string;
  /** OEM table ID, up to 8 ASCII characters (space padded). Default `'VMMAPI  '`. */
  oemTableId?: string;
  /** OEM revision. Default 1. */
  oemRevision?: number;
  /** ISA IRQ (and GSI) of the SCI. Default 9. */
  sciIrq?: number;
  /** I/O port of the 24/32-bit ACPI PM timer, or 0 for none. Default 0. */
  pmTimerPort?: number;
  /** I/O port of the PM1a event block (4 bytes: status, enable). Default 0x600. */
  pm1aEventPort?: number;
  /** I/O port of the PM1a control block (2 bytes). Default 0x604. */
  pm1aControlPort?: number;
  /** I/O port of the GPE0 block, or 0 for none. Default 0. */
  gpe0Port?: number;
  /** Length of the GPE0 block in bytes (even). Default 0 (4 when `gpe0Port` is set). */
  gpe0Length?: number;
  /** I/O port of the reset register. Default 0xCF9. */
  resetPort?: number;
  /** Value written to the reset register to reset. Default 0x06. */
  resetValue?: number;
  /** FADT IAPC_BOOT_ARCH flags. Default 0x0003 (LEGACY_DEVICES | 8042). */
  iapcBootArch?: number;
  /** SLP_TYPa value for `\_S5` in the DSDT, or `false` for none. Default 5. */
  s5SleepType?: number | false;
  /** A PCI host bridge: adds `\_SB.PCI0` and `\_SB.MBRD` to the DSDT and an MCFG table. */
  pci?: AcpiPciHostBridge;
}

/** Addresses of the tables written by {@link buildAcpiTables}. */
export interface AcpiTables {
  /** The RSDP (what `boot_params.acpi_rsdp_addr` should hold). */
  rsdp: number;
  /** The XSDT. */
  xsdt: number;
  /** The RSDT. */
  rsdt: number;
  /** The FADT ("FACP"). */
  fadt: number;
  /** The FACS. */
  facs: number;
  /** The DSDT. */
  dsdt: number;
  /** The MADT ("APIC"). */
  madt: number;
  /** The MCFG, when `opts.pci` was given. */
  mcfg?: number;
  /** First byte after the tables starting at `at` (the region `[at, end)` should be E820 type 3). */
  end: number;
}

/** Length of the ACPI 2.0+ RSDP. */
export const RSDP_LENGTH = 36;
/** Length of the common system description table header. */
export const ACPI_HEADER_LENGTH = 36;
/** Length of a revision 6 FADT. */
export const FADT_LENGTH = 276;
/** Length of the FACS. */
export const FACS_LENGTH = 64;
/** Length of an MCFG with one allocation: header, 8 reserved bytes, one 16-byte entry. */
export const MCFG_LENGTH = ACPI_HEADER_LENGTH + 8 + 16;
/** Bytes of ECAM space per bus. */
export const ECAM_BUS_SIZE = 1 << 20;
/** The configuration mechanism #1 ports the host bridge consumes (0xcf8-0xcff). */
export const PCI_CONFIG_PORTS = { base: 0xcf8, length: 8 } as const;

/** FADT flag bits used here. */
export const FadtFlags = {
  WBINVD: 1 << 0,
  PROC_C1: 1 << 2,
  PWR_BUTTON: 1 << 4,
  SLP_BUTTON: 1 << 5,
  TMR_VAL_EXT: 1 << 8,
  RESET_REG_SUP: 1 << 10,
  HW_REDUCED_ACPI: 1 << 20,
} as const;

/** FADT IAPC_BOOT_ARCH bits. */
export const IapcBootArch = {
  LEGACY_DEVICES: 1 << 0,
  I8042: 1 << 1,
  VGA_NOT_PRESENT: 1 << 2,
  MSI_NOT_SUPPORTED: 1 << 3,
  PCIE_ASPM_CONTROLS: 1 << 4,
  CMOS_RTC_NOT_PRESENT: 1 << 5,
} as const;

/** MADT interrupt controller structure types. */
export const MadtType = {
  LOCAL_APIC: 0,
  IO_APIC: 1,
  INTERRUPT_SOURCE_OVERRIDE: 2,
  NMI_SOURCE: 3,
  LOCAL_APIC_NMI: 4,
} as const;

const CREATOR_ID = 'VMMA';
const CREATOR_REVISION = 1;

/** Sum of bytes mod 256 → the checksum byte that makes the sum zero. */
function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

function ascii(s: string, len: number, name: string): Uint8Array {
  if (typeof s !== 'string') throw new TypeError(`${name} must be a string`);
  if (s.length > len || !/^[\x20-\x7e]*$/.test(s)) throw new RangeError(`${name} must be at most ${len} printable ASCII characters`);
  const out = new Uint8Array(len).fill(0x20);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

interface Oem {
  id: Uint8Array;
  tableId: Uint8Array;
  revision: number;
}

/** A table under construction: header filled in, checksum set by `finish()`. */
class Table {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  constructor(signature: string, length: number, revision: number, oem: Oem) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
    this.bytes.set(ascii(signature, 4, 'signature'), 0);
    this.view.setUint32(4, length, true);
    this.bytes[8] = revision;
    this.bytes.set(oem.id, 10);
    this.bytes.set(oem.tableId, 16);
    this.view.setUint32(24, oem.revision, true);
    this.bytes.set(ascii(CREATOR_ID, 4, 'creator'), 28);
    this.view.setUint32(32, CREATOR_REVISION, true);
  }
  finish(): Uint8Array {
    this.bytes[9] = 0;
    this.bytes[9] = checksum(this.bytes);
    return this.bytes;
  }
}

/** Write a Generic Address Structure at `off`. */
function gas(view: DataView, off: number, spaceId: number, bitWidth: number, accessSize: number, address: number): void {
  view.setUint8(off, spaceId);
  view.setUint8(off + 1, bitWidth);
  view.setUint8(off + 2, 0);
  view.setUint8(off + 3, accessSize);
  view.setBigUint64(off + 4, BigInt(address), true);
}

const GAS_IO = 1;

function intOpt(value: unknown, name: string, def: number, max: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(value) || value < 0 || value > max) throw new RangeError(`${name} must be an integer in [0, ${hex(max)}], got ${value}`);
  return value;
}

/** A checked {@link AcpiWindow} inside `[0, limit)`. */
function checkWindow(w: unknown, name: string, limit: number): AcpiWindow {
  if (typeof w !== 'object' || w === null) throw new TypeError(`${name} must be an object with base and size`);
  const { base, size } = w as AcpiWindow;
  if (typeof base !== 'number' || typeof size !== 'number') throw new TypeError(`${name}.base and ${name}.size must be numbers`);
  if (!Number.isSafeInteger(base) || base < 0) throw new RangeError(`${name}.base must be a non-negative safe integer, got ${base}`);
  if (!Number.isSafeInteger(size) || size < 1) throw new RangeError(`${name}.size must be a positive safe integer, got ${size}`);
  if (base + size > limit) throw new RangeError(`${name} ${hex(base)}+${hex(size)} must end at or below ${hex(limit)}`);
  return { base, size };
}

/** `opts.pci`, checked, with its defaults. */
interface PciPlan {
  ecamBase: number;
  endBus: number;
  io: AcpiWindow;
  mmio32: AcpiWindow;
  mmio64?: AcpiWindow;
}

/** Check `opts.pci`: aligned ECAM, windows inside their spaces and clear of each other and of the ECAM. */
function checkPci(pci: AcpiPciHostBridge): PciPlan {
  if (typeof pci !== 'object' || pci === null) throw new TypeError('opts.pci must be an object');
  const ecamBase = requireAddress(pci.ecamBase, 'opts.pci.ecamBase');
  if (ecamBase % ECAM_BUS_SIZE !== 0) throw new RangeError(`opts.pci.ecamBase must be 1 MiB aligned, got ${hex(ecamBase)}`);
  const endBus = intOpt(pci.endBus, 'opts.pci.endBus', 0, 0xff);
  const ecamSize = (endBus + 1) * ECAM_BUS_SIZE;
  if (ecamBase + ecamSize > 2 ** 52) throw new RangeError(`opts.pci.ecamBase ${hex(ecamBase)}: the ECAM window must end at or below 2^52`);
  const io = checkWindow(pci.io, 'opts.pci.io', 0x10000);
  if (overlaps(io.base, io.size, PCI_CONFIG_PORTS.base, PCI_CONFIG_PORTS.length)) throw new RangeError('opts.pci.io must not include the config ports 0xcf8-0xcff');
  const mmio32 = checkWindow(pci.mmio32, 'opts.pci.mmio32', 2 ** 32);
  const mmio64 = pci.mmio64 === undefined ? undefined : checkWindow(pci.mmio64, 'opts.pci.mmio64', 2 ** 52);
  const mem: [string, AcpiWindow][] = [['ECAM window', { base: ecamBase, size: ecamSize }], ['opts.pci.mmio32', mmio32]];
  if (mmio64) mem.push(['opts.pci.mmio64', mmio64]);
  for (let i = 0; i < mem.length; i++) {
    for (let j = i + 1; j < mem.length; j++) {
      if (overlaps(mem[i][1].base, mem[i][1].size, mem[j][1].base, mem[j][1].size)) throw new RangeError(`${mem[j][0]} overlaps the ${mem[i][0]}`);
    }
  }
  return { ecamBase, endBus, io, mmio32, mmio64 };
}

/** `\_SB.PCI0` and `\_SB.MBRD` (see the module comment). */
function pciAml(pci: PciPlan): Uint8Array {
  const last = (w: AcpiWindow): number => w.base + w.size - 1; // windows end at or below 2^52: exact
  const crs = [
    aml.wordBusNumber({ min: 0, max: pci.endBus }),
    aml.ioPort({ min: PCI_CONFIG_PORTS.base, align: 1, length: PCI_CONFIG_PORTS.length }),
    aml.wordIo({ min: pci.io.base, max: last(pci.io) }),
    aml.dwordMemory({ min: pci.mmio32.base, max: last(pci.mmio32) }),
  ];
  if (pci.mmio64) crs.push(aml.qwordMemory({ min: pci.mmio64.base, max: last(pci.mmio64) }));
  const ecamSize = (pci.endBus + 1) * ECAM_BUS_SIZE;
  const ecam =
    pci.ecamBase + ecamSize <= 2 ** 32
      ? aml.memory32Fixed({ base: pci.ecamBase, length: ecamSize })
      : aml.qwordMemory({ min: pci.ecamBase, max: pci.ecamBase + ecamSize - 1, consumer: true });
  return aml.scope('\\_SB', [
    aml.device('PCI0', [
      aml.name('_HID', aml.eisaId('PNP0A08')),
      aml.name('_CID', aml.eisaId('PNP0A03')),
      aml.name('_SEG', aml.integer(0)),
      aml.name('_BBN', aml.integer(0)),
      aml.name('_UID', aml.integer(0)),
      aml.name('_CRS', aml.resourceTemplate(crs)),
    ]),
    aml.device('MBRD', [
      aml.name('_HID', aml.eisaId('PNP0C02')),
      aml.name('_UID', aml.integer(0)),
      aml.name('_CRS', aml.resourceTemplate([ecam])),
    ]),
  ]);
}

function buildDsdt(oem: Oem, s5: number | false, pci: PciPlan | undefined): Uint8Array {
  const terms: Uint8Array[] = [];
  if (pci) terms.push(pciAml(pci));
  // Name (_S5, Package (4) { SLP_TYPa, SLP_TYPb, reserved, reserved })
  if (s5 !== false) terms.push(aml.name('_S5', aml.packageOf([aml.integer(s5), aml.integer(0), aml.integer(0), aml.integer(0)])));
  const body = aml.concat(terms);
  const t = new Table('DSDT', ACPI_HEADER_LENGTH + body.length, 2, oem);
  t.bytes.set(body, ACPI_HEADER_LENGTH);
  return t.finish();
}

/** MCFG (PCI Firmware Specification 3.2 §4.1.2): one allocation, segment 0, buses 0 to `endBus`. */
function buildMcfg(oem: Oem, pci: PciPlan): Uint8Array {
  const t = new Table('MCFG', MCFG_LENGTH, 1, oem);
  // 8 reserved bytes at 36, then the allocation structure
  t.view.setBigUint64(44, BigInt(pci.ecamBase), true);
  t.view.setUint16(52, 0, true); // PCI segment group
  t.view.setUint8(54, 0); // start bus
  t.view.setUint8(55, pci.endBus); // end bus
  return t.finish();
}

function buildMadt(oem: Oem, cpus: number, lapic: number, io: AcpiIoApic, sci: number): Uint8Array {
  const length = ACPI_HEADER_LENGTH + 8 + cpus * 8 + 12 + 2 * 10 + 6;
  const t = new Table('APIC', length, 4, oem);
  const v = t.view;
  v.setUint32(36, lapic, true);
  v.setUint32(40, 1, true); // PCAT_COMPAT: dual 8259s present
  let o = 44;
  for (let i = 0; i < cpus; i++) {
    v.setUint8(o, MadtType.LOCAL_APIC);
    v.setUint8(o + 1, 8);
    v.setUint8(o + 2, i); // ACPI processor UID
    v.setUint8(o + 3, i); // APIC id
    v.setUint32(o + 4, 1, true); // enabled
    o += 8;
  }
  v.setUint8(o, MadtType.IO_APIC);
  v.setUint8(o + 1, 12);
  v.setUint8(o + 2, io.id);
  v.setUint8(o + 3, 0);
  v.setUint32(o + 4, io.address, true);
  v.setUint32(o + 8, io.gsiBase, true);
  o += 12;
  const iso = (source: number, gsi: number, flags: number): void => {
    v.setUint8(o, MadtType.INTERRUPT_SOURCE_OVERRIDE);
    v.setUint8(o + 1, 10);
    v.setUint8(o + 2, 0); // ISA bus
    v.setUint8(o + 3, source);
    v.setUint32(o + 4, gsi, true);
    v.setUint16(o + 8, flags, true);
    o += 10;
  };
  iso(0, 2, 0); // PIT IRQ0 -> GSI2, bus-conforming
  iso(sci, sci, 0x000d); // SCI: active high (01), level triggered (11 << 2)
  v.setUint8(o, MadtType.LOCAL_APIC_NMI);
  v.setUint8(o + 1, 6);
  v.setUint8(o + 2, 0xff); // all processors
  v.setUint16(o + 3, 0, true); // conforming
  v.setUint8(o + 5, 1); // LINT1
  return t.finish();
}

/**
 * Write the ACPI tables into guest memory and return their addresses.
 *
 * @throws TypeError on wrong option types; RangeError if an option is out of range or the
 *   tables do not fit in backed guest memory below 4 GiB.
 */
export function buildAcpiTables(mem: GuestMemoryAccess, opts: AcpiOptions): AcpiTables {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const at = requireAddress(opts.at, 'opts.at');
  const cpus = opts.cpus;
  if (typeof cpus !== 'number') throw new TypeError('opts.cpus must be a number');
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > 254) throw new RangeError(`opts.cpus must be an integer in [1, 254], got ${cpus}`);
  const io = opts.ioapic;
  if (typeof io !== 'object' || io === null) throw new TypeError('opts.ioapic must be an object');
  const ioapic: AcpiIoApic = {
    id: intOpt(io.id, 'opts.ioapic.id', 0, 0xff),
    address: intOpt(io.address, 'opts.ioapic.address', 0xfec00000, 0xffff_ffff),
    gsiBase: intOpt(io.gsiBase, 'opts.ioapic.gsiBase', 0, 0xffff_ffff),
  };
  const lapic = intOpt(opts.lapicAddress, 'opts.lapicAddress', 0xfee00000, 0xffff_ffff);
  const sci = intOpt(opts.sciIrq, 'opts.sciIrq', 9, 15);
  const pmTimer = intOpt(opts.pmTimerPort, 'opts.pmTimerPort', 0, 0xffff);
  const pm1aEvt = intOpt(opts.pm1aEventPort, 'opts.pm1aEventPort', 0x600, 0xffff);
  const pm1aCnt = intOpt(opts.pm1aControlPort, 'opts.pm1aControlPort', 0x604, 0xffff);
  const gpe0 = intOpt(opts.gpe0Port, 'opts.gpe0Port', 0, 0xffff);
  const gpe0Len = intOpt(opts.gpe0Length, 'opts.gpe0Length', gpe0 ? 4 : 0, 0xfe);
  if (gpe0Len % 2 !== 0) throw new RangeError('opts.gpe0Length must be even');
  const resetPort = intOpt(opts.resetPort, 'opts.resetPort', 0xcf9, 0xffff);
  const resetValue = intOpt(opts.resetValue, 'opts.resetValue', 0x06, 0xff);
  const bootArch = intOpt(opts.iapcBootArch, 'opts.iapcBootArch', IapcBootArch.LEGACY_DEVICES | IapcBootArch.I8042, 0xffff);
  const s5 = opts.s5SleepType === false ? false : intOpt(opts.s5SleepType, 'opts.s5SleepType', 5, 7);
  const pci = opts.pci === undefined ? undefined : checkPci(opts.pci);
  const oem: Oem = {
    id: ascii(opts.oemId ?? 'VMMAPI', 6, 'opts.oemId'),
    tableId: ascii(opts.oemTableId ?? 'VMMAPI', 8, 'opts.oemTableId'),
    revision: intOpt(opts.oemRevision, 'opts.oemRevision', 1, 0xffff_ffff),
  };

  // Layout.
  let cursor = alignUp(at, 16);
  let rsdpAt: number;
  if (opts.rsdpAt !== undefined) {
    rsdpAt = requireAddress(opts.rsdpAt, 'opts.rsdpAt');
    if (rsdpAt % 16 !== 0) throw new RangeError(`opts.rsdpAt must be 16-byte aligned, got ${hex(rsdpAt)}`);
  } else {
    rsdpAt = cursor;
    cursor += RSDP_LENGTH;
  }
  const place = (len: number, align = 16): number => {
    const a = alignUp(cursor, align);
    cursor = a + len;
    return a;
  };
  const entries = pci ? 3 : 2; // FADT, MADT (, MCFG)
  const xsdtLen = ACPI_HEADER_LENGTH + entries * 8;
  const rsdtLen = ACPI_HEADER_LENGTH + entries * 4;
  const dsdt = buildDsdt(oem, s5, pci);
  const madt = buildMadt(oem, cpus, lapic, ioapic, sci);
  const mcfg = pci ? buildMcfg(oem, pci) : undefined;
  const xsdtAt = place(xsdtLen);
  const rsdtAt = place(rsdtLen);
  const fadtAt = place(FADT_LENGTH);
  const facsAt = place(FACS_LENGTH, 64);
  const dsdtAt = place(dsdt.length);
  const madtAt = place(madt.length);
  const mcfgAt = mcfg ? place(mcfg.length) : undefined;
  const end = cursor;
  if (end > 0x1_0000_0000 || rsdpAt + RSDP_LENGTH > 0x1_0000_0000)
    throw new RangeError(`ACPI tables at ${hex(at)} must lie below 4 GiB`);
  if (!mem.isBacked(at, end - at)) throw new RangeError(`opts.at: ACPI tables [${hex(at)}, ${hex(end)}) are not backed by guest memory`);
  if (!mem.isBacked(rsdpAt, RSDP_LENGTH)) throw new RangeError(`opts.rsdpAt: RSDP at ${hex(rsdpAt)} is not backed by guest memory`);
  if (opts.rsdpAt !== undefined && rsdpAt < end && rsdpAt + RSDP_LENGTH > at)
    throw new RangeError(`opts.rsdpAt ${hex(rsdpAt)} overlaps the ACPI tables [${hex(at)}, ${hex(end)})`);

  // FADT.
  const fadt = new Table('FACP', FADT_LENGTH, 6, oem);
  const f = fadt.view;
  f.setUint32(36, 0, true); // FIRMWARE_CTRL: 0, X_FIRMWARE_CTRL says it (both set → Linux installs the FACS twice)
  f.setUint32(40, dsdtAt, true); // DSDT
  f.setUint8(45, 0); // Preferred_PM_Profile: unspecified
  f.setUint16(46, sci, true); // SCI_INT
  f.setUint32(48, 0, true); // SMI_CMD: none, hardware is always in ACPI mode
  f.setUint32(56, pm1aEvt, true); // PM1a_EVT_BLK
  f.setUint32(64, pm1aCnt, true); // PM1a_CNT_BLK
  f.setUint32(76, pmTimer, true); // PM_TMR_BLK
  f.setUint32(80, gpe0, true); // GPE0_BLK
  f.setUint8(88, 4); // PM1_EVT_LEN
  f.setUint8(89, 2); // PM1_CNT_LEN
  f.setUint8(91, pmTimer ? 4 : 0); // PM_TMR_LEN
  f.setUint8(92, gpe0 ? gpe0Len : 0); // GPE0_BLK_LEN
  f.setUint16(96, 101, true); // P_LVL2_LAT > 100: C2 not supported
  f.setUint16(98, 1001, true); // P_LVL3_LAT > 1000: C3 not supported
  f.setUint8(108, 0x32); // CENTURY: CMOS index 0x32
  f.setUint16(109, bootArch, true); // IAPC_BOOT_ARCH
  let flags = FadtFlags.WBINVD | FadtFlags.PROC_C1 | FadtFlags.PWR_BUTTON | FadtFlags.SLP_BUTTON | FadtFlags.RESET_REG_SUP;
  if (pmTimer) flags |= FadtFlags.TMR_VAL_EXT;
  f.setUint32(112, flags, true);
  gas(f, 116, GAS_IO, 8, 1, resetPort); // RESET_REG
  f.setUint8(128, resetValue); // RESET_VALUE
  f.setUint8(131, 0); // FADT minor version: ACPI 6.0
  f.setBigUint64(132, BigInt(facsAt), true); // X_FIRMWARE_CTRL
  f.setBigUint64(140, BigInt(dsdtAt), true); // X_DSDT
  gas(f, 148, GAS_IO, 32, 0, pm1aEvt); // X_PM1a_EVT_BLK
  gas(f, 172, GAS_IO, 16, 0, pm1aCnt); // X_PM1a_CNT_BLK
  if (pmTimer) gas(f, 208, GAS_IO, 32, 0, pmTimer); // X_PM_TMR_BLK
  if (gpe0) gas(f, 220, GAS_IO, gpe0Len * 8, 0, gpe0); // X_GPE0_BLK
  // Hypervisor Vendor Identity (offset 268) is left zero.

  // FACS: no checksum.
  const facs = new Uint8Array(FACS_LENGTH);
  const fv = new DataView(facs.buffer);
  facs.set(ascii('FACS', 4, 'signature'), 0);
  fv.setUint32(4, FACS_LENGTH, true);
  fv.setUint8(32, 2); // version

  // XSDT / RSDT.
  const listed = mcfgAt === undefined ? [fadtAt, madtAt] : [fadtAt, madtAt, mcfgAt];
  const xsdt = new Table('XSDT', xsdtLen, 1, oem);
  const rsdt = new Table('RSDT', rsdtLen, 1, oem);
  listed.forEach((a, i) => {
    xsdt.view.setBigUint64(36 + 8 * i, BigInt(a), true);
    rsdt.view.setUint32(36 + 4 * i, a, true);
  });

  // RSDP.
  const rsdp = new Uint8Array(RSDP_LENGTH);
  const rv = new DataView(rsdp.buffer);
  rsdp.set(ascii('RSD PTR ', 8, 'signature'), 0);
  rsdp.set(oem.id, 9);
  rsdp[15] = 2; // revision: ACPI 2.0+
  rv.setUint32(16, rsdtAt, true);
  rv.setUint32(20, RSDP_LENGTH, true);
  rv.setBigUint64(24, BigInt(xsdtAt), true);
  rsdp[8] = checksum(rsdp.subarray(0, 20));
  rsdp[32] = checksum(rsdp);

  mem.fill(at, end - at, 0);
  mem.writeBytes(rsdpAt, rsdp);
  mem.writeBytes(xsdtAt, xsdt.finish());
  mem.writeBytes(rsdtAt, rsdt.finish());
  mem.writeBytes(fadtAt, fadt.finish());
  mem.writeBytes(facsAt, facs);
  mem.writeBytes(dsdtAt, dsdt);
  mem.writeBytes(madtAt, madt);
  const tables: AcpiTables = { rsdp: rsdpAt, xsdt: xsdtAt, rsdt: rsdtAt, fadt: fadtAt, facs: facsAt, dsdt: dsdtAt, madt: madtAt, end };
  if (mcfg && mcfgAt !== undefined) {
    mem.writeBytes(mcfgAt, mcfg);
    tables.mcfg = mcfgAt;
  }
  return tables;
}

/**
 * The host side of the PCI bus: the host bridge function at 00:00.0 and the two ways a
 * guest reaches configuration space.
 *
 * **Configuration mechanism #1** ({@link PciConfigIo}), 8 ports at 0xcf8:
 *
 * | off | port        | access        | meaning                                        |
 * |-----|-------------|---------------|------------------------------------------------|
 * | 0   | 0xcf8       | 32-bit r/w    | CONFIG_ADDRESS: bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2 register |
 * | 4-7 | 0xcfc-0xcff | 8/16/32-bit   | CONFIG_DATA: the addressed dword; the port's low 2 bits pick the byte |
 *
 * Only an aligned 32-bit access at 0xcf8 reaches CONFIG_ADDRESS (reserved bits 30:24 and
 * 1:0 read 0); byte and word accesses at 0xcf8-0xcfb read all-ones and are ignored (on a PC
 * they belong to other devices: 0xcf9 is the reset control register, so the platform
 * registers {@link PciConfigIo.address} over the single port 0xcf8 and
 * {@link PciConfigIo.data} over 0xcfc-0xcff). With the enable bit clear CONFIG_DATA reads
 * all-ones and ignores writes. Mechanism #1 reaches the first 256 bytes of each function.
 *
 * **ECAM** ({@link PciEcam}), memory-mapped: offset = bus << 20 | device << 15 | function << 12
 * | register, 1 MiB per bus, the whole 4 KiB of each function. The platform maps it at a
 * base it announces in the ACPI MCFG table.
 *
 * **Host bridge** ({@link PciHostBridge}): class 0x060000 with no BARs. Its default identity
 * is 1b36:0008, QEMU's generic "PCIe host bridge": one no firmware treats as a chipset it
 * must program. (SeaBIOS, on seeing Q35's 8086:29c0, programs the MCH's PCIEXBAR and then
 * makes all its config accesses through ECAM at 0xb0000000; on 8086:1237 it programs the
 * i440FX's PAM registers. Neither register is modelled here.) Any identity can be chosen.
 */

import type { AccessSize, Device } from '../devices/device.js';
import { allOnes, toU32 } from '../devices/io-util.js';
import type { PciBus, PciFunction } from './bus.js';
import { PciConfigSpace } from './config-space.js';
import { stateObject } from './state-check.js';
import { checkInt } from './util.js';

/** The CONFIG_ADDRESS port. */
export const PCI_CONFIG_ADDRESS_PORT = 0xcf8;
/** The first CONFIG_DATA port (0xcfc-0xcff). */
export const PCI_CONFIG_DATA_PORT = 0xcfc;
/** CONFIG_ADDRESS enable bit. */
export const PCI_CONFIG_ENABLE = 0x8000_0000;
/** The CONFIG_ADDRESS bits that hold a value (the rest read 0). */
export const PCI_CONFIG_ADDRESS_MASK = 0x80ff_fffc;
/** Bytes of ECAM space per bus: 32 devices × 8 functions × 4 KiB. */
export const PCI_ECAM_BUS_SIZE = 1 << 20;
/** The host bridge's class code (bridge, host). */
export const PCI_CLASS_HOST_BRIDGE = 0x060000;
/** Default host bridge vendor id: Red Hat (QEMU's PCI ids). */
export const PCI_HOST_BRIDGE_VENDOR_ID = 0x1b36;
/** Default host bridge device id: QEMU's generic PCIe host bridge. */
export const PCI_HOST_BRIDGE_DEVICE_ID = 0x0008;

/** Identity overrides for {@link PciHostBridge}. */
export interface PciHostBridgeOptions {
  /** Vendor id. Default {@link PCI_HOST_BRIDGE_VENDOR_ID}. */
  vendorId?: number;
  /** Device id. Default {@link PCI_HOST_BRIDGE_DEVICE_ID}. */
  deviceId?: number;
  /** Revision id. Default 0. */
  revisionId?: number;
  /** Subsystem vendor id. Default 0. */
  subsystemVendorId?: number;
  /** Subsystem id. Default 0. */
  subsystemId?: number;
}

/** The host bridge function (goes at 00:00.0): class 0x060000, no BARs, no interrupt pin. */
export class PciHostBridge implements PciFunction {
  /** Its configuration space. */
  readonly config: PciConfigSpace;

  /** A host bridge with the default identity or the given one. */
  constructor(opts: PciHostBridgeOptions = {}) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    this.config = new PciConfigSpace({
      vendorId: opts.vendorId ?? PCI_HOST_BRIDGE_VENDOR_ID,
      deviceId: opts.deviceId ?? PCI_HOST_BRIDGE_DEVICE_ID,
      classCode: PCI_CLASS_HOST_BRIDGE,
      revisionId: opts.revisionId,
      subsystemVendorId: opts.subsystemVendorId,
      subsystemId: opts.subsystemId,
    });
  }
}

function checkBus(bus: PciBus): PciBus {
  if (typeof bus !== 'object' || bus === null || typeof bus.readConfig !== 'function' || typeof bus.writeConfig !== 'function') {
    throw new TypeError('bus must be a PciBus');
  }
  return bus;
}

/** The state of a {@link PciConfigIo}. */
export interface PciConfigIoState {
  /** CONFIG_ADDRESS (enable bit, bus, device, function, register). */
  address: number;
}

/** PCI configuration mechanism #1 at 0xcf8-0xcff (see the module comment). A {@link Device} over 8 ports. */
export class PciConfigIo implements Device {
  /** CONFIG_ADDRESS alone, for registering over port 0xcf8 (offset 0). */
  readonly address: Device;
  /** CONFIG_DATA alone, for registering over ports 0xcfc-0xcff (offsets 0-3). */
  readonly data: Device;
  readonly #bus: PciBus;
  #address = 0;

  /** Mechanism #1 in front of `bus`. */
  constructor(bus: PciBus) {
    this.#bus = checkBus(bus);
    this.address = {
      read: (offset, size) => (offset === 0 && size === 4 ? this.#address : allOnes(size)),
      write: (offset, size, value) => {
        if (offset === 0 && size === 4) this.#address = (toU32(value) & PCI_CONFIG_ADDRESS_MASK) >>> 0;
      },
    };
    this.data = {
      read: (offset, size) => this.#readData(offset, size),
      write: (offset, size, value) => this.#writeData(offset, size, value),
    };
  }

  /** The CONFIG_ADDRESS register. */
  get configAddress(): number {
    return this.#address;
  }

  /** The state for a snapshot: CONFIG_ADDRESS as the guest last wrote it. */
  snapshot(): PciConfigIoState {
    return { address: this.#address };
  }

  /** Check `state` (a u32 with only the bits CONFIG_ADDRESS keeps) and return the function that applies it. */
  prepareRestore(state: PciConfigIoState): () => void {
    const s = stateObject(state, 'state');
    const address = checkInt(s.address, 'state.address', 0, 0xffff_ffff);
    if ((address & ~PCI_CONFIG_ADDRESS_MASK) !== 0) throw new RangeError(`state.address has bits CONFIG_ADDRESS does not keep: 0x${address.toString(16)}`);
    return () => {
      this.#address = address;
    };
  }

  /** Read at `offset` 0-7 of the 8-port window (0: CONFIG_ADDRESS, 4-7: CONFIG_DATA). Never throws. */
  read(offset: number, size: AccessSize): number | bigint {
    return offset >= 4 ? this.data.read(offset - 4, size) : this.address.read(offset, size);
  }

  /** Write at `offset` 0-7 of the 8-port window. Never throws. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (offset >= 4) this.data.write(offset - 4, size, value);
    else this.address.write(offset, size, value);
  }

  #target(offset: number, size: AccessSize): [number, number, number, number] | undefined {
    const a = this.#address;
    if (!(a & PCI_CONFIG_ENABLE) || !Number.isInteger(offset) || offset < 0 || offset > 3 || size === 8) return undefined;
    return [(a >>> 16) & 0xff, (a >>> 11) & 0x1f, (a >>> 8) & 0x7, (a & 0xfc) | offset];
  }

  #readData(offset: number, size: AccessSize): number | bigint {
    const t = this.#target(offset, size);
    return t ? this.#bus.readConfig(t[0], t[1], t[2], t[3], size) : allOnes(size);
  }

  #writeData(offset: number, size: AccessSize, value: number | bigint): void {
    const t = this.#target(offset, size);
    if (t) this.#bus.writeConfig(t[0], t[1], t[2], t[3], size, value);
  }
}

/** Options for {@link PciEcam}. */
export interface PciEcamOptions {
  /** Buses the window covers (1 MiB each), 1-256. Default 1 (bus 0 only). */
  buses?: number;
}

/** The PCI Express enhanced configuration access mechanism (see the module comment). An MMIO {@link Device}. */
export class PciEcam implements Device {
  /** Bytes of the window: `buses` MiB. */
  readonly length: number;
  /** Buses the window covers (the MCFG entry's end bus is `buses - 1`). */
  readonly buses: number;
  readonly #bus: PciBus;

  /** An ECAM window in front of `bus`. */
  constructor(bus: PciBus, opts: PciEcamOptions = {}) {
    this.#bus = checkBus(bus);
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    this.buses = checkInt(opts.buses ?? 1, 'opts.buses', 1, 256);
    this.length = this.buses * PCI_ECAM_BUS_SIZE;
  }

  /** Read at `offset` in the window; offsets outside it read all-ones. Never throws. */
  read(offset: number, size: AccessSize): number | bigint {
    if (!this.#inside(offset)) return allOnes(size);
    return this.#bus.readConfig(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 0x7, offset & 0xfff, size);
  }

  /** Write at `offset` in the window; offsets outside it are ignored. Never throws. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (this.#inside(offset)) this.#bus.writeConfig(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 0x7, offset & 0xfff, size, value);
  }

  #inside(offset: number): boolean {
    return Number.isInteger(offset) && offset >= 0 && offset < this.length;
  }
}

/**
 * One PCI function's configuration space: 4 KiB (the 256-byte conventional space plus
 * the PCI Express extended space), with a type-0 (endpoint) header. A pure model: the
 * guest reaches it through a config mechanism ({@link PciConfigIo}, {@link PciEcam}); the
 * platform listens for BAR and command changes to move the function's regions on its buses.
 *
 * Every byte has a guest write mask (bits a guest may change) and a write-1-to-clear mask;
 * everything else is read-only to the guest. The header:
 *
 * | off  | register                | guest access                                       |
 * |------|-------------------------|----------------------------------------------------|
 * | 0x00 | vendor id, device id    | read-only                                          |
 * | 0x04 | command                 | I/O, memory, bus master, parity, SERR#, INTx disable writable; the rest 0 |
 * | 0x06 | status                  | bits 8, 11-15 write-1-to-clear; the rest read-only (bit 4: capabilities list) |
 * | 0x08 | revision, class code    | read-only                                          |
 * | 0x0c | cache line size         | read-write                                         |
 * | 0x0d | latency timer, BIST     | read-only 0                                        |
 * | 0x0e | header type             | read-only (0, bit 7 when multi-function)           |
 * | 0x10 | BAR0-BAR5               | address bits above the BAR's size writable         |
 * | 0x28 | CardBus CIS             | read-only 0                                        |
 * | 0x2c | subsystem vendor/id     | read-only                                          |
 * | 0x30 | expansion ROM BAR       | read-only 0 (no ROM)                               |
 * | 0x34 | capabilities pointer    | read-only                                          |
 * | 0x3c | interrupt line          | read-write                                         |
 * | 0x3d | interrupt pin           | read-only (0 none, 1-4 INTA#-INTD#)                 |
 * | 0x3e | min grant, max latency  | read-only 0                                        |
 * | 0x40 | capabilities            | read-only except the bytes a capability declares   |
 * | 0x100| extended capabilities   | likewise                                           |
 *
 * BARs follow the sizing protocol: the flag bits (I/O, 64-bit type, prefetchable) are
 * read-only and the address bits below the BAR's size read 0, so writing all-ones and
 * reading back gives the size mask, and any address written is masked to the BAR's
 * alignment. A BAR is *mapped* (decoded) when the command register enables its space
 * and its address is non-zero and fits: an I/O BAR must end at or below 0x10000; a memory
 * BAR below 4 GiB must end *before* 4 GiB (`address + size < 2^32`: a 32-bit BAR holding
 * the all-ones sizing pattern, or a 64-bit BAR whose lower half holds it while the upper
 * half is 0, reaches 4 GiB and so is never mapped); a 64-bit BAR above 4 GiB must end at
 * or below 2^52 (the MMIO bus's limit; all-ones in the upper half is beyond it). Listeners
 * learn of every change of a BAR's mapping ({@link PciConfigSpace.onBarChange}).
 *
 * Guest accesses of width 1, 2, 4 (and 8) at any offset are served byte by byte; bytes
 * past 4 KiB read 0xff and ignore writes; a malformed offset reads all-ones. Guest
 * accesses never throw. Host-side methods validate their arguments and throw TypeError or
 * RangeError naming the argument.
 */

import type { AccessSize } from '../devices/device.js';
import { allOnes } from '../devices/io-util.js';
import {
  PCI_BAR_COUNT,
  PCI_CAPABILITIES_START,
  PCI_COMMAND_WRITABLE,
  PCI_CONFIG_SIZE,
  PCI_CONVENTIONAL_SIZE,
  PCI_EXTENDED_CAPABILITIES_START,
  PCI_IO_LIMIT,
  PCI_MMIO64_LIMIT,
  PCI_STATUS_W1C,
  PciCommand,
  PciReg,
  PciStatus,
} from './registers.js';
import { stateBytes, stateObject, toBase64 } from './state-check.js';
import { assembleLE, checkInt, hex, isAccessSize, isPowerOfTwo, toUintN } from './util.js';

/** What a BAR decodes: 32-bit memory, 64-bit memory (two BAR slots) or I/O ports. */
export type PciBarKind = 'mem32' | 'mem64' | 'io';

/** A BAR to declare with {@link PciConfigSpace.setBar}. */
export interface PciBarSpec {
  /** Address space and width. */
  kind: PciBarKind;
  /**
   * Size in bytes, a power of two: memory BARs 16 bytes to 2 GiB (mem32) or 2^51 (mem64),
   * I/O BARs 4 to 256 bytes.
   */
  size: number;
  /** Prefetchable memory (memory BARs only). Default false. */
  prefetchable?: boolean;
}

/** A declared BAR and its state. */
export interface PciBarInfo {
  /** BAR index 0-5 (a 64-bit BAR's lower slot). */
  readonly index: number;
  /** Address space and width. */
  readonly kind: PciBarKind;
  /** Size in bytes. */
  readonly size: number;
  /** Prefetchable flag. */
  readonly prefetchable: boolean;
  /** The address programmed in the register(s), flags stripped (possibly the sizing pattern; past 2^53 it is inexact). */
  readonly address: number;
  /** Where the BAR is decoded now, or undefined when it is not (see {@link PciConfigSpace}). */
  readonly mapped: number | undefined;
}

/** A change of a BAR's mapping, told to {@link PciConfigSpace.onBarChange} listeners. */
export interface PciBarChange {
  /** BAR index. */
  readonly bar: number;
  /** Address space and width. */
  readonly kind: PciBarKind;
  /** Size in bytes. */
  readonly size: number;
  /** Prefetchable flag. */
  readonly prefetchable: boolean;
  /** The previous mapping's base, or undefined if the BAR was not mapped. */
  readonly previous: number | undefined;
  /** The new mapping's base, or undefined if the BAR is no longer mapped. */
  readonly address: number | undefined;
}

/** Called after a guest write that touched a capability, with the touched part relative to its first byte. */
export type PciCapabilityWriteHook = (offset: number, size: number) => void;

/**
 * Called before a guest read that touches a capability, with the touched part relative to
 * its first byte: the function may refresh the bytes with {@link PciConfigSpace.poke} (as
 * virtio's PCI configuration access capability must, to return BAR data).
 */
export type PciCapabilityReadHook = (offset: number, size: number) => void;

/** A capability to add with {@link PciConfigSpace.addCapability}. */
export interface PciCapabilitySpec {
  /** Capability id (0x01 power management, 0x05 MSI, 0x09 vendor, 0x10 PCI Express, 0x11 MSI-X, ...). */
  id: number;
  /** The bytes after the 2-byte header (id, next pointer): the capability's registers from offset 2 on. */
  body: Uint8Array | readonly number[];
  /** Per body byte, the bits a guest may write (missing bytes are read-only). */
  writable?: Uint8Array | readonly number[];
  /** Called after a guest write touched the capability (offset relative to the id byte). */
  onWrite?: PciCapabilityWriteHook;
  /** Called before a guest read of the capability's bytes (offset relative to the id byte). */
  onRead?: PciCapabilityReadHook;
  /** Called after {@link PciConfigSpace.reset} restored the capability's initial bytes. */
  onReset?: () => void;
}

/** An extended capability to add with {@link PciConfigSpace.addExtendedCapability}. */
export interface PciExtendedCapabilitySpec {
  /** Extended capability id (16 bits). */
  id: number;
  /** Capability version (4 bits). */
  version: number;
  /** The bytes after the 4-byte header. */
  body: Uint8Array | readonly number[];
  /** Per body byte, the bits a guest may write. */
  writable?: Uint8Array | readonly number[];
  /** Called after a guest write touched the capability (offset relative to its header). */
  onWrite?: PciCapabilityWriteHook;
  /** Called before a guest read of the capability's bytes (offset relative to its header). */
  onRead?: PciCapabilityReadHook;
  /** Called after {@link PciConfigSpace.reset}. */
  onReset?: () => void;
}

/** Where a capability was placed. */
export interface PciCapabilityInfo {
  /** Capability id. */
  readonly id: number;
  /** Offset of its first byte in configuration space. */
  readonly offset: number;
  /** Length in bytes, header included. */
  readonly length: number;
  /** True for an extended (PCI Express, offset ≥ 0x100) capability. */
  readonly extended: boolean;
}

/**
 * The state of a {@link PciConfigSpace} for a snapshot: its bytes as the guest and the
 * function left them. Everything else (which BARs and capabilities exist, the masks) is
 * the function's construction and must be the same in the space it is restored into.
 */
export interface PciConfigSpaceState {
  /** The 4096 bytes of configuration space (command, status, BAR addresses, capability registers...), base64. */
  bytes: string;
}

/** Status bit 3 follows the function's interrupt state, which the function restores itself. */
const HOST_DRIVEN_STATUS = PciStatus.INTERRUPT;

/** Identity of a function, for {@link PciConfigSpace}'s constructor. */
export interface PciConfigSpaceOptions {
  /** Vendor id (u16, not 0xffff). */
  vendorId: number;
  /** Device id (u16). */
  deviceId: number;
  /** Class code (u24): base class << 16 | sub-class << 8 | programming interface. */
  classCode: number;
  /** Revision id (u8). Default 0. */
  revisionId?: number;
  /** Subsystem vendor id (u16). Default 0. */
  subsystemVendorId?: number;
  /** Subsystem id (u16). Default 0. */
  subsystemId?: number;
  /** Interrupt pin: 0 none, 1-4 INTA#-INTD#. Default 0. */
  interruptPin?: number;
  /** Set header type bit 7 (more functions at this device number). Default false. */
  multiFunction?: boolean;
}

interface Bar {
  kind: PciBarKind;
  size: number;
  prefetchable: boolean;
  mapped: number | undefined;
}

interface CapRange {
  start: number;
  end: number;
  onWrite?: PciCapabilityWriteHook;
  onRead?: PciCapabilityReadHook;
  onReset?: () => void;
}

function checkBytes(bytes: Uint8Array | readonly number[], name: string): Uint8Array {
  if (bytes instanceof Uint8Array) return bytes.slice();
  if (!Array.isArray(bytes)) throw new TypeError(`${name} must be a Uint8Array or an array of bytes`);
  const out = new Uint8Array(bytes.length);
  bytes.forEach((b, i) => (out[i] = checkInt(b, `${name}[${i}]`, 0, 0xff)));
  return out;
}

/** A PCI function's 4 KiB configuration space with a type-0 header (see the module comment). */
export class PciConfigSpace {
  readonly #bytes = new Uint8Array(PCI_CONFIG_SIZE);
  readonly #defaults = new Uint8Array(PCI_CONFIG_SIZE);
  readonly #wmask = new Uint8Array(PCI_CONFIG_SIZE);
  readonly #w1c = new Uint8Array(PCI_CONFIG_SIZE);
  readonly #view = new DataView(this.#bytes.buffer);
  readonly #bars: (Bar | undefined)[] = new Array(PCI_BAR_COUNT).fill(undefined);
  readonly #caps: PciCapabilityInfo[] = [];
  readonly #capRanges: CapRange[] = [];
  readonly #barListeners = new Set<(change: PciBarChange) => void>();
  readonly #commandListeners = new Set<(command: number, previous: number) => void>();
  #readHooks = 0;
  #capEnd = PCI_CAPABILITIES_START;
  #lastCap = -1;
  #extEnd = PCI_EXTENDED_CAPABILITIES_START;
  #lastExt = -1;

  /** A function with the given identity, no BARs and no capabilities. */
  constructor(opts: PciConfigSpaceOptions) {
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const vendor = checkInt(opts.vendorId, 'opts.vendorId', 0, 0xfffe);
    this.#set16(PciReg.VENDOR_ID, vendor);
    this.#set16(PciReg.DEVICE_ID, checkInt(opts.deviceId, 'opts.deviceId', 0, 0xffff));
    const cls = checkInt(opts.classCode, 'opts.classCode', 0, 0xffffff);
    this.#setDefault8(PciReg.REVISION_ID, checkInt(opts.revisionId ?? 0, 'opts.revisionId', 0, 0xff));
    this.#setDefault8(PciReg.PROG_IF, cls & 0xff);
    this.#setDefault8(PciReg.SUBCLASS, (cls >> 8) & 0xff);
    this.#setDefault8(PciReg.CLASS, cls >> 16);
    this.#set16(PciReg.SUBSYSTEM_VENDOR_ID, checkInt(opts.subsystemVendorId ?? 0, 'opts.subsystemVendorId', 0, 0xffff));
    this.#set16(PciReg.SUBSYSTEM_ID, checkInt(opts.subsystemId ?? 0, 'opts.subsystemId', 0, 0xffff));
    this.#setDefault8(PciReg.INTERRUPT_PIN, checkInt(opts.interruptPin ?? 0, 'opts.interruptPin', 0, 4));
    this.multiFunction = opts.multiFunction ?? false;
    this.#wmask[PciReg.COMMAND] = PCI_COMMAND_WRITABLE & 0xff;
    this.#wmask[PciReg.COMMAND + 1] = PCI_COMMAND_WRITABLE >> 8;
    this.#w1c[PciReg.STATUS] = PCI_STATUS_W1C & 0xff;
    this.#w1c[PciReg.STATUS + 1] = PCI_STATUS_W1C >> 8;
    this.#wmask[PciReg.CACHE_LINE_SIZE] = 0xff;
    this.#wmask[PciReg.INTERRUPT_LINE] = 0xff;
  }

  // ------------------------------------------------------------------ guest side

  /**
   * A guest read of `size` bytes at `offset`, little-endian (a bigint for size 8). The
   * `onRead` hooks of the capabilities it touches run first. Bytes past 4 KiB read 0xff; a
   * malformed offset or size reads all-ones. Never throws (unless a host hook does).
   */
  read(offset: number, size: AccessSize): number | bigint {
    if (!Number.isSafeInteger(offset) || offset < 0 || !isAccessSize(size)) return allOnes(size);
    if (this.#readHooks > 0) this.#runHooks('onRead', offset, Math.min(offset + size, PCI_CONFIG_SIZE));
    const get = (i: number): number => (offset + i < PCI_CONFIG_SIZE ? this.#bytes[offset + i] : 0xff);
    if (size === 8) return (BigInt(assembleLE(4, (i) => get(i + 4))) << 32n) | BigInt(assembleLE(4, get));
    return assembleLE(size, get);
  }

  /**
   * A guest write of `size` bytes at `offset`: each byte goes through its write and
   * write-1-to-clear masks; bytes past 4 KiB and malformed accesses are ignored. Then
   * capability hooks run and BAR/command listeners hear of any change. Never throws
   * (unless a host hook or listener does).
   */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || !isAccessSize(size) || offset >= PCI_CONFIG_SIZE) return;
    const v = toUintN(value, size);
    const end = Math.min(offset + size, PCI_CONFIG_SIZE);
    const oldCommand = this.command;
    for (let a = offset; a < end; a++) {
      const b = Number((v >> BigInt(8 * (a - offset))) & 0xffn);
      const m = this.#wmask[a];
      this.#bytes[a] = ((this.#bytes[a] & ~m) | (b & m)) & ~(b & this.#w1c[a]);
    }
    this.#runHooks('onWrite', offset, end);
    const touchesBars = offset < PciReg.BAR0 + 4 * PCI_BAR_COUNT && end > PciReg.BAR0;
    const command = this.command;
    if (command !== oldCommand) for (const l of this.#commandListeners) l(command, oldCommand);
    if (touchesBars || command !== oldCommand) this.#updateMappings();
  }

  // ------------------------------------------------------------------ identity and registers

  /** Vendor id. */
  get vendorId(): number {
    return this.#view.getUint16(PciReg.VENDOR_ID, true);
  }

  /** Device id. */
  get deviceId(): number {
    return this.#view.getUint16(PciReg.DEVICE_ID, true);
  }

  /** Class code (u24). */
  get classCode(): number {
    return this.#view.getUint32(PciReg.REVISION_ID, true) >>> 8;
  }

  /** The command register. */
  get command(): number {
    return this.#view.getUint16(PciReg.COMMAND, true);
  }

  /** The status register. */
  get status(): number {
    return this.#view.getUint16(PciReg.STATUS, true);
  }

  /** True when the guest enabled memory space decode. */
  get memoryEnabled(): boolean {
    return (this.command & PciCommand.MEMORY) !== 0;
  }

  /** True when the guest enabled I/O space decode. */
  get ioEnabled(): boolean {
    return (this.command & PciCommand.IO) !== 0;
  }

  /** True when the guest allowed the function to master the bus (DMA, MSI). */
  get busMasterEnabled(): boolean {
    return (this.command & PciCommand.BUS_MASTER) !== 0;
  }

  /** True when the guest disabled INTx (command bit 10). */
  get intxDisabled(): boolean {
    return (this.command & PciCommand.INTX_DISABLE) !== 0;
  }

  /** The interrupt line register (what the guest wrote). */
  get interruptLine(): number {
    return this.#bytes[PciReg.INTERRUPT_LINE];
  }

  /** The interrupt pin (0 none, 1-4 INTA#-INTD#). */
  get interruptPin(): number {
    return this.#bytes[PciReg.INTERRUPT_PIN];
  }

  /** Header type bit 7: more functions live at this device number. */
  get multiFunction(): boolean {
    return (this.#bytes[PciReg.HEADER_TYPE] & 0x80) !== 0;
  }

  set multiFunction(on: boolean) {
    if (typeof on !== 'boolean') throw new TypeError('multiFunction must be a boolean');
    this.#setDefault8(PciReg.HEADER_TYPE, on ? 0x80 : 0);
  }

  /** Reflect the function's INTx level in status bit 3 (the function drives its pin itself). */
  setInterruptStatus(asserted: boolean): void {
    const s = this.#bytes[PciReg.STATUS];
    this.#bytes[PciReg.STATUS] = asserted ? s | PciStatus.INTERRUPT : s & ~PciStatus.INTERRUPT;
  }

  /** Set write-1-to-clear status bits (errors the function reports); RangeError for other bits. */
  raiseStatus(bits: number): void {
    checkInt(bits, 'bits', 0, 0xffff);
    if ((bits & ~PCI_STATUS_W1C) !== 0) throw new RangeError(`bits must be write-1-to-clear status bits (${hex(PCI_STATUS_W1C)}), got ${hex(bits)}`);
    this.#view.setUint16(PciReg.STATUS, this.status | bits, true);
  }

  // ------------------------------------------------------------------ BARs

  /**
   * Declare BAR `index` (0-5; a 64-bit BAR also takes `index + 1`, so at most 4). Its
   * address starts at 0 (unmapped). Throws RangeError for a taken slot, a bad index or a
   * size that is not a power of two in the kind's range.
   */
  setBar(index: number, spec: PciBarSpec): void {
    checkInt(index, 'index', 0, PCI_BAR_COUNT - 1);
    if (typeof spec !== 'object' || spec === null) throw new TypeError('spec must be an object');
    const { kind, size } = spec;
    const prefetchable = spec.prefetchable ?? false;
    if (kind !== 'mem32' && kind !== 'mem64' && kind !== 'io') throw new TypeError(`spec.kind must be 'mem32', 'mem64' or 'io', got ${String(kind)}`);
    if (typeof prefetchable !== 'boolean') throw new TypeError('spec.prefetchable must be a boolean');
    if (kind === 'io' && prefetchable) throw new RangeError('spec.prefetchable applies to memory BARs only');
    const [min, max] = kind === 'io' ? [4, 256] : kind === 'mem32' ? [16, 2 ** 31] : [16, 2 ** 51];
    if (typeof size !== 'number' || !isPowerOfTwo(size) || size < min || size > max) {
      throw new RangeError(`spec.size of a ${kind} BAR must be a power of two in [${min}, ${hex(max)}], got ${String(size)}`);
    }
    const slots = kind === 'mem64' ? 2 : 1;
    if (index + slots > PCI_BAR_COUNT) throw new RangeError(`a 64-bit BAR needs two slots: index must be at most ${PCI_BAR_COUNT - 2}, got ${index}`);
    for (let i = index; i < index + slots; i++) {
      if (this.#slotTaken(i)) throw new RangeError(`BAR slot ${i} is already in use`);
    }
    const at = PciReg.BAR0 + 4 * index;
    const flags = kind === 'io' ? 0x1 : (kind === 'mem64' ? 0x4 : 0) | (prefetchable ? 0x8 : 0);
    this.#setDefault32(at, flags);
    if (kind === 'io') this.#setMask32(at, (~(size - 1) & ~0x3) >>> 0);
    else if (kind === 'mem32') this.#setMask32(at, (~(size - 1) & ~0xf) >>> 0);
    else {
      this.#setMask32(at, size >= 2 ** 32 ? 0 : (~(size - 1) & ~0xf) >>> 0);
      this.#setMask32(at + 4, size > 2 ** 32 ? ~(size / 2 ** 32 - 1) >>> 0 : 0xffff_ffff);
    }
    this.#bars[index] = { kind, size, prefetchable, mapped: undefined };
  }

  /** BAR `index` (the lower slot of a 64-bit BAR), or undefined when none was declared there. */
  bar(index: number): PciBarInfo | undefined {
    const b = Number.isInteger(index) ? this.#bars[index] : undefined;
    if (!b) return undefined;
    return { index, kind: b.kind, size: b.size, prefetchable: b.prefetchable, address: this.#barAddress(index, b), mapped: b.mapped };
  }

  /** Every declared BAR, by index. */
  bars(): PciBarInfo[] {
    const out: PciBarInfo[] = [];
    for (let i = 0; i < PCI_BAR_COUNT; i++) {
      const b = this.bar(i);
      if (b) out.push(b);
    }
    return out;
  }

  /**
   * Program BAR `index`'s address as firmware would (listeners hear of a mapping change).
   * Throws RangeError when there is no such BAR or `address` is unaligned or too wide.
   */
  programBar(index: number, address: number): void {
    checkInt(index, 'index', 0, PCI_BAR_COUNT - 1);
    const b = this.#bars[index];
    if (!b) throw new RangeError(`no BAR declared at index ${index}`);
    const limit = b.kind === 'mem64' ? PCI_MMIO64_LIMIT : 2 ** 32;
    checkInt(address, 'address', 0, limit - b.size);
    if (address % b.size !== 0) throw new RangeError(`address ${hex(address)} is not aligned to the BAR's size ${hex(b.size)}`);
    const at = PciReg.BAR0 + 4 * index;
    const flags = this.#view.getUint32(at, true) & (b.kind === 'io' ? 0x3 : 0xf);
    this.#view.setUint32(at, ((address % 2 ** 32) | flags) >>> 0, true);
    if (b.kind === 'mem64') this.#view.setUint32(at + 4, Math.floor(address / 2 ** 32), true);
    this.#updateMappings();
  }

  /**
   * Listen for BAR mapping changes (guest BAR writes, command decode changes, {@link programBar},
   * {@link reset}). Returns a function that removes the listener.
   */
  onBarChange(listener: (change: PciBarChange) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    this.#barListeners.add(listener);
    return () => void this.#barListeners.delete(listener);
  }

  /** Listen for command register changes (new value, old value). Returns a remover. */
  onCommandChange(listener: (command: number, previous: number) => void): () => void {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    this.#commandListeners.add(listener);
    return () => void this.#commandListeners.delete(listener);
  }

  // ------------------------------------------------------------------ capabilities

  /**
   * Append a capability to the list: placed at the next 4-byte-aligned offset from 0x40,
   * linked from the previous one (or from the capabilities pointer at 0x34, setting status
   * bit 4). Returns its offset. Throws RangeError when it does not fit below 0x100.
   */
  addCapability(spec: PciCapabilitySpec): number {
    if (typeof spec !== 'object' || spec === null) throw new TypeError('spec must be an object');
    const id = checkInt(spec.id, 'spec.id', 0, 0xff);
    const { body, writable, hooks } = this.#capParts(spec);
    const at = this.#capEnd;
    const length = 2 + body.length;
    if (at + length > PCI_CONVENTIONAL_SIZE) {
      throw new RangeError(`capability ${hex(id)} (${length} bytes) does not fit at ${hex(at)}: the capability area ends at 0x100`);
    }
    this.#placeCap(at, [id, 0], body, writable, 2, hooks);
    if (this.#lastCap < 0) {
      this.#setDefault8(PciReg.CAPABILITIES_POINTER, at);
      this.#setDefault8(PciReg.STATUS, this.#defaults[PciReg.STATUS] | PciStatus.CAPABILITIES_LIST);
    } else this.#setDefault8(this.#lastCap + 1, at);
    this.#lastCap = at;
    this.#capEnd = (at + length + 3) & ~3;
    this.#caps.push({ id, offset: at, length, extended: false });
    return at;
  }

  /**
   * Append an extended capability (header: id, version, next offset) at the next
   * 4-byte-aligned offset from 0x100. Returns its offset; RangeError when it does not fit.
   */
  addExtendedCapability(spec: PciExtendedCapabilitySpec): number {
    if (typeof spec !== 'object' || spec === null) throw new TypeError('spec must be an object');
    const id = checkInt(spec.id, 'spec.id', 0, 0xffff);
    const version = checkInt(spec.version, 'spec.version', 0, 0xf);
    const { body, writable, hooks } = this.#capParts(spec);
    const at = this.#extEnd;
    const length = 4 + body.length;
    if (at + length > PCI_CONFIG_SIZE) throw new RangeError(`extended capability ${hex(id)} (${length} bytes) does not fit at ${hex(at)}`);
    this.#placeCap(at, [id & 0xff, id >> 8, version, 0], body, writable, 4, hooks);
    if (this.#lastExt >= 0) {
      const prev = this.#lastExt;
      const hdr = (this.#defaults[prev + 2] & 0x0f) | ((at & 0x0f) << 4);
      this.#setDefault8(prev + 2, hdr);
      this.#setDefault8(prev + 3, at >> 4);
    }
    this.#lastExt = at;
    this.#extEnd = (at + length + 3) & ~3;
    this.#caps.push({ id, offset: at, length, extended: true });
    return at;
  }

  /** The capabilities added so far, conventional ones first in list order, then extended ones. */
  get capabilities(): readonly PciCapabilityInfo[] {
    return [...this.#caps.filter((c) => !c.extended), ...this.#caps.filter((c) => c.extended)];
  }

  /** The first capability with `id` (conventional, or extended when `extended`), or undefined. */
  findCapability(id: number, extended = false): PciCapabilityInfo | undefined {
    return this.#caps.find((c) => c.id === id && c.extended === extended);
  }

  // ------------------------------------------------------------------ host side

  /**
   * Host-side raw read (no masks, no all-ones): for a device model's own registers.
   * Throws RangeError when `[offset, offset + size)` leaves the 4 KiB space.
   */
  peek(offset: number, size: 1 | 2 | 4): number {
    this.#checkRaw(offset, size);
    return assembleLE(size, (i) => this.#bytes[offset + i]);
  }

  /**
   * Host-side raw write (ignores the guest masks; runs no hooks and no listeners): for
   * values the function itself changes, e.g. a read-only status field of a capability.
   * Do not use it on BARs or the command register ({@link programBar} exists for that).
   */
  poke(offset: number, size: 1 | 2 | 4, value: number): void {
    this.#checkRaw(offset, size);
    checkInt(value, 'value', 0, 2 ** (8 * size) - 1);
    for (let i = 0; i < size; i++) this.#bytes[offset + i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  }

  /**
   * Function reset: every register returns to its initial value (command 0, BARs 0,
   * interrupt line 0, capability bytes as added). Listeners hear the command change and
   * every BAR that gets unmapped; capability `onReset` hooks run.
   */
  reset(): void {
    const oldCommand = this.command;
    this.#bytes.set(this.#defaults);
    for (const c of this.#capRanges) c.onReset?.();
    if (this.command !== oldCommand) for (const l of this.#commandListeners) l(this.command, oldCommand);
    this.#updateMappings();
  }

  // ------------------------------------------------------------------ snapshot

  /** A JSON-safe copy of the bytes (see {@link PciConfigSpaceState}). */
  snapshot(): PciConfigSpaceState {
    return { bytes: toBase64(this.#bytes) };
  }

  /**
   * Check `state` against this space and return the function that applies it. The bytes
   * must be 4096 and agree with this space in every bit a guest cannot write (identity,
   * BAR flags and size bits, capability layout; status bit 3 excepted): a state of another
   * kind of function is refused. Applying runs no capability hooks; command and BAR
   * listeners hear the changes as after a guest write, so the platform moves the BARs.
   * Throws TypeError/RangeError naming the field, changing nothing.
   */
  prepareRestore(state: PciConfigSpaceState): () => void {
    const s = stateObject(state, 'state');
    const bytes = stateBytes(s.bytes, 'state.bytes', PCI_CONFIG_SIZE, PCI_CONFIG_SIZE);
    for (let a = 0; a < PCI_CONFIG_SIZE; a++) {
      const fixed = ~(this.#wmask[a] | this.#w1c[a] | (a === PciReg.STATUS ? HOST_DRIVEN_STATUS : 0)) & 0xff;
      if ((bytes[a] & fixed) !== (this.#bytes[a] & fixed)) {
        throw new RangeError(`state.bytes: read-only bits of byte ${hex(a)} are ${hex(bytes[a] & fixed)}, this function's are ${hex(this.#bytes[a] & fixed)} (a state of another function?)`);
      }
    }
    return () => this.#applyBytes(bytes);
  }

  /** Restore a state from {@link snapshot} (checked as {@link prepareRestore} does). */
  restore(state: PciConfigSpaceState): void {
    this.prepareRestore(state)();
  }

  #applyBytes(bytes: Uint8Array): void {
    const oldCommand = this.command;
    this.#bytes.set(bytes);
    if (this.command !== oldCommand) for (const l of this.#commandListeners) l(this.command, oldCommand);
    this.#updateMappings();
  }

  // ------------------------------------------------------------------ internals

  /** Set a register's value and its reset value (host side; guest masks unaffected). */
  #set16(at: number, v: number): void {
    this.#setDefault8(at, v & 0xff);
    this.#setDefault8(at + 1, v >> 8);
  }

  #setDefault8(at: number, v: number): void {
    this.#bytes[at] = v;
    this.#defaults[at] = v;
  }

  #setDefault32(at: number, v: number): void {
    for (let i = 0; i < 4; i++) this.#setDefault8(at + i, (v >>> (8 * i)) & 0xff);
  }

  #setMask32(at: number, m: number): void {
    for (let i = 0; i < 4; i++) this.#wmask[at + i] = (m >>> (8 * i)) & 0xff;
  }

  #slotTaken(i: number): boolean {
    return this.#bars[i] !== undefined || (i > 0 && this.#bars[i - 1]?.kind === 'mem64');
  }

  #checkRaw(offset: number, size: number): void {
    if (size !== 1 && size !== 2 && size !== 4) throw new RangeError(`size must be 1, 2 or 4, got ${String(size)}`);
    checkInt(offset, 'offset', 0, PCI_CONFIG_SIZE - size);
  }

  #capParts(spec: PciCapabilitySpec | PciExtendedCapabilitySpec): { body: Uint8Array; writable: Uint8Array; hooks: Omit<CapRange, 'start' | 'end'> } {
    const body = checkBytes(spec.body, 'spec.body');
    const writable = checkBytes(spec.writable ?? [], 'spec.writable');
    if (writable.length > body.length) throw new RangeError(`spec.writable (${writable.length} bytes) is longer than spec.body (${body.length})`);
    if (spec.onWrite !== undefined && typeof spec.onWrite !== 'function') throw new TypeError('spec.onWrite must be a function');
    if (spec.onRead !== undefined && typeof spec.onRead !== 'function') throw new TypeError('spec.onRead must be a function');
    if (spec.onReset !== undefined && typeof spec.onReset !== 'function') throw new TypeError('spec.onReset must be a function');
    return { body, writable, hooks: { onWrite: spec.onWrite, onRead: spec.onRead, onReset: spec.onReset } };
  }

  #placeCap(at: number, header: number[], body: Uint8Array, writable: Uint8Array, hlen: number, hooks: Omit<CapRange, 'start' | 'end'>): void {
    header.forEach((b, i) => this.#setDefault8(at + i, b));
    body.forEach((b, i) => this.#setDefault8(at + hlen + i, b));
    writable.forEach((m, i) => (this.#wmask[at + hlen + i] = m));
    this.#capRanges.push({ start: at, end: at + hlen + body.length, ...hooks });
    if (hooks.onRead) this.#readHooks++;
  }

  #runHooks(kind: 'onRead' | 'onWrite', offset: number, end: number): void {
    for (const c of this.#capRanges) {
      const hook = c[kind];
      if (hook && offset < c.end && c.start < end) {
        const from = Math.max(offset, c.start);
        hook(from - c.start, Math.min(end, c.end) - from);
      }
    }
  }

  #barAddress(index: number, b: Bar): number {
    const at = PciReg.BAR0 + 4 * index;
    const lo = this.#view.getUint32(at, true) & (b.kind === 'io' ? ~0x3 : ~0xf);
    const hi = b.kind === 'mem64' ? this.#view.getUint32(at + 4, true) : 0;
    return hi * 2 ** 32 + (lo >>> 0);
  }

  #mappedAt(index: number, b: Bar): number | undefined {
    if (!(b.kind === 'io' ? this.ioEnabled : this.memoryEnabled)) return undefined;
    const address = this.#barAddress(index, b);
    // Below 4 GiB nothing may reach 4 GiB (where a half-sized 64-bit BAR with a zero upper dword lands too).
    const limit = b.kind === 'io' ? PCI_IO_LIMIT : address < 2 ** 32 ? 2 ** 32 - 1 : PCI_MMIO64_LIMIT;
    if (address === 0 || address + b.size > limit) return undefined;
    return address;
  }

  #updateMappings(): void {
    for (let i = 0; i < PCI_BAR_COUNT; i++) {
      const b = this.#bars[i];
      if (!b) continue;
      const now = this.#mappedAt(i, b);
      if (now === b.mapped) continue;
      const previous = b.mapped;
      b.mapped = now;
      const change: PciBarChange = { bar: i, kind: b.kind, size: b.size, prefetchable: b.prefetchable, previous, address: now };
      for (const l of this.#barListeners) l(change);
    }
  }
}

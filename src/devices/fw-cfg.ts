/**
 * QEMU's firmware configuration device (fw_cfg), traditional port-I/O interface only,
 * as a 2-byte device registered at ports 0x510-0x511. Firmware (SeaBIOS, OVMF) and
 * Linux's qemu_fw_cfg driver use it to read the machine configuration.
 *
 * | off | port  | access | meaning                                             |
 * |-----|-------|--------|-----------------------------------------------------|
 * | 0   | 0x510 | write 16 | selector: choose an item and rewind to its start |
 * | 1   | 0x511 | read 8   | data: the next byte of the selected item          |
 *
 * Selector writes must be 2 bytes or wider (the low 16 bits are used); a 1-byte write at
 * offset 0 is ignored, as QEMU treats it as a (read-only, hence ignored) data write. The
 * write-channel bit (0x4000) of a selector is ignored; bit 15 selects the architecture-
 * local item space (e.g. 0x8000 + n). Reads of the data register past the end of an item,
 * or of an unknown item, return 0. Writes to the data register are ignored (DMA is not
 * implemented and the legacy write channel is not supported). Wider reads of the data
 * register return that many consecutive item bytes, the first byte in the least
 * significant position (what `rep insw/insl` would store); an 8-byte read gives a
 * bigint. Reads at offset 0 and all accesses at other offsets read all-ones / are
 * ignored.
 *
 * Built-in items: signature (0x0000, "QEMU"), id (0x0001, u32 features: bit 0 =
 * traditional interface), RAM size (0x0003, u64), CPU count (0x0005, u16), max CPUs
 * (0x000f, u16), and the file directory (0x0019). All integers are little-endian except
 * the directory, which is big-endian: u32 count, then per file u32 size, u16 selector,
 * u16 reserved, char name[56] (NUL-padded). Host files get selectors from 0x0020 up, in
 * the order they were added.
 */

import type { AccessSize, Device } from './device.js';
import { checkE820, e820ToBytes, type E820Entry } from '../boot/e820.js';
import { allOnes, toByteArray, toU16 } from './io-util.js';

/** Well-known fw_cfg selector keys. */
export const FwCfgItem = {
  /** "QEMU" signature. */
  SIGNATURE: 0x0000,
  /** Feature bitmap (u32). */
  ID: 0x0001,
  /** VM UUID (16 bytes). */
  UUID: 0x0002,
  /** RAM size in bytes (u64). */
  RAM_SIZE: 0x0003,
  /** No-graphics flag (u16). */
  NOGRAPHIC: 0x0004,
  /** Number of boot CPUs (u16). */
  NB_CPUS: 0x0005,
  /** Machine id (u32). */
  MACHINE_ID: 0x0006,
  /** Kernel load address (u32). */
  KERNEL_ADDR: 0x0007,
  /** Kernel size (u32). */
  KERNEL_SIZE: 0x0008,
  /** Kernel command line address (u32, legacy). */
  KERNEL_CMDLINE: 0x0009,
  /** Initrd load address (u32). */
  INITRD_ADDR: 0x000a,
  /** Initrd size (u32). */
  INITRD_SIZE: 0x000b,
  /** Boot device (u16). */
  BOOT_DEVICE: 0x000c,
  /** NUMA configuration. */
  NUMA: 0x000d,
  /** Boot menu flag (u16). */
  BOOT_MENU: 0x000e,
  /** Maximum number of CPUs (u16). */
  MAX_CPUS: 0x000f,
  /** Kernel entry point (u32). */
  KERNEL_ENTRY: 0x0010,
  /** Kernel image. */
  KERNEL_DATA: 0x0011,
  /** Initrd image. */
  INITRD_DATA: 0x0012,
  /** Command line load address (u32). */
  CMDLINE_ADDR: 0x0013,
  /** Command line size (u32). */
  CMDLINE_SIZE: 0x0014,
  /** Command line bytes. */
  CMDLINE_DATA: 0x0015,
  /** Linux setup load address (u32). */
  SETUP_ADDR: 0x0016,
  /** Linux setup size (u32). */
  SETUP_SIZE: 0x0017,
  /** Linux setup bytes. */
  SETUP_DATA: 0x0018,
  /** File directory. */
  FILE_DIR: 0x0019,
  /** First selector used for named files. */
  FILE_FIRST: 0x0020,
  /** Write-channel flag bit (ignored: fw_cfg is read-only here). */
  WRITE_CHANNEL: 0x4000,
  /** Architecture-local item space flag bit. */
  ARCH_LOCAL: 0x8000,
} as const;

/** Maximum length of a file name, excluding its terminating NUL. */
export const FW_CFG_MAX_NAME_LENGTH = 55;

/** Bytes per file directory entry. */
export const FW_CFG_DIR_ENTRY_SIZE = 64;

/** Largest selector a named file can get (the item index is 14 bits). */
const FILE_LAST = 0x3fff;

/** E820 memory types (src/boot/e820.ts, the one owner of the E820 map and its encoding). */
export { E820Type } from '../boot/e820.js';

/** One E820 memory map entry (src/boot/e820.ts). */
export type { E820Entry } from '../boot/e820.js';

/**
 * Encode an E820 table as the contents of fw_cfg file `etc/e820`: 20 bytes per entry,
 * u64 address, u64 size, u32 type, all little-endian — the zero page's format, so this is
 * src/boot/e820.ts `e820ToBytes` under its fw_cfg name.
 */
export { e820ToBytes as buildE820Bytes } from '../boot/e820.js';

/** Options for {@link FwCfg}. */
export interface FwCfgOptions {
  /** Guest RAM size in bytes (item 0x0003). */
  ramBytes: number | bigint;
  /** Number of boot CPUs (item 0x0005), 1-65535. */
  cpus: number;
  /** Maximum number of CPUs (item 0x000f), at least `cpus`; default `cpus`. */
  maxCpus?: number;
  /** If given, encoded by src/boot/e820.ts (`e820ToBytes`) and added as the file `etc/e820`. */
  e820?: readonly E820Entry[];
}

/** A file in the fw_cfg directory. */
export interface FwCfgFile {
  /** File name. */
  name: string;
  /** Selector key. */
  select: number;
  /** Contents. */
  bytes: Uint8Array;
}

/** The guest-visible state of a {@link FwCfg} (the items themselves are host configuration). */
export interface FwCfgState {
  /** Current selector (as written, low 16 bits). */
  selector: number;
  /** Read offset within the selected item. */
  offset: number;
}

const U64_MAX = (1n << 64n) - 1n;

function toU64(v: bigint | number, name: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative safe integer`);
    return BigInt(v);
  }
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a number or bigint`);
  if (v < 0n || v > U64_MAX) throw new RangeError(`${name} must be between 0 and 2^64-1`);
  return v;
}

/** The fw_cfg device. See the module comment. */
export class FwCfg implements Device {
  private readonly items = new Map<number, Uint8Array>();
  private readonly files: FwCfgFile[] = [];
  private selector = 0;
  private offset = 0;

  /** Create the device with its built-in items. Throws `TypeError`/`RangeError` naming a bad option. */
  constructor(options: FwCfgOptions) {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
    const ram = toU64(options.ramBytes, 'options.ramBytes');
    const { cpus, maxCpus = cpus, e820 } = options;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 0xffff) throw new RangeError('options.cpus must be an integer 1-65535');
    if (!Number.isInteger(maxCpus) || maxCpus < cpus || maxCpus > 0xffff) {
      throw new RangeError('options.maxCpus must be an integer between options.cpus and 65535');
    }
    const e820Bytes = e820 === undefined ? undefined : e820ToBytes(checkE820(e820, 'options.e820'));
    this.items.set(FwCfgItem.SIGNATURE, new TextEncoder().encode('QEMU'));
    this.items.set(FwCfgItem.ID, le(4, 1n)); // traditional interface only, no DMA
    this.items.set(FwCfgItem.RAM_SIZE, le(8, ram));
    this.items.set(FwCfgItem.NB_CPUS, le(2, BigInt(cpus)));
    this.items.set(FwCfgItem.MAX_CPUS, le(2, BigInt(maxCpus)));
    this.rebuildDirectory();
    if (e820Bytes !== undefined) this.addFile('etc/e820', e820Bytes);
  }

  // ---------------------------------------------------------------- guest side

  /** Guest read: the data register at offset 1; all-ones elsewhere. */
  read(offset: number, size: AccessSize): number | bigint {
    if (offset !== 1) return allOnes(size);
    if (size === 8) {
      let v = 0n;
      for (let i = 0; i < 8; i++) v |= BigInt(this.nextByte()) << BigInt(8 * i);
      return v;
    }
    const n = size === 2 || size === 4 ? size : 1;
    let v = 0;
    for (let i = 0; i < n; i++) v += this.nextByte() * 2 ** (8 * i);
    return v;
  }

  /** Guest write: a 16-bit (or wider) write at offset 0 selects an item; everything else is ignored. */
  write(offset: number, size: AccessSize, value: number | bigint): void {
    if (offset !== 0 || size === 1 || ![2, 4, 8].includes(size)) return;
    this.selector = toU16(value);
    this.offset = 0;
  }

  // ----------------------------------------------------------------- host side

  /**
   * Add a named file, visible in the directory at the next free selector (from 0x0020),
   * which is returned. The bytes are copied. Throws `TypeError` if the arguments have the
   * wrong types, `RangeError` if the name is empty, longer than 55 bytes (UTF-8),
   * contains a NUL, is already used, or the file selectors are exhausted.
   */
  addFile(name: string, bytes: Uint8Array | readonly number[]): number {
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    const encoded = new TextEncoder().encode(name);
    if (encoded.length === 0 || encoded.length > FW_CFG_MAX_NAME_LENGTH || encoded.includes(0)) {
      throw new RangeError(`name must be 1-${FW_CFG_MAX_NAME_LENGTH} bytes without NUL: ${JSON.stringify(name)}`);
    }
    if (this.files.some((f) => f.name === name)) throw new RangeError(`name: file ${JSON.stringify(name)} already exists`);
    const data = toByteArray(bytes, 'bytes');
    if (data.length > 0xffff_ffff) throw new RangeError('bytes: a file must be smaller than 4 GiB');
    const select = FwCfgItem.FILE_FIRST + this.files.length;
    if (select > FILE_LAST) throw new RangeError('name: no free file selectors');
    this.files.push({ name, select, bytes: data });
    this.items.set(select, data);
    this.rebuildDirectory();
    return select;
  }

  /**
   * Set a numbered item (e.g. {@link FwCfgItem.KERNEL_SIZE}, or an arch-local key 0x8000+n)
   * to a copy of `bytes`. The file directory and file selectors are reserved: use
   * {@link addFile}. Throws `RangeError` on a reserved or out-of-range key.
   */
  setItem(key: number, bytes: Uint8Array | readonly number[]): void {
    if (!Number.isInteger(key) || key < 0 || key > 0xffff || (key & FwCfgItem.WRITE_CHANNEL) !== 0) {
      throw new RangeError('key must be a 16-bit selector without the write-channel bit');
    }
    if (key === FwCfgItem.FILE_DIR || (key >= FwCfgItem.FILE_FIRST && key <= FILE_LAST)) {
      throw new RangeError('key: the file directory and file selectors are managed by addFile()');
    }
    this.items.set(key, toByteArray(bytes, 'bytes'));
  }

  /** The contents of an item (by selector, write-channel bit ignored), or `undefined`. */
  getItem(key: number): Uint8Array | undefined {
    return this.items.get(key & ~FwCfgItem.WRITE_CHANNEL & 0xffff);
  }

  /** The named files, in selector order. */
  get fileList(): readonly FwCfgFile[] {
    return this.files;
  }

  /** A plain-object copy of the guest-visible state. */
  snapshot(): FwCfgState {
    return { selector: this.selector, offset: this.offset };
  }

  /** Restore a state produced by {@link snapshot}. Throws `RangeError` if malformed. */
  restore(state: FwCfgState): void {
    if (typeof state !== 'object' || state === null) throw new TypeError('state must be an object');
    if (!Number.isInteger(state.selector) || state.selector < 0 || state.selector > 0xffff) {
      throw new RangeError('state.selector must be a 16-bit integer');
    }
    if (!Number.isSafeInteger(state.offset) || state.offset < 0) throw new RangeError('state.offset must be a non-negative integer');
    this.selector = state.selector;
    this.offset = state.offset;
  }

  /** Select item 0 and rewind (machine reset). */
  reset(): void {
    this.selector = 0;
    this.offset = 0;
  }

  // ------------------------------------------------------------------ internals

  private nextByte(): number {
    const item = this.items.get(this.selector & ~FwCfgItem.WRITE_CHANNEL);
    if (item === undefined || this.offset >= item.length) return 0;
    return item[this.offset++];
  }

  private rebuildDirectory(): void {
    const dir = new Uint8Array(4 + this.files.length * FW_CFG_DIR_ENTRY_SIZE);
    const view = new DataView(dir.buffer);
    view.setUint32(0, this.files.length, false);
    const enc = new TextEncoder();
    this.files.forEach((f, i) => {
      const at = 4 + i * FW_CFG_DIR_ENTRY_SIZE;
      view.setUint32(at, f.bytes.length, false);
      view.setUint16(at + 4, f.select, false);
      view.setUint16(at + 6, 0, false);
      dir.set(enc.encode(f.name), at + 8);
    });
    this.items.set(FwCfgItem.FILE_DIR, dir);
  }
}

/** Encode `v` as `n` little-endian bytes. */
function le(n: number, v: bigint): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
}

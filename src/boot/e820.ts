/**
 * The BIOS E820 physical memory map: the standard PC layout for a VM whose RAM sits at
 * `[0, min(ram, lowMemEnd))` with the remainder relocated above 4 GiB, plus the 20-byte
 * wire format used by the Linux zero page.
 */
import { hex, requireAddress } from './util.js';

/** E820 range types. */
export const E820Type = {
  /** Usable RAM. */
  RAM: 1,
  /** Reserved, unusable. */
  RESERVED: 2,
  /** ACPI tables, reclaimable after the OS has read them. */
  ACPI: 3,
  /** ACPI non-volatile storage. */
  NVS: 4,
  /** Defective memory. */
  UNUSABLE: 5,
} as const;

/** One E820 range. */
export interface E820Entry {
  /** First guest-physical address. */
  addr: number;
  /** Length in bytes. */
  size: number;
  /** Range type, one of {@link E820Type} (any u32 is carried through). */
  type: number;
}

/** Default end of RAM below 4 GiB: a 1 GiB PCI/MMIO hole sits at `[0xC000_0000, 4 GiB)`. */
export const LOW_MEMORY_END = 0xc000_0000;
/** Where RAM above {@link LOW_MEMORY_END} is relocated: 4 GiB. */
export const HIGH_MEMORY_START = 0x1_0000_0000;
/** Start of the Extended BIOS Data Area, the end of usable conventional memory (639 KiB). */
export const EBDA_START = 0x9fc00;
/** End of conventional memory (640 KiB); the VGA hole follows. */
export const CONVENTIONAL_END = 0xa0000;
/** Start of the system BIOS area. */
export const BIOS_AREA_START = 0xf0000;
/** 1 MiB: start of extended memory. */
export const EXTENDED_START = 0x100000;

/** Options for {@link buildE820}. */
export interface E820Options {
  /** End of RAM below 4 GiB; RAM beyond it is mapped at 4 GiB. Default {@link LOW_MEMORY_END}. */
  lowMemEnd?: number;
  /**
   * Extra ranges (e.g. the ACPI tables as type 3) laid over the map; where they overlap RAM
   * or an earlier range, they win.
   */
  reserved?: readonly E820Entry[];
}

function checkEntry(e: E820Entry, name: string): void {
  if (typeof e !== 'object' || e === null) throw new TypeError(`${name} must be an object`);
  for (const k of ['addr', 'size', 'type'] as const) {
    if (typeof e[k] !== 'number') throw new TypeError(`${name}.${k} must be a number`);
  }
  if (!Number.isSafeInteger(e.addr) || e.addr < 0) throw new RangeError(`${name}.addr must be a non-negative safe integer`);
  if (!Number.isSafeInteger(e.size) || e.size <= 0) throw new RangeError(`${name}.size must be a positive safe integer`);
  if (!Number.isSafeInteger(e.addr + e.size) || e.addr + e.size > 2 ** 52)
    throw new RangeError(`${name} (${hex(e.addr)}+${hex(e.size)}) ends beyond 2^52`);
  if (!Number.isInteger(e.type) || e.type < 0 || e.type > 0xffff_ffff) throw new RangeError(`${name}.type must be a u32`);
}

/** Remove `[start, end)` from every entry, splitting entries as needed. */
function subtract(entries: E820Entry[], start: number, end: number): E820Entry[] {
  const out: E820Entry[] = [];
  for (const e of entries) {
    const eEnd = e.addr + e.size;
    if (eEnd <= start || e.addr >= end) {
      out.push(e);
      continue;
    }
    if (e.addr < start) out.push({ addr: e.addr, size: start - e.addr, type: e.type });
    if (eEnd > end) out.push({ addr: end, size: eEnd - end, type: e.type });
  }
  return out;
}

/** Sort by address and merge touching entries of the same type. */
function normalize(entries: E820Entry[]): E820Entry[] {
  const sorted = entries.filter((e) => e.size > 0).sort((a, b) => a.addr - b.addr);
  const out: E820Entry[] = [];
  for (const e of sorted) {
    const last = out[out.length - 1];
    if (last && last.type === e.type && last.addr + last.size === e.addr) last.size += e.size;
    else out.push({ ...e });
  }
  return out;
}

/** Check `ramBytes` and `opts.lowMemEnd` (TypeError/RangeError naming them); returns the low-memory end. */
function checkLayout(ramBytes: number, opts: E820Options): number {
  if (typeof ramBytes !== 'number') throw new TypeError('ramBytes must be a number');
  if (!Number.isSafeInteger(ramBytes) || ramBytes < EXTENDED_START)
    throw new RangeError(`ramBytes must be a safe integer of at least 1 MiB, got ${ramBytes}`);
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const lowMemEnd = opts.lowMemEnd ?? LOW_MEMORY_END;
  if (typeof lowMemEnd !== 'number') throw new TypeError('opts.lowMemEnd must be a number');
  if (!Number.isSafeInteger(lowMemEnd) || lowMemEnd < EXTENDED_START || lowMemEnd > HIGH_MEMORY_START)
    throw new RangeError(`opts.lowMemEnd must be within [1 MiB, 4 GiB], got ${lowMemEnd}`);
  if (ramBytes > lowMemEnd && !Number.isSafeInteger(HIGH_MEMORY_START + ramBytes - lowMemEnd)) throw new RangeError('ramBytes is too large');
  return lowMemEnd;
}

/** The RAM relocated to 4 GiB. */
function highRam(size: number): E820Entry {
  return { addr: HIGH_MEMORY_START, size, type: E820Type.RAM };
}

/**
 * Build the standard PC memory map for a VM with `ramBytes` of RAM:
 * `[0, 0x9fc00)` RAM, `[0x9fc00, 0xa0000)` reserved (EBDA), `[0xf0000, 0x100000)` reserved
 * (BIOS), `[0x100000, min(ram, lowMemEnd))` RAM, then `opts.reserved`, and any RAM beyond
 * `lowMemEnd` at 4 GiB. The result is sorted and non-overlapping.
 *
 * @param ramBytes Total guest RAM in bytes (a positive safe integer, at least 1 MiB).
 * @throws RangeError if `ramBytes` or an option is out of range; TypeError on wrong types.
 */
export function buildE820(ramBytes: number, opts: E820Options = {}): E820Entry[] {
  const lowMemEnd = checkLayout(ramBytes, opts);
  const reserved = opts.reserved ?? [];
  if (!Array.isArray(reserved)) throw new TypeError('opts.reserved must be an array');
  reserved.forEach((e, i) => checkEntry(e, `opts.reserved[${i}]`));

  const lowRam = Math.min(ramBytes, lowMemEnd);
  let entries: E820Entry[] = [
    { addr: 0, size: EBDA_START, type: E820Type.RAM },
    { addr: EBDA_START, size: CONVENTIONAL_END - EBDA_START, type: E820Type.RESERVED },
    { addr: BIOS_AREA_START, size: EXTENDED_START - BIOS_AREA_START, type: E820Type.RESERVED },
  ];
  if (lowRam > EXTENDED_START) entries.push({ addr: EXTENDED_START, size: lowRam - EXTENDED_START, type: E820Type.RAM });
  if (ramBytes > lowRam) entries.push(highRam(ramBytes - lowRam));
  for (const r of reserved) {
    entries = subtract(entries, r.addr, r.addr + r.size);
    entries.push({ addr: r.addr, size: r.size, type: r.type });
  }
  return normalize(entries);
}

/**
 * The map QEMU hands firmware in fw_cfg's `etc/e820`: only the RAM, `[0, min(ram, lowMemEnd))`
 * and the rest at 4 GiB (the firmware reserves the EBDA and its own areas itself).
 *
 * @param ramBytes Total guest RAM in bytes (a safe integer, at least 1 MiB).
 * @throws RangeError/TypeError as {@link buildE820}.
 */
export function buildFirmwareE820(ramBytes: number, opts: Pick<E820Options, 'lowMemEnd'> = {}): E820Entry[] {
  const lowMemEnd = checkLayout(ramBytes, opts);
  const lowRam = Math.min(ramBytes, lowMemEnd);
  const out: E820Entry[] = [{ addr: 0, size: lowRam, type: E820Type.RAM }];
  if (ramBytes > lowRam) out.push(highRam(ramBytes - lowRam));
  return out;
}

/** Size of one entry in the boot_params / INT 15h E820 wire format. */
export const E820_ENTRY_SIZE = 20;

/**
 * Encode entries in the 20-byte format (`u64 addr, u64 size, u32 type`, little-endian)
 * used by the Linux zero page's `e820_table` and by fw_cfg's `etc/e820` file (the one
 * encoder of both). Throws TypeError/RangeError naming the bad entry field.
 */
export function e820ToBytes(entries: readonly E820Entry[]): Uint8Array {
  if (!Array.isArray(entries)) throw new TypeError('entries must be an array');
  entries.forEach((e, i) => checkEntry(e, `entries[${i}]`));
  const out = new Uint8Array(entries.length * E820_ENTRY_SIZE);
  const v = new DataView(out.buffer);
  entries.forEach((e, i) => {
    const o = i * E820_ENTRY_SIZE;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.size), true);
    v.setUint32(o + 16, e.type, true);
  });
  return out;
}

/** Validate a caller-supplied E820 map (types and ranges); returns it. `name` names the argument. */
export function checkE820(entries: unknown, name: string): E820Entry[] {
  if (!Array.isArray(entries)) throw new TypeError(`${name} must be an array of E820 entries`);
  entries.forEach((e: E820Entry, i) => checkEntry(e, `${name}[${i}]`));
  return entries as E820Entry[];
}

/**
 * The usable RAM ranges of a map as `[start, end)` pairs, sorted, with touching RAM entries merged.
 */
export function ramRanges(entries: readonly E820Entry[]): Array<[number, number]> {
  const ram = normalize(entries.filter((e) => e.type === E820Type.RAM).map((e) => ({ ...e })));
  return ram.map((e) => [e.addr, e.addr + e.size]);
}

/** True if `[start, start + length)` lies entirely within RAM according to `entries`. */
export function inRam(entries: readonly E820Entry[], start: number, length: number): boolean {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(length) || !Number.isSafeInteger(start + length)) return false;
  return ramRanges(entries).some(([s, e]) => start >= s && start + length <= e);
}

/**
 * Throw RangeError naming `name` unless every RAM range of `entries` is backed by guest
 * memory (`mem.isBacked`): a map must not promise the OS RAM that does not exist.
 */
export function requireBackedRam(mem: { isBacked(gpa: number, length: number): boolean }, entries: readonly E820Entry[], name: string): void {
  for (const [start, end] of ramRanges(entries)) {
    if (!mem.isBacked(start, end - start))
      throw new RangeError(`${name} describes RAM [${hex(start)}, ${hex(end)}) that guest memory does not back`);
  }
}

/**
 * The map a boot loader hands the OS: `opts.e820` if given, else `buildE820(opts.ramBytes)`;
 * checked (TypeError/RangeError naming the option), and its RAM must exist in `mem`, so a
 * `ramBytes` larger than the guest's memory is a RangeError, not a kernel told of phantom RAM.
 */
export function loaderE820(mem: { isBacked(gpa: number, length: number): boolean }, opts: { ramBytes: number; e820?: readonly E820Entry[] }): E820Entry[] {
  const ramBytes = requireAddress(opts.ramBytes, 'opts.ramBytes');
  if (opts.e820 !== undefined) {
    const e820 = checkE820(opts.e820, 'opts.e820');
    requireBackedRam(mem, e820, 'opts.e820');
    return e820;
  }
  if (ramBytes < EXTENDED_START) throw new RangeError(`opts.ramBytes must be at least 1 MiB, got ${ramBytes}`);
  const e820 = buildE820(ramBytes);
  requireBackedRam(mem, e820, `opts.ramBytes (${ramBytes} bytes)`);
  return e820;
}

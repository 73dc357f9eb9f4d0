/**
 * A device-specific configuration space held as little-endian bytes, with the argument checks
 * every device's readConfig / writeConfig makes (the transport is trusted host code: a bad
 * offset, size or value is a TypeError or RangeError naming the argument).
 */

/** The access widths of {@link VirtioDevice.readConfig} and {@link VirtioDevice.writeConfig}. */
export type ConfigAccessSize = 1 | 2 | 4;

/**
 * Check a configuration access of `size` bytes at `offset` against a space of `configSize`
 * bytes: TypeError for non-numbers, RangeError for a size other than 1, 2 or 4 or a range
 * outside [0, configSize).
 */
export function checkConfigAccess(configSize: number, offset: unknown, size: unknown): void {
  if (typeof size !== 'number') throw new TypeError(`size must be a number, got ${typeof size}`);
  if (size !== 1 && size !== 2 && size !== 4) throw new RangeError(`size must be 1, 2 or 4, got ${size}`);
  if (typeof offset !== 'number') throw new TypeError(`offset must be a number, got ${typeof offset}`);
  if (!Number.isInteger(offset) || offset < 0 || offset + size > configSize) {
    throw new RangeError(`offset must be an integer with offset + size in [0, ${configSize}] (the configuration space), got ${offset} (size ${size})`);
  }
}

/** Check the `value` of a `size`-byte configuration write: an integer that fits the width. */
export function checkConfigValue(size: ConfigAccessSize, value: unknown): number {
  if (typeof value !== 'number') throw new TypeError(`value must be a number, got ${typeof value}`);
  const max = 2 ** (8 * size) - 1;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`value must be an integer in [0, ${max}] for a ${size}-byte write, got ${value}`);
  }
  return value;
}

/** A configuration space of fixed size, all fields little-endian, initially zero. */
export class ConfigSpace {
  /** The raw bytes (little-endian fields). */
  readonly bytes: Uint8Array;
  readonly #view: DataView;

  /** A zeroed space of `size` bytes. */
  constructor(readonly size: number) {
    this.bytes = new Uint8Array(size);
    this.#view = new DataView(this.bytes.buffer);
  }

  /** Store a u8 field. */
  setU8(offset: number, value: number): void {
    this.#view.setUint8(offset, value);
  }
  /** Store a le16 field. */
  setU16(offset: number, value: number): void {
    this.#view.setUint16(offset, value, true);
  }
  /** Store a le32 field. */
  setU32(offset: number, value: number): void {
    this.#view.setUint32(offset, value, true);
  }
  /** Store a le64 field (a number below 2^53). */
  setU64(offset: number, value: number): void {
    this.#view.setBigUint64(offset, BigInt(value), true);
  }

  /** Read `size` bytes at `offset`, little-endian (arguments checked as {@link checkConfigAccess}). */
  read(offset: number, size: ConfigAccessSize): number {
    checkConfigAccess(this.size, offset, size);
    const v = this.#view;
    return size === 1 ? v.getUint8(offset) : size === 2 ? v.getUint16(offset, true) : v.getUint32(offset, true);
  }
}

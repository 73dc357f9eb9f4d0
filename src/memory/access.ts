/**
 * The interface every consumer of guest-physical memory programs against: loaders, ACPI
 * builders, the instruction emulator. {@link GuestMemory} implements it over the VM's
 * segments; tests implement it over a plain buffer with {@link BufferMemory}.
 *
 * Addresses are guest-physical, as JavaScript numbers (x86 physical addresses are at most
 * 52 bits wide, so they are exact). Every access checks the whole range and throws a
 * {@link GuestMemoryError} carrying the address when any byte of it is not backed.
 * Arguments are checked before anything is written: a non-number address, length or value
 * is a TypeError, one out of range (a value that does not fit the access width, a fill
 * value that is not a byte) a RangeError naming the argument.
 */
export interface GuestMemoryAccess {
  readU8(gpa: number): number;
  readU16(gpa: number): number;
  readU32(gpa: number): number;
  readU64(gpa: number): bigint;
  writeU8(gpa: number, value: number): void;
  writeU16(gpa: number, value: number): void;
  writeU32(gpa: number, value: number): void;
  writeU64(gpa: number, value: bigint): void;
  /** Copy `length` bytes starting at `gpa` out of guest memory. */
  readBytes(gpa: number, length: number): Uint8Array;
  /** Copy `bytes` into guest memory starting at `gpa`. */
  writeBytes(gpa: number, bytes: Uint8Array): void;
  /** Fill `length` bytes at `gpa` with `value`. */
  fill(gpa: number, length: number, value: number): void;
  /** True if every byte of `[gpa, gpa + length)` is backed by memory. */
  isBacked(gpa: number, length: number): boolean;
}

/** Thrown when a guest-physical range is not (entirely) backed by memory. */
export class GuestMemoryError extends RangeError {
  /** The first guest-physical address of the failed access. */
  readonly gpa: number;
  /** The length of the failed access in bytes. */
  readonly length: number;
  /** An error for the `length`-byte `what` (e.g. 'read') at `gpa` that no segment backs. */
  constructor(gpa: number, length: number, what = 'access') {
    super(
      what.includes('read-only')
        ? `guest memory ${what} at 0x${gpa.toString(16)} (${length} bytes)`
        : `guest memory ${what} at 0x${gpa.toString(16)} (${length} bytes) is outside every memory segment`,
    );
    this.name = 'GuestMemoryError';
    this.gpa = gpa;
    this.length = length;
  }
}

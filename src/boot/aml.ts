/**
 * A small encoder for ACPI Machine Language (ACPI 6.5 §20, "AML Specification"): the
 * pieces a VMM's DSDT needs to describe its devices — names, integers, strings, EISA ids,
 * packages, buffers, scopes, devices, simple methods — and the resource descriptors of a
 * `ResourceTemplate` (§6.4). Every function returns the encoded bytes of one term; nest them
 * by passing those bytes on. Nothing here knows about a particular machine (src/boot/acpi.ts
 * decides what the DSDT says).
 *
 * | term                | encoding                                              |
 * |---------------------|-------------------------------------------------------|
 * | PkgLength           | 1-4 bytes, counting itself (§20.2.4)                   |
 * | NameString          | `\`/`^` prefixes, then NullName, a NameSeg, DualNamePrefix (0x2e) or MultiNamePrefix (0x2f) |
 * | integer             | ZeroOp, OneOp, or Byte/Word/DWord/QWordPrefix (0x0a-0x0e) and the value |
 * | DefName             | NameOp (0x08) NameString DataObject                    |
 * | DefPackage          | PackageOp (0x12) PkgLength NumElements elements; VarPackageOp (0x13) past 255 |
 * | DefBuffer           | BufferOp (0x11) PkgLength BufferSize bytes             |
 * | DefScope / DefDevice| ScopeOp (0x10) / ExtOpPrefix DeviceOp (0x5b 0x82) PkgLength NameString terms |
 * | DefMethod           | MethodOp (0x14) PkgLength NameString MethodFlags terms |
 *
 * Arguments are checked: TypeError for a wrong type, RangeError for a value out of range,
 * each naming the argument.
 */

/** Encoded AML: one or more complete terms. */
export type AmlBytes = Uint8Array;

/** Opcodes used here (ACPI 6.5 §20.3). */
export const AmlOp = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  VAR_PACKAGE: 0x13,
  METHOD: 0x14,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  EXT_PREFIX: 0x5b,
  ROOT_CHAR: 0x5c,
  PARENT_PREFIX: 0x5e,
  RETURN: 0xa4,
  /** Follows {@link AmlOp.EXT_PREFIX}. */
  DEVICE: 0x82,
} as const;

/** Largest length a PkgLength can encode (28 bits). */
export const AML_MAX_PKG_LENGTH = 2 ** 28 - 1;

/** Concatenate encoded terms. */
export function concat(parts: readonly AmlBytes[]): AmlBytes {
  if (!Array.isArray(parts)) throw new TypeError('parts must be an array of Uint8Array');
  let n = 0;
  parts.forEach((p, i) => {
    if (!(p instanceof Uint8Array)) throw new TypeError(`parts[${i}] must be a Uint8Array`);
    n += p.length;
  });
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * The PkgLength of a package whose contents after the PkgLength are `payload` bytes: the
 * encoded length counts the PkgLength bytes themselves. One byte up to 63 in all; else a
 * lead byte holding the byte count (bits 7:6) and the low nibble, then 1-3 bytes of the rest.
 */
export function pkgLength(payload: number): AmlBytes {
  if (typeof payload !== 'number' || !Number.isInteger(payload)) throw new TypeError(`payload must be an integer, got ${String(payload)}`);
  if (payload < 0 || payload > AML_MAX_PKG_LENGTH - 4) throw new RangeError(`payload must be in [0, ${AML_MAX_PKG_LENGTH - 4}], got ${payload}`);
  if (payload + 1 <= 0x3f) return Uint8Array.of(payload + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = payload + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new RangeError(`payload ${payload} is too long for a PkgLength`); // unreachable: checked above
}

/** `op` (one or two bytes), a PkgLength, then `body`. */
function withPkgLength(op: readonly number[], body: AmlBytes): AmlBytes {
  return concat([Uint8Array.from(op), pkgLength(body.length), body]);
}

const NAME_SEG = /^[A-Z_][A-Z0-9_]{0,3}$/;

/** A 4-byte NameSeg: 1-4 characters (A-Z, 0-9, _; not a digit first), padded with `_`. */
function nameSeg(seg: string, what: string): number[] {
  if (!NAME_SEG.test(seg)) throw new RangeError(`${what}: '${seg}' is not a NameSeg (1-4 of A-Z, 0-9, _, not starting with a digit)`);
  return [...seg.padEnd(4, '_')].map((c) => c.charCodeAt(0));
}

/**
 * A NameString: an optional root (`\`) or parent prefixes (`^`), then dot-separated NameSegs
 * (`\_SB.PCI0`, `_HID`, `^^FOO`); `\` alone is the root. Throws RangeError naming `path`.
 */
export function nameString(path: string): AmlBytes {
  if (typeof path !== 'string') throw new TypeError(`path must be a string, got ${typeof path}`);
  const out: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    out.push(AmlOp.ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      out.push(AmlOp.PARENT_PREFIX);
      rest = rest.slice(1);
    }
  }
  const segs = rest === '' ? [] : rest.split('.');
  if (segs.length === 0 && out.length === 0) throw new RangeError('path must not be empty');
  if (segs.length > 255) throw new RangeError(`path has ${segs.length} segments, at most 255`);
  const bytes = segs.flatMap((s) => nameSeg(s, 'path'));
  if (segs.length === 0) out.push(0x00); // NullName
  else if (segs.length === 2) out.push(AmlOp.DUAL_NAME_PREFIX);
  else if (segs.length > 2) out.push(AmlOp.MULTI_NAME_PREFIX, segs.length);
  return Uint8Array.from([...out, ...bytes]);
}

/** The value as a bigint, checked to be an unsigned 64-bit integer. */
function u64(v: number | bigint, name: string): bigint {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) throw new RangeError(`${name} must be a safe integer, got ${v}`);
    v = BigInt(v);
  } else if (typeof v !== 'bigint') throw new TypeError(`${name} must be a number or a bigint, got ${typeof v}`);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${name} must be in [0, 2^64), got ${v}`);
  return v;
}

function le(v: bigint, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

/** An integer constant in its shortest form: ZeroOp, OneOp, or a Byte/Word/DWord/QWord constant. */
export function integer(value: number | bigint): AmlBytes {
  const v = u64(value, 'value');
  if (v === 0n) return Uint8Array.of(AmlOp.ZERO);
  if (v === 1n) return Uint8Array.of(AmlOp.ONE);
  if (v <= 0xffn) return Uint8Array.from([AmlOp.BYTE_PREFIX, ...le(v, 1)]);
  if (v <= 0xffffn) return Uint8Array.from([AmlOp.WORD_PREFIX, ...le(v, 2)]);
  if (v <= 0xffff_ffffn) return Uint8Array.from([AmlOp.DWORD_PREFIX, ...le(v, 4)]);
  return Uint8Array.from([AmlOp.QWORD_PREFIX, ...le(v, 8)]);
}

/** A string constant: printable ASCII, NUL-terminated. */
export function stringConst(s: string): AmlBytes {
  if (typeof s !== 'string') throw new TypeError(`s must be a string, got ${typeof s}`);
  if (!/^[\x01-\x7f]*$/.test(s)) throw new RangeError('s must be ASCII without NUL characters');
  return Uint8Array.from([AmlOp.STRING_PREFIX, ...[...s].map((c) => c.charCodeAt(0)), 0]);
}

/**
 * The 32-bit value of a compressed EISA id such as `PNP0A03`: three letters (5 bits each)
 * and four hex digits, stored so that the bytes in memory read in that order.
 */
export function eisaIdValue(id: string): number {
  if (typeof id !== 'string') throw new TypeError(`id must be a string, got ${typeof id}`);
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new RangeError(`id must be three capital letters and four hex digits (e.g. PNP0A03), got '${id}'`);
  const l = [0, 1, 2].map((i) => id.charCodeAt(i) - 0x40);
  const b0 = (l[0] << 2) | (l[1] >> 3);
  const b1 = ((l[1] & 0x7) << 5) | l[2];
  const b2 = parseInt(id.slice(3, 5), 16);
  const b3 = parseInt(id.slice(5, 7), 16);
  return (b0 | (b1 << 8) | (b2 << 16) | (b3 << 24)) >>> 0;
}

/** `EisaId("PNP0A03")`: the compressed id as a DWord constant. */
export function eisaId(id: string): AmlBytes {
  return Uint8Array.from([AmlOp.DWORD_PREFIX, ...le(BigInt(eisaIdValue(id)), 4)]);
}

function checkTerm(t: unknown, name: string): AmlBytes {
  if (!(t instanceof Uint8Array)) throw new TypeError(`${name} must be encoded AML (a Uint8Array)`);
  return t;
}

function checkTerms(terms: readonly AmlBytes[], name: string): AmlBytes {
  if (!Array.isArray(terms)) throw new TypeError(`${name} must be an array of encoded AML terms`);
  terms.forEach((t, i) => checkTerm(t, `${name}[${i}]`));
  return concat(terms);
}

/** `Name (name, value)`: bind `name` (a NameString) to the data object `value`. */
export function name(path: string, value: AmlBytes): AmlBytes {
  return concat([Uint8Array.of(AmlOp.NAME), nameString(path), checkTerm(value, 'value')]);
}

/** `Package () { elements }`: up to 255 elements as a Package, more as a VarPackage. */
export function packageOf(elements: readonly AmlBytes[]): AmlBytes {
  const body = checkTerms(elements, 'elements');
  if (elements.length <= 255) return withPkgLength([AmlOp.PACKAGE], concat([Uint8Array.of(elements.length), body]));
  return withPkgLength([AmlOp.VAR_PACKAGE], concat([integer(elements.length), body]));
}

/** `Buffer () { bytes }`: the byte list with its size. */
export function buffer(bytes: Uint8Array): AmlBytes {
  checkTerm(bytes, 'bytes');
  return withPkgLength([AmlOp.BUFFER], concat([integer(bytes.length), bytes]));
}

/** `Scope (path) { terms }`. */
export function scope(path: string, terms: readonly AmlBytes[]): AmlBytes {
  return withPkgLength([AmlOp.SCOPE], concat([nameString(path), checkTerms(terms, 'terms')]));
}

/** `Device (path) { terms }`. */
export function device(path: string, terms: readonly AmlBytes[]): AmlBytes {
  return withPkgLength([AmlOp.EXT_PREFIX, AmlOp.DEVICE], concat([nameString(path), checkTerms(terms, 'terms')]));
}

/** Options for {@link method}. */
export interface AmlMethodOptions {
  /** Serialized (the interpreter runs one invocation at a time). Default false. */
  serialized?: boolean;
  /** SyncLevel 0-15 (serialized methods). Default 0. */
  syncLevel?: number;
}

/** `Method (name, argCount, NotSerialized) { terms }`; `argCount` 0-7. */
export function method(path: string, argCount: number, terms: readonly AmlBytes[], opts: AmlMethodOptions = {}): AmlBytes {
  if (typeof argCount !== 'number' || !Number.isInteger(argCount)) throw new TypeError(`argCount must be an integer, got ${String(argCount)}`);
  if (argCount < 0 || argCount > 7) throw new RangeError(`argCount must be in [0, 7], got ${argCount}`);
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const serialized = opts.serialized ?? false;
  if (typeof serialized !== 'boolean') throw new TypeError('opts.serialized must be a boolean');
  const sync = opts.syncLevel ?? 0;
  if (typeof sync !== 'number' || !Number.isInteger(sync) || sync < 0 || sync > 15) throw new RangeError(`opts.syncLevel must be an integer in [0, 15], got ${String(sync)}`);
  const flags = argCount | (serialized ? 0x08 : 0) | (sync << 4);
  return withPkgLength([AmlOp.METHOD], concat([nameString(path), Uint8Array.of(flags), checkTerms(terms, 'terms')]));
}

/** `Return (value)`. */
export function returnOf(value: AmlBytes): AmlBytes {
  return concat([Uint8Array.of(AmlOp.RETURN), checkTerm(value, 'value')]);
}

// ------------------------------------------------------------------ resource descriptors

/** Large resource descriptor item names (ACPI 6.5 §6.4.3). */
export const ResourceTag = {
  /** Small item: I/O port descriptor (0x47 with length 7). */
  IO: 0x47,
  /** Small item: end tag (0x79 with length 1). */
  END_TAG: 0x79,
  /** 32-bit fixed memory range. */
  MEMORY32_FIXED: 0x86,
  /** DWord address space. */
  DWORD_ADDRESS: 0x87,
  /** Word address space. */
  WORD_ADDRESS: 0x88,
  /** QWord address space. */
  QWORD_ADDRESS: 0x8a,
} as const;

/** Address space descriptor resource types. */
export const AddressSpaceType = {
  MEMORY: 0,
  IO: 1,
  BUS_NUMBER: 2,
} as const;

/** Cacheability of a memory range (the `_MEM` field). */
export type MemoryCaching = 'non-cacheable' | 'cacheable' | 'write-combining' | 'prefetchable';

const CACHING: Record<MemoryCaching, number> = { 'non-cacheable': 0, cacheable: 1, 'write-combining': 2, prefetchable: 3 };

/** An inclusive range `[min, max]` for an address space descriptor. */
export interface AddressRange {
  /** First address (`_MIN`). */
  min: number | bigint;
  /** Last address (`_MAX`), at least `min`. */
  max: number | bigint;
  /** The device consumes the range (ResourceConsumer) instead of producing it for children (ResourceProducer, the default: a bridge window). */
  consumer?: boolean;
}

/** A memory range for {@link dwordMemory} / {@link qwordMemory}. */
export interface MemoryRange extends AddressRange {
  /** Default 'non-cacheable'. */
  caching?: MemoryCaching;
  /** ReadWrite (default) or ReadOnly. */
  writable?: boolean;
}

function rangeOf(r: AddressRange, limit: bigint, name: string): { min: bigint; max: bigint; general: number } {
  if (typeof r !== 'object' || r === null) throw new TypeError(`${name} must be an object with min and max`);
  const min = u64(r.min, `${name}.min`);
  const max = u64(r.max, `${name}.max`);
  if (max > limit) throw new RangeError(`${name}.max must be at most 0x${limit.toString(16)}, got 0x${max.toString(16)}`);
  if (max < min) throw new RangeError(`${name}.max (0x${max.toString(16)}) is below ${name}.min (0x${min.toString(16)})`);
  if (r.consumer !== undefined && typeof r.consumer !== 'boolean') throw new TypeError(`${name}.consumer must be a boolean`);
  // general flags: bit 3 _MAF, bit 2 _MIF (both fixed), bit 1 _DEC (positive), bit 0 consumer
  return { min, max, general: 0x0c | (r.consumer ? 0x01 : 0) };
}

function memoryFlags(r: MemoryRange, name: string): number {
  const caching = r.caching ?? 'non-cacheable';
  if (!(caching in CACHING)) throw new RangeError(`${name}.caching must be one of ${Object.keys(CACHING).join(', ')}, got ${String(caching)}`);
  const writable = r.writable ?? true;
  if (typeof writable !== 'boolean') throw new TypeError(`${name}.writable must be a boolean`);
  return (CACHING[caching] << 1) | (writable ? 1 : 0);
}

/**
 * An address space descriptor of `width` bytes per field (2, 4 or 8): tag, length, type,
 * general and type-specific flags, then granularity, min, max, translation, length.
 */
function addressSpace(tag: number, width: 2 | 4 | 8, type: number, typeFlags: number, r: { min: bigint; max: bigint; general: number }): AmlBytes {
  const bodyLength = 3 + 5 * width;
  const fields = [0n, r.min, r.max, 0n, r.max - r.min + 1n].flatMap((v) => le(v, width));
  return Uint8Array.from([tag, bodyLength & 0xff, bodyLength >> 8, type, r.general, typeFlags, ...fields]);
}

/** `WordBusNumber`: bus numbers `[min, max]` (at most 255). */
export function wordBusNumber(r: AddressRange): AmlBytes {
  return addressSpace(ResourceTag.WORD_ADDRESS, 2, AddressSpaceType.BUS_NUMBER, 0, rangeOf(r, 0xffn, 'range'));
}

/** `WordIO`: I/O ports `[min, max]` (EntireRange decode). */
export function wordIo(r: AddressRange): AmlBytes {
  return addressSpace(ResourceTag.WORD_ADDRESS, 2, AddressSpaceType.IO, 0x03, rangeOf(r, 0xffffn, 'range'));
}

/** `DWordMemory`: memory `[min, max]` below 4 GiB. */
export function dwordMemory(r: MemoryRange): AmlBytes {
  return addressSpace(ResourceTag.DWORD_ADDRESS, 4, AddressSpaceType.MEMORY, memoryFlags(r, 'range'), rangeOf(r, 0xffff_ffffn, 'range'));
}

/** `QWordMemory`: memory `[min, max]` anywhere in the 64-bit space. */
export function qwordMemory(r: MemoryRange): AmlBytes {
  return addressSpace(ResourceTag.QWORD_ADDRESS, 8, AddressSpaceType.MEMORY, memoryFlags(r, 'range'), rangeOf(r, 0xffff_ffff_ffff_ffffn, 'range'));
}

/** An `IO` descriptor: `length` ports that may sit anywhere from `min` to `max` in steps of `align`. */
export interface IoPortRange {
  /** Lowest base. */
  min: number;
  /** Highest base (default `min`: a fixed range). */
  max?: number;
  /** Base alignment 0-255 (default 1). */
  align?: number;
  /** Number of ports 0-255. */
  length: number;
  /** Decode16 (default) or Decode10. */
  decode16?: boolean;
}

function intArg(v: unknown, name: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer, got ${String(v)}`);
  if (v < 0 || v > max) throw new RangeError(`${name} must be in [0, 0x${max.toString(16)}], got ${v}`);
  return v;
}

/** `IO (Decode16, min, max, align, length)`: the small I/O port descriptor. */
export function ioPort(r: IoPortRange): AmlBytes {
  if (typeof r !== 'object' || r === null) throw new TypeError('range must be an object with min and length');
  const min = intArg(r.min, 'range.min', 0xffff);
  const max = intArg(r.max ?? min, 'range.max', 0xffff);
  if (max < min) throw new RangeError(`range.max (0x${max.toString(16)}) is below range.min (0x${min.toString(16)})`);
  const align = intArg(r.align ?? 1, 'range.align', 0xff);
  const length = intArg(r.length, 'range.length', 0xff);
  const decode16 = r.decode16 ?? true;
  if (typeof decode16 !== 'boolean') throw new TypeError('range.decode16 must be a boolean');
  return Uint8Array.of(ResourceTag.IO, decode16 ? 1 : 0, min & 0xff, min >> 8, max & 0xff, max >> 8, align, length);
}

/** `Memory32Fixed (ReadWrite, base, length)`. */
export function memory32Fixed(r: { base: number; length: number; writable?: boolean }): AmlBytes {
  if (typeof r !== 'object' || r === null) throw new TypeError('range must be an object with base and length');
  const base = intArg(r.base, 'range.base', 0xffff_ffff);
  const length = intArg(r.length, 'range.length', 0xffff_ffff);
  if (base + length > 2 ** 32) throw new RangeError(`range 0x${base.toString(16)}+0x${length.toString(16)} must end at or below 4 GiB`);
  const writable = r.writable ?? true;
  if (typeof writable !== 'boolean') throw new TypeError('range.writable must be a boolean');
  return Uint8Array.from([ResourceTag.MEMORY32_FIXED, 9, 0, writable ? 1 : 0, ...le(BigInt(base), 4), ...le(BigInt(length), 4)]);
}

/**
 * `ResourceTemplate () { descriptors }`: a Buffer holding the descriptors and an end tag
 * whose checksum byte makes the sum of all the template's bytes zero.
 */
export function resourceTemplate(descriptors: readonly AmlBytes[]): AmlBytes {
  const body = checkTerms(descriptors, 'descriptors');
  const bytes = new Uint8Array(body.length + 2);
  bytes.set(body);
  bytes[body.length] = ResourceTag.END_TAG;
  let sum = 0;
  for (let i = 0; i < bytes.length - 1; i++) sum = (sum + bytes[i]) & 0xff;
  bytes[bytes.length - 1] = (0x100 - sum) & 0xff;
  return buffer(bytes);
}

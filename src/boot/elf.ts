/**
 * A validating parser for ELF32 and ELF64 little-endian executables' program headers, and
 * a loader that copies their PT_LOAD segments into guest memory.
 *
 * Input is hostile: every offset, size and count is checked against the file with
 * safe-integer arithmetic, and every segment against guest memory, before anything is
 * written. Failures throw {@link BootImageError}.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { BootImageError } from './errors.js';
import { findOverlap, hex, ImageReader, requireBytes, type PlacedRange } from './util.js';

/** Program header type of a loadable segment. */
export const PT_LOAD = 1;
/** `e_type` of an executable. */
export const ET_EXEC = 2;
/** `e_machine` of i386. */
export const EM_386 = 3;
/** `e_machine` of x86-64. */
export const EM_X86_64 = 62;

/** One program header. */
export interface ElfSegment {
  /** Index in the program header table. */
  index: number;
  /** `p_type`. */
  type: number;
  /** `p_flags`. */
  flags: number;
  /** `p_offset`: where the segment's bytes start in the file. */
  offset: number;
  /** `p_vaddr` (a bigint: 64-bit kernels link at high-half addresses beyond 2^53). */
  vaddr: bigint;
  /** `p_paddr`: the physical load address. */
  paddr: number;
  /** `p_filesz`: bytes present in the file. */
  filesz: number;
  /** `p_memsz`: bytes in memory (the excess over `filesz` is zeroed). */
  memsz: number;
  /** `p_align`. */
  align: number;
}

/** A parsed ELF file. */
export interface ElfImage {
  /** 32 or 64 (`EI_CLASS`). */
  bits: 32 | 64;
  /** `e_type`. */
  type: number;
  /** `e_machine`. */
  machine: number;
  /** `e_entry` (a virtual address; a bigint, as it may exceed 2^53). */
  entry: bigint;
  /** Every program header, in table order. */
  segments: ElfSegment[];
}

const MAX_PHNUM = 0xfffe; // 0xffff is PN_XNUM (count in section 0), not supported

/** True if `image` starts with the ELF magic `\x7fELF`. */
export function isElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46;
}

/**
 * Parse and validate the ELF header and program header table of `image`.
 * PT_LOAD segments are checked for `filesz <= memsz`, file ranges inside the file and
 * address ranges that do not overflow.
 *
 * @param name The image's name for error messages (default `'kernel'`).
 * @throws BootImageError if the file is not a valid little-endian ELF32/ELF64 file.
 */
export function parseElf(image: Uint8Array, name = 'kernel'): ElfImage {
  requireBytes(image, 'image');
  const r = new ImageReader(image, name);
  if (image.length < 16) throw new BootImageError(name, `truncated: ${image.length} bytes is too short for an ELF header`);
  if (!isElf(image)) throw new BootImageError(name, 'not an ELF file (no \\x7fELF magic at 0x0)');
  const cls = image[4];
  if (cls !== 1 && cls !== 2) throw new BootImageError(name, `ELF class ${cls} is neither ELFCLASS32 (1) nor ELFCLASS64 (2)`);
  if (image[5] !== 1) throw new BootImageError(name, `ELF data encoding ${image[5]} is not little-endian (1)`);
  if (image[6] !== 1) throw new BootImageError(name, `ELF ident version ${image[6]} is not 1`);
  const bits: 32 | 64 = cls === 1 ? 32 : 64;
  const ehsize = bits === 32 ? 52 : 64;
  r.need(0, ehsize, 'ELF header');
  const type = r.u16(16);
  const machine = r.u16(18);
  const version = r.u32(20);
  if (version !== 1) throw new BootImageError(name, `ELF version ${version} is not 1`);
  const entry = bits === 32 ? BigInt(r.u32(24)) : r.u64(24, 'ELF e_entry');
  const phoff = bits === 32 ? r.u32(28) : r.u64n(32, 'ELF e_phoff');
  const phentsize = r.u16(bits === 32 ? 42 : 54);
  const phnum = r.u16(bits === 32 ? 44 : 56);
  const minEnt = bits === 32 ? 32 : 56;
  if (phnum === 0) throw new BootImageError(name, 'ELF file has no program headers');
  if (phnum > MAX_PHNUM) throw new BootImageError(name, `ELF e_phnum ${hex(phnum)} (PN_XNUM) is not supported`);
  if (phentsize < minEnt) throw new BootImageError(name, `ELF e_phentsize ${phentsize} is smaller than ${minEnt}`);
  const tableLen = phentsize * phnum;
  if (!Number.isSafeInteger(phoff + tableLen) || phoff + tableLen > image.length)
    throw new BootImageError(
      name,
      `truncated: ELF program header table at ${hex(phoff)} (${phnum} x ${phentsize} bytes) extends beyond the end of the file (${hex(image.length)} bytes)`,
    );

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const what = (f: string): string => `ELF program header ${i} ${f}`;
    const seg: ElfSegment =
      bits === 32
        ? {
            index: i,
            type: r.u32(o),
            offset: r.u32(o + 4),
            vaddr: BigInt(r.u32(o + 8)),
            paddr: r.u32(o + 12),
            filesz: r.u32(o + 16),
            memsz: r.u32(o + 20),
            flags: r.u32(o + 24),
            align: r.u32(o + 28),
          }
        : {
            index: i,
            type: r.u32(o),
            flags: r.u32(o + 4),
            offset: r.u64n(o + 8, what('p_offset')),
            vaddr: r.u64(o + 16, what('p_vaddr')),
            paddr: r.u64n(o + 24, what('p_paddr')),
            filesz: r.u64n(o + 32, what('p_filesz')),
            memsz: r.u64n(o + 40, what('p_memsz')),
            align: r.u64n(o + 48, what('p_align')),
          };
    if (seg.type === PT_LOAD) {
      const p = `ELF program header ${i} (PT_LOAD)`;
      if (seg.filesz > seg.memsz)
        throw new BootImageError(name, `${p}: p_filesz ${hex(seg.filesz)} exceeds p_memsz ${hex(seg.memsz)}`);
      const fileEnd = seg.offset + seg.filesz;
      if (!Number.isSafeInteger(fileEnd) || fileEnd > image.length)
        throw new BootImageError(
          name,
          `${p}: file range ${hex(seg.offset)}+${hex(seg.filesz)} extends beyond the end of the file (${hex(image.length)} bytes)`,
        );
      if (!Number.isSafeInteger(seg.paddr + seg.memsz))
        throw new BootImageError(name, `${p}: address ${hex(seg.paddr)} + size ${hex(seg.memsz)} overflows`);
      if (bits === 32 && seg.paddr + seg.memsz > 2 ** 32)
        throw new BootImageError(name, `${p}: ${hex(seg.paddr)}+${hex(seg.memsz)} wraps around the 32-bit address space`);
      if (seg.vaddr + BigInt(seg.memsz) > 1n << BigInt(bits))
        throw new BootImageError(name, `${p}: virtual range ${hex(seg.vaddr)}+${hex(seg.memsz)} wraps around the ${bits}-bit address space`);
    }
    segments.push(seg);
  }
  return { bits, type, machine, entry, segments };
}

/** The PT_LOAD segments of `elf` that occupy memory (`memsz > 0`). */
export function loadableSegments(elf: ElfImage): ElfSegment[] {
  return elf.segments.filter((s) => s.type === PT_LOAD && s.memsz > 0);
}

/** The physical extent `[start, end)` of `segs` (non-empty). */
export function segmentExtent(segs: readonly ElfSegment[]): LoadedExtent {
  let start = Number.MAX_SAFE_INTEGER;
  let end = 0;
  for (const s of segs) {
    start = Math.min(start, s.paddr);
    end = Math.max(end, s.paddr + s.memsz);
  }
  return { start, end };
}

/** Extent of the loaded segments. */
export interface LoadedExtent {
  /** Lowest physical address written. */
  start: number;
  /** First physical address after the highest segment. */
  end: number;
}

/**
 * Copy every PT_LOAD segment of `elf` (parsed from `image`) to its physical address
 * (`p_paddr`), zeroing `memsz - filesz` bytes after the file contents. All segments are
 * checked before anything is written.
 *
 * @param avoid Ranges the segments must not overlap (e.g. boot structures already placed).
 * @throws BootImageError if there is nothing to load, or a segment is outside guest memory or
 *   overlaps a range in `avoid`.
 */
export function loadElfSegments(
  mem: GuestMemoryAccess,
  elf: ElfImage,
  image: Uint8Array,
  name = 'kernel',
  avoid: readonly PlacedRange[] = [],
): LoadedExtent {
  const segs = loadableSegments(elf);
  if (segs.length === 0) throw new BootImageError(name, 'ELF file has no non-empty PT_LOAD segment');
  for (const s of segs) {
    const range = `[${hex(s.paddr)}, ${hex(s.paddr + s.memsz)})`;
    if (!mem.isBacked(s.paddr, s.memsz))
      throw new BootImageError(name, `ELF segment ${s.index} ${range} does not fit in guest memory`);
    const hit = findOverlap(avoid, s.paddr, s.memsz);
    if (hit) throw new BootImageError(name, `ELF segment ${s.index} ${range} overlaps the ${hit.what} at ${hex(hit.start)}`);
  }
  for (const s of segs) {
    mem.writeBytes(s.paddr, image.subarray(s.offset, s.offset + s.filesz));
    if (s.memsz > s.filesz) mem.fill(s.paddr + s.filesz, s.memsz - s.filesz, 0);
  }
  return segmentExtent(segs);
}

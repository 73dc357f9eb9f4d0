/**
 * A Multiboot (version 0.6.96, "Multiboot 1") loader.
 *
 * The OS image is searched for its Multiboot header (magic 0x1BADB002, 4-byte aligned, within
 * the first 8192 bytes, valid checksum). With header flag bit 16 the image is loaded by the
 * header's address fields; otherwise it must be an ELF32 (EM_386) or ELF64 (EM_X86_64)
 * executable whose PT_LOAD segments are loaded at their physical addresses. Modules follow
 * the kernel, page aligned. The returned {@link BootState} is the spec's machine state:
 * 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = the multiboot_info address.
 *
 * Layout:
 * - `0x0500` GDT (24 bytes): 0x08 flat 32-bit code, 0x10 flat data.
 * - the info area: the multiboot_info structure, followed by the memory map, the module
 *   table and all strings (command lines, boot loader name). At `opts.infoAt` if given (the
 *   kernel and modules must then keep clear of it); otherwise placed after the kernel and
 *   modules, in the first free RAM from `0x9000` that no segment, module or the GDT uses
 *   (0x9000 itself for kernels linked at 1 MiB).
 *
 * Video mode requests (header flag bit 2) are accepted but not honoured: no framebuffer
 * information is passed (info flags bits 11/12 stay clear).
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { defaultLdtRegister, defaultTaskRegister, type BootState } from './boot-state.js';
import { inRam, loaderE820, ramRanges, type E820Entry } from './e820.js';
import { EM_386, EM_X86_64, ET_EXEC, isElf, loadableSegments, loadElfSegments, parseElf, segmentExtent } from './elf.js';
import { BootImageError } from './errors.js';
import { GDT_CODE32, GDT_DATA, GDT_NULL, segmentFromDescriptor, writeGdt } from './paging.js';
import { alignUp, cString, findOverlap, hex, ImageReader, requireAddress, requireBytes, type PlacedRange } from './util.js';

/** Magic at the start of the Multiboot header. */
export const MULTIBOOT_HEADER_MAGIC = 0x1badb002;
/** Value of EAX when the OS is entered. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2badb002;
/** The header must lie within this many bytes from the start of the image. */
export const MULTIBOOT_SEARCH = 8192;
/** Where the loader puts its GDT. */
export const MULTIBOOT_GDT_AT = 0x500;
/** Where the search for free RAM for the multiboot_info starts (it is there unless the kernel or a module is). */
export const DEFAULT_MULTIBOOT_INFO_AT = 0x9000;
/** Code selector in the loader's GDT. */
export const MULTIBOOT_CS = 0x08;
/** Data selector in the loader's GDT. */
export const MULTIBOOT_DS = 0x10;
/** Name passed in `boot_loader_name`. */
export const MULTIBOOT_LOADER_NAME = 'vmmapi';

/** Header flag bits. */
export const MultibootHeaderFlags = {
  /** Align modules on 4 KiB boundaries. */
  PAGE_ALIGN: 1 << 0,
  /** Provide memory information. */
  MEMORY_INFO: 1 << 1,
  /** Provide video mode information. */
  VIDEO_MODE: 1 << 2,
  /** The header's address fields are valid. */
  AOUT_KLUDGE: 1 << 16,
} as const;

/** multiboot_info flag bits set by this loader. */
export const MultibootInfoFlags = {
  MEMORY: 1 << 0,
  BOOTDEV: 1 << 1,
  CMDLINE: 1 << 2,
  MODS: 1 << 3,
  MEM_MAP: 1 << 6,
  BOOT_LOADER_NAME: 1 << 9,
} as const;

/** Size of the multiboot_info structure (through the framebuffer fields). */
export const MULTIBOOT_INFO_SIZE = 116;
/** Size of one module table entry. */
export const MULTIBOOT_MODULE_SIZE = 16;
/** Size of one memory map entry including its leading `size` field (which holds 20). */
export const MULTIBOOT_MMAP_ENTRY_SIZE = 24;

/** A parsed Multiboot header. */
export interface MultibootHeader {
  /** File offset of the magic. */
  offset: number;
  /** Header flags. */
  flags: number;
  /** Address fields, present when flags bit 16 is set. */
  address?: {
    headerAddr: number;
    loadAddr: number;
    loadEndAddr: number;
    bssEndAddr: number;
    entryAddr: number;
  };
  /** Requested video mode, present when flags bit 2 is set. */
  video?: { modeType: number; width: number; height: number; depth: number };
}

function scanHeader(image: Uint8Array): { header?: MultibootHeader; badChecksumAt?: number } {
  const r = new ImageReader(image, 'kernel');
  const limit = Math.min(image.length, MULTIBOOT_SEARCH);
  let badChecksumAt: number | undefined;
  for (let off = 0; off + 4 <= limit; off += 4) {
    if (r.u32(off) !== MULTIBOOT_HEADER_MAGIC) continue;
    if (off + 12 > image.length)
      throw new BootImageError('kernel', `truncated: Multiboot header at ${hex(off)} extends beyond the end of the file (${hex(image.length)} bytes)`);
    const flags = r.u32(off + 4);
    const sum = (MULTIBOOT_HEADER_MAGIC + flags + r.u32(off + 8)) >>> 0;
    if (sum !== 0) {
      badChecksumAt ??= off;
      continue;
    }
    const header: MultibootHeader = { offset: off, flags };
    if (flags & MultibootHeaderFlags.AOUT_KLUDGE) {
      r.need(off, 32, 'Multiboot header address fields');
      header.address = {
        headerAddr: r.u32(off + 12),
        loadAddr: r.u32(off + 16),
        loadEndAddr: r.u32(off + 20),
        bssEndAddr: r.u32(off + 24),
        entryAddr: r.u32(off + 28),
      };
    }
    if (flags & MultibootHeaderFlags.VIDEO_MODE) {
      r.need(off, 48, 'Multiboot header video fields');
      header.video = { modeType: r.u32(off + 32), width: r.u32(off + 36), height: r.u32(off + 40), depth: r.u32(off + 44) };
    }
    return { header };
  }
  return { badChecksumAt };
}

/**
 * Find and parse the Multiboot header: the first 4-byte aligned 0x1BADB002 within the first
 * 8192 bytes whose checksum is valid. Returns undefined if there is none.
 *
 * @throws BootImageError if the header found is cut off by the end of the file.
 */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | undefined {
  requireBytes(image, 'image');
  return scanHeader(image).header;
}

/** A boot module. */
export interface MultibootModule {
  /** Module contents. */
  data: Uint8Array;
  /** Module command line (string passed in the module table). */
  cmdline: string;
}

/** Options for {@link loadMultiboot}. */
export interface MultibootOptions {
  /** Kernel command line. */
  cmdline: string;
  /** Boot modules, placed page aligned after the kernel in this order. */
  modules?: MultibootModule[];
  /** Guest RAM size in bytes (used to build the default E820 map): at most the RAM `mem` backs. */
  ramBytes: number;
  /** The memory map passed to the OS. Default `buildE820(ramBytes)`. */
  e820?: E820Entry[];
  /**
   * Where the multiboot_info structure and its tables go (4-byte aligned). Default: the first
   * free RAM from 0x9000 that the kernel, the modules and the GDT leave.
   */
  infoAt?: number;
}

/** Where {@link loadMultiboot} put things. */
export interface MultibootLayout {
  /** The parsed header. */
  header: MultibootHeader;
  /** multiboot_info address. */
  infoAt: number;
  /** First byte after the info area (structure, tables and strings). */
  infoEnd: number;
  /** GDT address. */
  gdtAt: number;
  /** Lowest address the kernel occupies. */
  kernelStart: number;
  /** First byte after the kernel (including bss). */
  kernelEnd: number;
  /** Physical entry address. */
  entry: number;
  /** Module placements, `[start, end)`. */
  modules: Array<{ start: number; end: number }>;
}

/** The protected-mode entry state of a Multiboot kernel, plus where everything was placed. */
export interface MultibootBootState extends BootState {
  /** Placement details. */
  multiboot: MultibootLayout;
}

const FOUR_GIB = 0x1_0000_0000;

interface KernelPlan {
  start: number;
  end: number;
  entry: number;
  write: () => void;
}

function planAddressMode(mem: GuestMemoryAccess, image: Uint8Array, h: MultibootHeader, avoid: PlacedRange[]): KernelPlan {
  const a = h.address!;
  const n = 'kernel';
  if (a.loadAddr > a.headerAddr)
    throw new BootImageError(n, `Multiboot load_addr ${hex(a.loadAddr)} is above header_addr ${hex(a.headerAddr)}`);
  const loadOffset = h.offset - (a.headerAddr - a.loadAddr);
  if (loadOffset < 0)
    throw new BootImageError(n, `Multiboot header_addr ${hex(a.headerAddr)} - load_addr ${hex(a.loadAddr)} reaches before the start of the file`);
  const loadEnd = a.loadEndAddr === 0 ? a.loadAddr + (image.length - loadOffset) : a.loadEndAddr;
  if (loadEnd < a.loadAddr) throw new BootImageError(n, `Multiboot load_end_addr ${hex(loadEnd)} is below load_addr ${hex(a.loadAddr)}`);
  if (loadEnd > FOUR_GIB) throw new BootImageError(n, `Multiboot image ends at ${hex(loadEnd)}, beyond 4 GiB`);
  const loadLen = loadEnd - a.loadAddr;
  if (loadOffset + loadLen > image.length)
    throw new BootImageError(
      n,
      `truncated: Multiboot load range (file ${hex(loadOffset)}+${hex(loadLen)}) extends beyond the end of the file (${hex(image.length)} bytes)`,
    );
  const bssEnd = a.bssEndAddr === 0 ? loadEnd : a.bssEndAddr;
  if (bssEnd < loadEnd) throw new BootImageError(n, `Multiboot bss_end_addr ${hex(bssEnd)} is below the end of the loaded image ${hex(loadEnd)}`);
  if (loadLen === 0) throw new BootImageError(n, 'Multiboot load range is empty');
  if (a.entryAddr < a.loadAddr || a.entryAddr >= loadEnd)
    throw new BootImageError(n, `Multiboot entry_addr ${hex(a.entryAddr)} is outside the loaded image [${hex(a.loadAddr)}, ${hex(loadEnd)})`);
  const range = `[${hex(a.loadAddr)}, ${hex(bssEnd)})`;
  if (!mem.isBacked(a.loadAddr, bssEnd - a.loadAddr)) throw new BootImageError(n, `load range ${range} does not fit in guest memory`);
  const hit = findOverlap(avoid, a.loadAddr, bssEnd - a.loadAddr);
  if (hit) throw new BootImageError(n, `load range ${range} overlaps the ${hit.what} at ${hex(hit.start)}`);
  return {
    start: a.loadAddr,
    end: bssEnd,
    entry: a.entryAddr,
    write: () => {
      mem.writeBytes(a.loadAddr, image.subarray(loadOffset, loadOffset + loadLen));
      if (bssEnd > loadEnd) mem.fill(loadEnd, bssEnd - loadEnd, 0);
    },
  };
}

function planElf(mem: GuestMemoryAccess, image: Uint8Array, avoid: PlacedRange[]): KernelPlan {
  const n = 'kernel';
  if (!isElf(image))
    throw new BootImageError(n, 'Multiboot header has no address fields (flags bit 16 clear) and the image is not an ELF file');
  const elf = parseElf(image, n);
  if (elf.type !== ET_EXEC) throw new BootImageError(n, `ELF e_type ${elf.type} is not ET_EXEC (2)`);
  const wantMachine = elf.bits === 32 ? EM_386 : EM_X86_64;
  if (elf.machine !== wantMachine)
    throw new BootImageError(n, `ELF${elf.bits} e_machine ${elf.machine} is not ${elf.bits === 32 ? 'EM_386 (3)' : 'EM_X86_64 (62)'}`);
  const segs = loadableSegments(elf);
  if (segs.length === 0) throw new BootImageError(n, 'ELF file has no non-empty PT_LOAD segment');
  for (const s of segs) {
    if (s.paddr + s.memsz > FOUR_GIB)
      throw new BootImageError(n, `ELF segment ${s.index} [${hex(s.paddr)}, ${hex(s.paddr + s.memsz)}) lies beyond 4 GiB`);
  }
  const seg = segs.find((s) => elf.entry >= s.vaddr && elf.entry < s.vaddr + BigInt(s.memsz));
  if (!seg) throw new BootImageError(n, `ELF entry point ${hex(elf.entry)} is not inside any PT_LOAD segment`);
  const entry = Number(elf.entry - seg.vaddr) + seg.paddr;
  // Check placement now (loadElfSegments re-checks and writes).
  for (const s of segs) {
    const range = `[${hex(s.paddr)}, ${hex(s.paddr + s.memsz)})`;
    if (!mem.isBacked(s.paddr, s.memsz)) throw new BootImageError(n, `ELF segment ${s.index} ${range} does not fit in guest memory`);
    const hit = findOverlap(avoid, s.paddr, s.memsz);
    if (hit) throw new BootImageError(n, `ELF segment ${s.index} ${range} overlaps the ${hit.what} at ${hex(hit.start)}`);
  }
  const snapshot = [...avoid];
  return {
    ...segmentExtent(segs),
    entry,
    write: () => void loadElfSegments(mem, elf, image, n, snapshot),
  };
}

/**
 * The lowest 16-byte aligned address from {@link DEFAULT_MULTIBOOT_INFO_AT} where `size`
 * bytes of RAM (in the E820 map, backed, below 4 GiB) overlap nothing in `avoid`; page
 * aligned once it has to move past something.
 */
function placeInfo(mem: GuestMemoryAccess, e820: readonly E820Entry[], avoid: readonly PlacedRange[], size: number): number {
  for (const [s, e] of ramRanges(e820)) {
    let at = alignUp(Math.max(s, DEFAULT_MULTIBOOT_INFO_AT), 16);
    while (at + size <= Math.min(e, FOUR_GIB)) {
      const hit = findOverlap(avoid, at, size);
      if (!hit) {
        if (mem.isBacked(at, size)) return at;
        break;
      }
      at = alignUp(hit.start + hit.length, 0x1000);
    }
  }
  throw new BootImageError('kernel', `no room for the ${hex(size)}-byte multiboot info area in guest RAM below 4 GiB clear of the kernel and modules`);
}

/**
 * Load a Multiboot kernel and its modules, write the multiboot_info structure, and return
 * the protected-mode entry state.
 *
 * @throws BootImageError for a malformed image or modules that do not fit in RAM;
 *   TypeError/RangeError for bad options or an info area that is not backed.
 */
export function loadMultiboot(mem: GuestMemoryAccess, image: Uint8Array, opts: MultibootOptions): MultibootBootState {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  requireBytes(image, 'image');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const e820 = loaderE820(mem, opts);
  const infoAt = opts.infoAt === undefined ? DEFAULT_MULTIBOOT_INFO_AT : requireAddress(opts.infoAt, 'opts.infoAt');
  if (infoAt % 4 !== 0) throw new RangeError(`opts.infoAt must be 4-byte aligned, got ${hex(infoAt)}`);
  const cmdline = cString(opts.cmdline, 'opts.cmdline');
  const modules = opts.modules ?? [];
  if (!Array.isArray(modules)) throw new TypeError('opts.modules must be an array');
  const modCmdlines = modules.map((m, i) => {
    if (typeof m !== 'object' || m === null) throw new TypeError(`opts.modules[${i}] must be an object`);
    requireBytes(m.data, `opts.modules[${i}].data`);
    return cString(m.cmdline, `opts.modules[${i}].cmdline`);
  });

  // Header.
  const scan = scanHeader(image);
  if (!scan.header) {
    if (scan.badChecksumAt !== undefined)
      throw new BootImageError('kernel', `Multiboot header at ${hex(scan.badChecksumAt)} has a bad checksum`);
    throw new BootImageError('kernel', `no Multiboot header (magic 0x1badb002) in the first ${MULTIBOOT_SEARCH} bytes`);
  }
  const header = scan.header;
  const unsupported = header.flags & 0xfff8;
  if (unsupported) throw new BootImageError('kernel', `Multiboot header requires unsupported features (flags ${hex(unsupported)})`);

  // Info area layout: info, mmap, module table, strings.
  const loaderName = cString(MULTIBOOT_LOADER_NAME, 'loader name');
  const mmapAt = alignUp(infoAt + MULTIBOOT_INFO_SIZE, 8);
  const mmapLen = e820.length * MULTIBOOT_MMAP_ENTRY_SIZE;
  const modsAt = alignUp(mmapAt + mmapLen, 16);
  let cursor = modsAt + modules.length * MULTIBOOT_MODULE_SIZE;
  const cmdlineAt = cursor;
  cursor += cmdline.length;
  const loaderNameAt = cursor;
  cursor += loaderName.length;
  const modCmdlineAt = modCmdlines.map((c) => {
    const a = cursor;
    cursor += c.length;
    return a;
  });
  const infoSize = alignUp(cursor - infoAt, 16); // offsets from infoAt; rebased once placed
  const gdtRange: PlacedRange = { what: 'GDT', start: MULTIBOOT_GDT_AT, length: 24 };
  if (!mem.isBacked(MULTIBOOT_GDT_AT, 24)) throw new RangeError(`the GDT at ${hex(MULTIBOOT_GDT_AT)} is not backed by guest memory`);
  const avoid: PlacedRange[] = [gdtRange];
  if (opts.infoAt !== undefined) {
    // A fixed place: checked now, and the kernel and modules must keep clear of it.
    const end = infoAt + infoSize;
    if (end > FOUR_GIB) throw new RangeError(`opts.infoAt: the multiboot info area must lie below 4 GiB`);
    if (!mem.isBacked(infoAt, infoSize))
      throw new RangeError(`opts.infoAt: the multiboot info area [${hex(infoAt)}, ${hex(end)}) is not backed by guest memory`);
    if (findOverlap(avoid, infoAt, infoSize))
      throw new RangeError(`opts.infoAt: the multiboot info area [${hex(infoAt)}, ${hex(end)}) overlaps the GDT at ${hex(MULTIBOOT_GDT_AT)}`);
    avoid.push({ what: 'multiboot info', start: infoAt, length: infoSize });
  }

  // Kernel.
  const plan = header.address ? planAddressMode(mem, image, header, avoid) : planElf(mem, image, avoid);
  avoid.push({ what: 'kernel', start: plan.start, length: plan.end - plan.start });

  // Modules: page aligned after the kernel.
  const placed: Array<{ start: number; end: number }> = [];
  let next = alignUp(plan.end, 0x1000);
  modules.forEach((m, i) => {
    const size = m.data.length;
    let at = next;
    for (let hit = findOverlap(avoid, at, size); hit; hit = findOverlap(avoid, at, size)) at = alignUp(hit.start + hit.length, 0x1000);
    const fits = at + size < FOUR_GIB && (size === 0 || inRam(e820, at, size) && mem.isBacked(at, size));
    if (!fits) throw new BootImageError(`module ${i}`, `${hex(size)} bytes do not fit in guest RAM below 4 GiB at ${hex(at)}`);
    placed.push({ start: at, end: at + size });
    avoid.push({ what: `module ${i}`, start: at, length: size });
    next = alignUp(at + size, 0x1000);
  });

  // The info area: where asked, else the first free RAM from 0x9000 (low memory), then above
  // everything placed so far — never over a segment, a module or the GDT.
  const infoBase = opts.infoAt !== undefined ? infoAt : placeInfo(mem, e820, avoid, infoSize);
  const rebase = infoBase - infoAt;
  const infoEnd = infoBase + infoSize;
  // Write.
  plan.write();
  modules.forEach((m, i) => mem.writeBytes(placed[i].start, m.data));

  const ram = ramRanges(e820);
  const low = ram.find(([s]) => s === 0);
  const memLower = low ? Math.floor(Math.min(low[1], 0xa0000) / 1024) : 0;
  const up = ram.find(([s, e]) => s <= 0x100000 && e > 0x100000);
  const memUpper = up ? Math.floor((Math.min(up[1], FOUR_GIB) - 0x100000) / 1024) : 0;

  const area = new Uint8Array(infoSize);
  const v = new DataView(area.buffer);
  const o = (gpa: number): number => gpa - infoAt;
  const at = (gpa: number): number => gpa + rebase; // guest address of a planned offset
  const flags =
    MultibootInfoFlags.MEMORY | MultibootInfoFlags.CMDLINE | MultibootInfoFlags.MODS | MultibootInfoFlags.MEM_MAP | MultibootInfoFlags.BOOT_LOADER_NAME;
  v.setUint32(0, flags, true);
  v.setUint32(4, memLower, true);
  v.setUint32(8, memUpper, true);
  v.setUint32(16, at(cmdlineAt), true);
  v.setUint32(20, modules.length, true);
  v.setUint32(24, at(modsAt), true);
  v.setUint32(44, mmapLen, true);
  v.setUint32(48, at(mmapAt), true);
  v.setUint32(64, at(loaderNameAt), true);
  e820.forEach((e, i) => {
    const p = o(mmapAt) + i * MULTIBOOT_MMAP_ENTRY_SIZE;
    v.setUint32(p, 20, true);
    v.setBigUint64(p + 4, BigInt(e.addr), true);
    v.setBigUint64(p + 12, BigInt(e.size), true);
    v.setUint32(p + 20, e.type, true);
  });
  placed.forEach((p, i) => {
    const q = o(modsAt) + i * MULTIBOOT_MODULE_SIZE;
    v.setUint32(q, p.start, true);
    v.setUint32(q + 4, p.end, true);
    v.setUint32(q + 8, at(modCmdlineAt[i]), true);
  });
  area.set(cmdline, o(cmdlineAt));
  area.set(loaderName, o(loaderNameAt));
  modCmdlines.forEach((c, i) => area.set(c, o(modCmdlineAt[i])));
  mem.writeBytes(infoBase, area);

  const gdt = writeGdt(mem, MULTIBOOT_GDT_AT, [GDT_NULL, GDT_CODE32, GDT_DATA]);
  const data = (): ReturnType<typeof segmentFromDescriptor> => segmentFromDescriptor(MULTIBOOT_DS, GDT_DATA);
  return {
    mode: 'protected',
    regs: { rax: BigInt(MULTIBOOT_BOOTLOADER_MAGIC), rbx: BigInt(infoBase), rip: BigInt(plan.entry), rflags: 2n },
    cr0: 1n,
    cr3: 0n,
    cr4: 0n,
    efer: 0n,
    segments: {
      cs: segmentFromDescriptor(MULTIBOOT_CS, GDT_CODE32),
      ds: data(),
      es: data(),
      fs: data(),
      gs: data(),
      ss: data(),
      tr: defaultTaskRegister(),
      ldtr: defaultLdtRegister(),
    },
    gdt,
    idt: { base: 0n, limit: 0 },
    multiboot: {
      header,
      infoAt: infoBase,
      infoEnd,
      gdtAt: MULTIBOOT_GDT_AT,
      kernelStart: plan.start,
      kernelEnd: plan.end,
      entry: plan.entry,
      modules: placed,
    },
  };
}

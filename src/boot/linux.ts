/**
 * A Linux bzImage loader for the x86 64-bit boot protocol (Documentation/arch/x86/boot.rst).
 *
 * The loader parses and validates the real-mode setup header, copies the protected-mode
 * kernel to its load address, fills in the zero page (`struct boot_params`), writes the
 * command line, places the initrd, builds a GDT and identity page tables, and returns the
 * long-mode {@link BootState} for entering the kernel at its 64-bit entry point
 * (load address + 0x200) with RSI pointing at the zero page.
 *
 * Fixed low-memory layout (besides the caller-chosen zero page and command line):
 * - `0x0500` GDT (40 bytes): 0x10 = `__BOOT_CS` 64-bit code, 0x18 = `__BOOT_DS` data.
 * - `0x8000-0x8fff` boot stack, RSP = RBP = `0x8ff0`.
 * - `0x9000` PML4, `0xa000` PDPT, `0xb000..` one page directory per identity-mapped GiB
 *   (4 GiB by default, so up to `0xf000`).
 * Defaults: zero page `0x7000`, command line `0x20000`. The kernel goes to `pref_address`
 * when it fits in RAM, else (relocatable kernels) to the lowest suitably aligned RAM address
 * at or above 1 MiB.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import { defaultLdtRegister, defaultTaskRegister, type BootState } from './boot-state.js';
import { e820ToBytes, inRam, loaderE820, ramRanges, type E820Entry } from './e820.js';
import { BootImageError } from './errors.js';
import {
  BOOT_CS,
  BOOT_DS,
  buildGdt,
  buildIdentityPageTables,
  GDT_CODE64,
  GDT_DATA,
  LONG_MODE_CR0,
  LONG_MODE_CR4,
  LONG_MODE_EFER,
  segmentFromDescriptor,
} from './paging.js';
import {
  alignDown,
  alignUp,
  cString,
  findOverlap,
  hex,
  ImageReader,
  isPowerOfTwo,
  requireAddress,
  requireBytes,
  type PlacedRange,
} from './util.js';

/** Where the GDT goes. */
export const LINUX_GDT_AT = 0x500;
/** The boot stack page. */
export const LINUX_STACK_AT = 0x8000;
/** Initial RSP/RBP. */
export const LINUX_STACK_TOP = 0x8ff0;
/** Where the PML4 goes (PDPT and page directories follow). */
export const LINUX_PAGE_TABLES_AT = 0x9000;
/** Default zero-page address. */
export const DEFAULT_ZERO_PAGE_AT = 0x7000;
/** Default command-line address. */
export const DEFAULT_CMDLINE_AT = 0x20000;
/** Default fallback kernel load address. */
export const DEFAULT_KERNEL_AT = 0x100000;

/** CR0 for 64-bit entry: PE | ET | NE | PG. */
export const LINUX_CR0 = LONG_MODE_CR0;
/** CR4 for 64-bit entry: PAE. */
export const LINUX_CR4 = LONG_MODE_CR4;
/** EFER for 64-bit entry: LME | LMA. */
export const LINUX_EFER = LONG_MODE_EFER;

/** Offsets in the zero page (`struct boot_params`) and setup header. */
export const BootParams = {
  ACPI_RSDP_ADDR: 0x070,
  EXT_RAMDISK_IMAGE: 0x0c0,
  EXT_RAMDISK_SIZE: 0x0c4,
  EXT_CMD_LINE_PTR: 0x0c8,
  E820_ENTRIES: 0x1e8,
  SENTINEL: 0x1ef,
  SETUP_SECTS: 0x1f1,
  SYSSIZE: 0x1f4,
  VID_MODE: 0x1fa,
  BOOT_FLAG: 0x1fe,
  JUMP: 0x200,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  CODE32_START: 0x214,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  HEAP_END_PTR: 0x224,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  KERNEL_ALIGNMENT: 0x230,
  RELOCATABLE_KERNEL: 0x234,
  MIN_ALIGNMENT: 0x235,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  PAYLOAD_OFFSET: 0x248,
  PAYLOAD_LENGTH: 0x24c,
  SETUP_DATA: 0x250,
  PREF_ADDRESS: 0x258,
  INIT_SIZE: 0x260,
  HANDOVER_OFFSET: 0x264,
  EDD_MBR_SIG_BUFFER: 0x290,
  E820_TABLE: 0x2d0,
} as const;

/** Size of the zero page. */
export const ZERO_PAGE_SIZE = 4096;
/** Maximum number of E820 entries in the zero page. */
export const E820_MAX_ZEROPAGE = 128;
/** The "HdrS" magic as a little-endian u32. */
export const HDRS_MAGIC = 0x53726448;
/** `loadflags` bit 0: protected-mode code is loaded at 0x100000 (bzImage). */
export const LOADED_HIGH = 0x01;
/** `loadflags` bit 7: `heap_end_ptr` is valid. */
export const CAN_USE_HEAP = 0x80;
/** `xloadflags` bit 0: the kernel has a 64-bit entry point at +0x200. */
export const XLF_KERNEL_64 = 0x01;
/** Minimum boot protocol version for 64-bit entry. */
export const MIN_BOOT_PROTOCOL = 0x020c;

/** The fields of a bzImage setup header the loader uses. */
export interface BzImageHeader {
  /** Setup sectors (the header's 0 already replaced by 4). */
  setupSects: number;
  /** Bytes of real-mode code in the file: `(setupSects + 1) * 512`. */
  setupBytes: number;
  /** Protected-mode code size in 16-byte paragraphs. */
  syssize: number;
  /** Boot protocol version, e.g. 0x020f. */
  version: number;
  /** `loadflags`. */
  loadflags: number;
  /** `xloadflags`. */
  xloadflags: number;
  /** Highest address the initrd may occupy (inclusive). */
  initrdAddrMax: number;
  /** Physical alignment required for a relocatable kernel. */
  kernelAlignment: number;
  /** Whether the kernel may be loaded at any `kernelAlignment`-aligned address. */
  relocatable: boolean;
  /** log2 of the minimum alignment the kernel supports (may be 0). */
  minAlignment: number;
  /** Maximum command-line length, excluding the terminating NUL. */
  cmdlineSize: number;
  /** Preferred load address. */
  prefAddress: number;
  /** Bytes of linear memory the kernel needs from its load address for decompression. */
  initSize: number;
  /** Offset of the EFI handover entry (informational). */
  handoverOffset: number;
  /** First byte after the setup header in the image (`0x202 + byte at 0x201`, clamped to 0x290). */
  headerEnd: number;
  /** Bytes of protected-mode kernel in the file (everything after the setup code). */
  kernelSize: number;
  /** Offset of the compressed kernel inside the protected-mode code (`payload_offset`). */
  payloadOffset: number;
  /** Length of the compressed kernel (`payload_length`). */
  payloadLength: number;
}

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];
/** syssize is in 16-byte paragraphs, rounded up: the file may hold up to 15 bytes less. */
const SYSSIZE_ROUNDING = 15;

/**
 * Parse and validate the setup header of a bzImage.
 *
 * @throws BootImageError if the image is truncated, lacks the 0xAA55 boot flag or the
 *   "HdrS" magic, uses a boot protocol older than 2.12, has no 64-bit entry point, is not a
 *   bzImage, or has an inconsistent size or alignment.
 */
export function parseBzImageHeader(kernel: Uint8Array): BzImageHeader {
  requireBytes(kernel, 'kernel');
  const n = 'kernel';
  const r = new ImageReader(kernel, n);
  if (kernel.length < BootParams.HEADER + 4) {
    if (kernel.length >= 4 && ELF_MAGIC.every((b, i) => kernel[i] === b))
      throw new BootImageError(n, 'is an ELF file (vmlinux), not a bzImage');
    throw new BootImageError(n, `truncated: ${kernel.length} bytes is too short for a bzImage setup header (needs ${hex(BootParams.HEADER + 4)})`);
  }
  if (r.u32(BootParams.HEADER) !== HDRS_MAGIC) {
    if (ELF_MAGIC.every((b, i) => kernel[i] === b)) throw new BootImageError(n, 'is an ELF file (vmlinux), not a bzImage');
    throw new BootImageError(n, `not a bzImage (no 'HdrS' magic at ${hex(BootParams.HEADER)})`);
  }
  const bootFlag = r.u16(BootParams.BOOT_FLAG);
  if (bootFlag !== 0xaa55) throw new BootImageError(n, `not a bzImage (boot_flag at 0x1fe is ${hex(bootFlag)}, expected 0xaa55)`);
  const version = r.u16(BootParams.VERSION);
  if (version < MIN_BOOT_PROTOCOL)
    throw new BootImageError(n, `boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')} is too old (2.12+ needed for 64-bit entry)`);
  r.need(BootParams.SETUP_SECTS, BootParams.HANDOVER_OFFSET + 4 - BootParams.SETUP_SECTS, 'setup header');
  const rawSects = r.u8(BootParams.SETUP_SECTS);
  const setupSects = rawSects === 0 ? 4 : rawSects;
  const setupBytes = (setupSects + 1) * 512;
  const syssize = r.u32(BootParams.SYSSIZE);
  const loadflags = r.u8(BootParams.LOADFLAGS);
  const xloadflags = r.u16(BootParams.XLOADFLAGS);
  if (!(loadflags & LOADED_HIGH)) throw new BootImageError(n, 'loadflags LOADED_HIGH is clear (a zImage, not a bzImage)');
  if (!(xloadflags & XLF_KERNEL_64)) throw new BootImageError(n, 'xloadflags lacks XLF_KERNEL_64 (no 64-bit entry point)');
  if (setupBytes > kernel.length)
    throw new BootImageError(n, `truncated: setup code is ${hex(setupBytes)} bytes (setup_sects ${setupSects}) but the file is ${hex(kernel.length)} bytes`);
  const kernelSize = kernel.length - setupBytes;
  // syssize counts 16-byte paragraphs, rounded up: up to 15 of its bytes may lie past the end
  // of the file (the loader loads what is there); more than that is a truncated image.
  if (syssize * 16 > kernelSize + SYSSIZE_ROUNDING)
    throw new BootImageError(
      n,
      `truncated: syssize ${hex(syssize)} says at least ${hex(syssize * 16 - SYSSIZE_ROUNDING)} bytes of protected-mode code, the file has ${hex(kernelSize)}`,
    );
  if (kernelSize <= 0x200)
    throw new BootImageError(n, `truncated: protected-mode code is ${hex(kernelSize)} bytes, too short to contain the 64-bit entry at +0x200`);
  const relocatable = r.u8(BootParams.RELOCATABLE_KERNEL) !== 0;
  const kernelAlignment = r.u32(BootParams.KERNEL_ALIGNMENT);
  if (!isPowerOfTwo(kernelAlignment) || kernelAlignment < 0x1000)
    throw new BootImageError(n, `kernel_alignment ${hex(kernelAlignment)} is not a power of two of at least 4 KiB`);
  const minAlignment = r.u8(BootParams.MIN_ALIGNMENT);
  if (minAlignment > 31) throw new BootImageError(n, `min_alignment ${minAlignment} is not a valid log2 alignment`);
  const prefAddress = r.u64n(BootParams.PREF_ADDRESS, 'pref_address');
  const initSize = r.u32(BootParams.INIT_SIZE);
  const jumpOffset = r.u8(BootParams.JUMP + 1);
  // The header ends at 0x202 + the jump's displacement; 2.12+ headers reach at least 0x268,
  // and the zero page has room up to 0x290. setupBytes >= 0x400, so this stays in the file.
  const headerEnd = Math.min(Math.max(BootParams.HEADER + jumpOffset, BootParams.HANDOVER_OFFSET + 4), BootParams.EDD_MBR_SIG_BUFFER);
  return {
    setupSects,
    setupBytes,
    syssize,
    version,
    loadflags,
    xloadflags,
    initrdAddrMax: r.u32(BootParams.INITRD_ADDR_MAX),
    kernelAlignment,
    relocatable,
    minAlignment,
    cmdlineSize: r.u32(BootParams.CMDLINE_SIZE),
    prefAddress,
    initSize,
    handoverOffset: r.u32(BootParams.HANDOVER_OFFSET),
    headerEnd,
    kernelSize,
    payloadOffset: r.u32(BootParams.PAYLOAD_OFFSET),
    payloadLength: r.u32(BootParams.PAYLOAD_LENGTH),
  };
}

/** Options for {@link loadBzImage}. */
export interface LinuxOptions {
  /** Kernel command line (no NUL characters; at most the kernel's `cmdline_size` bytes). */
  cmdline: string;
  /** Initial ramdisk image, if any. */
  initrd?: Uint8Array;
  /** Guest RAM size in bytes (used to build the default E820 map): at most the RAM `mem` backs. */
  ramBytes: number;
  /** The E820 map handed to the kernel. Default `buildE820(ramBytes)`. */
  e820?: E820Entry[];
  /** Physical address of the ACPI RSDP, stored in `acpi_rsdp_addr`. */
  acpiRsdp?: number;
  /** Zero-page address (4 KiB aligned). Default 0x7000. */
  zeroPageAt?: number;
  /** Command-line address. Default 0x20000. */
  cmdlineAt?: number;
  /**
   * Force the kernel load address (rounded up to the kernel's minimum alignment). Default:
   * `pref_address` if it fits in RAM, else the lowest aligned RAM address from 1 MiB.
   */
  kernelAt?: number;
  /** Highest address the initrd may occupy (inclusive), further restricting `initrd_addr_max`. */
  initrdMax?: number;
  /** GiB of memory to identity-map for entry (1-512). Default 4. */
  identityGigabytes?: number;
}

/** Where {@link loadBzImage} put things. */
export interface LinuxLayout {
  /** The parsed setup header. */
  header: BzImageHeader;
  /** Protected-mode kernel load address. */
  kernelAt: number;
  /**
   * End of the memory the kernel owns: `kernelAt + init_size` for a bzImage (room for
   * in-place decompression), the end of the last segment for a vmlinux.
   */
  kernelEnd: number;
  /** Guest-physical 64-bit entry point (`kernelAt + 0x200` for a bzImage, `e_entry` for a vmlinux). */
  entry: number;
  /** Zero-page address. */
  zeroPageAt: number;
  /** Command-line address. */
  cmdlineAt: number;
  /** Initrd address (0 if none). */
  initrdAt: number;
  /** Initrd size (0 if none). */
  initrdSize: number;
  /** GDT address. */
  gdtAt: number;
  /** PML4 address. */
  pageTablesAt: number;
  /** First byte after the page tables. */
  pageTablesEnd: number;
}

/** The long-mode entry state of a Linux kernel, plus where everything was placed. */
export interface LinuxBootState extends BootState {
  /** Placement details. */
  linux: LinuxLayout;
}

const FOUR_GIB = 0x1_0000_0000;

function optAddress(value: unknown, name: string, def: number): number {
  return value === undefined ? def : requireAddress(value, name);
}

/** Validated options and the fixed boot structures every 64-bit Linux entry uses. */
export interface LinuxBootPlan {
  /** The E820 map for the zero page. */
  e820: E820Entry[];
  /** Zero-page address. */
  zeroPageAt: number;
  /** Command-line address. */
  cmdlineAt: number;
  /** NUL-terminated command line. */
  cmdline: Uint8Array;
  /** GiB identity-mapped for entry. */
  gigabytes: number;
  /** GDT, boot stack, page tables, zero page, command line: backed and disjoint. */
  fixed: PlacedRange[];
}

/**
 * Validate `opts` against `mem` and a kernel that accepts `cmdlineSize` command-line bytes
 * (see also {@link checkCmdlineSize}); nothing is written. Shared by the bzImage and vmlinux
 * loaders.
 */
export function planLinuxBoot(mem: GuestMemoryAccess, opts: LinuxOptions, cmdlineSize = Number.MAX_SAFE_INTEGER): LinuxBootPlan {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const e820 = loaderE820(mem, opts);
  if (e820.length > E820_MAX_ZEROPAGE) throw new RangeError(`opts.e820 has ${e820.length} entries; the zero page holds at most ${E820_MAX_ZEROPAGE}`);
  const zeroPageAt = optAddress(opts.zeroPageAt, 'opts.zeroPageAt', DEFAULT_ZERO_PAGE_AT);
  if (zeroPageAt % 0x1000 !== 0) throw new RangeError(`opts.zeroPageAt must be 4 KiB aligned, got ${hex(zeroPageAt)}`);
  const cmdlineAt = optAddress(opts.cmdlineAt, 'opts.cmdlineAt', DEFAULT_CMDLINE_AT);
  const cmdline = cString(opts.cmdline, 'opts.cmdline');
  if (opts.initrd !== undefined) requireBytes(opts.initrd, 'opts.initrd');
  if (opts.acpiRsdp !== undefined) requireAddress(opts.acpiRsdp, 'opts.acpiRsdp');
  if (opts.initrdMax !== undefined) requireAddress(opts.initrdMax, 'opts.initrdMax');
  const gigabytes = opts.identityGigabytes ?? 4;
  if (typeof gigabytes !== 'number') throw new TypeError('opts.identityGigabytes must be a number');
  if (!Number.isInteger(gigabytes) || gigabytes < 1 || gigabytes > 512)
    throw new RangeError(`opts.identityGigabytes must be an integer in [1, 512], got ${gigabytes}`);
  checkCmdlineSize(cmdline, cmdlineSize);
  if (cmdlineAt + cmdline.length > FOUR_GIB) throw new RangeError(`opts.cmdlineAt ${hex(cmdlineAt)} must lie below 4 GiB`);
  if (zeroPageAt + ZERO_PAGE_SIZE > FOUR_GIB) throw new RangeError(`opts.zeroPageAt ${hex(zeroPageAt)} must lie below 4 GiB`);

  // Fixed boot structures: must be backed and disjoint.
  const pageTablesEnd = LINUX_PAGE_TABLES_AT + (2 + gigabytes) * 0x1000;
  const fixed: PlacedRange[] = [
    { what: 'GDT', start: LINUX_GDT_AT, length: 40 },
    { what: 'boot stack', start: LINUX_STACK_AT, length: 0x1000 },
    { what: 'page tables', start: LINUX_PAGE_TABLES_AT, length: pageTablesEnd - LINUX_PAGE_TABLES_AT },
    { what: 'zero page', start: zeroPageAt, length: ZERO_PAGE_SIZE },
    { what: 'command line', start: cmdlineAt, length: cmdline.length },
  ];
  for (let i = 0; i < fixed.length; i++) {
    const a = fixed[i];
    if (!mem.isBacked(a.start, a.length))
      throw new RangeError(`${a.what} [${hex(a.start)}, ${hex(a.start + a.length)}) is not backed by guest memory`);
    const hit = findOverlap(fixed.slice(0, i), a.start, a.length);
    if (hit) throw new RangeError(`${a.what} at ${hex(a.start)} overlaps the ${hit.what} at ${hex(hit.start)}`);
  }
  return { e820, zeroPageAt, cmdlineAt, cmdline, gigabytes, fixed };
}

/** RangeError if the NUL-terminated `cmdline` is longer than the kernel's `cmdline_size`. */
export function checkCmdlineSize(cmdline: Uint8Array, cmdlineSize: number): void {
  if (cmdline.length - 1 > cmdlineSize)
    throw new RangeError(`opts.cmdline is ${cmdline.length - 1} bytes; the kernel accepts at most ${cmdlineSize} (cmdline_size)`);
}

/**
 * Choose the initrd's address: page aligned, as high as possible below `initrdAddrMax` (and
 * `opts.initrdMax`), outside the fixed structures and `kernel`. Returns 0 without an initrd.
 */
export function placeInitrd(mem: GuestMemoryAccess, plan: LinuxBootPlan, opts: LinuxOptions, initrdAddrMax: number, kernel: PlacedRange): number {
  const initrd = opts.initrd;
  if (!initrd) return 0;
  if (initrd.length === 0) throw new BootImageError('initrd', 'is empty');
  const initrdSize = initrd.length;
  let limit = Math.min(initrdAddrMax + 1, FOUR_GIB);
  if (opts.initrdMax !== undefined) limit = Math.min(limit, opts.initrdMax + 1);
  const avoid: PlacedRange[] = [...plan.fixed, kernel];
  for (const [s0, e] of ramRanges(plan.e820).reverse()) {
    const s = Math.max(s0, DEFAULT_KERNEL_AT);
    let top = Math.min(e, limit);
    while (top - s >= initrdSize) {
      const start = alignDown(top - initrdSize, 0x1000);
      if (start < s) break;
      const hit = findOverlap(avoid, start, initrdSize);
      if (!hit) {
        if (mem.isBacked(start, initrdSize)) return start;
        break;
      }
      top = hit.start;
    }
  }
  throw new BootImageError(
    'initrd',
    `${hex(initrdSize)} bytes do not fit in guest RAM below ${hex(limit)} (initrd_addr_max ${hex(initrdAddrMax)}) outside the kernel`,
  );
}

/** What {@link enterLinux} needs besides the plan. */
export interface LinuxEntry {
  /** The setup header the zero page starts from: bytes `[0x1f1, headerEnd)` of a bzImage layout. */
  setupHeader: Uint8Array;
  /** The parsed (or synthesized) header. */
  header: BzImageHeader;
  /** Where the kernel was loaded. */
  kernelAt: number;
  /** The end of the memory the kernel owns. */
  kernelEnd: number;
  /** Guest-physical 64-bit entry point. */
  entry: number;
  /** The initrd's address (0 for none). */
  initrdAt: number;
}

/**
 * Write the initrd, command line, zero page, GDT, identity page tables and boot stack, and
 * return the long-mode state that enters the kernel at `entry.entry` with RSI = zero page.
 * The kernel itself must already be in memory.
 */
export function enterLinux(mem: GuestMemoryAccess, plan: LinuxBootPlan, opts: LinuxOptions, entry: LinuxEntry): LinuxBootState {
  const { zeroPageAt, cmdlineAt, e820 } = plan;
  const initrd = opts.initrd;
  const initrdAt = entry.initrdAt;
  const initrdSize = initrd?.length ?? 0;
  if (initrd) mem.writeBytes(initrdAt, initrd);
  mem.writeBytes(cmdlineAt, plan.cmdline);

  const zp = new Uint8Array(ZERO_PAGE_SIZE);
  const v = new DataView(zp.buffer);
  zp.set(entry.setupHeader.subarray(0, BootParams.EDD_MBR_SIG_BUFFER - BootParams.SETUP_SECTS), BootParams.SETUP_SECTS);
  zp[BootParams.TYPE_OF_LOADER] = 0xff;
  zp[BootParams.LOADFLAGS] = entry.header.loadflags | LOADED_HIGH | CAN_USE_HEAP;
  v.setUint16(BootParams.HEAP_END_PTR, 0xfe00, true);
  v.setUint32(BootParams.CODE32_START, entry.kernelAt, true);
  v.setUint32(BootParams.CMD_LINE_PTR, cmdlineAt % FOUR_GIB, true);
  v.setUint32(BootParams.EXT_CMD_LINE_PTR, Math.floor(cmdlineAt / FOUR_GIB), true);
  v.setUint32(BootParams.RAMDISK_IMAGE, initrdAt % FOUR_GIB, true);
  v.setUint32(BootParams.RAMDISK_SIZE, initrdSize % FOUR_GIB, true);
  v.setUint32(BootParams.EXT_RAMDISK_IMAGE, Math.floor(initrdAt / FOUR_GIB), true);
  v.setUint32(BootParams.EXT_RAMDISK_SIZE, Math.floor(initrdSize / FOUR_GIB), true);
  v.setBigUint64(BootParams.SETUP_DATA, 0n, true);
  if (opts.acpiRsdp !== undefined) v.setBigUint64(BootParams.ACPI_RSDP_ADDR, BigInt(opts.acpiRsdp), true);
  zp[BootParams.E820_ENTRIES] = e820.length;
  zp.set(e820ToBytes(e820), BootParams.E820_TABLE);
  mem.writeBytes(zeroPageAt, zp);

  const gdt = buildGdt(mem, LINUX_GDT_AT);
  const pt = buildIdentityPageTables(mem, LINUX_PAGE_TABLES_AT, { gigabytes: plan.gigabytes });
  mem.fill(LINUX_STACK_AT, 0x1000, 0);

  const code = segmentFromDescriptor(BOOT_CS, GDT_CODE64);
  const data = (): ReturnType<typeof segmentFromDescriptor> => segmentFromDescriptor(BOOT_DS, GDT_DATA);
  return {
    mode: 'long',
    regs: {
      rip: BigInt(entry.entry),
      rsi: BigInt(zeroPageAt),
      rsp: BigInt(LINUX_STACK_TOP),
      rbp: BigInt(LINUX_STACK_TOP),
      rflags: 2n,
    },
    cr0: LINUX_CR0,
    cr3: pt.cr3,
    cr4: LINUX_CR4,
    efer: LINUX_EFER,
    segments: { cs: code, ds: data(), es: data(), fs: data(), gs: data(), ss: data(), tr: defaultTaskRegister(), ldtr: defaultLdtRegister() },
    gdt,
    idt: { base: 0n, limit: 0 },
    linux: {
      header: entry.header,
      kernelAt: entry.kernelAt,
      kernelEnd: entry.kernelEnd,
      entry: entry.entry,
      zeroPageAt,
      cmdlineAt,
      initrdAt,
      initrdSize,
      gdtAt: LINUX_GDT_AT,
      pageTablesAt: LINUX_PAGE_TABLES_AT,
      pageTablesEnd: pt.end,
    },
  };
}

/**
 * Load a bzImage for 64-bit entry and return the vCPU state to enter it with.
 *
 * @throws BootImageError for a malformed kernel or initrd, or when they do not fit in RAM;
 *   TypeError/RangeError for bad options (including a command line longer than the
 *   kernel's `cmdline_size`, or boot structures that overlap or are not backed).
 */
export function loadBzImage(mem: GuestMemoryAccess, kernel: Uint8Array, opts: LinuxOptions): LinuxBootState {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  requireBytes(kernel, 'kernel');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  const plan = planLinuxBoot(mem, opts); // options first: a bad call is a TypeError/RangeError
  const hdr = parseBzImageHeader(kernel);
  checkCmdlineSize(plan.cmdline, hdr.cmdlineSize);
  const { e820, fixed } = plan;

  // Kernel placement.
  const span = Math.max(hdr.initSize, hdr.kernelSize);
  const fits = (addr: number): boolean =>
    Number.isSafeInteger(addr + span) &&
    addr + span <= FOUR_GIB &&
    inRam(e820, addr, span) &&
    mem.isBacked(addr, span) &&
    findOverlap(fixed, addr, span) === undefined;
  const minAlign =
    hdr.minAlignment > 0 && 2 ** hdr.minAlignment <= hdr.kernelAlignment ? Math.max(2 ** hdr.minAlignment, 0x1000) : hdr.kernelAlignment;
  let kernelAt: number;
  if (opts.kernelAt !== undefined) {
    const want = requireAddress(opts.kernelAt, 'opts.kernelAt');
    kernelAt = hdr.relocatable ? alignUp(want, minAlign) : want;
    if (!hdr.relocatable && kernelAt !== hdr.prefAddress)
      throw new RangeError(`opts.kernelAt: the kernel is not relocatable and must be loaded at pref_address ${hex(hdr.prefAddress)}`);
    if (!fits(kernelAt))
      throw new RangeError(
        `opts.kernelAt: the kernel needs ${hex(span)} bytes (init_size) of free RAM below 4 GiB at ${hex(kernelAt)}`,
      );
  } else if (fits(hdr.prefAddress)) {
    kernelAt = hdr.prefAddress;
  } else {
    if (!hdr.relocatable)
      throw new BootImageError(
        'kernel',
        `not relocatable and its ${hex(span)} bytes (init_size) do not fit in guest RAM at pref_address ${hex(hdr.prefAddress)}`,
      );
    let found: number | undefined;
    outer: for (const align of [hdr.kernelAlignment, minAlign]) {
      for (const [s, e] of ramRanges(e820)) {
        const cand = alignUp(Math.max(s, DEFAULT_KERNEL_AT), align);
        if (cand + span <= e && fits(cand)) {
          found = cand;
          break outer;
        }
      }
    }
    if (found === undefined)
      throw new BootImageError('kernel', `its ${hex(span)} bytes (init_size) do not fit anywhere in guest RAM below 4 GiB`);
    kernelAt = found;
  }
  const kernelEnd = kernelAt + span;
  const initrdAt = placeInitrd(mem, plan, opts, hdr.initrdAddrMax, { what: 'kernel', start: kernelAt, length: span });

  mem.writeBytes(kernelAt, kernel.subarray(hdr.setupBytes));
  return enterLinux(mem, plan, opts, {
    setupHeader: kernel.subarray(BootParams.SETUP_SECTS, hdr.headerEnd),
    header: hdr,
    kernelAt,
    kernelEnd,
    entry: kernelAt + 0x200,
    initrdAt,
  });
}

/**
 * Booting an uncompressed Linux kernel (the `vmlinux` ELF) at its 64-bit entry point, as
 * Firecracker does, and taking that ELF out of a bzImage on the host.
 *
 * Why: a bzImage decompresses itself in the guest. Where guest kernel code is emulated
 * instruction by instruction (PVM hosts) that alone takes minutes; on the host it takes a
 * fraction of a second. The kernel proper's `startup_64` accepts the same zero page and
 * identity-mapped long-mode state as the bzImage entry, so only the kernel placement differs:
 * each PT_LOAD segment goes to its physical address and the vCPU starts at `e_entry`.
 */
import { gunzipSync } from 'node:zlib';
import type { GuestMemoryAccess } from '../memory/access.js';
import { BootImageError } from './errors.js';
import { EM_X86_64, ET_EXEC, isElf, loadableSegments, loadElfSegments, parseElf, segmentExtent } from './elf.js';
import { inRam } from './e820.js';
import {
  BootParams,
  enterLinux,
  HDRS_MAGIC,
  LOADED_HIGH,
  parseBzImageHeader,
  placeInitrd,
  planLinuxBoot,
  XLF_KERNEL_64,
  type BzImageHeader,
  type LinuxBootState,
  type LinuxOptions,
} from './linux.js';
import { decompressLz4Legacy } from './lz4.js';
import { hex, requireBytes } from './util.js';

/** Compression formats a bzImage payload may use, by their leading magic bytes. */
const PAYLOAD_FORMATS: { name: string; magic: number[] }[] = [
  { name: 'gzip', magic: [0x1f, 0x8b] },
  { name: 'lz4', magic: [0x02, 0x21, 0x4c, 0x18] },
  { name: 'xz', magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00] },
  { name: 'zstd', magic: [0x28, 0xb5, 0x2f, 0xfd] },
  { name: 'bzip2', magic: [0x42, 0x5a, 0x68] },
  { name: 'lzo', magic: [0x89, 0x4c, 0x5a, 0x4f] },
  { name: 'lzma', magic: [0x5d, 0x00, 0x00] },
];

/** Payload formats {@link extractVmlinux} can decompress. */
export const HOST_DECOMPRESSIBLE = ['gzip', 'lz4'] as const;

/** The largest kernel {@link extractVmlinux} will produce. */
export const MAX_VMLINUX_BYTES = 1024 * 1024 * 1024;

/** Name the compression format of a bzImage payload ('unknown' if none matches). */
export function payloadFormat(payload: Uint8Array): string {
  for (const f of PAYLOAD_FORMATS) if (f.magic.every((b, i) => payload[i] === b)) return f.name;
  return 'unknown';
}

/** A kernel ELF taken out of a bzImage. */
export interface ExtractedKernel {
  /** The vmlinux ELF. */
  vmlinux: Uint8Array;
  /** The payload's compression format. */
  format: string;
  /** The bzImage's setup header. */
  header: BzImageHeader;
  /** Bytes `[0x1f1, headerEnd)` of the bzImage, for the zero page. */
  setupHeader: Uint8Array;
}

/**
 * Decompress a bzImage's payload (the vmlinux ELF) on the host.
 *
 * @throws BootImageError if the bzImage is malformed, its payload lies outside the file, uses
 *   a format other than gzip or lz4, is corrupt, or does not decompress to an ELF file.
 */
export function extractVmlinux(bzImage: Uint8Array): ExtractedKernel {
  requireBytes(bzImage, 'kernel');
  const header = parseBzImageHeader(bzImage);
  const start = header.setupBytes + header.payloadOffset;
  const end = start + header.payloadLength;
  if (header.payloadLength === 0 || end > bzImage.length)
    throw new BootImageError('kernel', `payload ${hex(header.payloadOffset)}+${hex(header.payloadLength)} (after the ${hex(header.setupBytes)}-byte setup code) lies outside the file (${hex(bzImage.length)} bytes)`);
  const payload = bzImage.subarray(start, end);
  const format = payloadFormat(payload);
  let vmlinux: Uint8Array;
  if (format === 'gzip') {
    try {
      const out = gunzipSync(payload, { maxOutputLength: MAX_VMLINUX_BYTES });
      vmlinux = new Uint8Array(out.buffer, out.byteOffset, out.length);
    } catch (e) {
      throw new BootImageError('kernel', `gzip payload does not decompress: ${(e as Error).message}`);
    }
  } else if (format === 'lz4') {
    vmlinux = decompressLz4Legacy(payload, MAX_VMLINUX_BYTES, 'kernel payload');
  } else {
    throw new BootImageError(
      'kernel',
      `payload is ${format === 'unknown' ? 'in an unknown format' : `${format}-compressed`}; the host decompresses ${HOST_DECOMPRESSIBLE.join(' and ')} (boot it with in-guest decompression, or pass an extracted vmlinux)`,
    );
  }
  if (!isElf(vmlinux)) throw new BootImageError('kernel', `${format} payload did not decompress to an ELF file`);
  return { vmlinux, format, header, setupHeader: bzImage.subarray(BootParams.SETUP_SECTS, header.headerEnd) };
}

/** A setup header for a bare vmlinux: boot protocol 2.15, what the kernel proper reads. */
function syntheticHeader(): { header: BzImageHeader; setupHeader: Uint8Array } {
  const bytes = new Uint8Array(BootParams.EDD_MBR_SIG_BUFFER - BootParams.SETUP_SECTS);
  const v = new DataView(bytes.buffer);
  const at = (off: number): number => off - BootParams.SETUP_SECTS;
  const header: BzImageHeader = {
    setupSects: 4,
    setupBytes: 5 * 512,
    syssize: 0,
    version: 0x020f,
    loadflags: LOADED_HIGH,
    xloadflags: XLF_KERNEL_64,
    initrdAddrMax: 0x7fffffff,
    kernelAlignment: 0x200000,
    relocatable: false,
    minAlignment: 21,
    cmdlineSize: 2047,
    prefAddress: 0,
    initSize: 0,
    handoverOffset: 0,
    headerEnd: BootParams.EDD_MBR_SIG_BUFFER,
    kernelSize: 0,
    payloadOffset: 0,
    payloadLength: 0,
  };
  bytes[at(BootParams.SETUP_SECTS)] = header.setupSects;
  v.setUint16(at(BootParams.BOOT_FLAG), 0xaa55, true);
  v.setUint32(at(BootParams.HEADER), HDRS_MAGIC, true);
  v.setUint16(at(BootParams.VERSION), header.version, true);
  bytes[at(BootParams.LOADFLAGS)] = header.loadflags;
  v.setUint32(at(BootParams.INITRD_ADDR_MAX), header.initrdAddrMax, true);
  v.setUint32(at(BootParams.KERNEL_ALIGNMENT), header.kernelAlignment, true);
  bytes[at(BootParams.MIN_ALIGNMENT)] = header.minAlignment;
  v.setUint16(at(BootParams.XLOADFLAGS), header.xloadflags, true);
  v.setUint32(at(BootParams.CMDLINE_SIZE), header.cmdlineSize, true);
  return { header, setupHeader: bytes };
}

/** Options for {@link loadVmlinux}. `kernelAt` does not apply: segments go to `p_paddr`. */
export interface VmlinuxOptions extends LinuxOptions {
  /**
   * The setup header of the bzImage this vmlinux came from (see {@link extractVmlinux}); its
   * limits (command-line size, initrd ceiling) then apply. Default: a synthesized 2.15 header.
   */
  from?: { header: BzImageHeader; setupHeader: Uint8Array };
}

/**
 * Load a 64-bit x86 vmlinux ELF: every PT_LOAD segment at its physical address, the zero page,
 * command line, initrd, GDT and identity page tables as for a bzImage; the vCPU enters at
 * the physical `e_entry` (the kernel proper's `startup_64`) with RSI = zero page.
 *
 * @throws BootImageError if the ELF is not an x86-64 executable, its entry is outside its
 *   segments, or it does not fit in RAM clear of the boot structures; TypeError/RangeError
 *   for bad options, as {@link loadBzImage}.
 */
export function loadVmlinux(mem: GuestMemoryAccess, image: Uint8Array, opts: VmlinuxOptions): LinuxBootState {
  if (typeof mem !== 'object' || mem === null) throw new TypeError('mem must be a GuestMemoryAccess');
  requireBytes(image, 'kernel');
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
  if (opts.kernelAt !== undefined) throw new RangeError('opts.kernelAt does not apply to a vmlinux (its segments load at their physical addresses)');
  const elf = parseElf(image, 'kernel');
  if (elf.bits !== 64 || elf.machine !== EM_X86_64 || elf.type !== ET_EXEC)
    throw new BootImageError('kernel', `not an x86-64 executable ELF (class ${elf.bits}, e_machine ${elf.machine}, e_type ${elf.type})`);
  const segs = loadableSegments(elf);
  if (segs.length === 0) throw new BootImageError('kernel', 'ELF file has no non-empty PT_LOAD segment');
  const { header, setupHeader } = opts.from ?? syntheticHeader();
  const plan = planLinuxBoot(mem, opts, header.cmdlineSize);

  const { start: kernelAt, end: kernelEnd } = segmentExtent(segs);
  for (const s of segs) {
    if (!inRam(plan.e820, s.paddr, s.memsz))
      throw new BootImageError('kernel', `ELF segment ${s.index} [${hex(s.paddr)}, ${hex(s.paddr + s.memsz)}) is not in usable RAM`);
  }
  // e_entry is the physical address of startup_64; accept a virtual one inside a segment too.
  let entry: number | undefined;
  for (const s of segs) {
    const lo = elf.entry >= 1n << 63n ? s.vaddr : BigInt(s.paddr);
    if (elf.entry >= lo && elf.entry < lo + BigInt(s.memsz)) entry = s.paddr + Number(elf.entry - lo);
  }
  if (entry === undefined) throw new BootImageError('kernel', `entry point ${hex(elf.entry)} is outside every loadable segment`);

  const initrdAt = placeInitrd(mem, plan, opts, header.initrdAddrMax, { what: 'kernel', start: kernelAt, length: kernelEnd - kernelAt });
  loadElfSegments(mem, elf, image, 'kernel', plan.fixed);
  return enterLinux(mem, plan, opts, { setupHeader, header, kernelAt, kernelEnd, entry, initrdAt });
}

/**
 * Boot a bzImage without its in-guest decompressor: {@link extractVmlinux} on the host, then
 * {@link loadVmlinux} with the bzImage's header.
 */
export function loadBzImageDecompressed(mem: GuestMemoryAccess, bzImage: Uint8Array, opts: LinuxOptions): LinuxBootState {
  const x = extractVmlinux(bzImage);
  return loadVmlinux(mem, x.vmlinux, { ...opts, from: x });
}

/**
 * Putting guest images into a PC: firmware ROM, Multiboot kernel, Linux bzImage, flat
 * binary. Each returns the loader's result after writing memory and vCPU 0's state.
 */
import { buildAcpiTables, ECAM_BUS_SIZE } from '../boot/acpi.js';
import { BootImageError } from '../boot/errors.js';
import { alignUp } from '../boot/util.js';
import { buildE820, E820Type } from '../boot/e820.js';
import { planFirmware, type FirmwarePlan } from '../boot/firmware.js';
import { loadFlat, type FlatOptions } from '../boot/flat.js';
import { loadBzImage, type LinuxBootState } from '../boot/linux.js';
import { isElf } from '../boot/elf.js';
import { loadBzImageDecompressed, loadVmlinux } from '../boot/vmlinux.js';
import { loadMultiboot, type MultibootBootState, type MultibootModule } from '../boot/multiboot.js';
import type { BootState } from '../boot/boot-state.js';
import type { Vm } from '../vm.js';
import { applyBootState } from './boot-state.js';
import { ACPI_TABLES_AT, IOAPIC, IRQS, MIN_MEMORY, pcReservedE820, PORTS, type PcPciLayout } from './layout.js';

/** Options for {@link Pc.loadMultiboot}. */
export interface PcMultibootOptions {
  /** Kernel command line (default empty). */
  cmdline?: string;
  /** Boot modules, in order. */
  modules?: MultibootModule[];
}

/** Options for {@link Pc.loadLinux}. */
export interface PcLinuxOptions {
  /** Kernel command line (default `console=ttyS0`). */
  cmdline?: string;
  /** Initial ramdisk. */
  initrd?: Uint8Array;
  /**
   * Where a bzImage's compressed kernel is unpacked: `'guest'` (default, the standard boot
   * protocol: the kernel's own decompressor runs first) or `'host'` (gzip and lz4 payloads are
   * decompressed here and the kernel proper is entered directly — minutes faster where guest
   * kernel code is emulated). A vmlinux ELF is always entered directly.
   */
  decompress?: 'guest' | 'host';
}

/** The default Linux command line. */
export const DEFAULT_LINUX_CMDLINE = 'console=ttyS0';

/** Put every vCPU in its power-on state (APs wait for INIT/SIPI). */
export function resetAll(vm: Vm): void {
  for (let v = 0; v < vm.vcpuCount; v++) vm.vcpuReset(v);
}

/**
 * Map a BIOS ROM read-only so that it ends at 4 GiB, copy its last 128 KiB into RAM at
 * 0xE0000 and leave every vCPU in the reset state (vCPU 0 fetches from 0xFFFFFFF0).
 */
export function bootFirmware(vm: Vm, memoryBytes: number, rom: Uint8Array): FirmwarePlan {
  const plan = planFirmware(rom);
  if (memoryBytes < MIN_MEMORY) throw new BootImageError('firmware', 'needs at least 1 MiB of RAM for its copy at 0xE0000');
  const sab = vm.setupMemory(plan.romGpa, plan.romSize, { readonly: true });
  new Uint8Array(sab).set(rom);
  vm.memory.writeBytes(plan.lowCopyGpa, plan.lowCopy);
  resetAll(vm);
  return plan;
}

/** Load a Multiboot kernel; vCPU 0 enters it in 32-bit protected mode. */
export function bootMultiboot(vm: Vm, memoryBytes: number, image: Uint8Array, opts: PcMultibootOptions): MultibootBootState {
  requireOptions(opts);
  const state = loadMultiboot(vm.memory, image, {
    cmdline: opts.cmdline ?? '',
    modules: opts.modules,
    ramBytes: memoryBytes,
    e820: buildE820(memoryBytes, { reserved: pcReservedE820() }),
  });
  start(vm, state);
  return state;
}

/**
 * Load a bzImage (or a vmlinux ELF) for 64-bit entry, with ACPI tables (one Local APIC per
 * vCPU, the in-kernel IOAPIC, a FADT pointing at the platform's PM1a and reset ports, the
 * PCI host bridge `\_SB.PCI0` with `pci`'s windows and an MCFG for its ECAM) whose RSDP
 * sits at 0xE0000 and is also passed in the zero page; the tables are E820 type 3 (ACPI),
 * the ECAM window type 2 (reserved).
 */
export function bootLinux(vm: Vm, memoryBytes: number, kernel: Uint8Array, opts: PcLinuxOptions, pci: PcPciLayout): LinuxBootState {
  requireOptions(opts);
  const decompress = opts.decompress ?? 'guest';
  if (decompress !== 'guest' && decompress !== 'host') throw new TypeError(`opts.decompress must be 'guest' or 'host', got ${String(decompress)}`);
  const acpi = buildAcpiTables(vm.memory, {
    at: ACPI_TABLES_AT,
    cpus: vm.vcpuCount,
    ioapic: { ...IOAPIC },
    sciIrq: IRQS.sci,
    pm1aEventPort: PORTS.acpiPm.base,
    pm1aControlPort: PORTS.acpiPm.base + 4,
    resetPort: PORTS.reset.base,
    pci: {
      ecamBase: pci.ecam.base,
      endBus: pci.ecam.size / ECAM_BUS_SIZE - 1,
      io: pci.io,
      mmio32: pci.mmio32,
      mmio64: pci.mmio64,
    },
  });
  const acpiEnd = alignUp(acpi.end, 0x1000);
  const acpiRange = { addr: ACPI_TABLES_AT, size: acpiEnd - ACPI_TABLES_AT, type: E820Type.ACPI };
  const e820 = buildE820(memoryBytes, { reserved: [...pcReservedE820(), acpiRange] });
  const linuxOpts = { cmdline: opts.cmdline ?? DEFAULT_LINUX_CMDLINE, initrd: opts.initrd, ramBytes: memoryBytes, e820, acpiRsdp: acpi.rsdp };
  const state = isElf(kernel)
    ? loadVmlinux(vm.memory, kernel, linuxOpts)
    : decompress === 'host'
      ? loadBzImageDecompressed(vm.memory, kernel, linuxOpts)
      : loadBzImage(vm.memory, kernel, linuxOpts);
  start(vm, state);
  return state;
}

/** Copy a flat binary to `at`; vCPU 0 enters it in the mode `opts.mode` asks for (default real). */
export function bootFlat(vm: Vm, image: Uint8Array, at: number, opts: FlatOptions): BootState {
  const state = loadFlat(vm.memory, image, at, opts);
  start(vm, state);
  return state;
}

/** TypeError unless a loader's `opts` is an object. */
function requireOptions(opts: unknown): void {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
}

function start(vm: Vm, state: BootState): void {
  resetAll(vm);
  applyBootState(vm, 0, state);
}

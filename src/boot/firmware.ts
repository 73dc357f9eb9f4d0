/**
 * Planning the placement of a legacy BIOS ROM (e.g. SeaBIOS `bios.bin`): mapped just below
 * 4 GiB, with its last 128 KiB (or all of it, if smaller) also copied to the top of the first
 * megabyte, where the CPU's real-mode reset vector F000:FFF0 finds it.
 *
 * Nothing is written: the VMM maps `rom` read-only at `romGpa` and copies `lowCopy` to
 * `lowCopyGpa`, then applies {@link FirmwarePlan.resetState}.
 */
import { defaultLdtRegister, defaultTaskRegister, type BootState } from './boot-state.js';
import { BootImageError } from './errors.js';
import { hex, requireBytes } from './util.js';

/** Largest accepted ROM: 16 MiB. */
export const MAX_FIRMWARE_SIZE = 16 * 1024 * 1024;
/** ROM size granularity: 4 KiB. */
export const FIRMWARE_SIZE_ALIGN = 4096;
/** How much of the ROM's tail is shadowed below 1 MiB: 128 KiB (0xE0000-0xFFFFF). */
export const LOW_BIOS_WINDOW = 128 * 1024;
/** CR0 at reset: CD | NW | ET. */
export const RESET_CR0 = 0x6000_0010n;

/** Where a firmware ROM goes. */
export interface FirmwarePlan {
  /** Guest-physical address to map the whole ROM at: `2^32 - size`. */
  romGpa: number;
  /** ROM size in bytes. */
  romSize: number;
  /** Where the low shadow copy goes: `0x100000 - lowCopy.length`. */
  lowCopyGpa: number;
  /** The last `min(size, 128 KiB)` bytes of the ROM (a view, not a copy). */
  lowCopy: Uint8Array;
  /** The architectural reset state: real mode, CS:IP = F000:FFF0 with CS base 0xFFFF0000. */
  resetState(): BootState;
}

/**
 * The x86 power-on state: real mode, CS selector 0xF000 with base 0xFFFF0000 (so the first
 * fetch is at 0xFFFFFFF0), RIP 0xFFF0, other segments base 0 limit 0xFFFF, RFLAGS 2,
 * CR0 0x60000010, GDTR/IDTR base 0 limit 0xFFFF.
 */
export function resetBootState(): BootState {
  const data = (): { selector: number; base: bigint; limit: number; access: number } => ({ selector: 0, base: 0n, limit: 0xffff, access: 0x93 });
  return {
    mode: 'real',
    regs: { rip: 0xfff0n, rflags: 2n },
    cr0: RESET_CR0,
    cr3: 0n,
    cr4: 0n,
    efer: 0n,
    segments: {
      cs: { selector: 0xf000, base: 0xffff0000n, limit: 0xffff, access: 0x9b },
      ds: data(),
      es: data(),
      fs: data(),
      gs: data(),
      ss: data(),
      tr: defaultTaskRegister(),
      ldtr: defaultLdtRegister(),
    },
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
  };
}

/**
 * Validate a BIOS ROM and plan where it goes.
 *
 * @throws TypeError if `rom` is not a Uint8Array; BootImageError if it is empty, not a
 *   multiple of 4 KiB, or larger than 16 MiB.
 */
export function planFirmware(rom: Uint8Array): FirmwarePlan {
  requireBytes(rom, 'rom');
  const size = rom.length;
  if (size === 0) throw new BootImageError('firmware', 'ROM image is empty');
  if (size % FIRMWARE_SIZE_ALIGN !== 0) throw new BootImageError('firmware', `ROM size ${hex(size)} is not a multiple of 4 KiB`);
  if (size > MAX_FIRMWARE_SIZE) throw new BootImageError('firmware', `ROM size ${hex(size)} exceeds 16 MiB`);
  const low = Math.min(size, LOW_BIOS_WINDOW);
  return {
    romGpa: 2 ** 32 - size,
    romSize: size,
    lowCopyGpa: 0x100000 - low,
    lowCopy: rom.subarray(size - low),
    resetState: resetBootState,
  };
}

/**
 * Userspace x86 instruction emulator for instructions KVM's in-kernel emulator cannot finish:
 * decoder, guest page-table walk, and instruction implementations.
 */
export { emulate, type EmulateOptions, type EmulationResult } from './emulator.js';
export { COUNTED_MNEMONICS, SUPPORTED_MNEMONICS } from './mnemonics.js';
export { bigintToBytes, bytesToBigint, memoryCmpxchg, type CmpxchgResult, type CpuState, type EmulatorHost } from './host.js';
export { decode } from './decoder.js';
export * from './decoder-types.js';
export {
  linearRead,
  linearWrite,
  translate,
  translateRange,
  PF_ERROR,
  isCanonical,
  linearWidth,
  type GeneralProtectionFault,
  type LinearAccessOptions,
  type LinearChunk,
  type LinearFailure,
  type PageFault,
  type PagingAccess,
  type PagingContext,
  type TranslateResult,
  type TranslationFault,
} from './paging.js';
export { cpuMode, type CpuMode, type ModeKind } from './cpu-mode.js';
export { CR0, CR4, EFER, RFLAGS, STATUS_FLAGS } from './flags.js';
export { SyscallRepair, displaceableLength, MSR_LSTAR, MSR_SYSCALL_MASK, SYSCALL_REPAIR_BYTES, type RepairAction } from './syscall-repair.js';

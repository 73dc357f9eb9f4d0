/**
 * What the emulator needs from the VMM: guest memory, the vCPU's FPU state, and optionally
 * an atomic compare-exchange on guest memory. Also the default (non-atomic) compare-exchange
 * over a {@link GuestMemoryAccess}.
 */
import type { GuestMemoryAccess } from '../memory/access.js';
import type { KvmRegs, KvmSregs } from '../kvm/structs.js';

/** Result of a compare-exchange: whether it stored, and the value memory held before. */
export interface CmpxchgResult {
  ok: boolean;
  old: bigint;
}

/** The VMM services the emulator uses. */
export interface EmulatorHost {
  /** Guest-physical memory. */
  memory: GuestMemoryAccess;
  /** A copy of the vCPU's struct kvm_fpu (416 bytes). Called at most once per emulation, only when needed. */
  getFpu(): DataView;
  /** Store struct kvm_fpu. Called at most once per emulation, only if the state changed. */
  setFpu(fpu: DataView): void;
  /**
   * Atomically: if the `size`-byte little-endian value at `gpa` equals `expected`, store
   * `replacement`. `[gpa, gpa + size)` lies within one page. Default: {@link memoryCmpxchg}
   * (not atomic against other vCPUs).
   */
  atomicCmpxchg?(gpa: number, size: 8 | 16, expected: bigint, replacement: bigint): CmpxchgResult;
  /** XCR0 (KVM_GET_XCRS). Without it XGETBV and XRSTOR are unsupported. */
  getXcr0?(): bigint;
  /**
   * A copy of the vCPU's XSAVE image (standard format, at least 4096 bytes: struct kvm_xsave or
   * KVM_GET_XSAVE2's larger one). Without it XRSTOR is unsupported.
   */
  getXsave?(): Uint8Array;
  /** Store an image as {@link getXsave} returned it (KVM_SET_XSAVE). Called at most once per emulation, after every check passed. */
  setXsave?(xsave: Uint8Array): void;
  /**
   * Run one canonical instruction on the host CPU (the native path's executor, see
   * native/sse_exec.cc): `code` (at most 15 bytes, memory operand RIP-relative to the 64-byte
   * scratch), struct kvm_regs bytes, a 512-byte FXSAVE64 image and the scratch, all updated
   * in place. Returns 0 or the host signal number. Default: the addon's `execSse`.
   */
  execNative?(code: Uint8Array, regs: Uint8Array, fx: Uint8Array, scratch: Uint8Array): number;
}

/** The register state the emulator reads and mutates; the caller writes back what changed. */
export interface CpuState {
  regs: KvmRegs;
  sregs: KvmSregs;
}

/** Little-endian bytes → unsigned bigint. */
export function bytesToBigint(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/** Unsigned bigint → `size` little-endian bytes. */
export function bigintToBytes(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/**
 * A compare-exchange over `mem` (read, compare, write): correct for a single vCPU, not atomic
 * with respect to other threads touching the same memory.
 */
export function memoryCmpxchg(mem: GuestMemoryAccess): NonNullable<EmulatorHost['atomicCmpxchg']> {
  return (gpa, size, expected, replacement) => {
    const old = bytesToBigint(mem.readBytes(gpa, size));
    const mask = (1n << BigInt(size * 8)) - 1n;
    if (old === (expected & mask)) {
      mem.writeBytes(gpa, bigintToBytes(replacement, size));
      return { ok: true, old };
    }
    return { ok: false, old };
  };
}

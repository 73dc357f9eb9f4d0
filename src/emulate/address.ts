/**
 * Effective and linear address computation for a decoded memory operand (Intel SDM Vol. 1
 * §3.7.5, Vol. 3 §3.4 and §5.3): base + index × scale + displacement wrapped to the address
 * size, RIP-relative addressing, and segmentation — in 64-bit mode only the FS/GS bases
 * apply and there are no limit checks; elsewhere the segment must be usable, of the right
 * type, and the access within its (expand-up or expand-down) limit.
 */
import type { KvmRegs, KvmSegment, KvmSregs } from '../kvm/structs.js';
import type { CpuMode } from './cpu-mode.js';
import type { MemoryOperand, SegmentReg } from './decoder-types.js';
import { Fault, VECTOR } from './fault.js';
import { readGpr, sizeMask } from './registers.js';

/**
 * The effective address (offset within the segment) of `mem`, wrapped to `addressSize`.
 *
 * @param nextRip The address of the next instruction (RIP-relative base).
 */
export function effectiveAddress(mem: MemoryOperand, regs: KvmRegs, addressSize: 2 | 4 | 8, nextRip: bigint): bigint {
  let ea = mem.disp;
  if (mem.ripRelative) ea += nextRip;
  if (mem.base !== undefined) ea += readGpr(regs, mem.base, 8);
  if (mem.index !== undefined) ea += readGpr(regs, mem.index, 8) * BigInt(mem.scale);
  return BigInt.asUintN(addressSize * 8, ea);
}

/** The kind of access for segment checks. */
export type SegmentAccess = 'read' | 'write' | 'rmw';

/**
 * Apply segmentation to an effective address.
 *
 * @returns the linear address (64-bit in 64-bit mode, else wrapped to 32 bits).
 * @throws Fault #GP(0), or #SS(0) for stack-segment violations outside 64-bit mode.
 */
export function segmentLinear(
  mode: CpuMode,
  sregs: KvmSregs,
  segName: SegmentReg,
  ea: bigint,
  size: number,
  access: SegmentAccess,
): bigint {
  const seg: KvmSegment = sregs[segName];
  if (mode.long) {
    const base = segName === 'fs' || segName === 'gs' ? seg.base : 0n;
    return BigInt.asUintN(64, base + ea);
  }
  const linear = (BigInt.asUintN(64, seg.base) + ea) & 0xffff_ffffn;
  if (mode.kind === 'real' || mode.kind === 'vm86') return linear;
  const vector = segName === 'ss' ? VECTOR.SS : VECTOR.GP;
  const bad = (why: string): Fault => new Fault(vector, 0, undefined, `${segName}: ${why}`);
  if (seg.unusable || !seg.present) throw bad('segment not usable');
  const code = (seg.type & 8) !== 0;
  if (access !== 'read' && (code || (seg.type & 2) === 0)) throw bad('segment not writable');
  if (access === 'read' && code && (seg.type & 2) === 0) throw bad('code segment not readable');
  const last = ea + BigInt(size) - 1n;
  const limit = BigInt(seg.limit >>> 0);
  if (!code && (seg.type & 4) !== 0) {
    // Expand-down: valid offsets are (limit, upper].
    const upper = seg.db ? 0xffff_ffffn : 0xffffn;
    if (ea <= limit || last > upper) throw bad('outside expand-down segment limit');
  } else if (last > limit) throw bad('outside segment limit');
  return linear;
}

/** Wrap an instruction pointer to the width of the code segment. */
export function wrapIp(mode: CpuMode, ip: bigint): bigint {
  if (mode.long) return BigInt.asUintN(64, ip);
  return ip & sizeMask(mode.default32 ? 4 : 2);
}

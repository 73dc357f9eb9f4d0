/**
 * General-purpose register access by x86 register number (0-15 = RAX, RCX, RDX, RBX, RSP,
 * RBP, RSI, RDI, R8-R15) and operand size, with the architectural partial-register rules:
 * 32-bit writes zero bits 63:32, 16- and 8-bit writes preserve the other bits, and without
 * REX byte registers 4-7 are AH, CH, DH, BH.
 */
import type { GprName, KvmRegs } from '../kvm/structs.js';

/** Register names in x86 encoding order. */
export const GPR_ORDER: readonly GprName[] = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
];

/** The bit mask of an n-byte value. */
export function sizeMask(size: number): bigint {
  return (1n << BigInt(size * 8)) - 1n;
}

/** Read register `index` at `size` bytes (zero-extended). */
export function readGpr(regs: KvmRegs, index: number, size: 1 | 2 | 4 | 8, hasRex = false): bigint {
  if (size === 1 && !hasRex && index >= 4 && index < 8) return (BigInt.asUintN(64, regs[GPR_ORDER[index - 4]]) >> 8n) & 0xffn;
  return BigInt.asUintN(64, regs[GPR_ORDER[index]]) & sizeMask(size);
}

/** Write register `index` at `size` bytes following the partial-register rules. */
export function writeGpr(regs: KvmRegs, index: number, size: 1 | 2 | 4 | 8, value: bigint, hasRex = false): void {
  if (size === 1 && !hasRex && index >= 4 && index < 8) {
    const name = GPR_ORDER[index - 4];
    regs[name] = (BigInt.asUintN(64, regs[name]) & ~0xff00n) | ((value & 0xffn) << 8n);
    return;
  }
  const name = GPR_ORDER[index];
  const v = value & sizeMask(size);
  if (size === 8 || size === 4) regs[name] = v;
  else regs[name] = (BigInt.asUintN(64, regs[name]) & ~sizeMask(size)) | v;
}

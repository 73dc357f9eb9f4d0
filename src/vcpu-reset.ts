/**
 * The architectural power-on state of an x86 processor (Intel SDM Vol. 3A, Table 9-1),
 * expressed as edits to KVM's state structs. Used by `vm.vcpuReset`.
 */
import type { KvmRegs, KvmSegment, KvmSregs } from './kvm/structs.js';

function seg(selector: number, base: bigint, limit: number, type: number, s: number): KvmSegment {
  return { base, limit, selector, type, present: 1, dpl: 0, db: 0, s, l: 0, g: 0, avl: 0, unusable: 0 };
}

/** General registers at power-on: RIP 0xfff0, RFLAGS 0x2, RDX = processor signature. */
export function resetRegs(signature: number): KvmRegs {
  return {
    rax: 0n, rbx: 0n, rcx: 0n, rdx: BigInt(signature >>> 0), rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n,
    r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0xfff0n, rflags: 0x2n,
  };
}

/**
 * Segment and control registers at power-on: CS 0xf000 with base 0xffff0000, data segments
 * 0 with limit 0xffff, GDTR/IDTR limit 0xffff, LDTR/TR present system segments,
 * CR0 = 0x60000010 (CD, NW, ET), CR2 = CR3 = CR4 = EFER = 0, APIC base 0xfee00000 enabled,
 * BSP flag on vCPU 0 only.
 */
export function resetSregs(prev: KvmSregs, bsp: boolean): KvmSregs {
  return {
    cs: seg(0xf000, 0xffff0000n, 0xffff, 0xb, 1),
    ds: seg(0, 0n, 0xffff, 0x3, 1),
    es: seg(0, 0n, 0xffff, 0x3, 1),
    fs: seg(0, 0n, 0xffff, 0x3, 1),
    gs: seg(0, 0n, 0xffff, 0x3, 1),
    ss: seg(0, 0n, 0xffff, 0x3, 1),
    tr: seg(0, 0n, 0xffff, 0xb, 0),
    ldt: seg(0, 0n, 0xffff, 0x2, 0),
    gdt: { base: 0n, limit: 0xffff },
    idt: { base: 0n, limit: 0xffff },
    cr0: 0x60000010n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n,
    apicBase: 0xfee00000n | (1n << 11n) | (bsp ? 1n << 8n : 0n),
    interruptBitmap: prev.interruptBitmap.map(() => 0n),
  };
}

/** Debug registers at power-on: DR0-3 = 0, DR6 = 0xffff0ff0, DR7 = 0x400. */
export const RESET_DR6 = 0xffff0ff0n;
/** DR7 at power-on. */
export const RESET_DR7 = 0x400n;
/** x87 control word at power-on (FINIT sets 0x37f; RESET leaves 0x0040). */
export const RESET_FCW = 0x40;
/** MXCSR at power-on. */
export const RESET_MXCSR = 0x1f80;

/**
 * XGETBV and XRSTOR (Intel SDM Vol. 1 ch. 13, Vol. 2C "XGETBV", "XRSTOR"), CLWB/CLFLUSHOPT
 * (Vol. 2A) and INVPCID (Vol. 2A).
 *
 * XGETBV reads XCR0 through the host (KVM_GET_XCRS); ECX = 1 reads XINUSE & XCR0, taken from
 * the XSTATE_BV of KVM's XSAVE image (KVM_GET_XSAVE), which is what KVM tracks of it.
 *
 * XRSTOR loads the x87, SSE and AVX components (0-2) from the guest's XSAVE area (standard or
 * compacted form) into KVM's XSAVE image (KVM_GET_XSAVE, edited, KVM_SET_XSAVE); components
 * 3 and up can be initialised (XSTATE_BV bit clear) but loading one is reported unsupported.
 *
 * INVPCID: every architectural check is made (#UD, #GP), but invalidating the guest's TLB
 * entries cannot be asked of KVM through its userspace API, so a valid INVPCID is reported
 * unsupported with a reason naming it (clear the guest's `invpcid` CPUID bit instead).
 */
import type { ExecContext } from '../context.js';
import { Unsupported, gp0, nm, ud } from '../fault.js';
import { CR0, CR4, hasBit } from '../flags.js';
import { bytesToBigint } from '../host.js';
import { MXCSR_MASK } from './mxcsr.js';
import type { Handler } from './types.js';

/** sizeof(struct kvm_xsave). */
export const KVM_XSAVE_SIZE = 4096;
/** Offset of the XSAVE header (XSTATE_BV, XCOMP_BV) in an XSAVE area. */
export const XSAVE_HEADER = 512;
/** Standard-format offset and size of the AVX (YMM_Hi128) component. */
export const AVX_OFFSET = 576;
const AVX_SIZE = 256;

function requireXsave(ctx: ExecContext, what: string): void {
  if (!hasBit(ctx.cpu.sregs.cr4, CR4.OSXSAVE)) throw ud(`${what} with CR4.OSXSAVE clear`);
}

function xcr0(ctx: ExecContext, what: string): bigint {
  if (!ctx.host.getXcr0) throw new Unsupported(`${what}: the host gave no access to XCR0 (KVM_GET_XCRS)`);
  return BigInt.asUintN(64, ctx.host.getXcr0());
}

/** XGETBV: EDX:EAX ← XCR[ECX]. #UD without CR4.OSXSAVE, #GP(0) for an XCR other than 0 and 1. */
export const xgetbv: Handler = (_insn, ctx) => {
  requireXsave(ctx, 'xgetbv');
  const ecx = ctx.gpr(1, 4);
  let v: bigint;
  if (ecx === 0n) v = xcr0(ctx, 'xgetbv');
  else if (ecx === 1n) {
    const x0 = xcr0(ctx, 'xgetbv');
    if (!ctx.host.getXsave) throw new Unsupported('xgetbv(1): the host gave no access to the XSAVE state (KVM_GET_XSAVE)');
    const img = ctx.host.getXsave();
    v = bytesToBigint(img.subarray(XSAVE_HEADER, XSAVE_HEADER + 8)) & x0;
  } else throw gp0(`xgetbv: XCR${ecx} does not exist`);
  ctx.setGpr(0, 4, v & 0xffff_ffffn);
  ctx.setGpr(2, 4, v >> 32n);
};

/**
 * CLWB m8 / CLFLUSHOPT m8: write back / flush the cache line. The address is checked as a
 * byte read (segmentation and paging faults are the instruction's); guest RAM is coherent
 * host memory, so nothing else is needed. A line that is not RAM (MMIO) is not cached: no-op.
 */
export const cacheLine: Handler = (_insn, ctx) => {
  try {
    ctx.translateOperand(1, 'read');
  } catch (e) {
    if (e instanceof Unsupported) return; // not RAM: nothing cached to write back
    throw e;
  }
};

/** INVPCID r64/r32, m128. */
export const invpcid: Handler = (insn, ctx) => {
  if (ctx.mode.kind === 'real' || ctx.mode.kind === 'vm86') throw ud('invpcid in real or virtual-8086 mode');
  if (ctx.mode.cpl > 0) throw gp0('invpcid at CPL > 0');
  const reg = insn.modrm?.reg ?? 0;
  const type = ctx.gpr(reg, ctx.mode.long ? 8 : 4);
  const desc = ctx.readOperand(16);
  const d = bytesToBigint(desc);
  const pcid = d & 0xfffn;
  const reserved = (d >> 12n) & ((1n << 52n) - 1n);
  const linear = d >> 64n;
  if (type > 3n) throw gp0(`invpcid: type ${type} is not 0-3`);
  if (reserved !== 0n) throw gp0('invpcid: descriptor bits 63:12 are not zero');
  if (type === 0n && ctx.mode.long && !isCanonical64(linear, ctx)) throw gp0('invpcid: non-canonical linear address');
  if ((type === 0n || type === 1n) && pcid !== 0n && !hasBit(ctx.cpu.sregs.cr4, CR4.PCIDE)) throw gp0('invpcid: PCID ≠ 0 with CR4.PCIDE clear');
  throw new Unsupported(
    `invpcid (type ${type}): KVM offers userspace no way to invalidate the guest's TLB entries; ` +
      'hide INVPCID from the guest (CPUID leaf 7 EBX bit 10, or Linux clearcpuid=invpcid) so the kernel uses MOV CR3/INVLPG instead',
  );
};

function isCanonical64(v: bigint, ctx: ExecContext): boolean {
  const bits = hasBit(ctx.cpu.sregs.cr4, CR4.LA57) ? 57n : 48n;
  const top = v >> (bits - 1n);
  return top === 0n || top === (1n << (65n - bits)) - 1n;
}

/** FCW's initial value (FNINIT, x87 component init). */
const X87_INIT_FCW = 0x037f;

/** XRSTOR mem: restore the components EDX:EAX & XCR0 selects from the XSAVE area. */
export const xrstor: Handler = (insn, ctx) => {
  requireXsave(ctx, 'xrstor');
  if (hasBit(ctx.cpu.sregs.cr0, CR0.TS)) throw nm('xrstor with CR0.TS set');
  const x0 = xcr0(ctx, 'xrstor');
  if (!ctx.host.getXsave || !ctx.host.setXsave) throw new Unsupported('xrstor: the host gave no access to the XSAVE state (KVM_GET_XSAVE/KVM_SET_XSAVE)');
  const rfbm = ((ctx.gpr(2, 4) << 32n) | ctx.gpr(0, 4)) & x0;
  // the legacy area and header (64-byte aligned; a fault or misalignment is the instruction's)
  const head = ctx.readOperand(XSAVE_HEADER + 64, { gp: 64 });
  const hv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const xstateBv = hv.getBigUint64(XSAVE_HEADER, true);
  const xcompBv = hv.getBigUint64(XSAVE_HEADER + 8, true);
  const compacted = (xcompBv >> 63n) === 1n;
  const restZero = (from: number) => head.subarray(XSAVE_HEADER + from, XSAVE_HEADER + 64).every((b) => b === 0);
  if (!compacted) {
    if ((xstateBv & ~x0) !== 0n) throw gp0('xrstor: XSTATE_BV names a component XCR0 does not enable');
    if (xcompBv !== 0n || !restZero(16)) throw gp0('xrstor: header bytes 23:8 are not zero (standard form)');
  } else {
    const comp = xcompBv & ((1n << 63n) - 1n);
    if ((comp & ~x0) !== 0n) throw gp0('xrstor: XCOMP_BV names a component XCR0 does not enable');
    if ((xstateBv & ~comp) !== 0n) throw gp0('xrstor: XSTATE_BV names a component XCOMP_BV does not');
    if (!restZero(16)) throw gp0('xrstor: header bytes 63:16 are not zero (compacted form)');
  }
  const load = (i: number) => ((rfbm >> BigInt(i)) & 1n) === 1n && ((xstateBv >> BigInt(i)) & 1n) === 1n;
  for (let i = 3; i < 64; i++) {
    if (load(i)) throw new Unsupported(`xrstor: loading state component ${i} is not emulated (only x87, SSE and AVX are)`);
  }
  // MXCSR: standard form loads it when RFBM[1] or RFBM[2]; compacted when it loads component 1 or 2
  const mxcsrLoaded = compacted ? load(1) || load(2) : (rfbm & 6n) !== 0n;
  const mxcsr = hv.getUint32(24, true);
  if (mxcsrLoaded && (mxcsr & ~MXCSR_MASK) !== 0) throw gp0(`xrstor: reserved MXCSR bits in 0x${mxcsr.toString(16)}`);
  let avx: Uint8Array | undefined;
  if (load(2)) {
    // standard form: at its fixed offset; compacted: the first extended component is at 576
    // compacted form: component 2 is the lowest extended component XCOMP_BV can name, so it is at 576 too
    avx = ctx.readOperandAt(AVX_OFFSET, AVX_SIZE);
  }

  const img = ctx.host.getXsave().slice();
  if (img.length < KVM_XSAVE_SIZE) throw new Unsupported('xrstor: the host XSAVE image is shorter than struct kvm_xsave');
  const iv = new DataView(img.buffer, img.byteOffset, img.byteLength);
  const regs = ctx.mode.long ? 16 : 8;
  let bv = iv.getBigUint64(XSAVE_HEADER, true);
  if ((rfbm & 1n) !== 0n) {
    if (load(0)) {
      img.set(head.subarray(0, 4), 0); // FCW, FSW
      iv.setUint8(4, head[4]); // abridged FTW
      iv.setUint16(6, hv.getUint16(6, true), true); // FOP
      if (insn.rexW) {
        iv.setBigUint64(8, hv.getBigUint64(8, true), true);
        iv.setBigUint64(16, hv.getBigUint64(16, true), true);
      } else {
        iv.setBigUint64(8, BigInt(hv.getUint32(8, true)), true);
        iv.setBigUint64(16, BigInt(hv.getUint32(16, true)), true);
      }
      img.set(head.subarray(32, 160), 32); // ST0-ST7
    } else {
      iv.setUint16(0, X87_INIT_FCW, true);
      iv.setUint16(2, 0, true);
      iv.setUint8(4, 0);
      iv.setUint16(6, 0, true);
      iv.setBigUint64(8, 0n, true);
      iv.setBigUint64(16, 0n, true);
      img.fill(0, 32, 160);
    }
    bv |= 1n;
  }
  if ((rfbm & 2n) !== 0n) {
    if (load(1)) img.set(head.subarray(160, 160 + 16 * regs), 160);
    else img.fill(0, 160, 160 + 16 * regs);
    bv |= 2n;
  }
  if (mxcsrLoaded) iv.setUint32(24, mxcsr, true);
  if ((rfbm & 4n) !== 0n) {
    if (avx) img.set(avx.subarray(0, 16 * regs), AVX_OFFSET);
    else img.fill(0, AVX_OFFSET, AVX_OFFSET + 16 * regs);
    bv |= 4n;
  }
  // components 3 and up in RFBM (none loaded): their initial state
  bv &= ~(rfbm & ~7n);
  iv.setBigUint64(XSAVE_HEADER, bv, true);
  iv.setBigUint64(XSAVE_HEADER + 8, 0n, true); // KVM's image is in the standard form
  ctx.host.setXsave(img);
};

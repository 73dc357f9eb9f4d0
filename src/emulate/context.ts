/**
 * The execution context of one emulated instruction: the CPU mode, register state, lazily
 * loaded FPU state and guest memory, with helpers to read and write the instruction's memory
 * operand through segmentation and paging. Helpers throw {@link Fault}/{@link Unsupported}.
 */
import { effectiveAddress, segmentLinear, wrapIp, type SegmentAccess } from './address.js';
import type { CpuMode } from './cpu-mode.js';
import type { DecodedInsn } from './decoder-types.js';
import { Fault, Unsupported, VECTOR, gp0, nm, ud } from './fault.js';
import { CR0, CR4, RFLAGS, hasBit } from './flags.js';
import { LazyFpu } from './fpu-state.js';
import type { CpuState, EmulatorHost } from './host.js';
import { translateRange, type LinearChunk, type LinearFailure, type PagingContext } from './paging.js';
import { readGpr, writeGpr } from './registers.js';

/** Alignment rules for a memory operand. */
export interface AlignOptions {
  /** Required alignment in bytes; a misaligned operand raises #GP(0). */
  gp?: number;
  /** Natural alignment for alignment checking (#AC(0) at CPL 3 with CR0.AM and RFLAGS.AC). */
  ac?: number;
}

/** Everything an instruction implementation may use. */
export class ExecContext {
  readonly fpu: LazyFpu;
  /** The address of the next instruction (RIP + length, wrapped to the code size). */
  readonly nextRip: bigint;

  constructor(
    readonly cpu: CpuState,
    readonly host: EmulatorHost,
    readonly mode: CpuMode,
    readonly insn: DecodedInsn,
    fpu?: LazyFpu,
  ) {
    this.fpu = fpu ?? new LazyFpu(host);
    this.nextRip = wrapIp(mode, cpu.regs.rip + BigInt(insn.length));
  }

  /** The paging context for data accesses. */
  get paging(): PagingContext {
    const s = this.cpu.sregs;
    return { cr0: s.cr0, cr3: s.cr3, cr4: s.cr4, efer: s.efer, cpl: this.mode.cpl, ac: hasBit(this.cpu.regs.rflags, RFLAGS.AC) };
  }

  /** RFLAGS. */
  get rflags(): bigint {
    return this.cpu.regs.rflags;
  }
  set rflags(v: bigint) {
    this.cpu.regs.rflags = BigInt.asUintN(64, v) | 2n; // bit 1 is always set
  }

  /** Read a GPR by x86 number. */
  gpr(index: number, size: 1 | 2 | 4 | 8): bigint {
    return readGpr(this.cpu.regs, index, size, this.insn.rex !== 0);
  }
  /** Write a GPR by x86 number (32-bit writes zero bits 63:32). */
  setGpr(index: number, size: 1 | 2 | 4 | 8, value: bigint): void {
    writeGpr(this.cpu.regs, index, size, value, this.insn.rex !== 0);
  }

  /** The linear address of the instruction's memory operand, after segmentation checks. */
  operandLinear(size: number, access: SegmentAccess): bigint {
    const mem = this.insn.mem;
    if (!mem) throw ud('instruction has no memory operand');
    const ea = effectiveAddress(mem, this.cpu.regs, this.insn.addressSize, this.nextRip);
    return segmentLinear(this.mode, this.cpu.sregs, mem.segment, ea, size, access);
  }

  /** Translate the memory operand for `access`, applying alignment rules. */
  translateOperand(size: number, access: SegmentAccess, align: AlignOptions = {}): { linear: bigint; chunks: LinearChunk[] } {
    const linear = this.operandLinear(size, access);
    if (align.gp && linear % BigInt(align.gp) !== 0n) throw gp0(`${this.insn.mnemonic}: memory operand 0x${linear.toString(16)} is not ${align.gp}-byte aligned`);
    const t = translateRange(this.host.memory, this.paging, linear, size, {
      write: access !== 'read',
      user: this.mode.cpl === 3,
      fetch: false,
    });
    if (!t.ok) throw failureToThrowable(t);
    if (align.ac && linear % BigInt(align.ac) !== 0n && this.alignmentChecking) throw new Fault(VECTOR.AC, 0, undefined, 'alignment check');
    return { linear, chunks: t.chunks };
  }

  /** True if alignment checking is active (CR0.AM, RFLAGS.AC, CPL 3). */
  get alignmentChecking(): boolean {
    return this.mode.cpl === 3 && hasBit(this.cpu.sregs.cr0, CR0.AM) && hasBit(this.cpu.regs.rflags, RFLAGS.AC);
  }

  /** Read `size` bytes of the memory operand. */
  readOperand(size: number, align: AlignOptions = {}): Uint8Array {
    const { chunks } = this.translateOperand(size, 'read', align);
    const out = new Uint8Array(size);
    let o = 0;
    for (const c of chunks) {
      out.set(this.host.memory.readBytes(c.gpa, c.length), o);
      o += c.length;
    }
    return out;
  }

  /**
   * Read `size` bytes at `offset` past the start of the memory operand (segment checks cover
   * the operand's first `offset + size` bytes).
   */
  readOperandAt(offset: number, size: number): Uint8Array {
    const linear = this.operandLinear(offset + size, 'read') + BigInt(offset);
    const at = this.mode.ia32e ? BigInt.asUintN(64, linear) : linear & 0xffff_ffffn;
    const t = translateRange(this.host.memory, this.paging, at, size, { write: false, user: this.mode.cpl === 3, fetch: false });
    if (!t.ok) throw failureToThrowable(t);
    const out = new Uint8Array(size);
    let o = 0;
    for (const c of t.chunks) {
      out.set(this.host.memory.readBytes(c.gpa, c.length), o);
      o += c.length;
    }
    return out;
  }

  /** Write the memory operand (every page is checked before any byte is written). */
  writeOperand(bytes: Uint8Array, align: AlignOptions = {}): void {
    const { chunks } = this.translateOperand(bytes.length, 'write', align);
    let o = 0;
    for (const c of chunks) {
      this.host.memory.writeBytes(c.gpa, bytes.subarray(o, o + c.length));
      o += c.length;
    }
  }

  /** Raise #UD/#NM unless SSE instructions may execute (SDM Vol. 3 Table 2-2: CR0.EM, CR4.OSFXSR, CR0.TS). */
  requireSse(): void {
    const s = this.cpu.sregs;
    if (hasBit(s.cr0, CR0.EM)) throw ud('SSE with CR0.EM set');
    if (!hasBit(s.cr4, CR4.OSFXSR)) throw ud('SSE with CR4.OSFXSR clear');
    if (hasBit(s.cr0, CR0.TS)) throw nm('SSE with CR0.TS set');
  }
}

/** Convert a failed linear access into the Fault/Unsupported to throw. */
export function failureToThrowable(f: LinearFailure): Fault | Unsupported {
  if (f.fault) {
    if (f.fault.vector === 14) return new Fault(14, f.fault.errorCode, f.fault.cr2, 'page fault');
    return new Fault(13, 0, undefined, 'non-canonical address');
  }
  return new Unsupported(`memory operand at guest-physical 0x${f.unbackedGpa.toString(16)} is not RAM (MMIO?)`);
}

/**
 * The emulator entry point: finish, in userspace, an instruction KVM's emulator failed on
 * (an "emulation failure" exit carrying the instruction bytes), then let the guest resume.
 *
 * `emulate` decodes the bytes in the vCPU's current mode, runs the implementation against
 * the register state (mutated in place), the lazily loaded FPU state (written back through
 * the host at most once, only if it changed) and guest memory (through the guest's page
 * tables), and reports what to do next. It never throws: hostile bytes, page tables or
 * addresses produce `exception` or `unsupported` results, as does any internal error.
 *
 * State on return:
 * - `emulated`: RIP is past the instruction (or at the target of INT n / IRET), RFLAGS.RF is
 *   clear (IRET: as loaded); write back regs/sregs as flagged. If RFLAGS.TF was set before the instruction the result is instead a #DB trap.
 * - `exception` with `trap: true` (INT3's #BP, single-step #DB): the instruction completed as
 *   for `emulated`; write back the registers, then inject the exception.
 * - `exception` without `trap` (a fault): registers, FPU state and memory are unchanged
 *   (except accessed bits of guest paging structures); inject the exception (set CR2 for #PF).
 * - `unsupported`: nothing changed.
 */
import type { KvmRegs, KvmSregs } from '../kvm/structs.js';
import { wrapIp } from './address.js';
import { ExecContext } from './context.js';
import { cpuMode, type CpuMode } from './cpu-mode.js';
import { decode } from './decoder.js';
import { MAX_INSN_LENGTH, MNEMONICS, type DecodedInsn } from './decoder-types.js';
import { fetchInstruction } from './fetch.js';
import { Fault, Unsupported, VECTOR } from './fault.js';
import { RFLAGS, hasBit } from './flags.js';
import { LazyFpu } from './fpu-state.js';
import type { CpuState, EmulatorHost } from './host.js';
import { HANDLERS } from './instructions/index.js';

export type { CpuState, EmulatorHost, CmpxchgResult } from './host.js';

/** What happened. */
export type EmulationResult =
  | { kind: 'emulated'; mnemonic: string; length: number; regsChanged: boolean; sregsChanged: boolean; fpuChanged: boolean }
  | { kind: 'exception'; mnemonic?: string; vector: number; errorCode?: number; cr2?: bigint; trap?: boolean }
  | { kind: 'unsupported'; mnemonic?: string; reason: string; bytes: Uint8Array };

/** Options for {@link emulate}. */
export interface EmulateOptions {
  /**
   * Called when the given bytes end mid-instruction: return at least `n` instruction bytes
   * counted from the instruction's first byte (or undefined). Without it, or when it fails,
   * the emulator fetches the bytes from guest memory at CS:RIP itself.
   */
  fetchMore?: (n: number) => Uint8Array | undefined;
}


/** Emulate one instruction. See the module documentation for the state on return. */
export function emulate(bytes: Uint8Array, cpu: CpuState, host: EmulatorHost, opts: EmulateOptions = {}): EmulationResult {
  const given = bytes instanceof Uint8Array ? bytes.slice(0, MAX_INSN_LENGTH) : new Uint8Array(0);
  try {
    return emulateUnchecked(given, cpu, host, opts);
  } catch (e) {
    return { kind: 'unsupported', reason: `internal error: ${e instanceof Error ? e.message : String(e)}`, bytes: given };
  }
}

function emulateUnchecked(bytes: Uint8Array, cpu: CpuState, host: EmulatorHost, opts: EmulateOptions): EmulationResult {
  const mode = cpuMode(cpu.sregs, cpu.regs.rflags);
  let d = decode(bytes, mode);
  for (let tries = 0; d.kind === 'need-more-bytes' && tries <= MAX_INSN_LENGTH; tries++) {
    const f = fetchInstruction(cpu, host, mode, bytes, d.need, opts.fetchMore);
    if (!f.ok) {
      if (f.fault) return { kind: 'exception', vector: f.fault.vector, errorCode: f.fault.errorCode, cr2: f.fault.cr2 };
      return { kind: 'unsupported', reason: f.reason, bytes };
    }
    bytes = f.bytes;
    d = decode(bytes, mode);
  }
  switch (d.kind) {
    case 'need-more-bytes':
      return { kind: 'unsupported', reason: 'instruction bytes unavailable', bytes };
    case 'unknown':
      return { kind: 'unsupported', reason: d.reason, bytes: bytes.slice(0, d.length ?? bytes.length) };
    case 'exception': {
      const r: EmulationResult = { kind: 'exception', vector: d.vector };
      if (d.mnemonic) r.mnemonic = d.mnemonic;
      if (d.errorCode !== undefined) r.errorCode = d.errorCode;
      return r;
    }
    case 'insn':
      return execute(d, bytes, cpu, host, mode);
  }
}

function snapshotSregs(s: KvmSregs): KvmSregs {
  return structuredClone(s);
}

function sameJson(a: unknown, b: unknown): boolean {
  const rep = (_k: string, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v);
  return JSON.stringify(a, rep) === JSON.stringify(b, rep);
}

function restore(cpu: CpuState, regs: KvmRegs, sregs: KvmSregs): void {
  Object.assign(cpu.regs, regs);
  Object.assign(cpu.sregs, sregs);
}

function execute(insn: DecodedInsn, bytes: Uint8Array, cpu: CpuState, host: EmulatorHost, mode: CpuMode): EmulationResult {
  const regs0 = { ...cpu.regs };
  const sregs0 = snapshotSregs(cpu.sregs);
  const tf = hasBit(cpu.regs.rflags, RFLAGS.TF);
  const fpu = new LazyFpu(host);
  let mnemonic: string = insn.mnemonic;
  let length = insn.length;
  let trap: number | undefined;
  let branched = false;
  let noSingleStep = false;
  try {
    const ctx = new ExecContext(cpu, host, mode, insn, fpu);
    const out = HANDLERS[insn.mnemonic](insn, ctx);
    cpu.regs.rip = ctx.nextRip;
    if (out) {
      trap = out.trap;
      if (out.mnemonic) mnemonic = out.mnemonic;
      if (out.rip !== undefined) {
        cpu.regs.rip = out.rip;
        branched = true;
      }
      noSingleStep = out.noSingleStep === true;
    }
    // FWAIT directly followed by FNINIT/FNCLEX (FINIT/FCLEX): finish both when not single-stepping.
    if (insn.mnemonic === 'fwait' && !tf) {
      const next = decode(bytes.subarray(insn.length), mode);
      if (next.kind === 'insn' && (next.mnemonic === 'fninit' || next.mnemonic === 'fnclex')) {
        try {
          const ctx2 = new ExecContext(cpu, host, mode, next, fpu);
          HANDLERS[next.mnemonic](next, ctx2);
          cpu.regs.rip = ctx2.nextRip;
          mnemonic = next.mnemonic === 'fninit' ? 'finit' : 'fclex';
          length += next.length;
        } catch (e) {
          if (!(e instanceof Fault)) throw e;
          // Leave the second instruction for the guest to execute (and fault on) by itself.
        }
      }
    }
  } catch (e) {
    fpu.revert();
    restore(cpu, regs0, sregs0);
    if (e instanceof Fault) {
      const r: EmulationResult = { kind: 'exception', mnemonic, vector: e.vector };
      if (e.errorCode !== undefined) r.errorCode = e.errorCode;
      if (e.cr2 !== undefined) r.cr2 = e.cr2;
      return r;
    }
    const reason = e instanceof Unsupported ? e.reason : `internal error in ${mnemonic}: ${e instanceof Error ? e.message : String(e)}`;
    return { kind: 'unsupported', mnemonic, reason, bytes: bytes.slice(0, insn.length) };
  }
  // a control transfer leaves RIP in the new code segment's width (already wrapped by the handler)
  // (and RFLAGS.RF as the handler set it: IRET loads it, INT n clears it)
  if (!branched) {
    cpu.regs.rip = wrapIp(mode, cpu.regs.rip);
    cpu.regs.rflags &= ~RFLAGS.RF;
  }
  const fpuChanged = fpu.flush();
  if (trap !== undefined) return { kind: 'exception', mnemonic, vector: trap, trap: true };
  if (tf && !noSingleStep) return { kind: 'exception', mnemonic, vector: VECTOR.DB, trap: true };
  const regsChanged = (Object.keys(regs0) as (keyof KvmRegs)[]).some((k) => regs0[k] !== cpu.regs[k]);
  const sregsChanged = !sameJson(sregs0, cpu.sregs);
  return { kind: 'emulated', mnemonic, length, regsChanged, sregsChanged, fpuChanged };
}

/**
 * VM exits: a discriminated union on `kind`, decoded from the vCPU's kvm_run area.
 *
 * For an IN (`kind: 'inout'`, `in: true`) or an MMIO read (`kind: 'mmio'`, `write: false`)
 * the caller fills `data` before the next run: `data` is a view straight into kvm_run, so
 * writing it is the answer (use {@link setExitValue} for a number). Views are valid until
 * the vCPU runs again.
 */
import { KVM_EXIT, KVM_INTERNAL_ERROR, KVM_SYSTEM_EVENT } from './kvm/constants.js';
import type { Access } from './bus/dispatch.js';

/** Port I/O: `data` holds `bytes × count` bytes (count > 1 for `rep ins/outs`). */
export interface InoutExit {
  kind: 'inout'; vcpu: number; port: number; bytes: 1 | 2 | 4; in: boolean; count: number;
  /** For OUT, the first value written; for IN, 0 until answered. */
  value: number;
  data: Uint8Array;
}
/** An access to guest-physical memory with no RAM behind it. */
export interface MmioExit {
  kind: 'mmio'; vcpu: number; gpa: number; bytes: 1 | 2 | 4 | 8; write: boolean;
  /** For a write, the value written (little-endian); for a read, 0n until answered. */
  value: bigint;
  data: Uint8Array;
}
/** HLT reached userspace (no in-kernel local APIC, or the runner saw a halt that cannot end). */
export interface HltExit { kind: 'hlt'; vcpu: number; rflags?: bigint }
/** Triple fault or similar: the guest is dead. */
export interface ShutdownExit { kind: 'shutdown'; vcpu: number }
/** A debug exit: single-step (mtrap_exit), breakpoint or watchpoint. */
export interface DebugExit { kind: 'debug'; vcpu: number; exception: number; pc: bigint; dr6: bigint; dr7: bigint }
/**
 * KVM gave up (suberror 1 = its instruction emulator failed). For emulation failures with
 * instruction bytes, `insn` holds them.
 */
export interface InternalErrorExit {
  kind: 'internal-error'; vcpu: number; suberror: number; suberrorName: string; data: bigint[]; insn?: Uint8Array;
  /** A one-line human-readable description. */
  message: string;
}
/** VM entry failed (invalid guest state). */
export interface FailEntryExit { kind: 'fail-entry'; vcpu: number; reason: bigint; cpu: number }
/** The guest asked for shutdown/reset (e.g. PSCI, or KVM's own system events). */
export interface SystemEventExit { kind: 'system-event'; vcpu: number; type: number; typeName: string; data: bigint[] }
/** KVM_RUN returned early because of a kick or a signal. */
export interface InterruptedExit { kind: 'interrupted'; vcpu: number }
/** An exception exit (real-mode emulation on some hosts). */
export interface ExceptionExit { kind: 'exception'; vcpu: number; exception: number; errorCode: number }
/** Any other exit reason. */
export interface UnknownExit { kind: 'unknown'; vcpu: number; reason: number; hardwareReason: bigint }

/** Every exit `vm.run` and the runner report. */
export type VmExit =
  | InoutExit | MmioExit | HltExit | ShutdownExit | DebugExit | InternalErrorExit | FailEntryExit
  | SystemEventExit | InterruptedExit | ExceptionExit | UnknownExit;

/** The `kind` values of {@link VmExit}. */
export type VmExitKind = VmExit['kind'];

/** Offsets into struct kvm_run (x86-64). */
export const RUN = {
  immediateExit: 1, exitReason: 8, readyForInjection: 12, ifFlag: 13, cr8: 16, apicBase: 24,
  u: 32, ioDirection: 32, ioSize: 33, ioPort: 34, ioCount: 36, ioDataOffset: 40,
  mmioPhysAddr: 32, mmioData: 40, mmioLen: 48, mmioIsWrite: 52,
  hwReason: 32, failReason: 32, failCpu: 40,
  internalSuberror: 32, internalNdata: 36, internalData: 40, emuFlags: 40, emuInsnSize: 48, emuInsnBytes: 49,
  debugException: 32, debugPc: 40, debugDr6: 48, debugDr7: 56,
  eventType: 32, eventNdata: 36, eventData: 40,
  exException: 32, exErrorCode: 36,
} as const;

const SUBERROR_NAMES: Record<number, string> = {
  [KVM_INTERNAL_ERROR.EMULATION]: 'emulation failure',
  [KVM_INTERNAL_ERROR.SIMUL_EX]: 'simultaneous exceptions',
  [KVM_INTERNAL_ERROR.DELIVERY_EV]: 'event delivery failed',
  [KVM_INTERNAL_ERROR.UNEXPECTED_EXIT_REASON]: 'unexpected exit reason',
};
const EVENT_NAMES: Record<number, string> = {
  [KVM_SYSTEM_EVENT.SHUTDOWN]: 'shutdown', [KVM_SYSTEM_EVENT.RESET]: 'reset', [KVM_SYSTEM_EVENT.CRASH]: 'crash',
};

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

function leValue(bytes: Uint8Array, n: number): bigint {
  let v = 0n;
  for (let i = Math.min(n, bytes.length) - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

/**
 * The one exit peek both threads use for the common exits: if the exit in `view` (a kvm_run
 * area of `runLength` bytes) is port I/O or MMIO, fill `out` with its access — `out.data`
 * becomes `view`, so an answer written there lands in kvm_run — and return the address
 * space. Returns undefined for any other exit, and for a malformed one (a width other than
 * 1/2/4 for port I/O or 1/2/4/8 for MMIO, no elements, data outside the area).
 */
export function peekAccess(view: DataView, runLength: number, out: Access): 'pio' | 'mmio' | undefined {
  const reason = view.getUint32(RUN.exitReason, true);
  if (reason === KVM_EXIT.IO) {
    const size = view.getUint8(RUN.ioSize);
    const count = view.getUint32(RUN.ioCount, true);
    // data_offset is a u64; a high half other than 0 is outside any kvm_run area
    const off = view.getUint32(RUN.ioDataOffset, true);
    if (view.getUint32(RUN.ioDataOffset + 4, true) !== 0) return undefined;
    if ((size !== 1 && size !== 2 && size !== 4) || count === 0 || off + size * count > runLength) return undefined;
    out.addr = view.getUint16(RUN.ioPort, true);
    out.size = size;
    out.count = count;
    out.write = view.getUint8(RUN.ioDirection) !== 0;
    out.offset = off;
    out.data = view;
    return 'pio';
  }
  if (reason === KVM_EXIT.MMIO) {
    const len = view.getUint32(RUN.mmioLen, true);
    if (len !== 1 && len !== 2 && len !== 4 && len !== 8) return undefined;
    out.addr = view.getUint32(RUN.mmioPhysAddr, true) + view.getUint32(RUN.mmioPhysAddr + 4, true) * 2 ** 32;
    out.size = len;
    out.count = 1;
    out.write = view.getUint8(RUN.mmioIsWrite) !== 0;
    out.offset = RUN.mmioData;
    out.data = view;
    return 'mmio';
  }
  return undefined;
}

/**
 * Decode the exit in a kvm_run area. `run` is the whole vCPU mmap (kvm_run plus data pages);
 * every kernel-provided offset and length is checked against it.
 */
export function decodeExit(vcpu: number, run: Uint8Array, view: DataView = new DataView(run.buffer, run.byteOffset, run.byteLength)): VmExit {
  const reason = view.getUint32(RUN.exitReason, true);
  switch (reason) {
    case KVM_EXIT.IO:
    case KVM_EXIT.MMIO: {
      const a = { addr: 0, size: 1, count: 1, write: false, data: view, offset: 0 } as Access;
      const space = peekAccess(view, run.length, a);
      if (!space) return { kind: 'unknown', vcpu, reason, hardwareReason: 0n };
      const data = run.subarray(a.offset, a.offset + a.size * a.count);
      if (space === 'pio') {
        const value = a.write ? Number(leValue(data, a.size)) : 0;
        return { kind: 'inout', vcpu, port: a.addr, bytes: a.size as 1 | 2 | 4, in: !a.write, count: a.count, value, data };
      }
      return { kind: 'mmio', vcpu, gpa: a.addr, bytes: a.size, write: a.write, value: a.write ? leValue(data, a.size) : 0n, data };
    }
    case KVM_EXIT.HLT:
      return { kind: 'hlt', vcpu };
    case KVM_EXIT.SHUTDOWN:
      return { kind: 'shutdown', vcpu };
    case KVM_EXIT.DEBUG:
      return {
        kind: 'debug', vcpu, exception: view.getUint32(RUN.debugException, true), pc: view.getBigUint64(RUN.debugPc, true),
        dr6: view.getBigUint64(RUN.debugDr6, true), dr7: view.getBigUint64(RUN.debugDr7, true),
      };
    case KVM_EXIT.INTERNAL_ERROR: {
      const suberror = view.getUint32(RUN.internalSuberror, true);
      const ndata = Math.min(view.getUint32(RUN.internalNdata, true), 16);
      const data: bigint[] = [];
      for (let i = 0; i < ndata; i++) data.push(view.getBigUint64(RUN.internalData + i * 8, true));
      const name = SUBERROR_NAMES[suberror] ?? `suberror ${suberror}`;
      let insn: Uint8Array | undefined;
      // KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES (bit 0 of flags): bytes follow.
      if (suberror === KVM_INTERNAL_ERROR.EMULATION && ndata >= 3 && (view.getBigUint64(RUN.emuFlags, true) & 1n) !== 0n) {
        const n = Math.min(view.getUint8(RUN.emuInsnSize), 15);
        insn = run.slice(RUN.emuInsnBytes, RUN.emuInsnBytes + n);
      }
      const message = insn
        ? `KVM ${name} on vCPU ${vcpu}: instruction bytes ${hex(insn) || '(none)'}`
        : `KVM internal error on vCPU ${vcpu}: ${name}${data.length ? ` (data ${data.map((d) => '0x' + d.toString(16)).join(', ')})` : ''}`;
      return { kind: 'internal-error', vcpu, suberror, suberrorName: name, data, insn, message };
    }
    case KVM_EXIT.FAIL_ENTRY:
      return { kind: 'fail-entry', vcpu, reason: view.getBigUint64(RUN.failReason, true), cpu: view.getUint32(RUN.failCpu, true) };
    case KVM_EXIT.SYSTEM_EVENT: {
      const type = view.getUint32(RUN.eventType, true);
      const ndata = Math.min(view.getUint32(RUN.eventNdata, true), 16);
      const data: bigint[] = [];
      for (let i = 0; i < ndata; i++) data.push(view.getBigUint64(RUN.eventData + i * 8, true));
      return { kind: 'system-event', vcpu, type, typeName: EVENT_NAMES[type] ?? `type ${type}`, data };
    }
    case KVM_EXIT.INTR:
      return { kind: 'interrupted', vcpu };
    case KVM_EXIT.EXCEPTION:
      return { kind: 'exception', vcpu, exception: view.getUint32(RUN.exException, true), errorCode: view.getUint32(RUN.exErrorCode, true) };
    default:
      return { kind: 'unknown', vcpu, reason, hardwareReason: view.getBigUint64(RUN.hwReason, true) };
  }
}

/**
 * Answer an IN or an MMIO read with a value (little-endian, truncated to the access width;
 * for `rep ins` every element gets the value).
 */
export function setExitValue(exit: InoutExit | MmioExit, value: number | bigint): void {
  const width = exit.bytes;
  let v = BigInt.asUintN(64, BigInt(value));
  const d = exit.data;
  for (let i = 0; i < d.length; i++) {
    const k = i % width;
    if (k === 0) v = BigInt.asUintN(64, BigInt(value));
    d[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/** A short one-line description of an exit, for traces. */
export function describeExit(e: VmExit): string {
  switch (e.kind) {
    case 'inout':
      return `vcpu${e.vcpu} ${e.in ? 'in' : 'out'}${e.bytes === 1 ? 'b' : e.bytes === 2 ? 'w' : 'l'} port 0x${e.port.toString(16)}${e.in ? '' : ` value 0x${e.value.toString(16)}`}${e.count > 1 ? ` ×${e.count}` : ''}`;
    case 'mmio':
      return `vcpu${e.vcpu} mmio ${e.write ? 'write' : 'read'} ${e.bytes}B at 0x${e.gpa.toString(16)}${e.write ? ` value 0x${e.value.toString(16)}` : ''}`;
    case 'internal-error':
      return e.message;
    case 'debug':
      return `vcpu${e.vcpu} debug at 0x${e.pc.toString(16)}`;
    case 'system-event':
      return `vcpu${e.vcpu} system event ${e.typeName}`;
    case 'unknown':
      return `vcpu${e.vcpu} unknown exit reason ${e.reason}`;
    case 'fail-entry':
      return `vcpu${e.vcpu} VM entry failed (hardware reason 0x${e.reason.toString(16)})`;
    default:
      return `vcpu${e.vcpu} ${e.kind}`;
  }
}

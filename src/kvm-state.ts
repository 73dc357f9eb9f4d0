/**
 * KVM-level snapshot state: everything KVM holds for one vCPU ({@link KvmVcpuState}) and for
 * the VM's in-kernel devices ({@link KvmVmState}), how it is read from and written to the
 * native fds (the save and restore ORDER lives here, nowhere else), and a JSON-safe codec
 * that validates hostile input completely before anything is restored.
 *
 * `Vm.saveVcpuState` / `restoreVcpuState` / `saveVmState` / `restoreVmState` (src/vm.ts) are
 * the entry points; they check the vCPU is not inside KVM_RUN and call into this module.
 * Device state, guest memory and the snapshot file format are not here.
 *
 * Restore order (see {@link applyVcpuState}) follows Firecracker's `KvmVcpu::restore_state`
 * and Cloud Hypervisor's `set_state`: CPUID (set when the Vm creates the vCPU), TSC rate,
 * MP state, regs, sregs, XSAVE (or FPU), XCRs, debug registers, LAPIC, MSRs (IA32_TSC first,
 * IA32_TSC_DEADLINE last), vCPU events.
 */
import type { NativeVcpuFd, NativeVmFd } from './kvm/native.js';
import {
  KVM_IRQCHIP, REGS_FIELDS, SIZEOF, SREGS_SEGMENTS, STATE_SIZEOF, decodeClock, decodeMsrs, decodeRegs, decodeSregs, encodeClock,
  encodeMsrs, encodeRegs, encodeSregs, type KvmClockData, type KvmRegs, type KvmSregs,
} from './kvm/structs.js';
import { errnoError } from './errors.js';

/** IA32_TSC: the vCPU's time-stamp counter. */
export const MSR_IA32_TSC = 0x10;
/** IA32_TSC_DEADLINE: restored after IA32_TSC and the LAPIC, or a pending deadline is lost. */
export const MSR_IA32_TSC_DEADLINE = 0x6e0;
/** KVM refuses more MSRs than this in one KVM_GET_MSRS / KVM_SET_MSRS (KVM_MAX_MSR_ENTRIES). */
const MSR_CHUNK = 256;
/** Largest XSAVE image accepted from a snapshot (AMX hosts need ~11 KiB). */
const XSAVE_MAX = 1 << 20;
/** Highest KVM_MP_STATE_* value (KVM_MP_STATE_SUSPENDED). */
const MP_STATE_MAX = 10;
/** The TSC rate may differ this much (parts per million) before restore scales it (Firecracker's tolerance). */
const TSC_KHZ_TOLERANCE_PPM = 250;

/** One MSR: its index and value. */
export interface KvmMsr {
  /** The MSR number (ECX of RDMSR). */
  index: number;
  /** Its 64-bit value. */
  data: bigint;
}

/**
 * Everything KVM holds for one vCPU, so that a guest restored from it does not notice
 * (`Vm.saveVcpuState`). Raw structs are the kernel's bytes (x86-64 layout).
 */
export interface KvmVcpuState {
  /** struct kvm_regs. */
  regs: KvmRegs;
  /** struct kvm_sregs (segments, control registers, EFER, APIC base). */
  sregs: KvmSregs;
  /** The XSAVE image (x87, SSE, AVX …; KVM_GET_XSAVE2), or null where KVM has no XSAVE: then {@link fpu}. */
  xsave: Uint8Array | null;
  /** struct kvm_fpu, only where KVM has no XSAVE (exactly one of xsave and fpu is set). */
  fpu: Uint8Array | null;
  /** struct kvm_xcrs (XCR0), or null where KVM has no KVM_CAP_XCRS. */
  xcrs: Uint8Array | null;
  /**
   * The MSRs of KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS reads for this vCPU, in that order,
   * without IA32_TSC (that is {@link tsc}).
   */
  msrs: KvmMsr[];
  /** IA32_TSC (MSR 0x10). */
  tsc: bigint;
  /** The guest TSC rate in kHz (KVM_GET_TSC_KHZ), or null where KVM cannot report it. */
  tscKhz: number | null;
  /** struct kvm_lapic_state (1024 bytes), or null without the in-kernel irqchip. */
  lapic: Uint8Array | null;
  /** struct kvm_vcpu_events: pending and injected exceptions, interrupts, NMIs, SIPI vector, SMM. */
  events: Uint8Array;
  /** KVM_MP_STATE_* (RUNNABLE, UNINITIALIZED, INIT_RECEIVED, HALTED …). */
  mpState: number;
  /** struct kvm_debugregs (DR0-3, DR6, DR7). */
  debugregs: Uint8Array;
}

/** The in-kernel devices of a VM (`Vm.saveVmState`). */
export interface KvmVmState {
  /** struct kvm_irqchip of each chip, or null if the VM has no in-kernel irqchip. */
  irqchip: { picMaster: Uint8Array; picSlave: Uint8Array; ioapic: Uint8Array } | null;
  /** struct kvm_pit_state2, or null if the VM has no in-kernel PIT. */
  pit: Uint8Array | null;
  /** The kvmclock (KVM_GET_CLOCK). */
  clock: KvmClockData;
}

/** The JSON-safe form of a {@link KvmVcpuState}: blobs base64, 64-bit values `0x` hex strings. */
export interface EncodedVcpuState {
  /** The encoding's version: 1. */
  version: 1;
  regs: Record<(typeof REGS_FIELDS)[number], string>;
  sregs: EncodedSregs;
  xsave: string | null;
  fpu: string | null;
  xcrs: string | null;
  msrs: { index: number; data: string }[];
  tsc: string;
  tscKhz: number | null;
  lapic: string | null;
  events: string;
  mpState: number;
  debugregs: string;
}

/** A struct kvm_segment in {@link EncodedSregs}: the base as a hex string. */
export interface EncodedSegment {
  base: string; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}

/** struct kvm_sregs in {@link EncodedVcpuState}: bases and 64-bit registers as hex strings. */
export interface EncodedSregs {
  cs: EncodedSegment; ds: EncodedSegment; es: EncodedSegment; fs: EncodedSegment; gs: EncodedSegment;
  ss: EncodedSegment; tr: EncodedSegment; ldt: EncodedSegment;
  gdt: { base: string; limit: number }; idt: { base: string; limit: number };
  cr0: string; cr2: string; cr3: string; cr4: string; cr8: string; efer: string; apicBase: string;
  interruptBitmap: string[];
}

/** The JSON-safe form of a {@link KvmVmState}. */
export interface EncodedVmState {
  /** The encoding's version: 1. */
  version: 1;
  irqchip: { picMaster: string; picSlave: string; ioapic: string } | null;
  pit: string | null;
  clock: { clock: string; flags: number; realtime: string; hostTsc: string };
}

/** What is wrong with a field of an encoded state. */
export type StateFormatProblem = 'missing' | 'unknown' | 'type' | 'range';

/**
 * An encoded vCPU or VM state that cannot be restored: a field is missing, unknown, of the
 * wrong type, or out of range (a blob of the wrong length, a bad base64 or hex string …).
 * Thrown by {@link decodeVcpuState} / {@link decodeVmState} before anything is restored.
 */
export class StateFormatError extends Error {
  /** The field's path, e.g. `'sregs.cs.limit'` or `'msrs[3].data'`. */
  readonly field: string;
  /** What is wrong with it. */
  readonly problem: StateFormatProblem;
  /** `field` has `problem`; `detail` says how. */
  constructor(field: string, problem: StateFormatProblem, detail: string) {
    super(`${field}: ${detail}`);
    this.name = 'StateFormatError';
    this.field = field;
    this.problem = problem;
  }
}

// ---------------------------------------------------------------- validation

type Fail = (field: string, problem: StateFormatProblem, detail: string) => Error;

/** Errors for a state passed as an argument: TypeError/RangeError naming it. */
const argumentFail: Fail = (field, problem, detail) => (problem === 'range' ? new RangeError(`${field}: ${detail}`) : new TypeError(`${field}: ${detail}`));
/** Errors for encoded input: StateFormatError. */
const formatFail: Fail = (field, problem, detail) => new StateFormatError(field, problem, detail);

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return `a Uint8Array of ${v.length} bytes`;
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  return String(v);
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}

/** Checks with one way of failing; every check names the field. */
class Checker {
  constructor(readonly fail: Fail) {}

  /** A plain object with exactly `keys` (none missing, none unknown). */
  record(v: unknown, path: string, keys: readonly string[]): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw this.fail(path || '(root)', 'type', `must be an object, got ${show(v)}`);
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!keys.includes(k)) throw this.fail(join(path, k), 'unknown', 'is not a field of this state');
    for (const k of keys) if (!Object.prototype.hasOwnProperty.call(o, k)) throw this.fail(join(path, k), 'missing', 'is missing');
    return o;
  }

  int(v: unknown, path: string, min: number, max: number): number {
    if (typeof v !== 'number') throw this.fail(path, 'type', `must be a number, got ${show(v)}`);
    if (!Number.isInteger(v) || v < min || v > max) throw this.fail(path, 'range', `must be an integer in [${min}, ${max}], got ${v}`);
    return v;
  }

  u64(v: unknown, path: string): bigint {
    if (typeof v !== 'bigint') throw this.fail(path, 'type', `must be a bigint, got ${show(v)}`);
    if (v < 0n || v >= 1n << 64n) throw this.fail(path, 'range', `must be in [0, 2^64), got ${v}n`);
    return v;
  }

  /** A Uint8Array of exactly `len` bytes, or of [min, max] bytes in steps of `step`. */
  bytes(v: unknown, path: string, len: number | { min: number; max: number; step: number }): Uint8Array {
    if (!(v instanceof Uint8Array)) throw this.fail(path, 'type', `must be a Uint8Array, got ${show(v)}`);
    if (typeof len === 'number') {
      if (v.length !== len) throw this.fail(path, 'range', `must be ${len} bytes, got ${v.length}`);
    } else if (v.length < len.min || v.length > len.max || v.length % len.step !== 0) {
      throw this.fail(path, 'range', `must be ${len.min}-${len.max} bytes in steps of ${len.step}, got ${v.length}`);
    }
    return v;
  }

  nullable<T>(v: unknown, path: string, check: (v: unknown, path: string) => T): T | null {
    return v === null ? null : check(v, path);
  }

  // encoded forms

  hex(v: unknown, path: string): bigint {
    if (typeof v !== 'string') throw this.fail(path, 'type', `must be a string (0x-hex or decimal), got ${show(v)}`);
    if (!/^(0x[0-9a-fA-F]{1,16}|[0-9]{1,20})$/.test(v)) throw this.fail(path, 'range', `must be a 64-bit 0x-hex or decimal string, got ${show(v)}`);
    const b = BigInt(v);
    if (b >= 1n << 64n) throw this.fail(path, 'range', `must be below 2^64, got ${v}`);
    return b;
  }

  base64(v: unknown, path: string): Uint8Array {
    if (typeof v !== 'string') throw this.fail(path, 'type', `must be a base64 string, got ${show(v)}`);
    if (v.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw this.fail(path, 'range', 'is not valid base64');
    return new Uint8Array(Buffer.from(v, 'base64'));
  }
}

const VCPU_KEYS = ['regs', 'sregs', 'xsave', 'fpu', 'xcrs', 'msrs', 'tsc', 'tscKhz', 'lapic', 'events', 'mpState', 'debugregs'] as const;
const VM_KEYS = ['irqchip', 'pit', 'clock'] as const;
const IRQCHIP_KEYS = ['picMaster', 'picSlave', 'ioapic'] as const;
const IRQCHIP_IDS = { picMaster: KVM_IRQCHIP.PIC_MASTER, picSlave: KVM_IRQCHIP.PIC_SLAVE, ioapic: KVM_IRQCHIP.IOAPIC } as const;
const CLOCK_KEYS = ['clock', 'flags', 'realtime', 'hostTsc'] as const;
const SEGMENT_LIMITS = { limit: 0xffffffff, selector: 0xffff, type: 15, present: 1, dpl: 3, db: 1, s: 1, l: 1, g: 1, avl: 1, unusable: 1 } as const;
const SEGMENT_KEYS = ['base', ...Object.keys(SEGMENT_LIMITS)];
const SREGS_U64 = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;
const SREGS_KEYS = [...SREGS_SEGMENTS, 'gdt', 'idt', ...SREGS_U64, 'interruptBitmap'];
const XSAVE_LEN = { min: STATE_SIZEOF.kvm_xsave, max: XSAVE_MAX, step: 64 };

function checkMsrList(c: Checker, v: unknown, path: string, data: (v: unknown, path: string) => bigint): KvmMsr[] {
  if (!Array.isArray(v)) throw c.fail(path, 'type', `must be an array, got ${show(v)}`);
  if (v.length > 4096) throw c.fail(path, 'range', `has ${v.length} entries, more than 4096`);
  const seen = new Set<number>();
  return v.map((e, i) => {
    const p = `${path}[${i}]`;
    const o = c.record(e, p, ['index', 'data']);
    const index = c.int(o.index, `${p}.index`, 0, 0xffffffff);
    if (index === MSR_IA32_TSC) throw c.fail(`${p}.index`, 'range', 'IA32_TSC (0x10) belongs in tsc, not in msrs');
    if (seen.has(index)) throw c.fail(`${p}.index`, 'range', `MSR 0x${index.toString(16)} appears twice`);
    seen.add(index);
    return { index, data: data(o.data, `${p}.data`) };
  });
}

function checkBlobs(c: Checker, o: Record<string, unknown>, path: string): void {
  const xsave = c.nullable(o.xsave, join(path, 'xsave'), (v, p) => c.bytes(v, p, XSAVE_LEN));
  const fpu = c.nullable(o.fpu, join(path, 'fpu'), (v, p) => c.bytes(v, p, SIZEOF.kvm_fpu));
  if ((xsave === null) === (fpu === null)) throw c.fail(join(path, 'xsave'), 'range', 'exactly one of xsave and fpu must be set (the other null)');
  const xcrs = c.nullable(o.xcrs, join(path, 'xcrs'), (v, p) => c.bytes(v, p, SIZEOF.kvm_xcrs));
  if (xcrs !== null) {
    const n = new DataView(xcrs.buffer, xcrs.byteOffset, xcrs.byteLength).getUint32(0, true);
    if (n > 16) throw c.fail(join(path, 'xcrs'), 'range', `nr_xcrs is ${n}, more than 16 (KVM_MAX_XCRS)`);
  }
  c.nullable(o.lapic, join(path, 'lapic'), (v, p) => c.bytes(v, p, SIZEOF.kvm_lapic_state));
  c.bytes(o.events, join(path, 'events'), SIZEOF.kvm_vcpu_events);
  const dr = c.bytes(o.debugregs, join(path, 'debugregs'), SIZEOF.kvm_debugregs);
  if (new DataView(dr.buffer, dr.byteOffset, dr.byteLength).getBigUint64(48, true) !== 0n) {
    throw c.fail(join(path, 'debugregs'), 'range', 'flags must be 0 (KVM_SET_DEBUGREGS refuses others)');
  }
}

function checkVcpu(c: Checker, v: unknown, path: string): KvmVcpuState {
  const o = c.record(v, path, VCPU_KEYS);
  const r = c.record(o.regs, join(path, 'regs'), REGS_FIELDS);
  for (const f of REGS_FIELDS) c.u64(r[f], join(path, `regs.${f}`));
  const sp = join(path, 'sregs');
  const s = c.record(o.sregs, sp, SREGS_KEYS);
  for (const n of SREGS_SEGMENTS) {
    const seg = c.record(s[n], `${sp}.${n}`, SEGMENT_KEYS);
    c.u64(seg.base, `${sp}.${n}.base`);
    for (const [f, max] of Object.entries(SEGMENT_LIMITS)) c.int(seg[f], `${sp}.${n}.${f}`, 0, max);
  }
  for (const n of ['gdt', 'idt']) {
    const d = c.record(s[n], `${sp}.${n}`, ['base', 'limit']);
    c.u64(d.base, `${sp}.${n}.base`);
    c.int(d.limit, `${sp}.${n}.limit`, 0, 0xffff);
  }
  for (const n of SREGS_U64) c.u64(s[n], `${sp}.${n}`);
  const bm = s.interruptBitmap;
  if (!Array.isArray(bm)) throw c.fail(`${sp}.interruptBitmap`, 'type', `must be an array of 4 bigints, got ${show(bm)}`);
  if (bm.length !== 4) throw c.fail(`${sp}.interruptBitmap`, 'range', `must have 4 entries, got ${bm.length}`);
  bm.forEach((x, i) => c.u64(x, `${sp}.interruptBitmap[${i}]`));
  checkBlobs(c, o, path);
  checkMsrList(c, o.msrs, join(path, 'msrs'), (x, p) => c.u64(x, p));
  c.u64(o.tsc, join(path, 'tsc'));
  c.nullable(o.tscKhz, join(path, 'tscKhz'), (x, p) => c.int(x, p, 1, 0xffffffff));
  c.int(o.mpState, join(path, 'mpState'), 0, MP_STATE_MAX);
  return v as KvmVcpuState;
}

function checkIrqchipBlob(c: Checker, v: unknown, path: string, chip: number): Uint8Array {
  const b = c.bytes(v, path, STATE_SIZEOF.kvm_irqchip);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const id = dv.getUint32(0, true);
  if (id !== chip) throw c.fail(path, 'range', `chip_id is ${id}, expected ${chip}`);
  if (dv.getUint32(4, true) !== 0) throw c.fail(path, 'range', 'the padding after chip_id must be 0');
  return b;
}

function checkVm(c: Checker, v: unknown, path: string): KvmVmState {
  const o = c.record(v, path, VM_KEYS);
  c.nullable(o.irqchip, join(path, 'irqchip'), (x, p) => {
    const chips = c.record(x, p, IRQCHIP_KEYS);
    for (const k of IRQCHIP_KEYS) checkIrqchipBlob(c, chips[k], `${p}.${k}`, IRQCHIP_IDS[k]);
    return chips;
  });
  c.nullable(o.pit, join(path, 'pit'), (x, p) => c.bytes(x, p, STATE_SIZEOF.kvm_pit_state2));
  const cp = join(path, 'clock');
  const clock = c.record(o.clock, cp, CLOCK_KEYS);
  c.u64(clock.clock, `${cp}.clock`);
  c.int(clock.flags, `${cp}.flags`, 0, 0xffffffff);
  c.u64(clock.realtime, `${cp}.realtime`);
  c.u64(clock.hostTsc, `${cp}.hostTsc`);
  return v as KvmVmState;
}

/**
 * Check a {@link KvmVcpuState} completely (every field present, none unknown, types, ranges,
 * blob lengths): TypeError/RangeError naming the field (`state.regs.rip` …) otherwise.
 * Returns it unchanged.
 */
export function checkVcpuState(state: unknown, arg = 'state'): KvmVcpuState {
  return checkVcpu(new Checker(argumentFail), state, arg);
}

/** Check a {@link KvmVmState} completely, like {@link checkVcpuState}. */
export function checkVmState(state: unknown, arg = 'state'): KvmVmState {
  return checkVm(new Checker(argumentFail), state, arg);
}

// ---------------------------------------------------------------- JSON-safe codec

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}
function b64(v: Uint8Array | null): string | null {
  return v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

/**
 * A {@link KvmVcpuState} as a JSON-safe plain object (`JSON.stringify` it as it is): blobs
 * base64, 64-bit values `0x` hex strings, with `version: 1`. The state is checked first
 * ({@link checkVcpuState}).
 */
export function encodeVcpuState(state: KvmVcpuState): EncodedVcpuState {
  const s = checkVcpuState(state);
  const regs = {} as Record<(typeof REGS_FIELDS)[number], string>;
  for (const f of REGS_FIELDS) regs[f] = hex(s.regs[f]);
  const sregs = {} as EncodedSregs;
  for (const n of SREGS_SEGMENTS) sregs[n] = { ...s.sregs[n], base: hex(s.sregs[n].base) };
  for (const n of ['gdt', 'idt'] as const) sregs[n] = { base: hex(s.sregs[n].base), limit: s.sregs[n].limit };
  for (const n of SREGS_U64) sregs[n] = hex(s.sregs[n]);
  sregs.interruptBitmap = s.sregs.interruptBitmap.map(hex);
  return {
    version: 1,
    regs,
    sregs,
    xsave: b64(s.xsave),
    fpu: b64(s.fpu),
    xcrs: b64(s.xcrs),
    msrs: s.msrs.map((m) => ({ index: m.index, data: hex(m.data) })),
    tsc: hex(s.tsc),
    tscKhz: s.tscKhz,
    lapic: b64(s.lapic),
    events: b64(s.events)!,
    mpState: s.mpState,
    debugregs: b64(s.debugregs)!,
  };
}

/**
 * The {@link KvmVcpuState} of an {@link encodeVcpuState} object (e.g. from `JSON.parse`),
 * validated completely — a field missing, unknown, of the wrong type or length, a bad base64
 * or hex string — with a {@link StateFormatError} naming the field, so that a corrupt
 * snapshot fails here, before any ioctl.
 */
export function decodeVcpuState(encoded: unknown): KvmVcpuState {
  const c = new Checker(formatFail);
  const o = c.record(encoded, '', ['version', ...VCPU_KEYS]);
  if (o.version !== 1) throw c.fail('version', typeof o.version === 'number' ? 'range' : 'type', `must be 1, got ${show(o.version)}`);
  const r = c.record(o.regs, 'regs', REGS_FIELDS);
  const regs = {} as KvmRegs;
  for (const f of REGS_FIELDS) regs[f] = c.hex(r[f], `regs.${f}`);
  const s = c.record(o.sregs, 'sregs', SREGS_KEYS);
  const sregs = {} as Record<string, unknown>;
  for (const n of SREGS_SEGMENTS) {
    const seg = c.record(s[n], `sregs.${n}`, SEGMENT_KEYS);
    sregs[n] = { ...seg, base: c.hex(seg.base, `sregs.${n}.base`) };
  }
  for (const n of ['gdt', 'idt']) {
    const d = c.record(s[n], `sregs.${n}`, ['base', 'limit']);
    sregs[n] = { base: c.hex(d.base, `sregs.${n}.base`), limit: d.limit };
  }
  for (const n of SREGS_U64) sregs[n] = c.hex(s[n], `sregs.${n}`);
  const bm = s.interruptBitmap;
  if (!Array.isArray(bm)) throw c.fail('sregs.interruptBitmap', 'type', `must be an array of 4 hex strings, got ${show(bm)}`);
  if (bm.length !== 4) throw c.fail('sregs.interruptBitmap', 'range', `must have 4 entries, got ${bm.length}`);
  sregs.interruptBitmap = bm.map((x, i) => c.hex(x, `sregs.interruptBitmap[${i}]`));
  const blob = (k: string) => c.nullable(o[k], k, (x, p) => c.base64(x, p));
  const state = {
    regs,
    sregs: sregs as unknown as KvmSregs,
    xsave: blob('xsave'),
    fpu: blob('fpu'),
    xcrs: blob('xcrs'),
    msrs: checkMsrList(c, o.msrs, 'msrs', (x, p) => c.hex(x, p)),
    tsc: c.hex(o.tsc, 'tsc'),
    tscKhz: o.tscKhz as number | null,
    lapic: blob('lapic'),
    events: c.base64(o.events, 'events'),
    mpState: o.mpState as number,
    debugregs: c.base64(o.debugregs, 'debugregs'),
  };
  return checkVcpu(c, state, '');
}

/** A {@link KvmVmState} as a JSON-safe plain object, like {@link encodeVcpuState}. */
export function encodeVmState(state: KvmVmState): EncodedVmState {
  const s = checkVmState(state);
  return {
    version: 1,
    irqchip: s.irqchip === null ? null : { picMaster: b64(s.irqchip.picMaster)!, picSlave: b64(s.irqchip.picSlave)!, ioapic: b64(s.irqchip.ioapic)! },
    pit: b64(s.pit),
    clock: { clock: hex(s.clock.clock), flags: s.clock.flags, realtime: hex(s.clock.realtime), hostTsc: hex(s.clock.hostTsc) },
  };
}

/** The {@link KvmVmState} of an {@link encodeVmState} object, validated like {@link decodeVcpuState}. */
export function decodeVmState(encoded: unknown): KvmVmState {
  const c = new Checker(formatFail);
  const o = c.record(encoded, '', ['version', ...VM_KEYS]);
  if (o.version !== 1) throw c.fail('version', typeof o.version === 'number' ? 'range' : 'type', `must be 1, got ${show(o.version)}`);
  const irqchip = c.nullable(o.irqchip, 'irqchip', (x, p) => {
    const chips = c.record(x, p, IRQCHIP_KEYS);
    return { picMaster: c.base64(chips.picMaster, `${p}.picMaster`), picSlave: c.base64(chips.picSlave, `${p}.picSlave`), ioapic: c.base64(chips.ioapic, `${p}.ioapic`) };
  });
  const clock = c.record(o.clock, 'clock', CLOCK_KEYS);
  const state = {
    irqchip,
    pit: c.nullable(o.pit, 'pit', (x, p) => c.base64(x, p)),
    clock: { clock: c.hex(clock.clock, 'clock.clock'), flags: clock.flags as number, realtime: c.hex(clock.realtime, 'clock.realtime'), hostTsc: c.hex(clock.hostTsc, 'clock.hostTsc') },
  };
  return checkVm(c, state, '');
}

// ---------------------------------------------------------------- MSRs

/**
 * KVM_GET_MSRS of `indices` (in chunks KVM accepts). KVM_GET_MSRS reads entries in order and
 * stops at the first it cannot read: that one is put in `refused` and reading goes on after
 * it, so one call per refused MSR, plus one per chunk.
 */
export function readMsrs(fd: NativeVcpuFd, indices: readonly number[]): { read: KvmMsr[]; refused: number[] } {
  const read: KvmMsr[] = [];
  const refused: number[] = [];
  let rest = indices.slice();
  while (rest.length > 0) {
    const chunk = rest.slice(0, MSR_CHUNK);
    const buf = encodeMsrs(chunk.map((index) => ({ index, data: 0n })));
    const n = fd.getMsrs(buf);
    read.push(...decodeMsrs(buf, n));
    if (n < chunk.length) {
      refused.push(chunk[n]);
      rest = rest.slice(n + 1);
    } else {
      rest = rest.slice(chunk.length);
    }
  }
  return { read, refused };
}

/**
 * KVM_SET_MSRS of `msrs` in order (in chunks). KVM writes entries in order and stops at the
 * first it refuses: if that MSR already holds the value to write, it is skipped (KVM reads
 * some MSRs it will not write back, e.g. MSR_KVM_ASYNC_PF_INT = 0 without an in-kernel LAPIC)
 * and writing goes on after it; otherwise KvmError EINVAL names it.
 */
function writeMsrs(fd: NativeVcpuFd, msrs: readonly KvmMsr[]): void {
  let i = 0;
  while (i < msrs.length) {
    const chunk = msrs.slice(i, i + MSR_CHUNK);
    const n = fd.setMsrs(encodeMsrs(chunk));
    if (n >= chunk.length) {
      i += chunk.length;
      continue;
    }
    const m = chunk[n];
    const now = readMsrs(fd, [m.index]).read[0];
    if (now?.data !== m.data) {
      const held = now === undefined ? 'cannot be read either' : `holds 0x${now.data.toString(16)}`;
      throw errnoError('EINVAL', 'KVM_SET_MSRS', `KVM refused MSR 0x${m.index.toString(16)} = 0x${m.data.toString(16)} (it ${held}; ${i + n} of ${msrs.length} MSRs were written)`);
    }
    i += n + 1;
  }
}

/**
 * Which MSRs a VM's vCPUs save: the host's KVM_GET_MSR_INDEX_LIST, IA32_TSC first, less those
 * KVM_GET_MSRS refuses for this VM's vCPUs (found once, on the first save, then kept).
 */
export class MsrSelection {
  #indices: number[] | undefined;
  #host: readonly number[] | undefined;
  readonly #hostList: () => readonly number[];

  /** `hostList` gives KVM_GET_MSR_INDEX_LIST (called at most once). */
  constructor(hostList: () => readonly number[]) {
    this.#hostList = hostList;
  }

  /** The MSRs of `fd`, IA32_TSC first; KvmError if IA32_TSC cannot be read. */
  read(fd: NativeVcpuFd): KvmMsr[] {
    this.#indices ??= [MSR_IA32_TSC, ...this.hostList().filter((i) => i !== MSR_IA32_TSC)];
    const { read, refused } = readMsrs(fd, this.#indices);
    if (refused.includes(MSR_IA32_TSC)) throw errnoError('EINVAL', 'KVM_GET_MSRS', 'KVM does not read IA32_TSC (MSR 0x10) for this vCPU');
    if (refused.length > 0) this.#indices = this.#indices.filter((i) => !refused.includes(i));
    return read;
  }

  /** The host's KVM_GET_MSR_INDEX_LIST. */
  hostList(): readonly number[] {
    this.#host ??= this.#hostList();
    return this.#host;
  }
}

// ---------------------------------------------------------------- save and restore

/** What the target VM has, for {@link captureVcpuState} and {@link checkVcpuStateFits}. */
export interface VcpuStateTarget {
  /** KVM_CAP_XSAVE: XSAVE images instead of struct kvm_fpu. */
  xsave: boolean;
  /** KVM_CAP_XCRS. */
  xcrs: boolean;
  /** The in-kernel irqchip (LAPIC state). */
  irqchip: boolean;
  /** The XSAVE image size of this host (the addon's `xsaveSize()`). */
  xsaveSize: number;
  /** KVM_GET_MSR_INDEX_LIST of this host. */
  msrIndexList: readonly number[];
}

/**
 * Read a vCPU's state. The caller has made sure the vCPU is not inside KVM_RUN and that a
 * pending I/O or MMIO exit was completed. Order (Firecracker's `save_state`): MP state first
 * (KVM_GET_MP_STATE may accept pending INIT/SIPI and change LAPIC state), then regs, sregs,
 * XSAVE/FPU, XCRs, debug registers, LAPIC, TSC rate, MSRs, and the vCPU events last.
 */
export function captureVcpuState(fd: NativeVcpuFd, target: Omit<VcpuStateTarget, 'msrIndexList' | 'xsaveSize'>, msrs: MsrSelection): KvmVcpuState {
  const mpState = new DataView(fd.getMpState()).getUint32(0, true);
  const regs = decodeRegs(fd.getRegs());
  const sregs = decodeSregs(fd.getSregs());
  const xsave = target.xsave ? new Uint8Array(fd.getXsave()) : null;
  const fpu = target.xsave ? null : new Uint8Array(fd.getFpu());
  const xcrs = target.xcrs ? new Uint8Array(fd.getXcrs()) : null;
  const debugregs = new Uint8Array(fd.getDebugregs());
  const lapic = target.irqchip ? new Uint8Array(fd.getLapic()) : null;
  let tscKhz: number | null = null;
  try {
    tscKhz = fd.getTscKhz();
  } catch {
    tscKhz = null; // no KVM_GET_TSC_KHZ: the restored vCPU keeps its host's rate
  }
  const all = msrs.read(fd);
  const events = new Uint8Array(fd.getVcpuEvents());
  return {
    regs, sregs, xsave, fpu, xcrs,
    msrs: all.filter((m) => m.index !== MSR_IA32_TSC),
    tsc: all.find((m) => m.index === MSR_IA32_TSC)!.data,
    tscKhz: tscKhz === 0 ? null : tscKhz,
    lapic, events, mpState, debugregs,
  };
}

/**
 * Check that a checked state fits the target vCPU before anything is written: LAPIC state
 * exactly when the VM has the in-kernel irqchip, an XSAVE image only where KVM has XSAVE and
 * of this host's size, XCRs only with KVM_CAP_XCRS, and only MSRs this host's KVM lists.
 * TypeError/RangeError naming the field otherwise.
 */
export function checkVcpuStateFits(state: KvmVcpuState, target: VcpuStateTarget, arg = 'state'): void {
  if ((state.lapic !== null) !== target.irqchip) {
    throw new RangeError(`${arg}.lapic: ${state.lapic ? 'the VM has no in-kernel irqchip to take LAPIC state' : 'is null, but the VM has an in-kernel irqchip (its LAPIC state would be lost)'}`);
  }
  if (state.xsave !== null) {
    if (!target.xsave) throw new RangeError(`${arg}.xsave: KVM on this host has no XSAVE (KVM_CAP_XSAVE)`);
    if (state.xsave.length !== target.xsaveSize) throw new RangeError(`${arg}.xsave: ${state.xsave.length} bytes, but this host's XSAVE image is ${target.xsaveSize}`);
  }
  if (state.xcrs !== null && !target.xcrs) throw new RangeError(`${arg}.xcrs: KVM on this host has no KVM_CAP_XCRS`);
  const listed = new Set(target.msrIndexList);
  state.msrs.forEach((m, i) => {
    if (!listed.has(m.index)) throw new RangeError(`${arg}.msrs[${i}]: MSR 0x${m.index.toString(16)} is not in this host's KVM_GET_MSR_INDEX_LIST`);
  });
}

/**
 * Write a checked, fitting vCPU state. CPUID must already be set (the Vm does that when it
 * creates the vCPU). Order, and why (Firecracker's `restore_state`, Cloud Hypervisor's
 * `set_state`, the KVM API documentation):
 * 1. TSC rate (KVM_SET_TSC_KHZ) when it differs by more than 250 ppm: before IA32_TSC, so the
 *    value is taken at the guest's rate.
 * 2. MP state: KVM_SET_MP_STATE depends on the BSP/CPUID, which are fixed by now.
 * 3. regs, then sregs (CR0/CR4/EFER and the APIC base), then XSAVE (or FPU), XCRs, debug registers.
 * 4. LAPIC after sregs (which restore the APIC base MSR and so its mode) and before the MSRs
 *    (IA32_TSC_DEADLINE is only taken by a LAPIC in TSC-deadline mode).
 * 5. MSRs, IA32_TSC first and IA32_TSC_DEADLINE last (KVM arms the deadline timer against
 *    the TSC).
 * 6. vCPU events last: KVM_SET_REGS clears pending exceptions and KVM_SET_SREGS can queue an
 *    interrupt; the events put back exactly what was pending.
 */
export function applyVcpuState(fd: NativeVcpuFd, state: KvmVcpuState): void {
  if (state.tscKhz !== null) {
    let current = 0;
    try {
      current = fd.getTscKhz();
    } catch {
      current = 0;
    }
    if (Math.abs(current - state.tscKhz) * 1e6 > state.tscKhz * TSC_KHZ_TOLERANCE_PPM) fd.setTscKhz(state.tscKhz);
  }
  const mp = new DataView(new ArrayBuffer(SIZEOF.kvm_mp_state));
  mp.setUint32(0, state.mpState, true);
  fd.setMpState(mp.buffer);
  fd.setRegs(encodeRegs(state.regs));
  fd.setSregs(encodeSregs(state.sregs));
  if (state.xsave !== null) fd.setXsave(state.xsave);
  else fd.setFpu(state.fpu!);
  if (state.xcrs !== null) fd.setXcrs(state.xcrs);
  fd.setDebugregs(state.debugregs);
  if (state.lapic !== null) fd.setLapic(state.lapic);
  const deferred = state.msrs.filter((m) => m.index === MSR_IA32_TSC_DEADLINE);
  writeMsrs(fd, [{ index: MSR_IA32_TSC, data: state.tsc }, ...state.msrs.filter((m) => m.index !== MSR_IA32_TSC_DEADLINE), ...deferred]);
  fd.setVcpuEvents(state.events);
}

/** Read the VM's in-kernel device state: irqchip (PIC master, slave, IOAPIC) if `irqchip`, PIT if `pit`, kvmclock. */
export function captureVmState(fd: NativeVmFd, has: { irqchip: boolean; pit: boolean }): KvmVmState {
  const chip = (id: number) => new Uint8Array(fd.getIrqchip(id));
  const irqchip = has.irqchip ? { picMaster: chip(KVM_IRQCHIP.PIC_MASTER), picSlave: chip(KVM_IRQCHIP.PIC_SLAVE), ioapic: chip(KVM_IRQCHIP.IOAPIC) } : null;
  const pit = has.pit ? new Uint8Array(fd.getPit2()) : null;
  return { irqchip, pit, clock: decodeClock(fd.getClock()) };
}

/** Check that a checked VM state fits the target VM: irqchip and PIT state exactly when it has them. */
export function checkVmStateFits(state: KvmVmState, has: { irqchip: boolean; pit: boolean }, arg = 'state'): void {
  if ((state.irqchip !== null) !== has.irqchip) {
    throw new RangeError(`${arg}.irqchip: ${state.irqchip ? 'the VM has no in-kernel irqchip' : 'is null, but the VM has an in-kernel irqchip (its PIC and IOAPIC state would be lost)'}`);
  }
  if ((state.pit !== null) !== has.pit) {
    throw new RangeError(`${arg}.pit: ${state.pit ? 'the VM has no in-kernel PIT' : 'is null, but the VM has an in-kernel PIT (its state would be lost)'}`);
  }
}

/**
 * Write a checked, fitting VM state: PIT, PIC master, PIC slave, IOAPIC, then the kvmclock
 * last (closest to the resume). The clock is set with flags 0: it continues from the saved
 * value, as the TSC does, so the guest sees no time pass while it was saved.
 */
export function applyVmState(fd: NativeVmFd, state: KvmVmState): void {
  if (state.pit !== null) fd.setPit2(state.pit);
  if (state.irqchip !== null) {
    fd.setIrqchip(state.irqchip.picMaster);
    fd.setIrqchip(state.irqchip.picSlave);
    fd.setIrqchip(state.irqchip.ioapic);
  }
  fd.setClock(encodeClock({ clock: state.clock.clock, flags: 0, realtime: 0n, hostTsc: 0n }));
}

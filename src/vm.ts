/**
 * `Vm`: bhyve's libvmmapi surface on Linux KVM. One instance owns one KVM VM: its fds,
 * its guest memory (SharedArrayBuffers) and its vCPUs. Argument checks happen here, before
 * any native call; a failed system call is a {@link KvmError}.
 */
import { cpus, freemem, totalmem } from 'node:os';
import { closeSync, fstatSync, openSync, readFileSync, readlinkSync } from 'node:fs';
import { openKvmSystem } from './kvm/open.js';
import { native, type NativeFileFd, type NativeGuestMapping, type NativeKvmSystem, type NativeVcpuFd, type NativeVmFd } from './kvm/native.js';
import { KVM_CAP, KVM_EXIT, KVM_GUESTDBG, KVM_MEM, KVM_MP_STATE, KVM_PIT_SPEAKER_DUMMY, KVM_X86_DISABLE_EXITS } from './kvm/constants.js';
import {
  EVENTS, FPU, REGS_FIELDS, SIZEOF, SREGS_SEGMENTS, accessToSegment, setInjectedException, decodeCpuid2, decodeDebugregs, decodeRegs, decodeSregs, encodeCpuid2,
  encodeDebugregs, encodeRegs, encodeSregs, segmentToAccess, type CpuidEntry, type KvmRegs, type KvmSregs,
} from './kvm/structs.js';
import { KvmError, errnoError } from './errors.js';
import { GuestMemory, MAX_VIEW_LENGTH } from './memory/guest-memory.js';
import { RUN, decodeExit, describeExit, type VmExit } from './exits.js';
import { Reg, isDescReg, isReg, regLocation, type RegLocation } from './registers.js';
import { Capability, capabilityValue, resolveCapability } from './capabilities.js';
import { StatsReader } from './stats.js';
import { checkCpuidOptions, guestCpuid, type CpuidOptions } from './cpuid.js';
import { RESET_DR6, RESET_DR7, RESET_FCW, RESET_MXCSR, resetRegs, resetSregs } from './vcpu-reset.js';
import { PassthroughDevices } from './passthrough.js';
import { IoEventFds, type IoEventFd, type IoEventFdOptions } from './io-events.js';
import {
  MsrSelection, applyVcpuState, applyVmState, captureVcpuState, captureVmState, checkVcpuState, checkVcpuStateFits, checkVmState,
  checkVmStateFits, type KvmVcpuState, type KvmVmState, type VcpuStateTarget,
} from './kvm-state.js';

/** Options for {@link Vm.create}. */
export interface VmCreateOptions {
  /** Number of vCPUs, numbered 0..vcpus-1 (default 1). */
  vcpus?: number;
  /**
   * Create KVM's in-kernel interrupt controllers (local APICs, IOAPIC, PIC) and PIT
   * (default true). Needed for lapicIrq, INIT/SIPI and device IRQ lines. Without it, HLT
   * exits to userspace and interrupts are injected with injectEvent.
   */
  irqchip?: boolean;
  /** Create the in-kernel PIT (i8254); default: same as irqchip. */
  pit?: boolean;
  /**
   * Let the in-kernel PIT serve port 0x61 (system control port B) too
   * (KVM_PIT_SPEAKER_DUMMY; default false): bit 0 drives channel 2's gate, bit 1 is the
   * speaker enable, bit 4 toggles with the refresh clock and bit 5 is channel 2's output —
   * with no exit to userspace. Needs opts.pit. Without it port 0x61 exits to userspace.
   */
  pitSpeaker?: boolean;
  /** CPUID adjustments applied to every vCPU. */
  cpuid?: CpuidOptions;
}

/** Options for {@link Vm.setupMemory}. */
export interface MemoryOptions {
  /** Guest writes fault to userspace as MMIO exits (a ROM). Host writes still work. */
  readonly?: boolean;
  /**
   * Back the segment with a private (copy-on-write) mapping of a file instead of zeroed
   * anonymous memory — a snapshot's memory file, for a restore. Pages are read from the file
   * on first touch; a write (by the guest or the host) copies the page, so the file is never
   * changed. Several VMs may map the same file. The file must not shrink while it is mapped.
   */
  file?: MemoryFile;
}

/** The file behind a segment (see {@link MemoryOptions.file}): `path` or an open `fd`, and where the segment starts in it. */
export interface MemoryFile {
  /** Path of the file (opened read-only for the mapping, closed again). */
  path?: string;
  /** An open file descriptor of a regular file (stays the caller's; may be closed afterwards). */
  fd?: number;
  /** Byte offset of the segment's first byte in the file: page-aligned (default 0). */
  offset?: number;
}

/** Options for {@link Vm.run}. */
export interface RunOptions {
  /**
   * Give up after this many milliseconds (an integer in [1, 2^31 - 1]): if the vCPU has not
   * left KVM_RUN by then it is kicked out and run returns an 'interrupted' exit; run it
   * again to continue. Without it, run blocks for as long as the guest stays in the kernel.
   */
  timeoutMs?: number;
}

/** A segment descriptor in bhyve's form: base, limit and VMX access rights. */
export interface SegmentDescriptor {
  base: bigint;
  limit: number;
  access: number;
}

/** bhyve's `enum vm_event_type` for {@link Vm.injectEvent}. */
export enum EventType {
  HwIntr = 1,
  Nmi = 2,
  HwException = 3,
  SwIntr = 4,
  PrivSwException = 5,
  SwException = 6,
}

/** bhyve's `enum x2apic_state`. */
export enum X2apicState {
  Disabled = 0,
  Enabled = 1,
}

/** A value of {@link Vm.getStats}. */
export interface VcpuStats {
  /** When the values were read (milliseconds since the epoch). */
  time: number;
  /** One value per statistic; names come from {@link Vm.getStatDesc}. */
  values: bigint[];
}

/** Guest-physical pages KVM needs for real mode on Intel (TSS and identity map). */
const KVM_PRIVATE_BASE = 0xfeffc000;
const KVM_PRIVATE_END = 0xff000000;
/** Bits 31:20 of every MSI address on x86: the local APICs' interrupt range. */
const MSI_ADDRESS_BASE = 0xfee00000;

const registry = new Map<string, Vm>();
let system: NativeKvmSystem | undefined;

function kvm(): NativeKvmSystem {
  system ??= openKvmSystem();
  return system;
}

function show(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (typeof value === 'object') return (value as object).constructor?.name ?? 'an object';
  return String(value);
}

/**
 * A 64-bit value: an integer in [0, 2^64), or a negative one down to -2^63 taken as two's
 * complement (`-1n` is all ones). Numbers must be safe integers (bigints beyond 2^53).
 */
function toU64(value: unknown, arg: string): bigint {
  const range = `${arg} must be an integer in [0, 2^64) (or [-2^63, 0) as two's complement)`;
  if (typeof value === 'bigint') {
    if (value < -(1n << 63n) || value >= 1n << 64n) throw new RangeError(`${range}, got ${value}n`);
    return BigInt.asUintN(64, value);
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new RangeError(`${range}, got ${value} (use a bigint beyond 2^53)`);
    return BigInt.asUintN(64, BigInt(value));
  }
  throw new TypeError(`${arg} must be a bigint or a number, got ${show(value)}`);
}

/** A register value for `loc`, checked: selectors are 16 bits, the interrupt shadow 0 or 1. */
function regValue(reg: Reg, loc: RegLocation, value: unknown, arg: string): bigint {
  if (loc.in === 'segment' || loc.in === 'events') {
    const what = loc.in === 'segment' ? `${arg} (${Reg[reg]} selector)` : `${arg} (${Reg[reg]})`;
    const max = loc.in === 'segment' ? 0xffff : 1;
    if (typeof value !== 'number' && typeof value !== 'bigint') throw new TypeError(`${what} must be a number or a bigint, got ${show(value)}`);
    const ok = typeof value === 'bigint' ? value >= 0n && value <= BigInt(max) : Number.isInteger(value) && value >= 0 && value <= max;
    const shown = typeof value === 'bigint' ? `${value}n` : value >= 0 && Number.isInteger(value) ? `0x${value.toString(16)}` : String(value);
    if (!ok) throw new RangeError(`${what} must be an integer in [0, 0x${max.toString(16)}], got ${shown}`);
    return BigInt(value);
  }
  return toU64(value, `${arg} (${Reg[reg]})`);
}

function checkObject(value: unknown, arg: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${arg} must be an object, got ${show(value)}`);
  return value as Record<string, unknown>;
}

function checkBigU64(value: unknown, arg: string): void {
  if (typeof value !== 'bigint') throw new TypeError(`${arg} must be a bigint, got ${show(value)}`);
  if (value < -(1n << 63n) || value >= 1n << 64n) throw new RangeError(`${arg} must be in [0, 2^64) (or [-2^63, 0) as two's complement), got ${value}n`);
}

/** struct kvm_segment's small fields and their largest values. */
const SEGMENT_FIELDS = { limit: 0xffffffff, selector: 0xffff, type: 15, present: 1, dpl: 3, db: 1, s: 1, l: 1, g: 1, avl: 1, unusable: 1 } as const;

/** Check a struct kvm_regs object (setKvmRegs): every field a 64-bit bigint. */
function checkKvmRegs(regs: unknown): KvmRegs {
  const r = checkObject(regs, 'regs');
  for (const f of REGS_FIELDS) checkBigU64(r[f], `regs.${f}`);
  return regs as KvmRegs;
}

/** Check a struct kvm_sregs object (setKvmSregs): every field present and in range. */
function checkKvmSregs(sregs: unknown): KvmSregs {
  const s = checkObject(sregs, 'sregs');
  for (const n of SREGS_SEGMENTS) {
    const seg = checkObject(s[n], `sregs.${n}`);
    checkBigU64(seg.base, `sregs.${n}.base`);
    for (const [f, max] of Object.entries(SEGMENT_FIELDS)) checkInt(seg[f], `sregs.${n}.${f}`, 0, max);
  }
  for (const n of ['gdt', 'idt'] as const) {
    const d = checkObject(s[n], `sregs.${n}`);
    checkBigU64(d.base, `sregs.${n}.base`);
    checkInt(d.limit, `sregs.${n}.limit`, 0, 0xffff);
  }
  for (const n of ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const) checkBigU64(s[n], `sregs.${n}`);
  const bitmap = s.interruptBitmap;
  if (!Array.isArray(bitmap) || bitmap.length !== 4) throw new TypeError('sregs.interruptBitmap must be an array of 4 bigints');
  bitmap.forEach((x, i) => checkBigU64(x, `sregs.interruptBitmap[${i}]`));
  return sregs as KvmSregs;
}

function checkInt(value: unknown, arg: string, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${arg} must be a number, got ${show(value)}`);
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${arg} must be an integer in [${min}, ${max}], got ${value}`);
  return value;
}

/** {@link MemoryFile}, checked: exactly one of path and fd. */
interface CheckedMemoryFile {
  path: string | undefined;
  fd: number | undefined;
  offset: number;
}

function checkMemoryFile(file: unknown, page: number): CheckedMemoryFile {
  const f = checkObject(file, 'opts.file');
  for (const k of Object.keys(f)) {
    if (k !== 'path' && k !== 'fd' && k !== 'offset') throw new TypeError(`opts.file: unknown option '${k}' (path, fd, offset)`);
  }
  if ((f.path === undefined) === (f.fd === undefined)) throw new TypeError('opts.file needs exactly one of path and fd');
  if (f.path !== undefined && (typeof f.path !== 'string' || f.path.length === 0)) {
    throw new TypeError(`opts.file.path must be a non-empty string, got ${show(f.path)}`);
  }
  const fd = f.fd === undefined ? undefined : checkInt(f.fd, 'opts.file.fd', 0, 2 ** 31 - 1);
  const offset = f.offset === undefined ? 0 : checkInt(f.offset, 'opts.file.offset', 0, Number.MAX_SAFE_INTEGER);
  if (offset % page !== 0) throw new RangeError(`opts.file.offset must be page-aligned (0x${offset.toString(16)})`);
  return { path: f.path as string | undefined, fd, offset };
}

function describeFd(fd: number): string {
  try {
    return `fd ${fd} (${readlinkSync(`/proc/self/fd/${fd}`)})`;
  } catch {
    return `fd ${fd}`;
  }
}

/**
 * Open (for `path`) and check the file behind a segment: a regular file of at least
 * `offset + len` bytes. `close()` closes what was opened here (never the caller's fd).
 */
function openMemoryFile(file: CheckedMemoryFile, len: number): { fd: number; close(): void } {
  let fd: number;
  let owned = false;
  let name: string;
  if (file.path !== undefined) {
    name = file.path;
    try {
      fd = openSync(file.path, 'r');
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw errnoError(err.code ?? 'EIO', 'open', `opts.file.path ${file.path}: ${err.message}`);
    }
    owned = true;
  } else {
    fd = file.fd!;
    name = describeFd(fd);
  }
  const close = (): void => {
    if (owned) closeSync(fd);
    owned = false;
  };
  try {
    let st;
    try {
      st = fstatSync(fd);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw errnoError(err.code ?? 'EIO', 'fstat', `opts.file: ${name}: ${err.message}`);
    }
    if (!st.isFile()) throw new RangeError(`opts.file: ${name} is not a regular file`);
    if (st.size < file.offset + len) {
      throw new RangeError(`opts.file: ${name} has ${st.size} bytes, fewer than offset + len = 0x${file.offset.toString(16)} + 0x${len.toString(16)} = ${file.offset + len}`);
    }
  } catch (e) {
    close();
    throw e;
  }
  return { fd, close };
}

/** Total host memory in bytes (bhyve's vmm_get_mem_total). */
export function vmmGetMemTotal(): number {
  return totalmem();
}

/** Host memory available for new guests in bytes (bhyve's vmm_get_mem_free): MemAvailable. */
export function vmmGetMemFree(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    /* fall through */
  }
  return freemem();
}

interface Segment {
  gpa: number;
  length: number;
  slot: number;
  mapping: NativeGuestMapping;
  buffer: SharedArrayBuffer;
  readonly: boolean;
}

interface VcpuHandle {
  fd: NativeVcpuFd;
  run: Uint8Array;
  view: DataView;
  stats?: StatsReader;
  /** KVM_SET_CPUID2 done. */
  cpuidSet: boolean;
  /** It may have entered KVM_RUN (run, or its fd handed out): an exit may await completion. */
  ran: boolean;
}

/** A KVM virtual machine, with bhyve libvmmapi's functions as methods. */
export class Vm {
  /** The name it was created with (unique in this process). */
  readonly name: string;
  /** Number of vCPUs. */
  readonly vcpuCount: number;
  /** True if the in-kernel irqchip (LAPICs, IOAPIC, PIC) exists. */
  readonly irqchip: boolean;
  /** True if the in-kernel PIT (i8254) exists. */
  readonly pit: boolean;
  /** Guest-physical memory: one bounds-checked accessor over every segment. */
  readonly memory = new GuestMemory();

  #fd: NativeVmFd | undefined;
  #vcpus: (VcpuHandle | undefined)[];
  #segments: Segment[] = [];
  #nextSlot = 0;
  #maxSlots: number;
  #pinning: number[];
  #appliedPinning = new Map<number, number>();
  #mtrap: boolean[];
  /**
   * Per vCPU: KVM_GET_MP_STATE said it can leave KVM_RUN (not waiting for INIT/SIPI), and
   * nothing this Vm knows of could have sent it an INIT since. See {@link run}.
   */
  #mpChecked: boolean[];
  #disabledExits = 0;
  #cpuid: CpuidOptions;
  #supportedCpuid: CpuidEntry[] | undefined;
  #owner: string | undefined;
  #guard: ((vcpu: number, syscall: string) => void) | undefined;
  #onDestroy: (() => void) | undefined;
  #userStats = new Map<string, bigint[]>();
  /** PCI passthrough state (VFIO). */
  readonly #ppt: PassthroughDevices;
  readonly #ioEvents = new IoEventFds((syscall) => this.#live(syscall));
  /** The MSRs saveVcpuState reads (KVM_GET_MSR_INDEX_LIST less those KVM refuses here). */
  readonly #msrs = new MsrSelection(() => [...kvm().msrIndexList()]);
  #stateCaps: { xsave: boolean; xcrs: boolean } | undefined;

  private constructor(name: string, fd: NativeVmFd, vcpus: number, irqchip: boolean, pit: boolean, cpuid: CpuidOptions) {
    this.name = name;
    this.#fd = fd;
    this.vcpuCount = vcpus;
    this.irqchip = irqchip;
    this.pit = pit;
    this.#vcpus = new Array(vcpus).fill(undefined);
    this.#pinning = new Array(vcpus).fill(-1);
    this.#mtrap = new Array(vcpus).fill(false);
    this.#mpChecked = new Array(vcpus).fill(false);
    this.#cpuid = cpuid;
    this.#maxSlots = Math.max(fd.checkExtension(KVM_CAP.NR_MEMSLOTS), 32);
    this.#ppt = new PassthroughDevices({
      vmFd: () => this.#live('vm_assign_pptdev'),
      segments: () => this.#segments.map((s) => ({ gpa: s.gpa, length: s.length, mapping: s.mapping })),
      allocSlot: () => this.#allocSlot(),
      signalRoute: (vcpu) => this.#checkVcpu(vcpu, 'vcpu'),
    });
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Create a VM (bhyve's vm_create + vm_open). Throws KvmError EEXIST if `name` is taken in
   * this process.
   */
  static create(name: string, opts: VmCreateOptions = {}): Vm {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError('name must be a non-empty string');
    if (typeof opts !== 'object' || opts === null) throw new TypeError('opts must be an object');
    const sys = kvm();
    const maxVcpus = Math.max(sys.checkExtension(KVM_CAP.MAX_VCPUS), 1);
    const vcpus = opts.vcpus === undefined ? 1 : checkInt(opts.vcpus, 'opts.vcpus', 1, Math.min(maxVcpus, 255));
    const irqchip = opts.irqchip ?? true;
    if (typeof irqchip !== 'boolean') throw new TypeError('opts.irqchip must be a boolean');
    const pit = opts.pit ?? irqchip;
    if (typeof pit !== 'boolean') throw new TypeError('opts.pit must be a boolean');
    if (pit && !irqchip) throw new RangeError('opts.pit needs opts.irqchip');
    const pitSpeaker = opts.pitSpeaker ?? false;
    if (typeof pitSpeaker !== 'boolean') throw new TypeError('opts.pitSpeaker must be a boolean');
    if (pitSpeaker && !pit) throw new RangeError('opts.pitSpeaker needs opts.pit');
    const cpuid = opts.cpuid === undefined ? {} : checkCpuidOptions(opts.cpuid, 'opts.cpuid');
    if (registry.has(name)) throw errnoError('EEXIST', 'vm_create', `a VM named '${name}' exists`);
    const n = native();
    const fd = new n.VmFd(sys.createVm(0), sys.vcpuMmapSize());
    try {
      fd.setIdentityMapAddr(KVM_PRIVATE_BASE);
      fd.setTssAddr(KVM_PRIVATE_BASE + 0x1000);
      if (irqchip) fd.createIrqchip();
      if (pit) fd.createPit2(pitSpeaker ? KVM_PIT_SPEAKER_DUMMY : 0);
    } catch (e) {
      fd.close();
      throw e;
    }
    const vm = new Vm(name, fd, vcpus, irqchip, pit, cpuid);
    registry.set(name, vm);
    return vm;
  }

  /** KVM_GET_SUPPORTED_CPUID: every CPUID entry KVM can expose to a guest on this host. */
  static supportedCpuid(): CpuidEntry[] {
    return decodeCpuid2(kvm().supportedCpuid());
  }

  /** The VM named `name` in this process (bhyve's vm_open); KvmError ENOENT if none. */
  static open(name: string): Vm {
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    const vm = registry.get(name);
    if (!vm) throw errnoError('ENOENT', 'vm_open', `no VM named '${name}'`);
    return vm;
  }

  /** True once {@link destroy} ran. */
  get destroyed(): boolean {
    return this.#fd === undefined;
  }

  /**
   * Destroy the VM (bhyve's vm_destroy): closes every fd. Guest memory is unmapped when the
   * last SharedArrayBuffer over it is garbage-collected. Later calls throw KvmError EBADF.
   */
  destroy(): void {
    if (!this.#fd) return;
    // a runner still driving the vCPUs is stopped first (its workers keep their own fds)
    this.#onDestroy?.();
    this.#ppt.closeAll();
    this.#ioEvents.closeAll();
    for (const v of this.#vcpus) {
      v?.stats?.close();
      v?.fd.close();
    }
    this.#vcpus.fill(undefined);
    this.#fd.close();
    this.#fd = undefined;
    for (const s of this.#segments) s.mapping.release();
    this.#segments = [];
    for (const s of [...this.memory.segments]) this.memory.removeSegment(s.gpa);
    registry.delete(this.name);
  }

  #live(syscall: string): NativeVmFd {
    if (!this.#fd) throw errnoError('EBADF', syscall, `VM '${this.name}' has been destroyed`);
    return this.#fd;
  }

  #checkVcpu(vcpu: unknown, arg = 'vcpu'): number {
    if (typeof vcpu !== 'number') throw new TypeError(`${arg} must be a number, got ${show(vcpu)}`);
    if (!Number.isInteger(vcpu) || vcpu < 0 || vcpu >= this.vcpuCount) {
      throw new RangeError(`${arg} must be an integer in [0, ${this.vcpuCount - 1}], got ${vcpu}`);
    }
    return vcpu;
  }

  /**
   * The vCPU's handle, created on first use. `guarded` (default): the caller is about to issue
   * a vCPU ioctl, which the owning runner refuses while that vCPU is inside KVM_RUN.
   */
  #vcpu(vcpu: number, syscall: string, guarded = true): VcpuHandle {
    this.#checkVcpu(vcpu);
    const fd = this.#live(syscall);
    if (guarded) this.#guard?.(vcpu, syscall);
    let h = this.#vcpus[vcpu];
    if (!h) {
      const n = native();
      const v = new n.VcpuFd(fd.createVcpu(vcpu));
      const run = new Uint8Array(v.runBuffer());
      h = { fd: v, run, view: new DataView(run.buffer), cpuidSet: false, ran: false };
      this.#vcpus[vcpu] = h; // the kernel vCPU exists now: keep it even if CPUID fails below
    }
    if (!h.cpuidSet) {
      // guests need KVM_SET_CPUID2 (DESIGN.md §1); retried on the next use if it failed
      this.#supportedCpuid ??= Vm.supportedCpuid();
      h.fd.setCpuid2(encodeCpuid2(guestCpuid(this.#supportedCpuid, vcpu, this.vcpuCount, this.#cpuid)));
      h.cpuidSet = true;
    }
    return h;
  }

  /**
   * The CPUID table vCPU `vcpu` is given (KVM_SET_CPUID2): KVM's supported table with the
   * VM's `cpuid` options applied and the vCPU's topology filled in. A snapshot records it, so
   * a restore on a host that would give the guest another CPU is refused.
   */
  guestCpuid(vcpu: number): CpuidEntry[] {
    this.#live('vm_get_cpuid');
    const v = this.#checkVcpu(vcpu);
    this.#supportedCpuid ??= Vm.supportedCpuid();
    return guestCpuid(this.#supportedCpuid, v, this.vcpuCount, this.#cpuid);
  }

  /**
   * The vCPU's fd number, creating the vCPU if needed. For the worker-thread runner, which
   * adopts it with `new VcpuFd(fd)`. @internal
   */
  vcpuFdNumber(vcpu: number): number {
    const h = this.#vcpu(vcpu, 'KVM_CREATE_VCPU');
    h.ran = true; // a runner's worker runs it
    return h.fd.fd;
  }

  /** The raw native vCPU (escape hatch for ioctls without a libvmmapi wrapper). */
  vcpuFd(vcpu: number): NativeVcpuFd {
    const h = this.#vcpu(vcpu, 'KVM_CREATE_VCPU');
    this.#mpChecked[vcpu] = false; // its MP state may be set through it
    h.ran = true; // and it may be run through it
    return h.fd;
  }

  /** The raw native VM fd (escape hatch). */
  vmFd(): NativeVmFd {
    const fd = this.#live('vm_fd');
    this.#mpChecked.fill(false); // an MSI through it may carry an INIT
    return fd;
  }

  /**
   * Mark the vCPUs as driven by a runner (vm.run then throws EBUSY). `guard` is called before
   * every vCPU ioctl from this thread and throws if that vCPU is inside KVM_RUN (the ioctl
   * would block until it leaves). @internal
   */
  claim(owner: string | undefined, guard?: (vcpu: number, syscall: string) => void, onDestroy?: () => void): void {
    if (owner !== undefined && this.#owner !== undefined) throw errnoError('EBUSY', 'claim', `VM '${this.name}' is already run by ${this.#owner}`);
    this.#owner = owner;
    this.#mpChecked.fill(false); // a runner changes vCPU states
    this.#guard = owner === undefined ? undefined : guard;
    this.#onDestroy = owner === undefined ? undefined : onDestroy;
  }

  // ---------------------------------------------------------------- memory

  #allocSlot(): number {
    if (this.#nextSlot >= this.#maxSlots) throw errnoError('ENOSPC', 'vm_setup_memory', `all ${this.#maxSlots} KVM memory slots are used`);
    return this.#nextSlot++;
  }

  /**
   * Back `[gpa, gpa + len)` with new guest RAM (bhyve's vm_setup_memory) and return it as a
   * SharedArrayBuffer. `gpa` and `len` must be page-aligned; an overlap is KvmError EEXIST.
   * A segment may be larger than one typed array can view (over 4 GiB): {@link memory}
   * handles that; take views of parts of it with {@link mapMemory}. If anything fails, the
   * VM is left as it was: no KVM slot, no segment.
   *
   * With `opts.file` the segment is a private copy-on-write mapping of that file from
   * `offset` (a snapshot restore: no copy up front, pages read on first touch, the file never
   * written). The file must be a regular file of at least `offset + len` bytes and `offset`
   * page-aligned: RangeError naming the file otherwise, before anything changes.
   */
  setupMemory(gpa: number, len: number, opts: MemoryOptions = {}): SharedArrayBuffer {
    const fd = this.#live('vm_setup_memory');
    const page = native().pageSize;
    checkInt(gpa, 'gpa', 0, 2 ** 52);
    checkInt(len, 'len', 1, 2 ** 52);
    if (gpa % page !== 0) throw new RangeError(`gpa must be page-aligned (0x${gpa.toString(16)})`);
    if (len % page !== 0) throw new RangeError(`len must be a multiple of the page size (0x${len.toString(16)})`);
    if (gpa + len > 2 ** 52) throw new RangeError('gpa + len exceeds the 52-bit physical address space');
    if (typeof opts !== 'object' || opts === null) throw new TypeError(`opts must be an object (MemoryOptions), got ${opts === null ? 'null' : typeof opts}`);
    const readonly = opts.readonly ?? false;
    if (typeof readonly !== 'boolean') throw new TypeError('opts.readonly must be a boolean');
    const file = opts.file === undefined ? undefined : checkMemoryFile(opts.file, page);
    for (const s of this.#segments) {
      if (gpa < s.gpa + s.length && s.gpa < gpa + len) {
        throw errnoError('EEXIST', 'vm_setup_memory', `0x${gpa.toString(16)}+0x${len.toString(16)} overlaps the segment at 0x${s.gpa.toString(16)}`);
      }
    }
    if (gpa < KVM_PRIVATE_END && KVM_PRIVATE_BASE < gpa + len) {
      throw errnoError('EEXIST', 'vm_setup_memory', `0x${KVM_PRIVATE_BASE.toString(16)}-0x${(KVM_PRIVATE_END - 1).toString(16)} is reserved for KVM's real-mode TSS and identity map`);
    }
    // the file is opened and its size checked before a slot is taken
    const backing = file === undefined ? undefined : openMemoryFile(file, len);
    let slot: number;
    try {
      slot = this.#allocSlot();
    } catch (e) {
      backing?.close();
      throw e;
    }
    let mapping: NativeGuestMapping | undefined;
    let added = false;
    let registered = false;
    let buffer: SharedArrayBuffer;
    try {
      mapping = backing === undefined ? new (native().GuestMapping)(len) : new (native().GuestMapping)(len, backing.fd, file!.offset);
      buffer = mapping.buffer();
      this.memory.addSegment(gpa, buffer, readonly); // views over all of it, before KVM sees it
      added = true;
      fd.setUserMemoryRegion(slot, readonly ? KVM_MEM.READONLY : 0, gpa, len, mapping, 0);
      registered = true;
      this.#ppt.onMemoryAdded(gpa, len, mapping);
    } catch (e) {
      if (registered) fd.setUserMemoryRegion(slot, 0, gpa, 0, null); // size 0 deletes the slot
      if (added) this.memory.removeSegment(gpa);
      mapping?.release();
      if (this.#nextSlot === slot + 1) this.#nextSlot = slot;
      throw e;
    } finally {
      backing?.close(); // the mapping holds its own reference to the file
    }
    this.#segments.push({ gpa, length: len, slot, mapping, buffer, readonly });
    this.#segments.sort((a, b) => a.gpa - b.gpa);
    return buffer;
  }

  /** The length of the segment that starts at `gpa`, or 0 (bhyve's vm_get_memory_seg). */
  getMemorySeg(gpa: number): number {
    this.#live('vm_get_memory_seg');
    checkInt(gpa, 'gpa', 0, 2 ** 53 - 1);
    return this.#segments.find((s) => s.gpa === gpa)?.length ?? 0;
  }

  /**
   * The SharedArrayBuffers of all segments, with their addresses, sorted by address. A
   * buffer is the whole segment and may be longer than one typed array can view (over
   * 4 GiB): view it in parts, or hand it to `new GuestMemory().addSegment(gpa, buffer)`.
   */
  memorySegments(): { gpa: number; length: number; buffer: SharedArrayBuffer; readonly: boolean }[] {
    this.#live('vm_get_memory_seg');
    return this.#segments.map(({ gpa, length, buffer, readonly }) => ({ gpa, length, buffer, readonly }));
  }

  /**
   * The parts of the segment at `gpa` that may hold anything but zeros, as `[start, end)`
   * offsets into it, ascending: the pages of anonymous RAM ever written (or read) — what a
   * snapshot must save; the rest reads as zeros. The whole segment for one mapped from a file
   * (its untouched pages come from the file). RangeError if no segment starts at `gpa`.
   */
  memoryDataRanges(gpa: number): [number, number][] {
    this.#live('vm_get_memory_seg');
    const s = this.#segments.find((x) => x.gpa === gpa);
    if (!s) throw new RangeError(`gpa: no memory segment starts at 0x${Number(gpa).toString(16)}`);
    const flat = s.mapping.dataRanges();
    if (flat === null) return [[0, s.length]];
    const out: [number, number][] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i], flat[i + 1]]);
    return out;
  }

  /**
   * A Uint8Array over guest memory `[gpa, gpa + len)` (bhyve's vm_map_gpa). RangeError
   * unless the whole range lies in one segment, or if `len` exceeds 2^32 (the longest
   * typed array; use {@link memory} for larger ranges).
   */
  mapMemory(gpa: number, len: number): Uint8Array {
    this.#live('vm_map_memory');
    checkInt(gpa, 'gpa', 0, 2 ** 53 - 1);
    checkInt(len, 'len', 0, MAX_VIEW_LENGTH);
    const s = this.#segments.find((x) => gpa >= x.gpa && gpa - x.gpa < x.length);
    if (!s || len > s.length - (gpa - s.gpa)) {
      throw new RangeError(`gpa/len: 0x${gpa.toString(16)}+0x${len.toString(16)} does not lie within one memory segment`);
    }
    return new Uint8Array(s.buffer, gpa - s.gpa, len);
  }

  // ---------------------------------------------------------------- registers

  #getRegs(v: VcpuHandle): KvmRegs {
    return decodeRegs(v.fd.getRegs());
  }

  /** Read one register (bhyve's vm_get_register). Segment registers read their selector. */
  getRegister(vcpu: number, reg: Reg): bigint {
    return this.getRegisters(vcpu, [reg])[0];
  }

  /**
   * Write one register (bhyve's vm_set_register): `value` an integer in [0, 2^64). Segment
   * registers take a selector in [0, 0xffff], INTR_SHADOW 0 or 1.
   */
  setRegister(vcpu: number, reg: Reg, value: bigint | number): void {
    this.#checkVcpu(vcpu);
    const loc = this.#location(reg, 'reg');
    this.#setRegisters(vcpu, [{ loc, value: regValue(reg, loc, value, 'value') }]);
  }

  /** Read several registers with one ioctl per KVM struct (bhyve's vm_get_register_set). */
  getRegisters(vcpu: number, regs: readonly Reg[]): bigint[] {
    this.#checkVcpu(vcpu);
    if (!Array.isArray(regs)) throw new TypeError('regs must be an array');
    const locs = regs.map((r, i) => this.#location(r, `regs[${i}]`));
    const v = this.#vcpu(vcpu, 'vm_get_register');
    let gp: KvmRegs | undefined;
    let sr: KvmSregs | undefined;
    let dr: ReturnType<typeof decodeDebugregs> | undefined;
    let ev: DataView | undefined;
    return locs.map((l) => {
      switch (l.in) {
        case 'regs':
          return (gp ??= this.#getRegs(v))[l.field];
        case 'sregs':
          return (sr ??= decodeSregs(v.fd.getSregs()))[l.field];
        case 'segment':
          return BigInt((sr ??= decodeSregs(v.fd.getSregs()))[l.field].selector);
        case 'dtable':
          return (sr ??= decodeSregs(v.fd.getSregs()))[l.field].base;
        case 'debugregs': {
          dr ??= decodeDebugregs(v.fd.getDebugregs());
          return typeof l.field === 'number' ? dr.db[l.field] : dr[l.field];
        }
        case 'events':
          return BigInt(((ev ??= new DataView(v.fd.getVcpuEvents())).getUint8(EVENTS.interruptShadow)) ? 1 : 0);
        default:
          throw new Error('unreachable');
      }
    });
  }

  #location(reg: unknown, arg: string) {
    if (!isReg(reg)) throw new RangeError(`${arg}: unknown register ${String(reg)}`);
    const l = regLocation(reg);
    if (l.in === 'unsupported') throw new RangeError(`${arg}: ${l.why}`);
    return l;
  }

  /**
   * Write several registers, each struct read-modified-written once (bhyve's
   * vm_set_register_set). All arguments are checked before anything is written.
   */
  setRegisters(vcpu: number, entries: readonly (readonly [Reg, bigint | number])[]): void {
    this.#checkVcpu(vcpu);
    if (!Array.isArray(entries)) throw new TypeError('entries must be an array of [reg, value] pairs');
    const edits = entries.map((e, i) => {
      if (!Array.isArray(e) || e.length !== 2) throw new TypeError(`entries[${i}] must be a [reg, value] pair`);
      const loc = this.#location(e[0], `entries[${i}][0]`);
      return { loc, value: regValue(e[0] as Reg, loc, e[1], `entries[${i}][1]`) };
    });
    this.#setRegisters(vcpu, edits);
  }

  #setRegisters(vcpu: number, edits: { loc: RegLocation; value: bigint }[]): void {
    const v = this.#vcpu(vcpu, 'vm_set_register');
    const need = (k: string) => edits.some((e) => e.loc.in === k);
    const gp = need('regs') ? this.#getRegs(v) : undefined;
    const sr = need('sregs') || need('segment') || need('dtable') ? decodeSregs(v.fd.getSregs()) : undefined;
    const dr = need('debugregs') ? decodeDebugregs(v.fd.getDebugregs()) : undefined;
    const ev = need('events') ? new DataView(v.fd.getVcpuEvents()) : undefined;
    for (const { loc, value } of edits) {
      if (loc.in === 'regs') gp![loc.field] = value;
      else if (loc.in === 'sregs') sr![loc.field] = value;
      else if (loc.in === 'segment') sr![loc.field].selector = Number(value);
      else if (loc.in === 'dtable') sr![loc.field].base = value;
      else if (loc.in === 'debugregs') {
        if (typeof loc.field === 'number') dr!.db[loc.field] = value;
        else dr![loc.field] = value;
      } else if (loc.in === 'events') ev!.setUint8(EVENTS.interruptShadow, value ? 1 : 0);
    }
    if (sr) v.fd.setSregs(encodeSregs(sr));
    if (gp) v.fd.setRegs(encodeRegs(gp));
    if (dr) v.fd.setDebugregs(encodeDebugregs(dr));
    if (ev) v.fd.setVcpuEvents(ev.buffer as ArrayBuffer);
  }

  /** Set a segment register's or GDTR/IDTR's descriptor (bhyve's vm_set_desc). */
  setDesc(vcpu: number, reg: Reg, desc: SegmentDescriptor): void {
    this.#checkVcpu(vcpu);
    if (!isReg(reg) || !isDescReg(reg)) throw new RangeError(`reg: ${String(reg)} has no descriptor (segment registers, GDTR, IDTR)`);
    if (typeof desc !== 'object' || desc === null) throw new TypeError('desc must be an object');
    const base = toU64(desc.base, 'desc.base');
    const limit = checkInt(desc.limit, 'desc.limit', 0, 0xffffffff);
    const l = regLocation(reg);
    let access = 0;
    if (l.in === 'dtable') {
      if (limit > 0xffff) throw new RangeError(`desc.limit must be at most 0xffff for GDTR/IDTR, got 0x${limit.toString(16)}`);
      if (desc.access !== undefined && desc.access !== 0) throw new RangeError(`desc.access must be 0 for GDTR/IDTR (they have no access rights), got ${String(desc.access)}`);
    } else {
      access = checkInt(desc.access, 'desc.access', 0, 0x1ffff);
      if (access & 0xf00) throw new RangeError(`desc.access bits 8-11 are reserved in VMX access rights, got 0x${access.toString(16)}`);
    }
    const v = this.#vcpu(vcpu, 'vm_set_desc');
    const sr = decodeSregs(v.fd.getSregs());
    if (l.in === 'dtable') {
      sr[l.field] = { base, limit };
    } else if (l.in === 'segment') {
      const seg = sr[l.field];
      seg.base = base;
      seg.limit = limit;
      accessToSegment(access, seg);
    }
    v.fd.setSregs(encodeSregs(sr));
  }

  /** A segment register's or GDTR/IDTR's descriptor (bhyve's vm_get_desc). */
  getDesc(vcpu: number, reg: Reg): SegmentDescriptor {
    this.#checkVcpu(vcpu);
    if (!isReg(reg) || !isDescReg(reg)) throw new RangeError(`reg: ${String(reg)} has no descriptor (segment registers, GDTR, IDTR)`);
    const l = regLocation(reg);
    const sr = decodeSregs(this.#vcpu(vcpu, 'vm_get_desc').fd.getSregs());
    if (l.in === 'dtable') return { base: sr[l.field].base, limit: sr[l.field].limit, access: 0 };
    if (l.in !== 'segment') throw new Error('unreachable');
    const s = sr[l.field];
    return { base: s.base, limit: s.limit, access: segmentToAccess(s) };
  }

  /** Raw KVM register structs, for code that needs many at once (the runner, loaders). */
  getKvmRegs(vcpu: number): KvmRegs {
    return this.#getRegs(this.#vcpu(vcpu, 'KVM_GET_REGS'));
  }
  /** Write struct kvm_regs (every field checked first: a bigint in 64 bits). */
  setKvmRegs(vcpu: number, regs: KvmRegs): void {
    this.#checkVcpu(vcpu);
    const r = checkKvmRegs(regs);
    this.#vcpu(vcpu, 'KVM_SET_REGS').fd.setRegs(encodeRegs(r));
  }
  /** Read struct kvm_sregs. */
  getKvmSregs(vcpu: number): KvmSregs {
    return decodeSregs(this.#vcpu(vcpu, 'KVM_GET_SREGS').fd.getSregs());
  }
  /** Write struct kvm_sregs (every field checked first: no truncation of selectors, limits or flags). */
  setKvmSregs(vcpu: number, sregs: KvmSregs): void {
    this.#checkVcpu(vcpu);
    const s = checkKvmSregs(sregs);
    this.#vcpu(vcpu, 'KVM_SET_SREGS').fd.setSregs(encodeSregs(s));
  }

  // ---------------------------------------------------------------- snapshot state (KVM level)

  #stateTarget(syscall: string): VcpuStateTarget {
    const fd = this.#live(syscall);
    this.#stateCaps ??= { xsave: fd.checkExtension(KVM_CAP.XSAVE) > 0, xcrs: fd.checkExtension(KVM_CAP.XCRS) > 0 };
    return { ...this.#stateCaps, irqchip: this.irqchip, xsaveSize: native().xsaveSize(), msrIndexList: this.#msrs.hostList() };
  }

  /**
   * Finish the vCPU's last exit: KVM completes an I/O or MMIO exit (advances RIP past an
   * OUT, stores IN data …) only on the next KVM_RUN, and that pending work is in no state KVM
   * reports. One KVM_RUN with immediate_exit set does it and runs no guest instruction (the
   * KVM API documentation's advice before saving state).
   */
  #completePendingExit(h: VcpuHandle, vcpu: number, syscall: string): void {
    if (!h.ran) return; // never entered KVM_RUN: nothing pending
    h.run[RUN.immediateExit] = 1;
    let reason: number;
    try {
      reason = h.fd.run();
    } finally {
      h.run[RUN.immediateExit] = 0;
    }
    if (reason !== KVM_EXIT.INTR) {
      throw errnoError(
        'EAGAIN',
        syscall,
        `vcpu ${vcpu}: completing its last exit produced another (${describeExit(decodeExit(vcpu, h.run, h.view))}; a string I/O or MMIO instruction goes on): run the vCPU to handle it, then try again`,
      );
    }
  }

  /**
   * Everything KVM holds for `vcpu`, so that a guest restored from it (into this or a new VM)
   * does not notice: registers, segment and control registers, XSAVE (FPU where KVM has no
   * XSAVE) and XCRs, the MSRs of KVM_GET_MSR_INDEX_LIST that KVM reads for it (found once per
   * VM, see src/kvm-state.ts), IA32_TSC and the TSC rate, LAPIC, pending events, MP state and
   * debug registers. `encodeVcpuState` (src/kvm-state.ts) makes it JSON-safe.
   *
   * The vCPU must not be inside KVM_RUN: call it between {@link run} calls, or while a
   * VcpuRunner is paused (KvmError EBUSY from the runner otherwise). The last exit is
   * completed first (one KVM_RUN with immediate_exit, no guest instruction runs), so an IN's
   * or MMIO read's data must already be in place — save from a pause, not from inside the
   * handler of such an exit. Save every vCPU before {@link saveVmState}.
   *
   * @throws KvmError EBADF once destroyed, EBUSY if a runner has the vCPU in KVM_RUN, EAGAIN
   *   if completing the last exit produced another one (string I/O), or an ioctl's error.
   */
  saveVcpuState(vcpu: number): KvmVcpuState {
    this.#checkVcpu(vcpu);
    const target = this.#stateTarget('vm_save_vcpu_state');
    const h = this.#vcpu(vcpu, 'vm_save_vcpu_state');
    this.#completePendingExit(h, vcpu, 'vm_save_vcpu_state');
    this.#mpChecked[vcpu] = false; // KVM_GET_MP_STATE may accept a pending INIT/SIPI
    return captureVcpuState(h.fd, target, this.#msrs);
  }

  /**
   * Put a {@link saveVcpuState} state into `vcpu` (of this VM or a new one with the same
   * vCPU count, irqchip and CPUID options). The state is checked completely first, and
   * against this VM (LAPIC state exactly when it has an in-kernel irqchip, the host's XSAVE
   * size, MSRs this host's KVM lists): TypeError/RangeError naming the field, with nothing
   * changed. The order the parts are written in matters; it is documented at
   * `applyVcpuState` in src/kvm-state.ts (TSC rate, MP state, regs, sregs, XSAVE, XCRs, debug
   * registers, LAPIC, MSRs with IA32_TSC first and IA32_TSC_DEADLINE last, events).
   *
   * Restore the vCPUs first, then {@link restoreVmState} (the IOAPIC then delivers into
   * restored LAPICs), then run. Like {@link saveVcpuState}, not while the vCPU is in KVM_RUN.
   *
   * @throws TypeError/RangeError for a bad or unfitting state; KvmError EBADF once destroyed,
   *   EBUSY if a runner has the vCPU in KVM_RUN, EINVAL naming an MSR KVM refuses, or an
   *   ioctl's error (the vCPU is then partly restored).
   */
  restoreVcpuState(vcpu: number, state: KvmVcpuState): void {
    this.#checkVcpu(vcpu);
    const s = checkVcpuState(state);
    checkVcpuStateFits(s, this.#stateTarget('vm_restore_vcpu_state'));
    const h = this.#vcpu(vcpu, 'vm_restore_vcpu_state'); // creates the vCPU and sets its CPUID first
    this.#completePendingExit(h, vcpu, 'vm_restore_vcpu_state'); // or it would be completed on top of the new state
    this.#mpChecked[vcpu] = false;
    applyVcpuState(h.fd, s);
  }

  /**
   * The VM's in-kernel device state: the irqchip's PIC master, PIC slave and IOAPIC (if the
   * VM has the in-kernel irqchip), the PIT (if it has one) and the kvmclock.
   * `encodeVmState` (src/kvm-state.ts) makes it JSON-safe. Take it after every vCPU's
   * {@link saveVcpuState}, with no vCPU in KVM_RUN (KvmError EBUSY from a runner otherwise).
   */
  saveVmState(): KvmVmState {
    const fd = this.#live('vm_save_vm_state');
    for (let v = 0; v < this.vcpuCount; v++) this.#guard?.(v, 'vm_save_vm_state');
    return captureVmState(fd, { irqchip: this.irqchip, pit: this.pit });
  }

  /**
   * Put a {@link saveVmState} state into this VM: PIT, PICs, IOAPIC, then the kvmclock, which
   * continues from the saved value (no time passes for the guest while it was saved, as for
   * the TSC). Checked completely first, and against this VM (irqchip and PIT state exactly
   * when it has them): TypeError/RangeError naming the field, with nothing changed. Call it
   * after every vCPU's {@link restoreVcpuState}, with no vCPU in KVM_RUN.
   */
  restoreVmState(state: KvmVmState): void {
    const s = checkVmState(state);
    checkVmStateFits(s, { irqchip: this.irqchip, pit: this.pit });
    const fd = this.#live('vm_restore_vm_state');
    for (let v = 0; v < this.vcpuCount; v++) this.#guard?.(v, 'vm_restore_vm_state');
    this.#mpChecked.fill(false); // the IOAPIC may deliver what was pending
    applyVmState(fd, s);
  }

  // ---------------------------------------------------------------- pinning and running

  /** The host CPU `vcpu` is pinned to, or -1 (bhyve's vm_get_pinning). */
  getPinning(vcpu: number): number {
    this.#checkVcpu(vcpu);
    this.#live('vm_get_pinning');
    return this.#pinning[vcpu];
  }

  /**
   * Pin `vcpu` to host CPU `hostCpu` (-1 unpins). It applies to whichever thread runs the
   * vCPU: the caller of {@link run}, or the runner's worker.
   */
  setPinning(vcpu: number, hostCpu: number): void {
    this.#checkVcpu(vcpu);
    this.#live('vm_set_pinning');
    // any online CPU: the calling thread's own mask (it may be pinned itself) does not bound the vCPU's
    const max = Math.max(cpus().length, ...native().getThreadAffinity().map((c) => c + 1)) - 1;
    checkInt(hostCpu, 'hostCpu', -1, max);
    this.#pinning[vcpu] = hostCpu;
  }

  /**
   * The guest TSC frequency of `vcpu` in kHz (KVM_GET_TSC_KHZ): what the guest's `rdtsc`
   * counts at, and the rate KVM converts TSC-deadline timer values with.
   */
  getTscKhz(vcpu: number): number {
    return this.#vcpu(vcpu, 'KVM_GET_TSC_KHZ').fd.getTscKhz();
  }

  /**
   * Set the guest TSC frequency of `vcpu` in kHz (KVM_SET_TSC_KHZ; 0 = the host's rate).
   * Without hardware TSC scaling KVM refuses rates below the host's, and runs faster ones by
   * catching the TSC up on each entry.
   */
  setTscKhz(vcpu: number, khz: number): void {
    checkInt(khz, 'khz', 0, 0xffffffff);
    this.#vcpu(vcpu, 'KVM_SET_TSC_KHZ').fd.setTscKhz(khz);
  }

  /**
   * Run `vcpu` on the calling thread until its next exit (bhyve's vm_run). If `rip` is
   * given, RIP is set first. For an IN or MMIO read, fill `exit.data` before the next run.
   *
   * With the in-kernel irqchip (the default) HLT stays in the kernel: a guest that halts with
   * interrupts disabled, or spins, keeps this call blocked. Pass `opts.timeoutMs` to get an
   * 'interrupted' exit instead, use the worker-thread runner (`VcpuRunner`, which can stop
   * and notices such halts), or create the VM with `irqchip: false` to get 'hlt' exits.
   *
   * A vCPU that waits for INIT/SIPI (KVM_GET_MP_STATE: UNINITIALIZED or INIT_RECEIVED, as
   * every AP does after creation or {@link vcpuReset} with the in-kernel irqchip) could never
   * leave KVM_RUN here: only another vCPU can send the SIPI, and none runs while this call
   * blocks the thread. Without `opts.timeoutMs` that is refused with KvmError EDEADLK, before
   * anything changes: run the BSP until it has sent INIT/SIPI, set the MP state, or use the
   * runner. (The state is read again after any other vCPU ran, after vcpuReset, and after
   * the raw fds were handed out; a state set later through a raw fd kept from before is not.)
   */
  run(vcpu: number, rip?: bigint | number, opts: RunOptions = {}): VmExit {
    this.#checkVcpu(vcpu);
    const ripValue = rip === undefined ? undefined : toU64(rip, 'rip');
    if (typeof opts !== 'object' || opts === null) throw new TypeError(`opts must be an object (RunOptions), got ${show(opts)}`);
    const timeoutMs = opts.timeoutMs === undefined ? undefined : checkInt(opts.timeoutMs, 'opts.timeoutMs', 1, 2 ** 31 - 1);
    if (this.#owner !== undefined) throw errnoError('EBUSY', 'vm_run', `vCPUs of '${this.name}' are driven by ${this.#owner}`);
    const v = this.#vcpu(vcpu, 'KVM_RUN');
    if (timeoutMs === undefined && this.irqchip && !this.#mpChecked[vcpu]) this.#refuseIfWaitingForSipi(v, vcpu);
    v.ran = true;
    if (ripValue !== undefined) this.#setRegisters(vcpu, [{ loc: regLocation(Reg.RIP), value: ripValue }]);
    const pin = this.#pinning[vcpu];
    if (this.#appliedPinning.get(0) !== pin) {
      native().setThreadAffinity(pin);
      this.#appliedPinning.set(0, pin);
    }
    try {
      if (timeoutMs === undefined) v.fd.run();
      else v.fd.run(timeoutMs);
    } finally {
      // this vCPU may have sent INIT to the others
      for (let u = 0; u < this.vcpuCount; u++) if (u !== vcpu) this.#mpChecked[u] = false;
    }
    return decodeExit(vcpu, v.run, v.view);
  }

  #refuseIfWaitingForSipi(v: VcpuHandle, vcpu: number): void {
    let state: number;
    try {
      state = new DataView(v.fd.getMpState()).getUint32(0, true);
    } catch (e) {
      if (e instanceof KvmError) return; // no KVM_GET_MP_STATE: nothing to go by
      throw e;
    }
    if (state === KVM_MP_STATE.UNINITIALIZED || state === KVM_MP_STATE.INIT_RECEIVED) {
      const name = state === KVM_MP_STATE.UNINITIALIZED ? 'UNINITIALIZED' : 'INIT_RECEIVED';
      throw errnoError(
        'EDEADLK',
        'vm_run',
        `vcpu ${vcpu} waits for INIT/SIPI (KVM_MP_STATE_${name}) and would never leave KVM_RUN: no other vCPU runs while vm.run blocks this thread. Run the BSP until it has sent the SIPI, set the MP state, pass opts.timeoutMs, or use the runner`,
      );
    }
    this.#mpChecked[vcpu] = true;
  }

  // ---------------------------------------------------------------- interrupts and events

  /**
   * Inject an event into `vcpu` (bhyve's vm_inject_event): an exception (with an optional
   * error code), an NMI, an external interrupt or a software interrupt.
   */
  injectEvent(vcpu: number, type: EventType, vector: number, errorCode?: number): void {
    this.#checkVcpu(vcpu);
    if (EventType[type] === undefined) throw new RangeError(`type: unknown event type ${String(type)}`);
    checkInt(vector, 'vector', 0, 255);
    if (errorCode !== undefined) checkInt(errorCode, 'errorCode', 0, 0xffffffff);
    const isException = type === EventType.HwException || type === EventType.SwException || type === EventType.PrivSwException;
    if (isException && vector >= 32) throw new RangeError('vector must be below 32 for an exception');
    if (!isException && errorCode !== undefined) throw new RangeError('errorCode is only valid for exceptions');
    if (type === EventType.Nmi) return this.injectNmi(vcpu);
    if (type === EventType.HwIntr) {
      if (this.irqchip) return this.lapicIrq(vcpu, vector);
      this.#vcpu(vcpu, 'KVM_INTERRUPT').fd.interrupt(vector);
      return;
    }
    const v = this.#vcpu(vcpu, 'KVM_SET_VCPU_EVENTS');
    const ev = new DataView(v.fd.getVcpuEvents());
    if (isException) setInjectedException(ev, vector, errorCode);
    else {
      ev.setUint8(EVENTS.interruptInjected, 1);
      ev.setUint8(EVENTS.interruptNr, vector);
      ev.setUint8(EVENTS.interruptSoft, 1);
      ev.setUint32(EVENTS.flags, 0, true);
    }
    v.fd.setVcpuEvents(ev.buffer as ArrayBuffer);
  }

  /** The vCPU whose local APIC has id `apicId` (bhyve's vm_apicid2vcpu): APIC id = vCPU. */
  apicIdToVcpu(apicId: number): number {
    this.#live('vm_apicid2vcpu');
    checkInt(apicId, 'apicId', 0, 0xffffffff);
    if (apicId >= this.vcpuCount) throw new RangeError(`apicId: no vCPU has APIC id ${apicId}`);
    return apicId;
  }

  #requireIrqchip(syscall: string): NativeVmFd {
    const fd = this.#live(syscall);
    if (!this.irqchip) throw errnoError('ENXIO', syscall, 'the VM has no in-kernel local APIC (created with irqchip: false)');
    return fd;
  }

  /** Deliver a fixed, edge-triggered interrupt `vector` to `vcpu`'s local APIC (bhyve's vm_lapic_irq). */
  lapicIrq(vcpu: number, vector: number): void {
    this.#checkVcpu(vcpu);
    checkInt(vector, 'vector', 16, 255);
    const fd = this.#requireIrqchip('vm_lapic_irq');
    this.#vcpu(vcpu, 'vm_lapic_irq', false); // a VM-fd MSI: fine while the vCPU runs
    fd.signalMsi((0xfee00000 | (vcpu << 12)) >>> 0, 0, vector);
  }

  /**
   * Deliver a message-signalled interrupt (bhyve's vm_raise_msi; KVM_SIGNAL_MSI): what a
   * device's MSI or MSI-X write of `data` to `addressHi:addressLo` does. The address must be
   * in the local APICs' interrupt range 0xfee00000-0xfeefffff (`addressHi` may carry extended
   * destination id bits); the destination, mode and vector come from the address and data as
   * the guest programmed them. Returns true when a local APIC accepted it, false when the
   * guest's state blocked it (e.g. no vCPU matched the destination, or its APIC is disabled).
   *
   * @throws TypeError/RangeError naming a bad argument; KvmError ENXIO without the in-kernel
   *   irqchip (`Vm.create(..., { irqchip: false })`), EBADF once destroyed.
   */
  raiseMsi(addressLo: number, addressHi: number, data: number): boolean {
    checkInt(addressLo, 'addressLo', 0, 0xffff_ffff);
    checkInt(addressHi, 'addressHi', 0, 0xffff_ffff);
    checkInt(data, 'data', 0, 0xffff_ffff);
    if ((addressLo & 0xfff0_0000) >>> 0 !== MSI_ADDRESS_BASE) {
      throw new RangeError(`addressLo must be in the MSI range 0xfee00000-0xfeefffff, got 0x${addressLo.toString(16)}`);
    }
    const fd = this.#requireIrqchip('vm_raise_msi');
    this.#mpChecked.fill(false); // the message may carry an INIT or a SIPI
    return fd.signalMsi(addressLo, addressHi, data) > 0;
  }

  /** Send an NMI to `vcpu` (bhyve's vm_inject_nmi). */
  injectNmi(vcpu: number): void {
    this.#checkVcpu(vcpu);
    const v = this.#vcpu(vcpu, 'vm_inject_nmi', !this.irqchip);
    if (this.irqchip) this.#fd!.signalMsi((0xfee00000 | (vcpu << 12)) >>> 0, 0, 4 << 8);
    else v.fd.nmi();
  }

  /** Drive an in-kernel PIC/IOAPIC input (KVM_IRQ_LINE). */
  irqLine(irq: number, level: boolean): void {
    checkInt(irq, 'irq', 0, 1023);
    if (typeof level !== 'boolean') throw new TypeError('level must be a boolean');
    this.#requireIrqchip('KVM_IRQ_LINE').irqLine(irq, level ? 1 : 0);
  }

  // ---------------------------------------------------------------- capabilities

  /**
   * bhyve's vm_get_capability: hlt_exit and pause_exit are 1 unless disabled with
   * KVM_CAP_X86_DISABLE_EXITS; mtrap_exit is the vCPU's single-step state;
   * unrestricted_guest is 1 where KVM runs real-mode guests.
   */
  getCapability(vcpu: number, cap: Capability | string): number {
    this.#checkVcpu(vcpu);
    const c = resolveCapability(cap);
    this.#live('vm_get_capability');
    switch (c) {
      case Capability.HltExit:
        return this.#disabledExits & KVM_X86_DISABLE_EXITS.HLT ? 0 : 1;
      case Capability.PauseExit:
        return this.#disabledExits & KVM_X86_DISABLE_EXITS.PAUSE ? 0 : 1;
      case Capability.MtrapExit:
        return this.#mtrap[vcpu] ? 1 : 0;
      case Capability.UnrestrictedGuest:
        return unrestrictedGuest() ? 1 : 0;
    }
  }

  /**
   * bhyve's vm_set_capability. mtrap_exit (single-step) can change at any time; hlt_exit
   * and pause_exit can only be turned off, VM-wide, before any vCPU is used (KVM's rule);
   * unrestricted_guest is fixed by the host. `value` is a boolean, 0 or 1: anything else is a
   * TypeError/RangeError before anything changes.
   */
  setCapability(vcpu: number, cap: Capability | string, value: number | boolean): void {
    this.#checkVcpu(vcpu);
    const c = resolveCapability(cap);
    const on = capabilityValue(value);
    const fd = this.#live('vm_set_capability');
    if (c === Capability.MtrapExit) {
      const dbg = new Uint8Array(SIZEOF.kvm_guest_debug);
      new DataView(dbg.buffer).setUint32(0, on ? KVM_GUESTDBG.ENABLE | KVM_GUESTDBG.SINGLESTEP : 0, true);
      this.#vcpu(vcpu, 'KVM_SET_GUEST_DEBUG').fd.setGuestDebug(dbg);
      this.#mtrap[vcpu] = on;
      return;
    }
    if (c === Capability.UnrestrictedGuest) {
      if (on === unrestrictedGuest()) return;
      throw errnoError('ENOTSUP', 'vm_set_capability', 'unrestricted_guest is a property of the host KVM module, not of a VM');
    }
    const bit = c === Capability.HltExit ? KVM_X86_DISABLE_EXITS.HLT : KVM_X86_DISABLE_EXITS.PAUSE;
    const name = c === Capability.HltExit ? 'hlt_exit' : 'pause_exit';
    if (on === !(this.#disabledExits & bit)) return;
    if (on) throw errnoError('ENOTSUP', 'vm_set_capability', `${name} cannot be turned back on once disabled (KVM_CAP_X86_DISABLE_EXITS is one-way)`);
    if (this.#vcpus.some((v) => v !== undefined)) {
      throw errnoError('EBUSY', 'vm_set_capability', `${name} can change only before any vCPU is used (KVM_CAP_X86_DISABLE_EXITS)`);
    }
    const supported = kvm().checkExtension(KVM_CAP.X86_DISABLE_EXITS);
    if (!(supported & bit)) throw errnoError('ENOTSUP', 'vm_set_capability', `this host cannot disable ${name}`);
    fd.enableCap(KVM_CAP.X86_DISABLE_EXITS, [this.#disabledExits | bit]);
    this.#disabledExits |= bit;
  }

  // ---------------------------------------------------------------- stats

  #statsReader(vcpu: number): StatsReader {
    // reading an open stats fd needs no vCPU ioctl: only opening it is guarded
    const open = this.#vcpus[vcpu]?.stats;
    if (open && this.#fd) return open;
    const v = this.#vcpu(vcpu, 'KVM_GET_STATS_FD');
    if (!v.stats) {
      const n = native();
      v.stats = new StatsReader(new n.FileFd(v.fd.getStatsFd()) as NativeFileFd);
    }
    return v.stats;
  }

  /**
   * The vCPU's statistics (bhyve's vm_get_stats): KVM's binary stats, followed by vmmapi's
   * own counters (see {@link addStat}). Names come from {@link getStatDesc}.
   */
  getStats(vcpu: number): VcpuStats {
    this.#checkVcpu(vcpu);
    const values = this.#statsReader(vcpu).read();
    for (const v of this.#userStats.values()) values.push(v[vcpu]);
    return { time: Date.now(), values };
  }

  /** The name of statistic `index`, or undefined past the last (bhyve's vm_get_stat_desc). */
  getStatDesc(index: number): string | undefined {
    checkInt(index, 'index', 0, 2 ** 31);
    this.#live('vm_get_stat_desc');
    const d = this.#statsReader(0).descriptors;
    if (index < d.length) return d[index].name;
    return [...this.#userStats.keys()][index - d.length];
  }

  /** The statistics of `vcpu` by name. */
  getStatsByName(vcpu: number): Record<string, bigint> {
    const { values } = this.getStats(vcpu);
    const out: Record<string, bigint> = {};
    values.forEach((v, i) => (out[this.getStatDesc(i)!] = v));
    return out;
  }

  /**
   * Add `delta` to vmmapi counter `name` of `vcpu` (created at 0 on first use). `name` is a
   * non-empty string; `delta` a bigint or a safe integer (default 1n), and the counter must
   * stay in [0, 2^64): RangeError otherwise, with nothing changed.
   */
  addStat(vcpu: number, name: string, delta: bigint | number = 1n): void {
    this.#checkVcpu(vcpu);
    if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${show(name)}`);
    if (name.length === 0) throw new RangeError('name must be a non-empty string');
    let d: bigint;
    if (typeof delta === 'bigint') d = delta;
    else if (typeof delta === 'number') {
      if (!Number.isSafeInteger(delta)) throw new RangeError(`delta must be a safe integer or a bigint, got ${delta}`);
      d = BigInt(delta);
    } else throw new TypeError(`delta must be a bigint or a number, got ${show(delta)}`);
    const v = this.#userStats.get(name);
    const next = (v?.[vcpu] ?? 0n) + d;
    if (next < 0n || next >= 1n << 64n) throw new RangeError(`delta: counter '${name}' of vcpu ${vcpu} would become ${next}, outside [0, 2^64)`);
    if (v) v[vcpu] = next;
    else {
      const fresh = new Array<bigint>(this.vcpuCount).fill(0n);
      fresh[vcpu] = next;
      this.#userStats.set(name, fresh);
    }
  }

  // ---------------------------------------------------------------- x2APIC and reset

  /** Whether `vcpu`'s local APIC is in x2APIC mode (bhyve's vm_get_x2apic_state). */
  getX2apicState(vcpu: number): X2apicState {
    this.#checkVcpu(vcpu);
    this.#requireIrqchip('vm_get_x2apic_state');
    const base = this.getKvmSregs(vcpu).apicBase;
    return (base & (1n << 10n)) !== 0n ? X2apicState.Enabled : X2apicState.Disabled;
  }

  /** Put `vcpu`'s local APIC in x2APIC mode or back in xAPIC mode (bhyve's vm_set_x2apic_state). */
  setX2apicState(vcpu: number, state: X2apicState): void {
    this.#checkVcpu(vcpu);
    if (state !== X2apicState.Enabled && state !== X2apicState.Disabled) throw new RangeError(`state: unknown x2APIC state ${String(state)}`);
    this.#requireIrqchip('vm_set_x2apic_state');
    const sr = this.getKvmSregs(vcpu);
    const EN = 1n << 11n;
    const EXTD = 1n << 10n;
    sr.apicBase = state === X2apicState.Enabled ? sr.apicBase | EN | EXTD : (sr.apicBase | EN) & ~EXTD;
    this.setKvmSregs(vcpu, sr);
  }

  /**
   * Put `vcpu` in the Intel SDM power-on state (bhyve's vcpu_reset), including CR2, the
   * debug registers, x87/SSE state and pending events. With an in-kernel irqchip, vCPUs other
   * than 0 wait for INIT/SIPI.
   */
  vcpuReset(vcpu: number): void {
    this.#checkVcpu(vcpu);
    const v = this.#vcpu(vcpu, 'vcpu_reset');
    this.#mpChecked[vcpu] = false;
    const cpuid = this.#supportedCpuid ?? [];
    const sig = cpuid.find((e) => e.function === 1)?.eax ?? 0x600;
    const sr = resetSregs(decodeSregs(v.fd.getSregs()), vcpu === 0);
    const dr = decodeDebugregs(v.fd.getDebugregs());
    dr.db = [0n, 0n, 0n, 0n];
    dr.dr6 = RESET_DR6;
    dr.dr7 = RESET_DR7;
    const fpu = new DataView(new ArrayBuffer(SIZEOF.kvm_fpu));
    fpu.setUint16(FPU.fcw, RESET_FCW, true);
    fpu.setUint32(FPU.mxcsr, RESET_MXCSR, true);
    const ev = new DataView(new ArrayBuffer(SIZEOF.kvm_vcpu_events));
    const mp = new DataView(new ArrayBuffer(SIZEOF.kvm_mp_state));
    mp.setUint32(0, vcpu === 0 || !this.irqchip ? KVM_MP_STATE.RUNNABLE : KVM_MP_STATE.UNINITIALIZED, true);
    v.fd.setSregs(encodeSregs(sr));
    v.fd.setRegs(encodeRegs(resetRegs(sig & 0x0fff3fff)));
    v.fd.setDebugregs(encodeDebugregs(dr));
    v.fd.setFpu(fpu.buffer as ArrayBuffer);
    v.fd.setVcpuEvents(ev.buffer as ArrayBuffer);
    if (this.irqchip) v.fd.setMpState(mp.buffer as ArrayBuffer);
    try {
      const xcrs = new DataView(new ArrayBuffer(SIZEOF.kvm_xcrs));
      xcrs.setUint32(0, 1, true);
      xcrs.setBigUint64(16, 1n, true); // XCR0 = x87
      v.fd.setXcrs(xcrs.buffer as ArrayBuffer);
    } catch (e) {
      if (!(e instanceof KvmError)) throw e; // hosts without XSAVE
    }
  }

  /** KVM_CHECK_EXTENSION on the VM fd: 0 if KVM lacks capability `cap` (a KVM_CAP number), else its value. */
  checkExtension(cap: number): number {
    checkInt(cap, 'cap', 0, 2 ** 31 - 1);
    return this.#live('KVM_CHECK_EXTENSION').checkExtension(cap);
  }

  // ---------------------------------------------------------------- ioeventfd

  /**
   * Have KVM absorb guest writes to a port or MMIO address (KVM_IOEVENTFD): the vCPU does not
   * exit, and `onWrite(count)` runs on this thread's event loop afterwards (count: writes since
   * its last call; several writes may come as one call). For doorbells such as virtio queue
   * notifications; see src/io-events.ts. A VcpuRunner's devices never see these writes.
   */
  addIoEventFd(options: IoEventFdOptions, onWrite: (count: number) => void): IoEventFd {
    return this.#ioEvents.add(options, onWrite);
  }

  // ---------------------------------------------------------------- PCI passthrough (VFIO)

  /** Assign host PCI device bus:slot.func to the VM through VFIO (bhyve's vm_assign_pptdev). */
  assignPptdev(bus: number, slot: number, func: number): void {
    this.#ppt.assign(bus, slot, func);
  }
  /** Release an assigned device (bhyve's vm_unassign_pptdev). */
  unassignPptdev(bus: number, slot: number, func: number): void {
    this.#ppt.unassign(bus, slot, func);
  }
  /** Map the device BAR at host physical `hpa` to guest `gpa` (bhyve's vm_map_pptdev_mmio). */
  mapPptdevMmio(bus: number, slot: number, func: number, gpa: number, len: number, hpa: bigint | number): void {
    this.#ppt.mapMmio(bus, slot, func, gpa, len, hpa);
  }
  /** Route the device's MSI vectors to `destcpu` (bhyve's vm_setup_pptdev_msi). */
  setupMsi(vcpu: number, bus: number, slot: number, func: number, destcpu: number, vector: number, numvec: number): void {
    this.#ppt.setupMsi(vcpu, bus, slot, func, destcpu, vector, numvec);
  }
  /** Program MSI-X table entry `idx` (bhyve's vm_setup_pptdev_msix). */
  setupMsix(vcpu: number, bus: number, slot: number, func: number, idx: number, msg: number, vectorControl: number, addr: bigint | number): void {
    this.#ppt.setupMsix(vcpu, bus, slot, func, idx, msg, vectorControl, addr);
  }
}

let unrestrictedCache: boolean | undefined;
function unrestrictedGuest(): boolean {
  if (unrestrictedCache === undefined) {
    try {
      unrestrictedCache = /^[Y1]/.test(readFileSync('/sys/module/kvm_intel/parameters/unrestricted_guest', 'utf8'));
    } catch {
      unrestrictedCache = true; // AMD SVM, PVM and others run real mode directly or by emulation
    }
  }
  return unrestrictedCache;
}

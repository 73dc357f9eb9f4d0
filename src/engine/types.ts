/**
 * The contracts between the parts of the CPL0 engine (issue 15): the engine proper
 * (src/engine/cpu.ts and friends: decoder, interpreter, lazy flags), its memory management
 * unit (src/engine/mmu.ts: guest page-table walks, a software TLB, code-page write tracking)
 * and whoever drives it (the differential tests, the benchmark, later the vCPU worker).
 *
 * The engine runs a vCPU's ring-0 code from its KVM register state and hands the state back.
 * Registers cross this boundary as the structures of src/kvm/structs.ts (bigint fields),
 * the form the vCPU ioctls already use; inside, the engine keeps what is fastest for it.
 */
import type { KvmRegs, KvmSregs } from '../kvm/structs.js';

/** The kinds of linear-memory access the MMU translates. */
export const ACCESS = { READ: 0, WRITE: 1, FETCH: 2 } as const;
/** One of {@link ACCESS}. */
export type AccessKind = (typeof ACCESS)[keyof typeof ACCESS];

/**
 * An architectural exception raised while executing (thrown by the MMU and the interpreter,
 * caught at the instruction boundary). The instruction that raised it has changed nothing
 * but accessed/dirty bits of paging structures.
 */
export class GuestException extends Error {
  constructor(
    /** The vector (0-31). */
    readonly vector: number,
    /** The error code, for the vectors that push one. */
    readonly errorCode?: number,
    /** For #PF: the faulting linear address, for CR2. */
    readonly cr2?: bigint,
  ) {
    super(`guest exception ${vector}${errorCode === undefined ? '' : ` (error code ${errorCode})`}`);
  }
}

/**
 * The state the MMU translates with: refreshed by the engine whenever CR0, CR3, CR4, EFER,
 * the CPL or RFLAGS.AC change (each change that affects translations flushes the TLB as
 * the architecture says: a CR3 load flushes non-global entries, CR0.PG/WP, CR4.PGE/PAE/
 * PSE/SMEP/SMAP/LA57 and EFER.NXE flush everything).
 */
export interface MmuControl {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
  cpl: number;
  ac: boolean;
}

/**
 * Linear-address memory for the engine: translation through the guest's page tables (when
 * CR0.PG is set; linear = physical otherwise), with the SDM's permission checks and A/D-bit
 * updates, over guest-physical memory. Every access is bounds-checked: an address that
 * translates to unbacked guest-physical memory is {@link MmioAccess MMIO}; a failed
 * translation throws {@link GuestException} (#PF with error code and CR2).
 *
 * Accesses that cross a page boundary are split; both pages are translated (and checked)
 * before either is written. Values of 1, 2 and 4 bytes are numbers (unsigned); 8-byte
 * values are bigints (unsigned).
 */
export interface EngineMmu {
  /** Set the translation state (see {@link MmuControl}); flushes as the architecture says. */
  setControl(c: MmuControl): void;
  /** INVLPG: drop the translations of the page containing `la`. */
  invalidatePage(la: bigint): void;
  /** Drop every translation (including global ones). */
  flushAll(): void;

  read8(la: bigint, kind?: AccessKind): number;
  read16(la: bigint): number;
  read32(la: bigint): number;
  read64(la: bigint): bigint;
  write8(la: bigint, v: number): void;
  write16(la: bigint, v: number): void;
  write32(la: bigint, v: number): void;
  write64(la: bigint, v: bigint): void;

  /**
   * The guest-physical address of the code page containing `la` (checked as an instruction
   * fetch), for the decode cache; throws {@link GuestException} as a fetch would.
   */
  translateFetch(la: bigint): number;
  /**
   * Called with the guest-physical page number of every page written through this MMU
   * that is registered with {@link watchCode} (for decode-cache invalidation).
   */
  onCodeWrite?: (gpaPage: number) => void;
  /** Register a guest-physical page as holding decoded code (writes to it call {@link onCodeWrite}). */
  watchCode(gpaPage: number): void;
}

/** Port I/O and MMIO from the engine: answered through the same buses as KVM exits. */
export interface EngineIo {
  /** IN: the value read (unclaimed ports read as all ones). */
  pioRead(port: number, size: 1 | 2 | 4): number;
  pioWrite(port: number, size: 1 | 2 | 4, value: number): void;
  /** An access to guest-physical memory that is not RAM. */
  mmioRead(gpa: number, size: 1 | 2 | 4 | 8): bigint;
  mmioWrite(gpa: number, size: 1 | 2 | 4 | 8, value: bigint): void;
}

/** The MSRs a ring-0 kernel uses that live outside kvm_regs/kvm_sregs. */
export interface EngineMsrs {
  star: bigint;
  lstar: bigint;
  cstar: bigint;
  fmask: bigint;
  kernelGsBase: bigint;
  tscAux: bigint;
}

/** A vCPU's state as the engine takes it and hands it back. */
export interface EngineState {
  regs: KvmRegs;
  sregs: KvmSregs;
  msrs: EngineMsrs;
}

/** Why {@link EngineRun} returned. In every case the state is at an instruction boundary. */
export type EngineStop =
  /** The instruction budget ran out. */
  | { kind: 'budget' }
  /** HLT executed (RIP is past it). */
  | { kind: 'hlt' }
  /** The vCPU left ring 0 (IRETQ/SYSRETQ to CPL 3): KVM runs it from here. */
  | { kind: 'cpl3' }
  /** An exception that could not be delivered (no valid IDT entry, a fault while delivering one: a triple fault). */
  | { kind: 'shutdown'; vector: number }
  /** An instruction the engine does not implement: nothing changed, RIP is at it. */
  | { kind: 'unsupported'; rip: bigint; bytes: Uint8Array; reason: string };

/**
 * The guest both sides of the engine's differential tests run (issue 15): one memory layout,
 * one register set-up and one way of reading the outcome back, shared by the KVM reference
 * (kvm-reference.ts, native CPL 3) and the engine adapter (engine-adapter.ts, CPL 0).
 *
 * Guest-physical = linear (identity-mapped with 4 KiB pages in the first 2 MiB; nothing else
 * is mapped). Upper paging levels are present, writable and user; the leaves say what each
 * region allows:
 *
 * | Region | Address | Leaf | Contents |
 * |---|---|---|---|
 * | GDT | 0x1000 | supervisor RW | null, kernel code 0x08, kernel data 0x10, user data 0x18, user code 0x20, TSS 0x28 |
 * | IDT | 0x2000 | supervisor RW | 256 64-bit interrupt gates, DPL 3, IST 1, to {@link HANDLERS} + 4·vector |
 * | TSS | 0x3000 | supervisor RW | RSP0 = IST1 = {@link KSTACK_TOP} |
 * | handlers | 0x4000 | supervisor RO, executable | per vector `out %al,$0xff ; hlt ; nop` |
 * | kernel stack | 0x5000-0x8fff | supervisor RW, NX | exception frames |
 * | page tables | 0x10000-0x13fff | supervisor RW, NX | PML4, PDPT, PD, PT |
 * | code | {@link CODE} (16 KiB) | user RO, executable | the sequence, then {@link TERMINATOR} (`hlt`), then `ud2` filler |
 * | data window | {@link DATA} (64 KiB) | user RW, NX | `test.data` (compared) |
 * | read-only data | {@link RODATA} (4 KiB) | user RO, NX | byte i = (i · 37 + 11) & 0xff |
 *
 * Everything else (page 0, 0x10f000 just below the window, 0x121000 just above the read-only
 * page, ≥ 2 MiB) is not present. CR0 = PE|MP|ET|NE|WP|PG (no AM: no #AC at CPL 3, which CPL 0
 * could not mirror; WP so CPL 0 faults on the read-only pages as CPL 3 does), CR4 = PAE (no
 * OSFXSR: SSE is #UD; no SMEP/SMAP/UMIP/TSD/PCE), EFER = LME|LMA|NXE (SCE clear: `syscall` is #UD).
 */
import type { GuestMemoryAccess } from '../../src/memory/access.js';
import { REGS_FIELDS, type GprName, type KvmRegs, type KvmSegment, type KvmSregs } from '../../src/kvm/structs.js';

/** The GDT's address. */
export const GDT = 0x1000;
/** The IDT's address. */
export const IDT = 0x2000;
/** The TSS's address. */
export const TSS = 0x3000;
/** The exception handlers: vector v's at HANDLERS + 4v. */
export const HANDLERS = 0x4000;
/** The top of the kernel (IST 1) stack the exception frames are pushed on. */
export const KSTACK_TOP = 0x9000;
/** The PML4 (then PDPT, PD and the one PT, a page each). */
export const PML4 = 0x10000;
/** The code region: the sequence starts here. */
export const CODE = 0x100000;
/** The code region's size: a sequence may be up to CODE_SIZE - TERMINATOR.length bytes. */
export const CODE_SIZE = 0x4000;
/** The data window (user, writable): initialised from `test.data`, compared afterwards. */
export const DATA = 0x110000;
/** The data window's size. */
export const DATA_SIZE = 0x10000;
/** A user read-only page (writes #PF with error code 7 at CPL 3). */
export const RODATA = 0x120000;
/** RAM the layout needs (the VM's memory size; the engine's bufferMemory size). */
export const MEMORY_SIZE = 0x200000;
/** The default RSP: in the data window, so pushes are compared. */
export const DEFAULT_RSP = BigInt(DATA + 0xf000);
/** The port every exception handler writes. */
export const HANDLER_PORT = 0xff;
/**
 * Appended after each sequence: `hlt`. Natively (CPL 3) it raises #GP(0), which the harness
 * reads as 'done' when RIP is the terminator's; the engine (CPL 0) stops at it. Neither
 * changes a register or flag (RF in the #GP frame is masked), so the state is the sequence's.
 * (The brief's `out` with IOPL 3 does not work here: this PVM host runs guest user mode with
 * IOPL 0 whatever RFLAGS says.)
 */
export const TERMINATOR = Uint8Array.of(0xf4);

/** Selectors. */
export const SEL = { KCODE: 0x08, KDATA: 0x10, UDATA: 0x1b, UCODE: 0x23, TSS: 0x28 } as const;

/** CR0: PE | MP | ET | NE | WP | PG. */
export const CR0 = 0x8001_0033n;
/** CR4: PAE. */
export const CR4 = 0x20n;
/** EFER: LME | LMA | NXE. */
export const EFER = 0xd00n;

/** The 16 general-purpose registers (struct kvm_regs order without rip/rflags). */
export const GPRS = REGS_FIELDS.filter((r) => r !== 'rip' && r !== 'rflags') as Exclude<GprName, 'rip' | 'rflags'>[];
/** One of {@link GPRS}. */
export type Gpr = (typeof GPRS)[number];

/**
 * The RFLAGS bits compared: CF, bit 1, PF, AF, ZF, SF, TF, DF, OF, NT, AC, ID. Not compared:
 * IF and IOPL (CPL 3 and CPL 0 treat `popf`/`cli`/`sti` differently, and the two sides start
 * from different privilege), RF (set in the frame of a fault, and by KVM around exits), VM,
 * VIF, VIP (not writable from either side the same way).
 */
export const RFLAGS_COMPARE_MASK = 0x24_4dd7n;
/**
 * RFLAGS bits forced on at the start: bit 1 and IF. (IOPL stays 0: this PVM host runs guest
 * user mode with IOPL 0 whatever RFLAGS says, so CPL 3 cannot do I/O or `cli`/`sti`.)
 */
export const RFLAGS_FORCED = 0x202n;
/** RFLAGS bits a test may set: the status flags, TF, DF, NT, AC, ID (IF, IOPL, RF, VM, VIF, VIP and reserved bits are not). */
const RFLAGS_WRITABLE = 0x24_4dd5n;

/** One instruction sequence to run. */
export interface SequenceTest {
  /** The instructions (the terminator is appended). */
  code: Uint8Array;
  /** Initial GPRs (missing ones are 0; RSP defaults to {@link DEFAULT_RSP}; `rip` and `rflags` here are ignored). */
  regs: Partial<Record<GprName, bigint>>;
  /** Initial RFLAGS (default 0x202); bit 1 and IOPL 3 are forced, RF/VM/VIF/VIP cleared. */
  rflags?: bigint;
  /** The data window's initial bytes (default: zeros; shorter arrays are zero-padded). */
  data?: Uint8Array;
}

/** How a run ended. */
export type Outcome =
  /** The terminator was reached. */
  | 'done'
  /** An exception was delivered (see {@link SequenceResult.fault}). */
  | 'fault'
  /** The sequence itself did port I/O: stopped there (engine side only; natively CPL 3 I/O is #GP). */
  | 'io'
  /** The run did not end within its bound (a loop). */
  | 'timeout'
  /** A triple fault, an emulation failure or another exit the harness does not expect. */
  | 'error';

/** An exception the sequence raised. */
export interface FaultInfo {
  vector: number;
  /** Present when the CPU pushed one (never for `int n`). */
  errorCode?: number;
  /** CR2, for #PF. */
  cr2?: bigint;
}

/**
 * The state a run left. For 'fault', `rip`, `rsp` and `rflags` are the exception frame's
 * (RIP of the faulting instruction for faults, of the next one for traps and `int n`).
 */
export interface SequenceResult {
  outcome: Outcome;
  regs: Record<Gpr, bigint>;
  rip: bigint;
  /** RFLAGS & {@link RFLAGS_COMPARE_MASK}. */
  rflags: bigint;
  /** RFLAGS as read (or as in the frame), unmasked, for diagnostics. */
  rflagsRaw: bigint;
  /** The data window afterwards. */
  data: Uint8Array;
  fault?: FaultInfo;
  /** For 'io': the access. */
  io?: { port: number; in: boolean; size: number };
  /** For 'error': what happened. */
  detail?: string;
}

// ------------------------------------------------------------------ memory

const P = 1n;
const RW = 2n;
const US = 4n;
const NX = 1n << 63n;

/** The GDT's entries (8 bytes each; the TSS takes two). */
function gdtEntries(): bigint[] {
  const tssLow = 0x67n | (BigInt(TSS & 0xffffff) << 16n) | (0x8bn << 40n) | (BigInt((TSS >>> 24) & 0xff) << 56n);
  return [0n, 0x00af9b000000ffffn, 0x00cf93000000ffffn, 0x00cff3000000ffffn, 0x00affb000000ffffn, tssLow, 0n];
}

/** A 64-bit interrupt gate to `target` through kernel code, IST 1, DPL 3. */
function gate(target: number): [bigint, bigint] {
  const t = BigInt(target);
  const low = (t & 0xffffn) | (BigInt(SEL.KCODE) << 16n) | (1n << 32n) | (0xeen << 40n) | (((t >> 16n) & 0xffffn) << 48n);
  return [low, t >> 32n];
}

/** The leaf flags of the page at `addr`, or undefined if it is not mapped. */
function leafFlags(addr: number): bigint | undefined {
  if (addr >= GDT && addr < HANDLERS) return P | RW | NX;
  if (addr === HANDLERS) return P;
  if (addr >= 0x5000 && addr < KSTACK_TOP) return P | RW | NX;
  if (addr >= PML4 && addr < PML4 + 0x4000) return P | RW | NX;
  if (addr >= CODE && addr < CODE + CODE_SIZE) return P | US;
  if (addr >= DATA && addr < DATA + DATA_SIZE) return P | RW | US | NX;
  if (addr === RODATA) return P | US | NX;
  return undefined;
}

/** Write the page tables: PML4 → PDPT → PD → one PT covering [0, 2 MiB). */
function writePageTables(mem: GuestMemoryAccess): void {
  const [pdpt, pd, pt] = [PML4 + 0x1000, PML4 + 0x2000, PML4 + 0x3000];
  mem.fill(PML4, 0x4000, 0);
  mem.writeU64(PML4, BigInt(pdpt) | P | RW | US);
  mem.writeU64(pdpt, BigInt(pd) | P | RW | US);
  mem.writeU64(pd, BigInt(pt) | P | RW | US);
  const table = new DataView(new ArrayBuffer(0x1000));
  for (let i = 0; i < 512; i++) {
    const flags = leafFlags(i * 0x1000);
    if (flags !== undefined) table.setBigUint64(i * 8, BigInt(i * 0x1000) | flags, true);
  }
  mem.writeBytes(pt, new Uint8Array(table.buffer));
}

/** Write the GDT, IDT, TSS and handlers. */
function writeSystemTables(mem: GuestMemoryAccess): void {
  gdtEntries().forEach((d, i) => mem.writeU64(GDT + i * 8, d));
  for (let v = 0; v < 256; v++) {
    const [low, high] = gate(HANDLERS + v * 4);
    mem.writeU64(IDT + v * 16, low);
    mem.writeU64(IDT + v * 16 + 8, high);
    mem.writeBytes(HANDLERS + v * 4, Uint8Array.of(0xe6, HANDLER_PORT, 0xf4, 0x90));
  }
  mem.fill(TSS, 0x68, 0);
  mem.writeU64(TSS + 4, BigInt(KSTACK_TOP)); // RSP0
  mem.writeU64(TSS + 0x24, BigInt(KSTACK_TOP)); // IST1
  mem.writeU16(TSS + 0x66, 0x68); // no I/O bitmap
}

/** Write everything that does not change between runs (page tables, GDT, IDT, TSS, handlers, read-only page). */
export function writeStaticLayout(mem: GuestMemoryAccess): void {
  writePageTables(mem);
  writeSystemTables(mem);
  const ro = new Uint8Array(0x1000);
  for (let i = 0; i < ro.length; i++) ro[i] = (i * 37 + 11) & 0xff;
  mem.writeBytes(RODATA, ro);
}

/**
 * Load one test: the code, the terminator and `ud2` filler after it (so a jump past the end
 * faults the same way whatever ran before), the data window, a cleared kernel stack.
 *
 * @throws RangeError if the code does not fit {@link CODE_SIZE}.
 */
export function loadTest(mem: GuestMemoryAccess, test: SequenceTest): void {
  const total = test.code.length + TERMINATOR.length;
  if (total > CODE_SIZE) throw new RangeError(`code is ${test.code.length} bytes; at most ${CODE_SIZE - TERMINATOR.length} fit`);
  const image = new Uint8Array(CODE_SIZE);
  for (let i = total; i + 1 < CODE_SIZE; i += 2) [image[i], image[i + 1]] = [0x0f, 0x0b];
  image.set(test.code);
  image.set(TERMINATOR, test.code.length);
  mem.writeBytes(CODE, image);
  const data = new Uint8Array(DATA_SIZE);
  if (test.data) data.set(test.data.subarray(0, DATA_SIZE));
  mem.writeBytes(DATA, data);
  mem.fill(KSTACK_TOP - 0x100, 0x100, 0);
}

// ------------------------------------------------------------------ registers

/** The initial struct kvm_regs for `test`. */
export function initialRegs(test: SequenceTest): KvmRegs {
  const regs = {} as KvmRegs;
  for (const r of GPRS) regs[r] = BigInt.asUintN(64, test.regs[r] ?? (r === 'rsp' ? DEFAULT_RSP : 0n));
  regs.rip = BigInt(CODE);
  regs.rflags = ((test.rflags ?? 0x202n) & RFLAGS_WRITABLE) | RFLAGS_FORCED;
  return regs;
}

/** A flat segment register. */
function segment(selector: number, code: boolean, dpl: number): KvmSegment {
  return {
    base: 0n, limit: 0xffffffff, selector, type: code ? 0xb : 0x3, present: 1, dpl,
    db: code ? 0 : 1, s: 1, l: code ? 1 : 0, g: 1, avl: 0, unusable: 0,
  };
}

/**
 * The initial struct kvm_sregs at `cpl` 3 (CS 0x23, SS 0x1b: the native reference) or 0
 * (CS 0x08, SS 0x10: the engine). DS/ES/FS/GS are the user data selector 0x1b in both.
 */
export function initialSregs(cpl: 0 | 3, apicBase = 0xfee00900n): KvmSregs {
  const user = cpl === 3;
  const data = segment(SEL.UDATA, false, 3);
  return {
    cs: user ? segment(SEL.UCODE, true, 3) : segment(SEL.KCODE, true, 0),
    ss: user ? segment(SEL.UDATA, false, 3) : segment(SEL.KDATA, false, 0),
    ds: { ...data }, es: { ...data }, fs: { ...data }, gs: { ...data },
    tr: { base: BigInt(TSS), limit: 0x67, selector: SEL.TSS, type: 0xb, present: 1, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 0 },
    ldt: { base: 0n, limit: 0xffff, selector: 0, type: 0x2, present: 0, dpl: 0, db: 0, s: 0, l: 0, g: 0, avl: 0, unusable: 1 },
    gdt: { base: BigInt(GDT), limit: 7 * 8 - 1 },
    idt: { base: BigInt(IDT), limit: 256 * 16 - 1 },
    cr0: CR0, cr2: 0n, cr3: BigInt(PML4), cr4: CR4, cr8: 0n, efer: EFER, apicBase,
    interruptBitmap: [0n, 0n, 0n, 0n],
  };
}

// ------------------------------------------------------------------ reading the outcome

/** The GPRs of `regs`. */
function gprsOf(regs: KvmRegs): Record<Gpr, bigint> {
  const out = {} as Record<Gpr, bigint>;
  for (const r of GPRS) out[r] = regs[r];
  return out;
}

/** The vector whose handler `rip` is in (at or just past its OUT), or undefined. */
export function handlerVector(rip: bigint): number | undefined {
  const off = Number(rip) - HANDLERS;
  return rip >= BigInt(HANDLERS) && off < 256 * 4 ? off >> 2 : undefined;
}

/** The address of the terminator for a sequence of `codeLength` bytes. */
export function terminatorAddress(codeLength: number): bigint {
  return BigInt(CODE + codeLength);
}

/** A result with `outcome` from the registers as they are (RIP as given). */
export function plainResult(mem: GuestMemoryAccess, outcome: Outcome, regs: KvmRegs, rip: bigint): SequenceResult {
  return {
    outcome, regs: gprsOf(regs), rip, rflags: regs.rflags & RFLAGS_COMPARE_MASK, rflagsRaw: regs.rflags,
    data: mem.readBytes(DATA, DATA_SIZE),
  };
}

/**
 * The result of a run that stopped in the handler of `vector`: the GPRs are the sequence's
 * (delivery changes none), RIP/RSP/RFLAGS come from the frame on the IST stack, whose depth
 * says whether an error code was pushed. `cr2` is read by the caller's side.
 */
export function faultResult(mem: GuestMemoryAccess, regs: KvmRegs, vector: number, cr2: bigint): SequenceResult {
  const hasCode = regs.rsp === BigInt(KSTACK_TOP - 48);
  const frame = Number(regs.rsp) + (hasCode ? 8 : 0);
  const user = { ...regs, rsp: mem.readU64(frame + 24), rflags: mem.readU64(frame + 16) };
  const result = plainResult(mem, 'fault', user, mem.readU64(frame));
  result.fault = { vector };
  if (hasCode) result.fault.errorCode = Number(mem.readU64(Number(regs.rsp)) & 0xffffffffn);
  if (vector === 14) result.fault.cr2 = cr2;
  return result;
}

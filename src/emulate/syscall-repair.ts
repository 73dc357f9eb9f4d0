/**
 * SYSCALL repair for PVM hosts running unmodified guest kernels.
 *
 * Measured on this project's PVM host: a 64-bit `syscall` executed by guest user code (which
 * runs natively there) loads RIP from MSR_LSTAR and saves RCX/R11, but leaves the vCPU at
 * CPL 3. The kernel's entry point is then fetched from user mode, which faults (#PF), and the
 * guest kernel kills the process — Linux panics at its first `/init` system call.
 *
 * The repair finishes the privilege switch from userspace. It places an `int3` on the first
 * instruction of the guest's page-fault handler (read from the IDT; only a no-op such as
 * ENDBR64 or a multi-byte NOP is displaced). At CPL 0 KVM's emulator cannot run that `int3`,
 * so each guest page fault reaches the instruction fallback, which looks at the exception
 * frame:
 * - a fault at RIP = MSR_LSTAR from user mode is the broken `syscall`: the vCPU continues at
 *   MSR_LSTAR at CPL 0 with the user RSP and RFLAGS masked by MSR_SYSCALL_MASK, exactly the
 *   state SYSCALL defines (RCX/R11 are already set), dropping the exception frame;
 * - any other page fault continues past the displaced no-op into the guest's handler.
 *
 * A fault only counts as the broken `syscall` if the user bytes before RCX are `0f 05` and R11
 * carries no flags user mode cannot set (IOPL, VM, VIF, VIP): a user process that merely jumps
 * to the entry point gets its page fault, as on hardware.
 *
 * It installs only once MSR_LSTAR is set (so the IDT is the kernel's final one), follows the
 * #PF gate if the guest changes it, and {@link removeRepairBreakpoint} puts the original byte
 * back when the run ends. The patch record is shared by every vCPU of the VM (a
 * SharedArrayBuffer), so whichever vCPU takes the fault knows the breakpoint; an `int3` exit
 * whose byte is no longer 0xCC in memory (the breakpoint moved or was removed meanwhile) is
 * simply re-executed. Everything read from the guest (IDT, handler bytes, exception frame,
 * user code) goes through the bounds-checked page walk; anything unexpected leaves the guest
 * alone.
 */
import type { NativeVcpuFd } from '../kvm/native.js';
import { decodeMsrs, encodeMsrs, type KvmRegs, type KvmSregs } from '../kvm/structs.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { CR0, EFER, RFLAGS } from './flags.js';
import { linearRead, translate, type PagingContext } from './paging.js';

/** MSR_LSTAR: the 64-bit SYSCALL entry point. */
export const MSR_LSTAR = 0xc0000082;
/** MSR_SYSCALL_MASK (SFMASK): RFLAGS bits SYSCALL clears. */
export const MSR_SYSCALL_MASK = 0xc0000084;
/** Bytes of the shared patch record. */
export const SYSCALL_REPAIR_BYTES = 48;

const PF_VECTOR = 14;
/** RFLAGS bits user mode cannot set: IOPL, VM, VIF, VIP. */
const PRIVILEGED_FLAGS = (3n << 12n) | RFLAGS.VM | (1n << 19n) | (1n << 20n);

/** Record slots (BigInt64). */
const enum Slot {
  STATE = 0,
  VA = 1,
  GPA = 2,
  ORIGINAL = 3,
  LENGTH = 4,
  CLEARS_AC = 5,
}
const enum State {
  NONE = 0,
  BUSY = 1,
  INSTALLED = 2,
}

/** An instruction the breakpoint may displace: its bytes, and whether stepping over it clears RFLAGS.AC. */
interface Displaceable {
  bytes: readonly number[];
  clac?: boolean;
}

/** No-op encodings (and `clac`) the breakpoint may displace, longest first. */
const DISPLACEABLE: readonly Displaceable[] = [
  { bytes: [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00] }, // nopw 0(%rax,%rax)
  { bytes: [0x0f, 0x1f, 0x44, 0x00, 0x00] }, // nopl 0(%rax,%rax)
  { bytes: [0xf3, 0x0f, 0x1e, 0xfa] }, // endbr64
  { bytes: [0x0f, 0x1f, 0x40, 0x00] }, // nopl 0(%rax)
  { bytes: [0x0f, 0x01, 0xca], clac: true }, // clac (an idtentry without ENDBR starts with it)
  { bytes: [0x0f, 0x1f, 0x00] }, // nopl (%rax)
  { bytes: [0x66, 0x90] }, // xchg %ax,%ax
  { bytes: [0x90] }, // nop
];

function displaceable(bytes: Uint8Array): Displaceable | undefined {
  return DISPLACEABLE.find((d) => d.bytes.length <= bytes.length && d.bytes.every((b, i) => bytes[i] === b));
}

/** The length of the displaceable instruction at the start of `bytes`, or 0 if there is none. */
export function displaceableLength(bytes: Uint8Array): number {
  return displaceable(bytes)?.bytes.length ?? 0;
}

/**
 * Put the original byte back where the repair's breakpoint is (if it is still there) and
 * clear the record. For the end of a run; no vCPU may be running.
 */
export function removeRepairBreakpoint(memory: GuestMemory, shared: SharedArrayBuffer): void {
  const rec = new BigInt64Array(shared, 0, SYSCALL_REPAIR_BYTES / 8);
  if (Atomics.load(rec, Slot.STATE) !== BigInt(State.INSTALLED)) return;
  restoreOriginal(memory, rec);
  Atomics.store(rec, Slot.STATE, BigInt(State.NONE));
}

/** Write the displaced byte back over the breakpoint, if the breakpoint is still there. */
function restoreOriginal(memory: GuestMemory, rec: BigInt64Array): void {
  const gpa = Number(rec[Slot.GPA]);
  if (memory.isBacked(gpa, 1) && memory.readU8(gpa) === 0xcc) memory.writeU8(gpa, Number(rec[Slot.ORIGINAL]));
}

/** What {@link SyscallRepair.onBreakpoint} did. */
export type RepairAction = 'syscall' | 'page-fault' | 'retry';

/** The repair, bound to one vCPU; the patch record is shared by the VM's vCPUs. */
export class SyscallRepair {
  readonly #vcpu: NativeVcpuFd;
  readonly #memory: GuestMemory;
  readonly #record: BigInt64Array;

  /** @param shared {@link SYSCALL_REPAIR_BYTES} bytes shared by every vCPU of the VM. */
  constructor(vcpu: NativeVcpuFd, memory: GuestMemory, shared: SharedArrayBuffer) {
    if (!(shared instanceof SharedArrayBuffer) || shared.byteLength < SYSCALL_REPAIR_BYTES)
      throw new TypeError(`shared must be a SharedArrayBuffer of at least ${SYSCALL_REPAIR_BYTES} bytes`);
    this.#vcpu = vcpu;
    this.#memory = memory;
    this.#record = new BigInt64Array(shared, 0, SYSCALL_REPAIR_BYTES / 8);
  }

  /** Whether the breakpoint is in place (some vCPU installed it). */
  get installed(): boolean {
    return Atomics.load(this.#record, Slot.STATE) === BigInt(State.INSTALLED);
  }

  /**
   * Install the breakpoint if the guest is ready for it: 64-bit paging, MSR_LSTAR set, an IDT
   * whose #PF gate is a present 64-bit gate, a handler that starts with a displaceable
   * instruction. Cheap to call again: it follows a changed #PF gate and re-installs if the
   * guest rewrote the byte. Call it with the vCPU stopped.
   */
  maybeInstall(sregs: KvmSregs): void {
    const rec = this.#record;
    const state = Number(Atomics.load(rec, Slot.STATE));
    if (state === State.BUSY) return;
    const ctx = this.#paging(sregs);
    if (!ctx) return;
    const handler = this.#pageFaultHandler(sregs, ctx);
    if (state === State.INSTALLED) {
      if (handler === undefined) return; // IDT not readable in this address space
      const va = BigInt.asUintN(64, rec[Slot.VA]);
      if (handler === va) {
        const at = translate(this.#memory, va, ctx, { write: false, user: false, fetch: true });
        // not mapped in this address space (e.g. a user CR3 under PTI): nothing to learn here
        if (!at.ok || !this.#memory.isBacked(at.gpa, 1) || this.#memory.readU8(at.gpa) === 0xcc) return;
        // the guest rewrote its handler: start over below
        if (Atomics.compareExchange(rec, Slot.STATE, BigInt(State.INSTALLED), BigInt(State.NONE)) !== BigInt(State.INSTALLED)) return;
      } else {
        // the #PF gate moved: take the breakpoint out of the old handler, then install anew
        if (Atomics.compareExchange(rec, Slot.STATE, BigInt(State.INSTALLED), BigInt(State.BUSY)) !== BigInt(State.INSTALLED)) return;
        restoreOriginal(this.#memory, rec);
        Atomics.store(rec, Slot.STATE, BigInt(State.NONE));
      }
    }
    if (handler === undefined) return;
    const [lstar] = this.#msrs([MSR_LSTAR]) ?? [0n];
    if (lstar === 0n) return; // SYSCALL not set up yet: the IDT may still be an early one
    const code = linearRead(this.#memory, ctx, handler, 16, { user: false, fetch: true });
    if (!code.ok) return;
    const d = displaceable(code.bytes);
    if (!d) return;
    const at = translate(this.#memory, handler, ctx, { write: false, user: false, fetch: true });
    if (!at.ok || !this.#memory.isBacked(at.gpa, 1)) return;
    if (Atomics.compareExchange(rec, Slot.STATE, BigInt(State.NONE), BigInt(State.BUSY)) !== BigInt(State.NONE)) return;
    rec[Slot.VA] = BigInt.asIntN(64, handler);
    rec[Slot.GPA] = BigInt(at.gpa);
    rec[Slot.ORIGINAL] = BigInt(code.bytes[0]);
    rec[Slot.LENGTH] = BigInt(d.bytes.length);
    rec[Slot.CLEARS_AC] = d.clac ? 1n : 0n;
    // the record is complete before any vCPU can trap on the byte
    Atomics.store(rec, Slot.STATE, BigInt(State.INSTALLED));
    this.#memory.writeU8(at.gpa, 0xcc);
  }

  /**
   * Handle an `int3` the emulator could not run at CPL 0. Returns what was done (registers
   * are then updated; for 'retry' RIP is unchanged), or undefined if this is not the
   * repair's breakpoint.
   */
  onBreakpoint(regs: KvmRegs, sregs: KvmSregs): RepairAction | undefined {
    if (sregs.cs.dpl !== 0) return undefined;
    const rec = this.#record;
    const ctx = this.#paging(sregs);
    if (!ctx) return undefined;
    const here = translate(this.#memory, regs.rip, ctx, { write: false, user: false, fetch: true });
    // the breakpoint this exit reported has since been moved or removed: run what is there now
    if (here.ok && this.#memory.isBacked(here.gpa, 1) && this.#memory.readU8(here.gpa) !== 0xcc) return 'retry';
    if (!this.installed || BigInt.asUintN(64, regs.rip) !== BigInt.asUintN(64, rec[Slot.VA])) return undefined;
    if (this.#brokenSyscall(regs, ctx)) return 'syscall';
    regs.rip = BigInt.asUintN(64, regs.rip + rec[Slot.LENGTH]);
    if (rec[Slot.CLEARS_AC] === 1n) regs.rflags &= ~RFLAGS.AC;
    return 'page-fault';
  }

  /** If the #PF frame at RSP is the half-done user `syscall`, enter MSR_LSTAR as SYSCALL would. */
  #brokenSyscall(regs: KvmRegs, ctx: PagingContext): boolean {
    // the frame the CPU pushed for #PF: error code, RIP, CS, RFLAGS, RSP, SS
    const f = linearRead(this.#memory, ctx, regs.rsp, 48, { user: false });
    if (!f.ok) return false;
    const v = new DataView(f.bytes.buffer, f.bytes.byteOffset, 48);
    const rip = v.getBigUint64(8, true);
    if ((v.getBigUint64(16, true) & 3n) !== 3n) return false; // not from user mode
    if ((regs.r11 & PRIVILEGED_FLAGS) !== 0n) return false; // not flags a user syscall saves
    const msrs = this.#msrs([MSR_LSTAR, MSR_SYSCALL_MASK]);
    if (!msrs) return false;
    const [lstar, mask] = msrs;
    if (lstar === 0n || rip !== lstar) return false;
    // the instruction before the return address must be `syscall` (0f 05), read as user code
    const ret = BigInt.asUintN(64, regs.rcx);
    if (ret < 2n) return false;
    const insn = linearRead(this.#memory, { ...ctx, cpl: 3 }, ret - 2n, 2, { user: true, fetch: true });
    if (!insn.ok || insn.bytes[0] !== 0x0f || insn.bytes[1] !== 0x05) return false;
    regs.rip = lstar;
    regs.rsp = v.getBigUint64(32, true);
    regs.rflags = (v.getBigUint64(24, true) & ~mask & ~RFLAGS.RF) | 2n;
    return true;
  }

  /** Supervisor paging context for 64-bit paging (the only mode the repair acts in). */
  #paging(sregs: KvmSregs): PagingContext | undefined {
    if ((sregs.efer & EFER.LMA) === 0n || (sregs.cr0 & CR0.PG) === 0n) return undefined;
    return { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer, cpl: 0, setAccessedDirty: false };
  }

  /** The #PF handler's address from the IDT, if the gate is a present 64-bit gate. */
  #pageFaultHandler(sregs: KvmSregs, ctx: PagingContext): bigint | undefined {
    if (sregs.idt.limit < PF_VECTOR * 16 + 15) return undefined;
    const g = linearRead(this.#memory, ctx, sregs.idt.base + BigInt(PF_VECTOR * 16), 16, { user: false });
    if (!g.ok) return undefined;
    const v = new DataView(g.bytes.buffer, g.bytes.byteOffset, 16);
    const attrs = g.bytes[5];
    const type = attrs & 0xf;
    if ((attrs & 0x80) === 0 || (type !== 0xe && type !== 0xf)) return undefined;
    return BigInt(v.getUint16(0, true)) | (BigInt(v.getUint16(6, true)) << 16n) | (BigInt(v.getUint32(8, true)) << 32n);
  }

  /** Read MSRs; undefined unless KVM returned every one. */
  #msrs(indices: number[]): bigint[] | undefined {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = this.#vcpu.getMsrs(buf);
    if (n !== indices.length) return undefined;
    const got = decodeMsrs(buf, n);
    return indices.map((i) => got.find((m) => m.index === i)?.data ?? 0n);
  }
}

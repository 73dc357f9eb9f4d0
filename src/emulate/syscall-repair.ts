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
 * The patch record is shared by every vCPU of the VM (a SharedArrayBuffer), so whichever vCPU
 * takes the fault knows the breakpoint. Everything read from the guest (IDT, handler bytes,
 * exception frame) is bounds-checked through the page walk; anything unexpected leaves the
 * guest alone.
 */
import type { NativeVcpuFd } from '../kvm/native.js';
import { decodeMsrs, encodeMsrs, type KvmRegs, type KvmSregs } from '../kvm/structs.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import { linearRead, translate, type PagingContext } from './paging.js';

/** MSR_LSTAR: the 64-bit SYSCALL entry point. */
export const MSR_LSTAR = 0xc0000082;
/** MSR_SYSCALL_MASK (SFMASK): RFLAGS bits SYSCALL clears. */
export const MSR_SYSCALL_MASK = 0xc0000084;
/** Bytes of the shared patch record. */
export const SYSCALL_REPAIR_BYTES = 32;

const PF_VECTOR = 14;
const EFER_LMA = 1n << 10n;
const CR0_PG = 1n << 31n;

/** Record slots (BigInt64). */
const enum Slot {
  STATE = 0,
  VA = 1,
  ORIGINAL = 2,
  LENGTH = 3,
}
const enum State {
  NONE = 0,
  INSTALLING = 1,
  INSTALLED = 2,
}

/** No-op encodings the breakpoint may displace, longest first: [bytes, length]. */
const DISPLACEABLE: readonly (readonly number[])[] = [
  [0xf3, 0x0f, 0x1e, 0xfa], // endbr64
  [0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00], // nopw 0(%rax,%rax)
  [0x0f, 0x1f, 0x44, 0x00, 0x00], // nopl 0(%rax,%rax)
  [0x0f, 0x1f, 0x40, 0x00], // nopl 0(%rax)
  [0x0f, 0x1f, 0x00], // nopl (%rax)
  [0x66, 0x90], // xchg %ax,%ax
  [0x90], // nop
];

/** The length of the no-op at the start of `bytes`, or 0 if it does not start with one. */
export function displaceableLength(bytes: Uint8Array): number {
  for (const d of DISPLACEABLE) if (d.length <= bytes.length && d.every((b, i) => bytes[i] === b)) return d.length;
  return 0;
}

/** What {@link SyscallRepair.onBreakpoint} did. */
export type RepairAction = 'syscall' | 'page-fault';

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
   * Install the breakpoint if the guest is ready for it: 64-bit paging, an IDT whose #PF
   * gate is a present 64-bit interrupt/trap gate, a handler that starts with a no-op. Cheap
   * to call again (re-installs if the guest rewrote the byte). Call it with the vCPU stopped.
   */
  maybeInstall(sregs: KvmSregs): void {
    const rec = this.#record;
    const state = Number(Atomics.load(rec, Slot.STATE));
    if (state === State.INSTALLING) return;
    const ctx = this.#paging(sregs, 0);
    if (!ctx) return;
    if (state === State.INSTALLED) {
      const at = translate(this.#memory, BigInt.asUintN(64, rec[Slot.VA]), ctx, { write: false, user: false, fetch: true });
      // not mapped in this address space (e.g. a user CR3 under PTI): nothing to learn here
      if (!at.ok || !this.#memory.isBacked(at.gpa, 1) || this.#memory.readU8(at.gpa) === 0xcc) return;
      // the guest rewrote its handler: start over
      Atomics.compareExchange(rec, Slot.STATE, BigInt(State.INSTALLED), BigInt(State.NONE));
      return;
    }
    const handler = this.#pageFaultHandler(sregs, ctx);
    if (handler === undefined) return;
    const code = linearRead(this.#memory, ctx, handler, 16, { user: false, fetch: true });
    if (!code.ok) return;
    const length = displaceableLength(code.bytes);
    if (length === 0) return;
    const at = translate(this.#memory, handler, ctx, { write: false, user: false, fetch: true });
    if (!at.ok || !this.#memory.isBacked(at.gpa, 1)) return;
    if (Atomics.compareExchange(rec, Slot.STATE, BigInt(State.NONE), BigInt(State.INSTALLING)) !== BigInt(State.NONE)) return;
    rec[Slot.VA] = BigInt.asIntN(64, handler);
    rec[Slot.ORIGINAL] = BigInt(code.bytes[0]);
    rec[Slot.LENGTH] = BigInt(length);
    this.#memory.writeU8(at.gpa, 0xcc);
    Atomics.store(rec, Slot.STATE, BigInt(State.INSTALLED));
  }

  /**
   * Handle an `int3` the emulator could not run at CPL 0. Returns what was done (registers
   * are then updated), or undefined if this is not the repair's breakpoint.
   */
  onBreakpoint(regs: KvmRegs, sregs: KvmSregs): RepairAction | undefined {
    if (!this.installed || sregs.cs.dpl !== 0) return undefined;
    const rec = this.#record;
    if (BigInt.asUintN(64, regs.rip) !== BigInt.asUintN(64, rec[Slot.VA])) return undefined;
    const ctx = this.#paging(sregs, 0);
    if (!ctx) return undefined;
    // the frame the CPU pushed for #PF: error code, RIP, CS, RFLAGS, RSP, SS
    const f = linearRead(this.#memory, ctx, regs.rsp, 48, { user: false });
    if (f.ok) {
      const v = new DataView(f.bytes.buffer, f.bytes.byteOffset, 48);
      const rip = v.getBigUint64(8, true);
      const cs = v.getBigUint64(16, true);
      if ((cs & 3n) === 3n) {
        const [lstar, mask] = this.#msrs([MSR_LSTAR, MSR_SYSCALL_MASK]);
        if (lstar !== 0n && rip === lstar) {
          regs.rip = lstar;
          regs.rsp = v.getBigUint64(32, true);
          regs.rflags = (v.getBigUint64(24, true) & ~mask & ~(1n << 16n)) | 2n; // RF clear, bit 1 set
          return 'syscall';
        }
      }
    }
    regs.rip = BigInt.asUintN(64, regs.rip + rec[Slot.LENGTH]);
    return 'page-fault';
  }

  #paging(sregs: KvmSregs, cpl: number): PagingContext | undefined {
    if ((sregs.efer & EFER_LMA) === 0n || (sregs.cr0 & CR0_PG) === 0n) return undefined;
    return { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer, cpl, setAccessedDirty: false };
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
    const offset = BigInt(v.getUint16(0, true)) | (BigInt(v.getUint16(6, true)) << 16n) | (BigInt(v.getUint32(8, true)) << 32n);
    return offset;
  }

  #msrs(indices: number[]): bigint[] {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = this.#vcpu.getMsrs(buf);
    const got = decodeMsrs(buf, n);
    return indices.map((i) => got.find((m) => m.index === i)?.data ?? 0n);
  }
}

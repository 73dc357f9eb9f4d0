/**
 * The SYSCALL repair against a fake vCPU (MSRs only) and real page tables in buffer memory:
 * installing the breakpoint from the IDT, turning the broken syscall's page fault into the
 * SYSCALL entry state, passing other page faults through, and hostile guest state.
 */
import { describe, expect, it } from 'vitest';
import type { NativeVcpuFd } from '../../../src/kvm/native.js';
import { decodeMsrs } from '../../../src/kvm/structs.js';
import { MSR_LSTAR, MSR_SYSCALL_MASK, SYSCALL_REPAIR_BYTES, SyscallRepair, displaceableLength, removeRepairBreakpoint } from '../../../src/emulate/syscall-repair.js';
import { bufferMemory } from '../../../src/memory/guest-memory.js';
import { P, Tables, U, W, longSregs, regs } from './helpers.js';

const KTEXT = 0xffffffff81000000n; // handler page
const KTEXT_PHYS = 0x200000;
const IDT = 0xfffffe0000000000n;
const IDT_PHYS = 0x210000;
const STACK = 0xffffc90000010000n; // kernel stack page
const STACK_PHYS = 0x220000;
const HANDLER = KTEXT + 0x80n;
const LSTAR = KTEXT + 0xc00n;
const SFMASK = 0x47700n; // Linux: TF|DF|IF|IOPL|AC|NT
const USER = 0x400000n; // a user code page
const USER_PHYS = 0x230000;
const RET = USER + 0x41bn; // the return address a user `syscall` at USER+0x419 leaves in RCX

/** A fake vCPU: just MSRs (what the repair reads); an MSR missing from the map fails the read there. */
function fakeVcpu(msrs: Map<number, bigint>): NativeVcpuFd {
  return {
    getMsrs(b: Uint8Array): number {
      const n = new DataView(b.buffer, b.byteOffset).getUint32(0, true);
      const v = new DataView(b.buffer, b.byteOffset);
      const got = decodeMsrs(b, n);
      for (let i = 0; i < got.length; i++) {
        const value = msrs.get(got[i].index);
        if (value === undefined) return i; // KVM_GET_MSRS stops at the first failure
        v.setBigUint64(8 + i * 16 + 8, value, true);
      }
      return n;
    },
  } as unknown as NativeVcpuFd;
}

function machine(handlerBytes = [0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0x1f, 0x00, 0xfc]) {
  const mem = bufferMemory(0x400000);
  const t = new Tables(mem);
  t.map(KTEXT, BigInt(KTEXT_PHYS), P | W);
  t.map(IDT, BigInt(IDT_PHYS), P | W);
  t.map(STACK, BigInt(STACK_PHYS), P | W);
  t.map(USER, BigInt(USER_PHYS), P | U);
  mem.writeBytes(USER_PHYS + 0x419, Uint8Array.from([0x0f, 0x05])); // syscall
  mem.writeBytes(KTEXT_PHYS + 0x80, Uint8Array.from(handlerBytes));
  // IDT gate 14: present 64-bit interrupt gate to HANDLER
  const g = IDT_PHYS + 14 * 16;
  mem.writeU16(g, Number(HANDLER & 0xffffn));
  mem.writeU16(g + 2, 0x10);
  mem.writeU8(g + 5, 0x8e);
  mem.writeU16(g + 6, Number((HANDLER >> 16n) & 0xffffn));
  mem.writeU32(g + 8, Number(HANDLER >> 32n));
  const sregs = longSregs(t.cr3, 0, { idt: { base: IDT, limit: 0xfff } });
  const shared = new SharedArrayBuffer(SYSCALL_REPAIR_BYTES);
  const msrs = new Map([[MSR_LSTAR, LSTAR], [MSR_SYSCALL_MASK, SFMASK]]);
  const make = () => new SyscallRepair(fakeVcpu(msrs), mem, shared);
  return { mem, t, sregs, shared, msrs, repair: make(), make };
}

/** Push a #PF frame at STACK+0x800 and return the RSP that points at it. */
function frame(mem: ReturnType<typeof bufferMemory>, f: { err: bigint; rip: bigint; cs: bigint; rflags: bigint; rsp: bigint; ss: bigint }): bigint {
  const at = STACK_PHYS + 0x800;
  [f.err, f.rip, f.cs, f.rflags, f.rsp, f.ss].forEach((v, i) => mem.writeU64(at + 8 * i, v));
  return STACK + 0x800n;
}

describe('displaceableLength', () => {
  it('knows endbr64 and the multi-byte NOPs, nothing else', () => {
    expect(displaceableLength(Uint8Array.from([0xf3, 0x0f, 0x1e, 0xfa, 0x90]))).toBe(4);
    expect(displaceableLength(Uint8Array.from([0x0f, 0x1f, 0x44, 0x00, 0x00]))).toBe(5);
    expect(displaceableLength(Uint8Array.from([0x0f, 0x1f, 0x00]))).toBe(3);
    expect(displaceableLength(Uint8Array.from([0x90]))).toBe(1);
    expect(displaceableLength(Uint8Array.from([0x6a, 0x00]))).toBe(0); // push $0 (early IDT stub)
    expect(displaceableLength(Uint8Array.from([0x0f, 0x1f]))).toBe(0); // truncated
    expect(displaceableLength(new Uint8Array(0))).toBe(0);
  });
});

describe('SyscallRepair', () => {
  it('installs an int3 on the #PF handler named by the IDT, once for all vCPUs', () => {
    const m = machine();
    expect(m.repair.installed).toBe(false);
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(true);
    expect(m.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0xcc);
    expect(m.mem.readU8(KTEXT_PHYS + 0x81)).toBe(0x0f); // only the first byte changes
    const other = m.make(); // another vCPU sees it through the shared record
    expect(other.installed).toBe(true);
    other.maybeInstall(m.sregs); // idempotent
    expect(m.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0xcc);
  });

  it('turns a user-mode fault at MSR_LSTAR into the SYSCALL entry state at CPL 0', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    const r = regs({ rip: HANDLER, rcx: RET, r11: 0x246n });
    r.rsp = frame(m.mem, { err: 0x15n, rip: LSTAR, cs: 0x33n, rflags: 0x10246n, rsp: 0x7fffe42587e0n, ss: 0x2bn });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('syscall');
    expect(r.rip).toBe(LSTAR);
    expect(r.rsp).toBe(0x7fffe42587e0n); // the user stack: entry_SYSCALL_64 switches itself
    expect(r.rflags).toBe((0x246n & ~SFMASK) | 2n); // IF cleared by SFMASK, RF clear
    expect([r.rcx, r.r11]).toEqual([RET, 0x246n]); // set by the (half-done) syscall
  });

  it('does not let user code fake a syscall by jumping to the entry point', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    const fakes = [
      { rcx: RET + 1n, r11: 0x246n }, // no `syscall` before the return address
      { rcx: RET, r11: 0x3246n }, // IOPL 3 in the saved flags: sysret would grant it
      { rcx: RET, r11: 0x20246n }, // VM
      { rcx: 0x1n, r11: 0x246n }, // return address below 2
      { rcx: 0x800000n, r11: 0x246n }, // return address not mapped
    ];
    for (const f of fakes) {
      const r = regs({ rip: HANDLER, ...f });
      r.rsp = frame(m.mem, { err: 0x15n, rip: LSTAR, cs: 0x33n, rflags: 0x10246n, rsp: 0x7fffe0000000n, ss: 0x2bn });
      expect(m.repair.onBreakpoint(r, m.sregs), JSON.stringify(f, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v))).toBe('page-fault');
      expect(r.rip).toBe(HANDLER + 4n);
    }
    m.msrs.delete(MSR_SYSCALL_MASK); // an MSR KVM will not read: not a syscall either
    const r = regs({ rip: HANDLER, rcx: RET, r11: 0x246n });
    r.rsp = frame(m.mem, { err: 0x15n, rip: LSTAR, cs: 0x33n, rflags: 0x10246n, rsp: 0x7fffe0000000n, ss: 0x2bn });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
  });

  it('passes every other page fault through to the handler, past the displaced no-op', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    const cases = [
      { err: 0x6n, rip: 0x401000n, cs: 0x33n }, // ordinary user fault
      { err: 0x2n, rip: LSTAR, cs: 0x10n }, // kernel-mode fault at LSTAR (not a syscall)
    ];
    for (const c of cases) {
      const r = regs({ rip: HANDLER });
      r.rsp = frame(m.mem, { ...c, rflags: 0x246n, rsp: 0x7ffe0000n, ss: 0x2bn });
      expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
      expect(r.rip).toBe(HANDLER + 4n);
    }
    m.msrs.set(MSR_LSTAR, 0n); // no SYSCALL entry configured: never a syscall
    const r = regs({ rip: HANDLER, rcx: RET });
    r.rsp = frame(m.mem, { err: 0x15n, rip: 0n, cs: 0x33n, rflags: 0x246n, rsp: 0n, ss: 0n });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
  });

  it('steps over a displaced clac by clearing RFLAGS.AC', () => {
    const m = machine([0x0f, 0x01, 0xca, 0xfc]);
    m.repair.maybeInstall(m.sregs);
    const r = regs({ rip: HANDLER, rflags: 0x40246n });
    r.rsp = frame(m.mem, { err: 0x6n, rip: 0x401000n, cs: 0x33n, rflags: 0x246n, rsp: 0x7ffe0000n, ss: 0x2bn });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
    expect(r.rip).toBe(HANDLER + 3n);
    expect(r.rflags).toBe(0x246n);
  });

  it('re-executes an int3 whose breakpoint has since been removed', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    removeRepairBreakpoint(m.mem, m.shared);
    expect(m.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0xf3); // original byte back
    expect(m.repair.installed).toBe(false);
    const r = regs({ rip: HANDLER });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('retry');
    expect(r.rip).toBe(HANDLER);
  });

  it('follows the #PF gate to a new handler, restoring the old one', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    const NEW = KTEXT + 0x200n;
    m.mem.writeBytes(KTEXT_PHYS + 0x200, Uint8Array.from([0x0f, 0x1f, 0x44, 0x00, 0x00]));
    const g = IDT_PHYS + 14 * 16;
    m.mem.writeU16(g, Number(NEW & 0xffffn));
    m.repair.maybeInstall(m.sregs);
    expect(m.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0xf3);
    expect(m.mem.readU8(KTEXT_PHYS + 0x200)).toBe(0xcc);
    expect(m.repair.installed).toBe(true);
    const r = regs({ rip: NEW });
    r.rsp = frame(m.mem, { err: 0x6n, rip: 0x401000n, cs: 0x33n, rflags: 0x246n, rsp: 0x7ffe0000n, ss: 0x2bn });
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
    expect(r.rip).toBe(NEW + 5n);
  });

  it('waits for MSR_LSTAR before installing (the IDT may still be an early one)', () => {
    const m = machine();
    m.msrs.set(MSR_LSTAR, 0n);
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(false);
    m.msrs.set(MSR_LSTAR, LSTAR);
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(true);
  });

  it('ignores int3s that are not its own, and state it cannot read', () => {
    const m = machine();
    const GUEST_INT3 = KTEXT + 0x100n; // the guest's own int3
    m.mem.writeU8(KTEXT_PHYS + 0x100, 0xcc);
    expect(m.repair.onBreakpoint(regs({ rip: GUEST_INT3 }), m.sregs)).toBeUndefined(); // not installed
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.onBreakpoint(regs({ rip: GUEST_INT3 }), m.sregs)).toBeUndefined();
    expect(m.repair.onBreakpoint(regs({ rip: HANDLER }), longSregs(m.t.cr3, 3))).toBeUndefined(); // CPL 3
    const r = regs({ rip: HANDLER, rsp: 0xffff800000000000n }); // unmapped stack: pass through
    expect(m.repair.onBreakpoint(r, m.sregs)).toBe('page-fault');
  });

  it('does not install over a handler that does not start with a no-op, or a bad IDT', () => {
    const early = machine([0x6a, 0x00, 0x6a, 0x0e]); // push $0; push $14 (early IDT stub)
    early.repair.maybeInstall(early.sregs);
    expect(early.repair.installed).toBe(false);
    expect(early.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0x6a);
    const m = machine();
    const bad = [
      { ...m.sregs, idt: { base: IDT, limit: 14 * 16 } }, // gate 14 beyond the limit
      { ...m.sregs, idt: { base: 0xffff880000000000n, limit: 0xfff } }, // IDT not mapped
      { ...m.sregs, efer: 0n }, // not in long mode
    ];
    for (const s of bad) m.repair.maybeInstall(s);
    expect(m.repair.installed).toBe(false);
    m.mem.writeU8(IDT_PHYS + 14 * 16 + 5, 0x0e); // gate not present
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(false);
    m.mem.writeU8(IDT_PHYS + 14 * 16 + 5, 0x8e);
    m.mem.writeU32(IDT_PHYS + 14 * 16 + 8, 0x1234); // a handler address that is not mapped
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(false);
  });

  it('re-installs when the guest rewrites its handler', () => {
    const m = machine();
    m.repair.maybeInstall(m.sregs);
    m.mem.writeU8(KTEXT_PHYS + 0x80, 0xf3); // e.g. the kernel patched its own text
    m.repair.maybeInstall(m.sregs);
    expect(m.repair.installed).toBe(true);
    expect(m.mem.readU8(KTEXT_PHYS + 0x80)).toBe(0xcc);
  });

  it('rejects a record that is not a large enough SharedArrayBuffer', () => {
    const m = machine();
    expect(() => new SyscallRepair(fakeVcpu(new Map()), m.mem, new SharedArrayBuffer(8))).toThrow(TypeError);
  });
});

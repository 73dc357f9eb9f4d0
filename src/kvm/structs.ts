/**
 * Codecs for the KVM structs that cross the native boundary as raw bytes (x86-64 layout;
 * test/native/layout.test.ts checks the sizes and offsets against the kernel headers).
 */

/** struct kvm_regs field order (18 × u64). */
export const REGS_FIELDS = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;
/** A general-purpose register name as in struct kvm_regs. */
export type GprName = (typeof REGS_FIELDS)[number];
/** struct kvm_regs, decoded. */
export type KvmRegs = Record<GprName, bigint>;

/** Sizes of the raw structs. */
export const SIZEOF = {
  kvm_regs: 144, kvm_sregs: 312, kvm_fpu: 416, kvm_lapic_state: 1024, kvm_vcpu_events: 64,
  kvm_debugregs: 128, kvm_xcrs: 392, kvm_guest_debug: 72, kvm_mp_state: 4, kvm_cpuid_entry2: 40,
  kvm_msr_entry: 16, kvm_irq_routing_entry: 48,
} as const;

/** Decode struct kvm_regs. */
export function decodeRegs(buf: ArrayBuffer): KvmRegs {
  const v = new DataView(buf);
  const out = {} as KvmRegs;
  REGS_FIELDS.forEach((f, i) => (out[f] = v.getBigUint64(i * 8, true)));
  return out;
}

/** Encode struct kvm_regs. */
export function encodeRegs(r: KvmRegs): ArrayBuffer {
  const buf = new ArrayBuffer(SIZEOF.kvm_regs);
  const v = new DataView(buf);
  REGS_FIELDS.forEach((f, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, r[f]), true));
  return buf;
}

/** struct kvm_segment, decoded. */
export interface KvmSegment {
  base: bigint; limit: number; selector: number; type: number; present: number; dpl: number;
  db: number; s: number; l: number; g: number; avl: number; unusable: number;
}
/** struct kvm_dtable (GDTR/IDTR). */
export interface KvmDtable { base: bigint; limit: number }
/** struct kvm_sregs, decoded. */
export interface KvmSregs {
  cs: KvmSegment; ds: KvmSegment; es: KvmSegment; fs: KvmSegment; gs: KvmSegment; ss: KvmSegment;
  tr: KvmSegment; ldt: KvmSegment; gdt: KvmDtable; idt: KvmDtable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
  interruptBitmap: bigint[];
}
/** Segment registers in struct kvm_sregs order. */
export const SREGS_SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
/** A segment register name as in struct kvm_sregs. */
export type SegmentName = (typeof SREGS_SEGMENTS)[number];

function getSeg(v: DataView, o: number): KvmSegment {
  return {
    base: v.getBigUint64(o, true), limit: v.getUint32(o + 8, true), selector: v.getUint16(o + 12, true),
    type: v.getUint8(o + 14), present: v.getUint8(o + 15), dpl: v.getUint8(o + 16), db: v.getUint8(o + 17),
    s: v.getUint8(o + 18), l: v.getUint8(o + 19), g: v.getUint8(o + 20), avl: v.getUint8(o + 21),
    unusable: v.getUint8(o + 22),
  };
}
function setSeg(v: DataView, o: number, s: KvmSegment): void {
  v.setBigUint64(o, BigInt.asUintN(64, s.base), true);
  v.setUint32(o + 8, s.limit >>> 0, true);
  v.setUint16(o + 12, s.selector & 0xffff, true);
  const b = [s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable];
  b.forEach((x, i) => v.setUint8(o + 14 + i, x & 0xff));
  v.setUint8(o + 23, 0);
}

/** Decode struct kvm_sregs. */
export function decodeSregs(buf: ArrayBuffer): KvmSregs {
  const v = new DataView(buf);
  const seg = (i: number) => getSeg(v, i * 24);
  const dt = (o: number): KvmDtable => ({ base: v.getBigUint64(o, true), limit: v.getUint16(o + 8, true) });
  const u = (o: number) => v.getBigUint64(o, true);
  return {
    cs: seg(0), ds: seg(1), es: seg(2), fs: seg(3), gs: seg(4), ss: seg(5), tr: seg(6), ldt: seg(7),
    gdt: dt(192), idt: dt(208),
    cr0: u(224), cr2: u(232), cr3: u(240), cr4: u(248), cr8: u(256), efer: u(264), apicBase: u(272),
    interruptBitmap: [u(280), u(288), u(296), u(304)],
  };
}

/** Encode struct kvm_sregs. */
export function encodeSregs(s: KvmSregs): ArrayBuffer {
  const buf = new ArrayBuffer(SIZEOF.kvm_sregs);
  const v = new DataView(buf);
  SREGS_SEGMENTS.forEach((n, i) => setSeg(v, i * 24, s[n]));
  const dt = (o: number, d: KvmDtable) => {
    v.setBigUint64(o, BigInt.asUintN(64, d.base), true);
    v.setUint16(o + 8, d.limit & 0xffff, true);
  };
  dt(192, s.gdt);
  dt(208, s.idt);
  const u = (o: number, x: bigint) => v.setBigUint64(o, BigInt.asUintN(64, x), true);
  u(224, s.cr0); u(232, s.cr2); u(240, s.cr3); u(248, s.cr4); u(256, s.cr8); u(264, s.efer); u(272, s.apicBase);
  s.interruptBitmap.forEach((x, i) => u(280 + i * 8, x));
  return buf;
}

/**
 * VMX access-rights encoding (bhyve's `access`): type[3:0] S[4] DPL[6:5] P[7] AVL[12] L[13]
 * D/B[14] G[15] unusable[16].
 */
export function segmentToAccess(s: KvmSegment): number {
  return (
    (s.type & 0xf) | ((s.s & 1) << 4) | ((s.dpl & 3) << 5) | ((s.present & 1) << 7) | ((s.avl & 1) << 12) |
    ((s.l & 1) << 13) | ((s.db & 1) << 14) | ((s.g & 1) << 15) | ((s.unusable & 1) << 16)
  ) >>> 0;
}

/** Apply a VMX access-rights value to a segment (fields other than base/limit/selector). */
export function accessToSegment(access: number, into: KvmSegment): KvmSegment {
  into.type = access & 0xf;
  into.s = (access >> 4) & 1;
  into.dpl = (access >> 5) & 3;
  into.present = (access >> 7) & 1;
  into.avl = (access >> 12) & 1;
  into.l = (access >> 13) & 1;
  into.db = (access >> 14) & 1;
  into.g = (access >> 15) & 1;
  into.unusable = (access >> 16) & 1;
  return into;
}

/** struct kvm_debugregs, decoded. */
export interface KvmDebugregs { db: bigint[]; dr6: bigint; dr7: bigint; flags: bigint }
/** Decode struct kvm_debugregs. */
export function decodeDebugregs(buf: ArrayBuffer): KvmDebugregs {
  const v = new DataView(buf);
  const u = (o: number) => v.getBigUint64(o, true);
  return { db: [u(0), u(8), u(16), u(24)], dr6: u(32), dr7: u(40), flags: u(48) };
}
/** Encode struct kvm_debugregs. */
export function encodeDebugregs(d: KvmDebugregs): ArrayBuffer {
  const buf = new ArrayBuffer(SIZEOF.kvm_debugregs);
  const v = new DataView(buf);
  d.db.forEach((x, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, x), true));
  v.setBigUint64(32, BigInt.asUintN(64, d.dr6), true);
  v.setBigUint64(40, BigInt.asUintN(64, d.dr7), true);
  v.setBigUint64(48, BigInt.asUintN(64, d.flags), true);
  return buf;
}

/** struct kvm_vcpu_events, as a DataView-backed editor (fields by offset). */
export const EVENTS = {
  exceptionInjected: 0, exceptionNr: 1, exceptionHasErrorCode: 2, exceptionPending: 3, exceptionErrorCode: 4,
  interruptInjected: 8, interruptNr: 9, interruptSoft: 10, interruptShadow: 11,
  nmiInjected: 12, nmiPending: 13, nmiMasked: 14, sipiVector: 16, flags: 20,
  exceptionHasPayload: 55, exceptionPayload: 56,
} as const;

/** Mark an exception (with its error code, if any) injected in a kvm_vcpu_events image; flags cleared. */
export function setInjectedException(ev: DataView, vector: number, errorCode?: number): void {
  ev.setUint8(EVENTS.exceptionInjected, 1);
  ev.setUint8(EVENTS.exceptionNr, vector);
  ev.setUint8(EVENTS.exceptionHasErrorCode, errorCode !== undefined ? 1 : 0);
  ev.setUint32(EVENTS.exceptionErrorCode, errorCode ?? 0, true);
  ev.setUint32(EVENTS.flags, 0, true);
}

/** struct kvm_fpu offsets. */
export const FPU = { fpr: 0, fcw: 128, fsw: 130, ftwx: 132, lastOpcode: 134, lastIp: 136, lastDp: 144, xmm: 152, mxcsr: 408 } as const;

/** One entry of struct kvm_cpuid2. */
export interface CpuidEntry { function: number; index: number; flags: number; eax: number; ebx: number; ecx: number; edx: number }

/** Decode struct kvm_cpuid2. */
export function decodeCpuid2(buf: ArrayBuffer): CpuidEntry[] {
  const v = new DataView(buf);
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + i * SIZEOF.kvm_cpuid_entry2;
    out.push({
      function: v.getUint32(o, true), index: v.getUint32(o + 4, true), flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true), ebx: v.getUint32(o + 16, true), ecx: v.getUint32(o + 20, true), edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

/** Encode struct kvm_cpuid2. */
export function encodeCpuid2(entries: readonly CpuidEntry[]): Uint8Array {
  const out = new Uint8Array(8 + entries.length * SIZEOF.kvm_cpuid_entry2);
  const v = new DataView(out.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * SIZEOF.kvm_cpuid_entry2;
    v.setUint32(o, e.function >>> 0, true); v.setUint32(o + 4, e.index >>> 0, true); v.setUint32(o + 8, e.flags >>> 0, true);
    v.setUint32(o + 12, e.eax >>> 0, true); v.setUint32(o + 16, e.ebx >>> 0, true); v.setUint32(o + 20, e.ecx >>> 0, true);
    v.setUint32(o + 24, e.edx >>> 0, true);
  });
  return out;
}

/** Encode struct kvm_msrs with entries (index, data). */
export function encodeMsrs(entries: readonly { index: number; data: bigint }[]): Uint8Array {
  const out = new Uint8Array(8 + entries.length * SIZEOF.kvm_msr_entry);
  const v = new DataView(out.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    v.setUint32(8 + i * 16, e.index >>> 0, true);
    v.setBigUint64(8 + i * 16 + 8, BigInt.asUintN(64, e.data), true);
  });
  return out;
}

/** Decode the data fields of struct kvm_msrs (first `count` entries). */
export function decodeMsrs(buf: Uint8Array, count: number): { index: number; data: bigint }[] {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out = [];
  for (let i = 0; i < count; i++) out.push({ index: v.getUint32(8 + i * 16, true), data: v.getBigUint64(8 + i * 16 + 8, true) });
  return out;
}

/**
 * Sizes of the raw state structs snapshots carry (not in {@link SIZEOF}, whose every entry the
 * layout test checks against the addon's table; test/native/vm-state.test.ts checks these
 * against what the ioctls return). `kvm_xsave` is the smallest XSAVE image; a host with
 * larger XSAVE features uses a larger one (the addon's `xsaveSize()`).
 */
export const STATE_SIZEOF = { kvm_irqchip: 520, kvm_pit_state2: 112, kvm_clock_data: 48, kvm_xsave: 4096 } as const;

/** KVM_IRQCHIP_* chip ids for KVM_GET_IRQCHIP / KVM_SET_IRQCHIP (struct kvm_irqchip.chip_id). */
export const KVM_IRQCHIP = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

/** KVM_CLOCK_* flags of struct kvm_clock_data. */
export const KVM_CLOCK = { TSC_STABLE: 2, REALTIME: 4, HOST_TSC: 8 } as const;

/** struct kvm_clock_data, decoded: the kvmclock in ns, and (per `flags`) the host's realtime and TSC then. */
export interface KvmClockData { clock: bigint; flags: number; realtime: bigint; hostTsc: bigint }

/** Decode struct kvm_clock_data. */
export function decodeClock(buf: ArrayBuffer): KvmClockData {
  const v = new DataView(buf);
  return { clock: v.getBigUint64(0, true), flags: v.getUint32(8, true), realtime: v.getBigUint64(16, true), hostTsc: v.getBigUint64(24, true) };
}

/** Encode struct kvm_clock_data (padding zero). */
export function encodeClock(c: KvmClockData): ArrayBuffer {
  const buf = new ArrayBuffer(STATE_SIZEOF.kvm_clock_data);
  const v = new DataView(buf);
  v.setBigUint64(0, BigInt.asUintN(64, c.clock), true);
  v.setUint32(8, c.flags >>> 0, true);
  v.setBigUint64(16, BigInt.asUintN(64, c.realtime), true);
  v.setBigUint64(24, BigInt.asUintN(64, c.hostTsc), true);
  return buf;
}

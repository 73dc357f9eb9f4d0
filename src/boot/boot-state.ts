/**
 * The plain description of an initial vCPU state that every loader returns and the VMM
 * applies (via KVM_SET_REGS / KVM_SET_SREGS) before the first KVM_RUN.
 *
 * Nothing here touches KVM: it is data only, so loaders stay unit-testable.
 */

/**
 * One segment register's hidden state.
 *
 * `access` uses the VMX access-rights encoding: bits 0-3 type, bit 4 S, bits 5-6 DPL,
 * bit 7 P, bit 12 AVL, bit 13 L (64-bit code), bit 14 D/B, bit 15 G. E.g. `0x93` is a
 * read/write accessed data segment, `0x9b` an execute/read accessed code segment and
 * `0xa09b` a 64-bit code segment with G and L set. `limit` is in bytes (already scaled by G).
 */
export interface SegmentState {
  /** The visible selector. */
  selector: number;
  /** Linear base address. */
  base: bigint;
  /** Limit in bytes (byte granular, i.e. already expanded when G is set). */
  limit: number;
  /** VMX access-rights encoding (see above). */
  access: number;
}

/** The general-purpose registers a loader may set (names as in `struct kvm_regs`). */
export type BootRegister = 'rax' | 'rbx' | 'rcx' | 'rdx' | 'rsi' | 'rdi' | 'rsp' | 'rbp' | 'rip' | 'rflags';

/** The segment registers a loader may set (names as in `struct kvm_sregs`). */
export type BootSegment = 'cs' | 'ds' | 'es' | 'fs' | 'gs' | 'ss' | 'tr' | 'ldtr';

/** A descriptor-table register (GDTR/IDTR). `limit` is the byte size minus one. */
export interface DescriptorTableState {
  /** Linear base address of the table. */
  base: bigint;
  /** Size of the table in bytes, minus one. */
  limit: number;
}

/** The initial vCPU state a loader asks the VMM to apply. Unset fields keep their reset values. */
export interface BootState {
  /** The CPU mode this state is consistent with. */
  mode: 'real' | 'protected' | 'long';
  /** General-purpose registers, RIP and RFLAGS. */
  regs: Partial<Record<BootRegister, bigint>>;
  /** Control register 0. */
  cr0?: bigint;
  /** Control register 3 (page-table root). */
  cr3?: bigint;
  /** Control register 4. */
  cr4?: bigint;
  /** The IA32_EFER MSR. */
  efer?: bigint;
  /** Segment registers. */
  segments?: Partial<Record<BootSegment, SegmentState>>;
  /** The GDTR. */
  gdt?: DescriptorTableState;
  /** The IDTR. */
  idt?: DescriptorTableState;
}

/** VMX access rights of a present, busy 32/64-bit TSS: what TR must hold in protected/long mode. */
export const TSS_BUSY_ACCESS = 0x8b;
/** VMX access rights of a present LDT descriptor. */
export const LDT_ACCESS = 0x82;

/** A TR state that satisfies VM entry checks (selector 0, base 0, limit 0xffff, busy TSS). */
export function defaultTaskRegister(): SegmentState {
  return { selector: 0, base: 0n, limit: 0xffff, access: TSS_BUSY_ACCESS };
}

/** An LDTR state that satisfies VM entry checks (selector 0, base 0, limit 0xffff, LDT). */
export function defaultLdtRegister(): SegmentState {
  return { selector: 0, base: 0n, limit: 0xffff, access: LDT_ACCESS };
}

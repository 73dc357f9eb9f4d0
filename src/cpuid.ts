/**
 * Guest CPUID: KVM_GET_SUPPORTED_CPUID, adjusted per vCPU (APIC ids, topology) and with
 * bits the user asks to clear, applied with KVM_SET_CPUID2 (guests need it; DESIGN.md §1).
 */
import type { CpuidEntry } from './kvm/structs.js';

/** A CPUID register. */
export type CpuidReg = 'eax' | 'ebx' | 'ecx' | 'edx';

/** One CPUID bit to clear: leaf, optional subleaf (index), register and bit number. */
export interface CpuidBit { leaf: number; index?: number; reg: CpuidReg; bit: number }

/**
 * Named bits commonly cleared (Linux's `clearcpuid=` spelling).
 *
 * Clearing works on bits KVM lists in KVM_GET_SUPPORTED_CPUID. On PVM hosts the guest's CPUID
 * instruction also reports host features KVM does not list (measured here: SMAP, POPCNT,
 * AVX2, ERMS); clearing those has no effect there — hide them from a Linux guest with its
 * `clearcpuid=` kernel parameter instead.
 */
export const CPUID_BITS: Record<string, CpuidBit> = {
  cx16: { leaf: 1, reg: 'ecx', bit: 13 },
  xsave: { leaf: 1, reg: 'ecx', bit: 26 },
  osxsave: { leaf: 1, reg: 'ecx', bit: 27 },
  avx: { leaf: 1, reg: 'ecx', bit: 28 },
  x2apic: { leaf: 1, reg: 'ecx', bit: 21 },
  popcnt: { leaf: 1, reg: 'ecx', bit: 23 },
  tsc_deadline: { leaf: 1, reg: 'ecx', bit: 24 },
  hypervisor: { leaf: 1, reg: 'ecx', bit: 31 },
  smap: { leaf: 7, index: 0, reg: 'ebx', bit: 20 },
  smep: { leaf: 7, index: 0, reg: 'ebx', bit: 7 },
  avx2: { leaf: 7, index: 0, reg: 'ebx', bit: 5 },
  pku: { leaf: 7, index: 0, reg: 'ecx', bit: 3 },
  la57: { leaf: 7, index: 0, reg: 'ecx', bit: 16 },
};

/** Options for {@link guestCpuid}. */
export interface CpuidOptions {
  /** Bits to clear, by name ({@link CPUID_BITS}) or explicitly. */
  clear?: readonly (string | CpuidBit)[];
}

const CPUID_REGS: readonly string[] = ['eax', 'ebx', 'ecx', 'edx'];

function checkU32(v: unknown, arg: string, max = 0xffffffff): void {
  if (typeof v !== 'number') throw new TypeError(`${arg} must be a number, got ${v === null ? 'null' : typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${arg} must be an integer in [0, ${max}], got ${v}`);
}

/**
 * Resolve a bit name, or check an explicit {@link CpuidBit}: RangeError naming an unknown
 * name or an out-of-range field, TypeError for anything that is neither.
 */
export function resolveCpuidBit(b: string | CpuidBit, arg = 'cpuid.clear[]'): CpuidBit {
  if (typeof b === 'string') {
    const r = CPUID_BITS[b];
    if (!r) throw new RangeError(`${arg}: unknown bit name '${b}' (known: ${Object.keys(CPUID_BITS).join(', ')})`);
    return r;
  }
  if (typeof b !== 'object' || b === null || Array.isArray(b)) {
    throw new TypeError(`${arg} must be a bit name or a { leaf, index?, reg, bit } object, got ${b === null ? 'null' : typeof b}`);
  }
  checkU32(b.leaf, `${arg}.leaf`);
  if (b.index !== undefined) checkU32(b.index, `${arg}.index`);
  if (!CPUID_REGS.includes(b.reg as string)) throw new RangeError(`${arg}.reg must be one of ${CPUID_REGS.join(', ')}, got ${String(b.reg)}`);
  checkU32(b.bit, `${arg}.bit`, 31);
  return b;
}

/**
 * Check CPUID options (`Vm.create`'s `opts.cpuid`, named `arg` in errors): an object whose
 * only key is `clear` (undefined means none), an array of bit names or {@link CpuidBit}s. Returns them.
 */
export function checkCpuidOptions(opts: unknown, arg = 'cpuid'): CpuidOptions {
  if (opts === undefined) return {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) {
    throw new TypeError(`${arg} must be an object ({ clear?: [...] }), got ${opts === null ? 'null' : Array.isArray(opts) ? 'an array' : typeof opts}`);
  }
  for (const k of Object.keys(opts)) if (k !== 'clear') throw new RangeError(`${arg}: unknown option '${k}' (known: clear)`);
  const clear = (opts as CpuidOptions).clear;
  if (clear !== undefined) {
    if (!Array.isArray(clear)) throw new TypeError(`${arg}.clear must be an array of bit names or { leaf, index?, reg, bit } objects`);
    clear.forEach((b, i) => resolveCpuidBit(b, `${arg}.clear[${i}]`));
  }
  return opts as CpuidOptions;
}

/**
 * The CPUID table for one vCPU: APIC id = vCPU index in leaf 1 EBX[31:24], leaf 0xB/0x1F
 * EDX; logical processor count in leaf 1 EBX[23:16]; topology as one core per vCPU.
 */
export function guestCpuid(supported: readonly CpuidEntry[], vcpu: number, vcpus: number, opts: CpuidOptions = {}): CpuidEntry[] {
  const out = supported.map((e) => ({ ...e }));
  const clear = (opts.clear ?? []).map((b, i) => resolveCpuidBit(b, `cpuid.clear[${i}]`));
  for (const e of out) {
    if (e.function === 1) {
      e.ebx = ((e.ebx & 0x0000ffff) | ((Math.min(vcpus, 255) & 0xff) << 16) | ((vcpu & 0xff) << 24)) >>> 0;
      if (vcpus > 1) e.edx = (e.edx | (1 << 28)) >>> 0; // HTT: the count field is valid
    } else if (e.function === 0xb || e.function === 0x1f) {
      // level 0 = SMT (1 thread per core), level 1 = core (vcpus cores per package)
      if (e.index === 0) {
        e.eax = 0;
        e.ebx = 1;
        e.ecx = (1 << 8) | 0;
      } else if (e.index === 1) {
        e.eax = Math.ceil(Math.log2(Math.max(vcpus, 1)));
        e.ebx = vcpus;
        e.ecx = (2 << 8) | 1;
      } else {
        e.eax = 0;
        e.ebx = 0;
        e.ecx = e.index;
      }
      e.edx = vcpu;
    } else if (e.function === 4) {
      // cores per package - 1 in EAX[31:26]
      e.eax = ((e.eax & 0x03ffffff) | (((Math.min(vcpus, 64) - 1) & 0x3f) << 26)) >>> 0;
    }
    for (const b of clear) {
      if (b.leaf === e.function && (b.index === undefined || b.index === e.index)) {
        e[b.reg] = (e[b.reg] & ~(1 << b.bit)) >>> 0;
      }
    }
  }
  return out;
}

/**
 * The bits of `clear` that `supported` (KVM_GET_SUPPORTED_CPUID) does not set: clearing them
 * changes nothing KVM controls — on PVM hosts the guest may still see the host's bit.
 */
export function ineffectiveClears(supported: readonly CpuidEntry[], clear: readonly (string | CpuidBit)[]): (string | CpuidBit)[] {
  return clear.filter((b) => {
    const bit = resolveCpuidBit(b);
    const e = supported.find((x) => x.function === bit.leaf && (bit.index === undefined || x.index === bit.index));
    return e === undefined || ((e[bit.reg] >>> bit.bit) & 1) === 0;
  });
}

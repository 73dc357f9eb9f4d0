/**
 * bhyve's per-vCPU capabilities and their names (vm_capability_name2type/type2name).
 * How each maps to KVM is in src/vm.ts (getCapability/setCapability) and the README.
 */

/** bhyve's `enum vm_cap_type`. */
export enum Capability {
  /** HLT causes a VM exit to the hypervisor (KVM: unless KVM_X86_DISABLE_EXITS_HLT). */
  HltExit = 0,
  /** Exit after every guest instruction (KVM: single-step via KVM_SET_GUEST_DEBUG). */
  MtrapExit = 1,
  /** PAUSE causes a VM exit (KVM: unless KVM_X86_DISABLE_EXITS_PAUSE). */
  PauseExit = 2,
  /** Real mode and big-real mode run without emulation tricks. */
  UnrestrictedGuest = 3,
}

const NAMES: readonly string[] = ['hlt_exit', 'mtrap_exit', 'pause_exit', 'unrestricted_guest'];

/** The capability type for a seed name; RangeError for an unknown name. */
export function capabilityNameToType(name: string): Capability {
  if (typeof name !== 'string') throw new TypeError('name must be a string');
  const i = NAMES.indexOf(name);
  if (i < 0) throw new RangeError(`name: unknown capability '${name}' (known: ${NAMES.join(', ')})`);
  return i as Capability;
}

/** The seed name of a capability type; RangeError for an unknown type. */
export function capabilityTypeToName(type: Capability | number): string {
  if (typeof type !== 'number') throw new TypeError('type must be a number');
  const n = NAMES[type];
  if (n === undefined) throw new RangeError(`type: unknown capability type ${type}`);
  return n;
}

/**
 * Resolve a capability given by type or by name: TypeError unless a number or a string,
 * RangeError for an unknown one (the message names `arg`).
 */
export function resolveCapability(cap: Capability | number | string, arg = 'cap'): Capability {
  if (typeof cap === 'string') {
    const i = NAMES.indexOf(cap);
    if (i < 0) throw new RangeError(`${arg}: unknown capability '${cap}' (known: ${NAMES.join(', ')})`);
    return i as Capability;
  }
  if (typeof cap !== 'number') throw new TypeError(`${arg} must be a capability type (a number) or name (a string), got ${cap === null ? 'null' : typeof cap}`);
  if (NAMES[cap] === undefined) throw new RangeError(`${arg}: unknown capability type ${String(cap)} (known: 0-${NAMES.length - 1})`);
  return cap as Capability;
}

/**
 * A capability value for vm_set_capability: a boolean, 0 or 1. Anything else (NaN, 2, -1,
 * 0.5, '1') is refused, so a typo cannot silently turn a one-way capability off.
 */
export function capabilityValue(value: unknown, arg = 'value'): boolean {
  if (typeof value === 'boolean') return value;
  if (typeof value !== 'number') throw new TypeError(`${arg} must be a boolean, 0 or 1, got ${value === null ? 'null' : typeof value}`);
  if (value !== 0 && value !== 1) throw new RangeError(`${arg} must be a boolean, 0 or 1, got ${value}`);
  return value === 1;
}

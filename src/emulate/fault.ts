/**
 * Internal control flow of the emulator: instruction implementations throw a {@link Fault}
 * (an architectural exception to deliver) or an {@link Unsupported} (the emulator cannot
 * complete the instruction); {@link ../emulator.js emulate} turns both into results.
 */

/** Exception vectors used by the emulator. */
export const VECTOR = { DE: 0, DB: 1, BP: 3, UD: 6, NM: 7, SS: 12, GP: 13, PF: 14, MF: 16, AC: 17, XM: 19 } as const;

/** An architectural exception raised by an instruction (a fault unless stated otherwise). */
export class Fault {
  constructor(
    readonly vector: number,
    readonly errorCode?: number,
    readonly cr2?: bigint,
    readonly reason?: string,
  ) {}
}

/** The instruction cannot be completed by this emulator (e.g. its operand is MMIO). */
export class Unsupported {
  constructor(readonly reason: string) {}
}

/** #UD. */
export function ud(reason?: string): Fault {
  return new Fault(VECTOR.UD, undefined, undefined, reason);
}

/** #GP(0). */
export function gp0(reason?: string): Fault {
  return new Fault(VECTOR.GP, 0, undefined, reason);
}

/** #NM. */
export function nm(reason?: string): Fault {
  return new Fault(VECTOR.NM, undefined, undefined, reason);
}

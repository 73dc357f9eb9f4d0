/**
 * The optional atomic read-modify-write extension of {@link EngineMmu} the engine uses for
 * LOCK-prefixed instructions on guest memory (issue 15). An MMU over a SharedArrayBuffer
 * implements it with a compare-and-swap loop (Atomics.compareExchange on the translated
 * guest-physical location) so that other vCPU threads see the update as one access; an
 * MMU without it gets a plain read then write (atomic only with respect to this thread).
 */
import type { EngineMmu } from './types.js';

/** What the engine needs from an MMU for atomic LOCK RMW. */
export interface EngineMmuAtomic {
  /**
   * Atomically replace the `size`-byte value at linear address `la` with `update(old)`
   * (translated and checked as a write, A/D bits set as for one) and return `old`.
   * `update` is pure and may be called more than once (once per CAS attempt).
   * An access that crosses a page, is misaligned across a CAS unit, or is MMIO may fall back
   * to a bus-locked equivalent (or a plain read-then-write): the engine makes no assumption.
   */
  rmw(la: bigint, size: 1 | 2 | 4 | 8, update: (old: bigint) => bigint): bigint;
}

/** True if `mmu` implements {@link EngineMmuAtomic}. */
export function hasAtomicRmw(mmu: EngineMmu): mmu is EngineMmu & EngineMmuAtomic {
  return typeof (mmu as Partial<EngineMmuAtomic>).rmw === 'function';
}

/**
 * Helpers for the snapshot/restore tests: move a test driver onto a copy of its guest
 * memory (what a restorer provides: the saved memory, already holding the rings) and
 * scribble over the original, so a restored device that still looked at the old memory
 * would fail.
 */
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { TestRam } from './driver.js';

/** A copy of `ram` (same base, same bytes, new buffer); the original is overwritten with 0xee. */
export function copyRam(ram: TestRam): TestRam {
  const copy = new TestRam(ram.length, ram.base, ram.guard);
  copy.ram.set(ram.ram);
  ram.ram.fill(0xee);
  return copy;
}

/** Something driving guest memory: a GuestDriver, or a Vring (its `mem`). */
interface MemoryUser {
  mem: GuestMemory;
  ram?: TestRam;
}

/**
 * Point each of `users` (drivers or vrings sharing `ram`) at a copy of it (see
 * {@link copyRam}); returns the copy. Their ring and buffer addresses stay valid.
 */
export function moveToCopy(ram: TestRam, ...users: object[]): TestRam {
  const copy = copyRam(ram);
  for (const u of users as MemoryUser[]) {
    u.mem = copy.mem;
    if (u.ram) u.ram = copy;
  }
  return copy;
}

/** A JSON round trip, as a snapshot file would do. */
export function viaJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

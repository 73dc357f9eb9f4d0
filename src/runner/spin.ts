/**
 * Bounded busy-waiting on a shared Int32 cell. Handing an exit between two threads by
 * sleeping (futex) costs tens of microseconds on nested-virtualization hosts, more than the
 * exit itself; spinning for a few microseconds first keeps hot loops on the fast path.
 */

/**
 * Spin while `cells[index] === value`, for at most `maxMs` milliseconds. Returns true if the
 * value changed, false on timeout.
 */
export function spinWhileEqual(cells: Int32Array, index: number, value: number, maxMs: number): boolean {
  if (Atomics.load(cells, index) !== value) return true;
  const deadline = performance.now() + maxMs;
  for (let i = 1; ; i++) {
    if (Atomics.load(cells, index) !== value) return true;
    if ((i & 63) === 0 && performance.now() >= deadline) return false;
  }
}

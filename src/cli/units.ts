/** Parsing the numbers the command line takes: sizes, addresses, counts, durations. */
import { MAX_MEMORY, MEMORY_ALIGN, MIN_MEMORY } from '../platform/layout.js';
import { UsageError } from './errors.js';

const UNITS: Record<string, number> = { '': 2 ** 20, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * A memory size: a number with an optional K, M, G or T suffix (binary units; `KiB`, `MB`
 * spellings are accepted too, `B` means bytes). A bare number is MiB, as in QEMU's `-m`.
 */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(text);
  if (!m) throw new UsageError(`${what} must be a size such as 128M or 1G, got '${text}'`);
  const unit = (m[2] ?? m[3] ?? '').toLowerCase();
  const bytes = Number(m[1]) * UNITS[unit];
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what} must be a whole number of bytes, got '${text}'`);
  return bytes;
}

/** A guest RAM size ({@link parseSize}) the PC accepts: 1 MiB to 1 TiB, whole 4 KiB pages. */
export function parseMemory(text: string, what: string): number {
  const bytes = parseSize(text, what);
  if (bytes < MIN_MEMORY || bytes > MAX_MEMORY || bytes % MEMORY_ALIGN !== 0)
    throw new UsageError(`${what} must be at least 1 MiB, at most 1 TiB and a multiple of 4 KiB (e.g. 128M, 1G), got '${text}'`);
  return bytes;
}

/** An address or integer: decimal, or hexadecimal with 0x. */
export function parseAddress(text: string, what: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what} must be an address, decimal or 0x hexadecimal (e.g. 0x1000), got '${text}'`);
  return n;
}

/** A whole number in `[min, max]`. */
export function parseCount(text: string, what: string, min: number, max: number): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${what} must be an integer from ${min} to ${max}, got '${text}'`);
  return n;
}

/** Most seconds a timeout may last: setTimeout's limit (2^31-1 ms, about 24.8 days). */
const MAX_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** A positive number of seconds (fractions allowed), at most {@link MAX_SECONDS}. */
export function parseSeconds(text: string, what: string): number {
  const n = /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? Number(text) : NaN;
  if (!(n > 0) || n > MAX_SECONDS) throw new UsageError(`${what} must be a positive number of seconds, at most ${MAX_SECONDS}, got '${text}'`);
  return n;
}

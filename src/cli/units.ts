/** Parsing the numbers the command line takes: sizes, addresses, counts, durations. */
import { UsageError } from './errors.js';

const UNITS: Record<string, number> = { '': 2 ** 20, b: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/**
 * A memory size: a number with an optional K, M, G or T suffix (binary units; `KiB`, `MB`
 * spellings are accepted too, `B` means bytes). A bare number is MiB, as in QEMU's `-m`.
 */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|(b))?\s*$/i.exec(text);
  if (!m) throw new UsageError(`${what}: '${text}' is not a size (e.g. 128M, 1G)`);
  const unit = (m[2] ?? m[3] ?? '').toLowerCase();
  const bytes = Number(m[1]) * UNITS[unit];
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what}: '${text}' is not a whole number of bytes`);
  return bytes;
}

/** An address or integer: decimal, or hexadecimal with 0x. */
export function parseAddress(text: string, what: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? Number.parseInt(t.slice(2), 16) : /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(n)) throw new UsageError(`${what}: '${text}' is not an address (e.g. 0x1000)`);
  return n;
}

/** A whole number in `[min, max]`. */
export function parseCount(text: string, what: string, min: number, max: number): number {
  const n = /^\s*\d+\s*$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new UsageError(`${what}: '${text}' is not a whole number in ${min}-${max}`);
  return n;
}

/** A positive number of seconds (fractions allowed), at most 24 days. */
export function parseSeconds(text: string, what: string): number {
  const n = /^\s*\d+(?:\.\d+)?\s*$/.test(text) ? Number(text) : NaN;
  if (!(n > 0) || n * 1000 > 2 ** 31 - 1) throw new UsageError(`${what}: '${text}' is not a positive number of seconds`);
  return n;
}

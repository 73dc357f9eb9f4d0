/** Checks for device constructor options: TypeError or RangeError naming the option. */
import { MAX_QUEUE_SIZE } from '../constants.js';

/** `options` itself: an object (or undefined, if `optional`). */
export function checkOptions<T extends object>(options: unknown, optional: boolean): T {
  if (options === undefined && optional) return {} as T;
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  return options as T;
}

/** An optional integer option in [min, max], `def` if undefined. */
export function intOption(name: string, value: unknown, min: number, max: number, def: number): number {
  if (value === undefined) return def;
  if (typeof value !== 'number') throw new TypeError(`options.${name} must be a number, got ${typeof value}`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`options.${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

/** An optional boolean option, `def` if undefined. */
export function boolOption(name: string, value: unknown, def: boolean): boolean {
  if (value === undefined) return def;
  if (typeof value !== 'boolean') throw new TypeError(`options.${name} must be a boolean, got ${typeof value}`);
  return value;
}

/** An optional queue size: a power of two in [min, 32768], `def` if undefined. */
export function queueSizeOption(value: unknown, min: number, def: number): number {
  const n = intOption('queueSize', value, min, MAX_QUEUE_SIZE, def);
  if ((n & (n - 1)) !== 0) throw new RangeError(`options.queueSize must be a power of two, got ${n}`);
  return n;
}

/**
 * Checking {@link PcOptions} before a machine is built: every bad option is a TypeError
 * (wrong type) or RangeError (out of range) whose one-line message names it.
 */
import { checkCpuidOptions } from '../cpuid.js';
import { formatBytes, MAX_CPUS, MAX_MEMORY, MEMORY_ALIGN, MIN_MEMORY } from './layout.js';
import type { PcOptions } from './pc.js';

/** Check `opts.memory`; returns it. */
function checkMemory(memory: unknown): number {
  if (typeof memory !== 'number' || !Number.isSafeInteger(memory)) throw new TypeError(`memory must be a byte count (an integer), got ${String(memory)}`);
  if (memory < MIN_MEMORY) throw new RangeError(`memory: ${formatBytes(memory)} is too little; the PC needs at least 1 MiB`);
  if (memory > MAX_MEMORY) throw new RangeError(`memory: ${formatBytes(memory)} is more than the supported 1 TiB`);
  if (memory % MEMORY_ALIGN !== 0) throw new RangeError(`memory: ${memory} bytes is not a multiple of 4 KiB`);
  return memory;
}

/** Check `opts.cpus` (default 1); returns it. */
function checkCpus(cpus: unknown = 1): number {
  if (typeof cpus !== 'number') throw new TypeError(`cpus must be a number, got ${typeof cpus}`);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_CPUS) throw new RangeError(`cpus must be an integer 1-${MAX_CPUS}, got ${cpus}`);
  return cpus;
}

/** True for something with a Readable's `on`/`removeListener`. */
const isReadable = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && typeof (v as NodeJS.ReadableStream).on === 'function' && typeof (v as NodeJS.ReadableStream).removeListener === 'function';

/** Check `opts.serial`. */
function checkSerial(serial: unknown): void {
  if (serial === undefined) return;
  if (typeof serial !== 'object' || serial === null) throw new TypeError('serial must be an object ({ onOutput?, input? })');
  const { onOutput, input } = serial as NonNullable<PcOptions['serial']>;
  if (onOutput !== undefined && typeof onOutput !== 'function') throw new TypeError(`serial.onOutput must be a function, got ${typeof onOutput}`);
  if (input !== undefined && !isReadable(input)) throw new TypeError('serial.input must be a readable stream');
}

/** Validate the options of createPc; returns the checked memory size and vCPU count. */
export function checkPcOptions(opts: PcOptions): { memory: number; cpus: number } {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options must be an object');
  const memory = checkMemory(opts.memory);
  const cpus = checkCpus(opts.cpus);
  checkSerial(opts.serial);
  for (const k of ['debugcon', 'onExit', 'traceExits'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'function') throw new TypeError(`${k} must be a function, got ${typeof opts[k]}`);
  }
  checkCpuidOptions(opts.cpuid, 'cpuid');
  if (opts.emulate !== undefined && typeof opts.emulate !== 'boolean') throw new TypeError(`emulate must be a boolean, got ${typeof opts.emulate}`);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === '')) throw new TypeError('name must be a non-empty string');
  return { memory, cpus };
}

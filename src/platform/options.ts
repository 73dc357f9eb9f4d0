/**
 * Checking {@link PcOptions} before a machine is built: every bad option is a TypeError
 * (wrong type) or RangeError (out of range) whose one-line message names it.
 */
import { checkCpuidOptions } from '../cpuid.js';
import { formatBytes, KVM_PORTS, MAX_CPUS, MAX_MEMORY, MEMORY_ALIGN, MIN_MEMORY, PCI_IO_WINDOW, PORTS } from './layout.js';
import type { PcOptions } from './pc.js';

/** A range of I/O ports. */
export interface PortRange {
  /** First port. */
  base: number;
  /** Number of ports. */
  length: number;
}

/** The access sizes (QEMU's iosize) the debug-exit device may claim. */
const DEBUG_EXIT_SIZES = [1, 2, 4] as const;

/** `0x60-0x64`, or `0x61` for one port. */
const portSpan = (r: PortRange): string => (r.length === 1 ? `0x${r.base.toString(16)}` : `0x${r.base.toString(16)}-0x${(r.base + r.length - 1).toString(16)}`);

/**
 * Check `opts.debugExit` (`{ port?, size? }`, default `{ port: 0x501, size: 2 }`): the port
 * an integer 0-0xffff, the size 1, 2 or 4, the range inside the port space and clear of the
 * other platform devices, of the ports KVM serves and of the PCI I/O window. Returns the range.
 */
export function checkDebugExit(debugExit: unknown, withDebugcon: boolean): PortRange {
  const def = PORTS.debugExit;
  if (debugExit === undefined) return { base: def.base, length: def.length };
  if (typeof debugExit !== 'object' || debugExit === null) throw new TypeError('debugExit must be an object ({ port?, size? })');
  for (const k of Object.keys(debugExit)) if (k !== 'port' && k !== 'size') throw new TypeError(`debugExit: unknown option '${k}' (port, size)`);
  const { port = def.base, size = def.length } = debugExit as { port?: unknown; size?: unknown };
  if (typeof port !== 'number') throw new TypeError(`debugExit.port must be a number, got ${typeof port}`);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new RangeError(`debugExit.port must be an integer 0-0xffff, got ${port}`);
  if (typeof size !== 'number') throw new TypeError(`debugExit.size must be a number, got ${typeof size}`);
  if (!(DEBUG_EXIT_SIZES as readonly number[]).includes(size)) throw new RangeError(`debugExit.size must be 1, 2 or 4, got ${size}`);
  const range = { base: port, length: size };
  if (port + size > 0x10000) throw new RangeError(`debugExit: ports ${portSpan({ base: port, length: 0x10000 - port })}+ run past 0xffff (port ${port}, size ${size})`);
  const taken: [string, PortRange][] = [
    ...Object.entries(KVM_PORTS).map(([k, r]): [string, PortRange] => [`in-kernel ${k}`, r]),
    ...Object.entries(PORTS).filter(([k]) => k !== 'debugExit' && (k !== 'debugcon' || withDebugcon)),
    ['PCI I/O window', { base: PCI_IO_WINDOW.base, length: PCI_IO_WINDOW.size }],
  ];
  for (const [name, r] of taken) {
    if (port < r.base + r.length && r.base < port + size)
      throw new RangeError(`debugExit: ports ${portSpan(range)} overlap the ${name} at ${portSpan(r)}`);
  }
  return range;
}

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

/** Validate the options of createPc; returns the checked memory size, vCPU count and debug-exit ports. */
export function checkPcOptions(opts: PcOptions): { memory: number; cpus: number; debugExit: PortRange } {
  if (typeof opts !== 'object' || opts === null) throw new TypeError('options must be an object');
  const memory = checkMemory(opts.memory);
  const cpus = checkCpus(opts.cpus);
  checkSerial(opts.serial);
  for (const k of ['debugcon', 'onExit', 'traceExits'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'function') throw new TypeError(`${k} must be a function, got ${typeof opts[k]}`);
  }
  checkCpuidOptions(opts.cpuid, 'cpuid');
  if (opts.emulate !== undefined && typeof opts.emulate !== 'boolean') throw new TypeError(`emulate must be a boolean, got ${typeof opts.emulate}`);
  if (opts.engine !== undefined && opts.engine !== 'kvm' && opts.engine !== 'cpl0') throw new RangeError(`engine must be 'kvm' or 'cpl0', got ${String(opts.engine)}`);
  if (opts.name !== undefined && (typeof opts.name !== 'string' || opts.name === '')) throw new TypeError('name must be a non-empty string');
  const debugExit = checkDebugExit(opts.debugExit, opts.debugcon !== undefined);
  return { memory, cpus, debugExit };
}

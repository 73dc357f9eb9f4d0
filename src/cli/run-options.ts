/** The options of `vmmapi run` and the helpers both a fresh run and a restore parse them with. */
import { parseConsole, parseDisk, parseNet, parseVsock, type DeviceSpecs } from './device-args.js';
import { UsageError } from './errors.js';

/** The options of `vmmapi run` (and `run --restore`), for node:util parseArgs. */
export const RUN_OPTIONS = {
  bios: { type: 'string' },
  kernel: { type: 'string' },
  initrd: { type: 'string' },
  append: { type: 'string' },
  multiboot: { type: 'string' },
  module: { type: 'string', multiple: true },
  flat: { type: 'string' },
  mode: { type: 'string' },
  cpus: { type: 'string' },
  memory: { type: 'string' },
  debugcon: { type: 'string' },
  'debug-exit': { type: 'string' },
  'clear-cpuid': { type: 'string' },
  timeout: { type: 'string' },
  'trace-exits': { type: 'boolean' },
  'no-emulate': { type: 'boolean' },
  engine: { type: 'string' },
  'decompress-on-host': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
  status: { type: 'boolean' },
  'no-status': { type: 'boolean' },
  disk: { type: 'string', multiple: true },
  rng: { type: 'boolean' },
  console: { type: 'string' },
  net: { type: 'string', multiple: true },
  vsock: { type: 'string' },
  restore: { type: 'string' },
  'api-socket': { type: 'string' },
} as const;

/** The `run` options as parseArgs gives them. */
export type RunValues = {
  -readonly [K in keyof typeof RUN_OPTIONS]?: (typeof RUN_OPTIONS)[K] extends { multiple: true } ? string[] : (typeof RUN_OPTIONS)[K]['type'] extends 'string' ? string : boolean;
};

/** True if `--name` is an option that takes a value. */
function takesValue(name: string): boolean {
  return Object.hasOwn(RUN_OPTIONS, name) && RUN_OPTIONS[name as keyof typeof RUN_OPTIONS].type === 'string';
}

/**
 * `--opt VALUE` → `--opt=VALUE` for every option that takes a value: the word after such an
 * option is its value even when it starts with '-' (`--cpus -1` is a bad CPU count, checked
 * as such, not parseArgs' "argument is ambiguous"). Words after `--` are left alone.
 */
export function joinOptionValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    if (word === '--') return out.concat(argv.slice(i));
    if (word.startsWith('--') && takesValue(word.slice(2)) && i + 1 < argv.length) out.push(`${word}=${argv[++i]}`);
    else out.push(word);
  }
  return out;
}

/** A non-empty `--opt` value. */
export function nonEmpty(s: string, opt: string): string {
  if (s.trim() === '') throw new UsageError(`--${opt} needs a file name`);
  return s;
}

/** The virtio device options given (each kind only if given; `--rng` only if set). */
export function parseDeviceOptions(v: RunValues): Partial<DeviceSpecs> {
  const d: Partial<DeviceSpecs> = {};
  if (v.disk !== undefined) d.disks = v.disk.map(parseDisk);
  if (v.rng) d.rng = true;
  if (v.console !== undefined) d.console = parseConsole(v.console);
  if (v.net !== undefined) d.nets = v.net.map(parseNet);
  if (v.vsock !== undefined) d.vsock = parseVsock(v.vsock);
  return d;
}

/** `--api-socket PATH`, if given. */
export function parseApiSocket(v: RunValues): string | undefined {
  if (v['api-socket'] === undefined) return undefined;
  if (v['api-socket'].trim() === '') throw new UsageError('--api-socket needs a socket path');
  return v['api-socket'];
}


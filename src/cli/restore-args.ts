/**
 * `vmmapi run --restore DIR …`: which options go with a restore. The snapshot fixes what was
 * booted and the machine's shape, so the boot and machine options are refused; the device
 * options replace the snapshot's stored devices of their kind (see src/cli/restore.ts).
 */
import { nonEmpty, parseApiSocket, parseDeviceOptions, type RunValues } from './run-options.js';
import type { DeviceSpecs } from './device-args.js';
import { UsageError } from './errors.js';
import { parseSeconds } from './units.js';

/** A checked `vmmapi run --restore DIR` invocation. */
export interface RestoreConfig {
  /** The snapshot directory. */
  dir: string;
  /** `--api-socket PATH`: the control socket to listen on. */
  apiSocket?: string;
  /** Seconds before giving up (counted from the restore). */
  timeout?: number;
  /** One line per exit on stderr. */
  traceExits: boolean;
  /** The status line: as RunConfig.status. */
  status?: boolean;
  /** Where the debug console goes now (a file, or '-'), if the snapshot's machine has one; default: as stored. */
  debugcon?: string;
  /** The device options given; each kind given replaces the snapshot's devices of that kind. */
  devices: Partial<DeviceSpecs>;
}

/** Options the snapshot fixes (what was booted, the machine's shape): refused with --restore. */
export const FIXED_BY_SNAPSHOT = [
  'bios',
  'kernel',
  'initrd',
  'append',
  'multiboot',
  'module',
  'flat',
  'mode',
  'decompress-on-host',
  'cpus',
  'memory',
  'clear-cpuid',
  'debug-exit',
  'no-emulate',
  'engine',
] as const;

/** `run --restore DIR` with the options `v`; UsageError for an option the snapshot fixes. */
export function parseRestore(v: RunValues): RestoreConfig {
  const fixed = FIXED_BY_SNAPSHOT.filter((k) => v[k] !== undefined);
  if (fixed.length > 0) {
    const list = fixed.map((k) => `--${k}`).join(', ');
    throw new UsageError(`${list} cannot be combined with --restore: the snapshot fixes what was booted and the machine (memory, vCPUs, CPUID, debug-exit, emulation, engine)`);
  }
  const dir = v.restore!;
  if (dir.trim() === '') throw new UsageError('--restore needs a snapshot directory');
  return {
    dir,
    apiSocket: parseApiSocket(v),
    timeout: v.timeout === undefined ? undefined : parseSeconds(v.timeout, '--timeout'),
    traceExits: v['trace-exits'] ?? false,
    status: v['no-status'] ? false : v.status ? true : undefined,
    debugcon: v.debugcon === undefined ? undefined : nonEmpty(v.debugcon, 'debugcon'),
    devices: parseDeviceOptions(v),
  };
}

/**
 * The `vmmapi` command line, parsed and checked (node:util parseArgs): `run` here, `run
 * --restore` in restore-args.ts, `ctl` in ctl-args.ts.
 */
import { parseArgs } from 'node:util';
import { CPUID_BITS } from '../cpuid.js';
import { MAX_CPUS } from '../platform/layout.js';
import { UsageError } from './errors.js';
import { parseAddress, parseCount, parseMemory, parseSeconds } from './units.js';
import type { DeviceSpecs } from './device-args.js';
import { nonEmpty, parseApiSocket, parseDeviceOptions, RUN_OPTIONS, joinOptionValues, type RunValues } from './run-options.js';
import { parseCtl, type CtlConfig } from './ctl-args.js';
import { parseRestore, type RestoreConfig } from './restore-args.js';
import { COMMANDS } from './usage.js';
import type { EngineChoice } from '../runner/protocol.js';

export { COMMANDS, USAGE } from './usage.js';

/** What to boot. */
export type BootSpec =
  | { kind: 'bios'; file: string }
  | { kind: 'kernel'; file: string; initrd?: string; append?: string; decompressOnHost: boolean }
  | { kind: 'multiboot'; file: string; append?: string; modules: { file: string; cmdline: string }[] }
  | { kind: 'flat'; file: string; at: number; mode: 'real' | 'protected' | 'long' };

/** A checked `vmmapi run` invocation (the virtio devices are its {@link DeviceSpecs} fields). */
export interface RunConfig extends DeviceSpecs {
  /** What to boot. */
  boot: BootSpec;
  /** vCPUs. */
  cpus: number;
  /** RAM in bytes. */
  memory: number;
  /** CPUID feature bits hidden from the guest (names of CPUID_BITS). */
  clearCpuid: string[];
  /** Debug console destination: a file name, or '-' for stdout. */
  debugcon?: string;
  /** Where the isa-debug-exit device goes (`--debug-exit PORT[,size=N]`; default 0x501, size 2). */
  debugExit?: { port: number; size?: number };
  /** Seconds before giving up. */
  timeout?: number;
  /** One line per exit on stderr. */
  traceExits: boolean;
  /** Finish instructions KVM's emulator cannot (default true; --no-emulate turns it off). */
  emulate: boolean;
  /** Who runs ring-0 long-mode code (--engine kvm|cpl0; default kvm). */
  engine: EngineChoice;
  /** The status line on stderr: `true` (--status), `false` (--no-status), or unset: only when stderr is a terminal. */
  status?: boolean;
  /** `--api-socket PATH`: the control socket to listen on. */
  apiSocket?: string;
}

/** The parsed command: run something, restore a snapshot, talk to a control socket, print help or the version. */
export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'run'; config: RunConfig }
  | { kind: 'restore'; config: RestoreConfig }
  | { kind: 'ctl'; config: CtlConfig };

/** Parse `argv` (without the node and script paths). Throws UsageError on any problem. */
export function parseCommand(argv: readonly string[]): Command {
  if (argv[0] === 'ctl') return parseCtl(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({ args: joinOptionValues(argv), options: RUN_OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see vmmapi --help)`);
  }
  const { values: v, positionals } = parsed;
  if (v.help || positionals[0] === 'help') return { kind: 'help' };
  if (v.version || positionals[0] === 'version') return { kind: 'version' };
  if (positionals.length === 0) throw new UsageError('missing command: vmmapi run [options] (see vmmapi --help)');
  if (positionals[0] !== 'run') throw new UsageError(`unknown command '${positionals[0]}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);
  if (v.restore !== undefined) return { kind: 'restore', config: parseRestore(v) };
  return { kind: 'run', config: parseRun(v) };
}

/** The boot options of a fresh run. */
function parseBoot(v: RunValues): BootSpec {
  const chosen = (['bios', 'kernel', 'multiboot', 'flat'] as const).filter((k) => v[k] !== undefined);
  if (chosen.length === 0) throw new UsageError('nothing to boot: give --bios, --kernel, --multiboot or --flat');
  if (chosen.length > 1) throw new UsageError(`--${chosen[0]} and --${chosen[1]} cannot be combined`);
  const kind = chosen[0];
  const only = (opt: 'initrd' | 'append' | 'module' | 'mode' | 'decompress-on-host', allowed: readonly string[]): void => {
    if (v[opt] !== undefined && !allowed.includes(kind)) throw new UsageError(`--${opt} needs ${allowed.map((a) => `--${a}`).join(' or ')}`);
  };
  only('initrd', ['kernel']);
  only('decompress-on-host', ['kernel']);
  only('append', ['kernel', 'multiboot']);
  only('module', ['multiboot']);
  only('mode', ['flat']);
  let boot: BootSpec;
  if (kind === 'bios') boot = { kind, file: nonEmpty(v.bios!, 'bios') };
  else if (kind === 'kernel') boot = { kind, file: nonEmpty(v.kernel!, 'kernel'), initrd: v.initrd === undefined ? undefined : nonEmpty(v.initrd, 'initrd'), append: v.append, decompressOnHost: v['decompress-on-host'] === true };
  else if (kind === 'multiboot') {
    const modules = (v.module ?? []).map((m) => {
      const file = m.trim().split(/\s+/)[0];
      return { file: nonEmpty(file ?? '', 'module'), cmdline: m.trim() };
    });
    boot = { kind, file: nonEmpty(v.multiboot!, 'multiboot'), append: v.append, modules };
  } else {
    const spec = v.flat!;
    const at = spec.lastIndexOf('@');
    if (at <= 0 || at === spec.length - 1) throw new UsageError(`--flat: '${spec}' is not FILE@ADDR (e.g. guest.bin@0x1000)`);
    const addr = parseAddress(spec.slice(at + 1), '--flat address');
    const mode = v.mode ?? (addr < 0x100000 ? 'real' : 'protected');
    if (mode !== 'real' && mode !== 'protected' && mode !== 'long') throw new UsageError(`--mode must be real, protected or long, got '${mode}'`);
    boot = { kind, file: spec.slice(0, at), at: addr, mode };
  }
  return boot;
}

/** `--engine kvm|cpl0`. */
function parseEngine(v: string | undefined): EngineChoice {
  if (v === undefined || v === 'kvm' || v === 'cpl0') return v ?? 'kvm';
  throw new UsageError(`--engine must be kvm or cpl0, got '${v}'`);
}

/** A fresh `vmmapi run` (not --restore). */
function parseRun(v: RunValues): RunConfig {
  const boot = parseBoot(v);
  const devices = parseDeviceOptions(v);
  return {
    boot,
    cpus: v.cpus === undefined ? 1 : parseCount(v.cpus, '--cpus', 1, MAX_CPUS),
    memory: v.memory === undefined ? 128 * 2 ** 20 : parseMemory(v.memory, '--memory'),
    clearCpuid: v['clear-cpuid'] === undefined ? [] : parseCpuidList(v['clear-cpuid']),
    debugcon: v.debugcon === undefined ? undefined : nonEmpty(v.debugcon, 'debugcon'),
    debugExit: v['debug-exit'] === undefined ? undefined : parseDebugExit(v['debug-exit']),
    timeout: v.timeout === undefined ? undefined : parseSeconds(v.timeout, '--timeout'),
    traceExits: v['trace-exits'] ?? false,
    emulate: !(v['no-emulate'] ?? false),
    engine: parseEngine(v.engine),
    status: v['no-status'] ? false : v.status ? true : undefined,
    disks: devices.disks ?? [],
    rng: devices.rng ?? false,
    console: devices.console ?? { kind: 'off' },
    nets: devices.nets ?? [],
    vsock: devices.vsock,
    apiSocket: parseApiSocket(v),
  };
}

/**
 * `--debug-exit PORT[,size=N]`: PORT decimal or 0x hexadecimal, 0-0xffff; N 1, 2 or 4.
 * (Whether the ports are free is createPc's check.)
 */
export function parseDebugExit(text: string): { port: number; size?: number } {
  const [portText, ...rest] = text.split(',');
  const port = parseAddress(portText, '--debug-exit port');
  if (port > 0xffff) throw new UsageError(`--debug-exit port must be at most 0xffff, got '${portText.trim()}'`);
  let size: number | undefined;
  for (const opt of rest) {
    const m = /^\s*size\s*=\s*(\S+)\s*$/.exec(opt);
    if (!m) throw new UsageError(`--debug-exit: '${opt}' is not size=N (e.g. --debug-exit 0xf4,size=4)`);
    if (size !== undefined) throw new UsageError('--debug-exit: size given twice');
    if (!['1', '2', '4'].includes(m[1])) throw new UsageError(`--debug-exit size must be 1, 2 or 4, got '${m[1]}'`);
    size = Number(m[1]);
  }
  return size === undefined ? { port } : { port, size };
}

/** `cx16,xsave` → names, each checked against CPUID_BITS. */
function parseCpuidList(text: string): string[] {
  const names = text.split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length === 0) throw new UsageError('--clear-cpuid needs feature names (e.g. cx16,xsave)');
  for (const n of names) {
    if (!Object.hasOwn(CPUID_BITS, n)) throw new UsageError(`--clear-cpuid: unknown feature '${n}' (known: ${Object.keys(CPUID_BITS).join(', ')})`);
  }
  return names;
}

/** The `vmmapi run` command line, parsed and checked (node:util parseArgs). */
import { parseArgs } from 'node:util';
import { CPUID_BITS } from '../cpuid.js';
import { MAX_CPUS } from '../platform/layout.js';
import { UsageError } from './errors.js';
import { parseAddress, parseCount, parseMemory, parseSeconds } from './units.js';
import { parseConsole, parseDisk, parseNet, parseVsock, type ConsoleSpec, type DiskSpec, type NetSpec, type VsockSpec } from './device-args.js';

/** What to boot. */
export type BootSpec =
  | { kind: 'bios'; file: string }
  | { kind: 'kernel'; file: string; initrd?: string; append?: string; decompressOnHost: boolean }
  | { kind: 'multiboot'; file: string; append?: string; modules: { file: string; cmdline: string }[] }
  | { kind: 'flat'; file: string; at: number; mode: 'real' | 'protected' | 'long' };

/** A checked `vmmapi run` invocation. */
export interface RunConfig {
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
  /** The status line on stderr: `true` (--status), `false` (--no-status), or unset: only when stderr is a terminal. */
  status?: boolean;
  /** virtio-blk disks, in PCI slot order. */
  disks: DiskSpec[];
  /** A virtio-rng device. */
  rng: boolean;
  /** The virtio console (hvc0); `off` or unset: none. */
  console: ConsoleSpec;
  /** virtio-net devices, in PCI slot order after the disks. */
  nets: NetSpec[];
  /** A virtio-vsock device. */
  vsock?: VsockSpec;
}

/** The parsed command: run something, print help, or print the version. */
export type Command = { kind: 'help' } | { kind: 'version' } | { kind: 'run'; config: RunConfig };

/** The subcommands, for `vmmapi --help` (each is dispatched by {@link parseCommand}). */
export const COMMANDS: readonly { name: string; summary: string }[] = [
  { name: 'run', summary: 'run a PC guest (options below)' },
  { name: 'help', summary: 'show this help (also --help, -h)' },
  { name: 'version', summary: 'print the version of vmmapi (also --version, -V)' },
];

/** `vmmapi --help`. */
export const USAGE = `Usage: vmmapi run [options] (--bios FILE | --kernel FILE | --multiboot FILE | --flat FILE@ADDR)
       vmmapi help | --help
       vmmapi version | --version

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(9)}${c.summary}`).join('\n')}

Run a PC guest on KVM. COM1 is connected to stdin/stdout (raw mode on a terminal;
type Ctrl-A x to quit, Ctrl-A Ctrl-A to send Ctrl-A).

Boot (exactly one):
  --bios FILE          BIOS ROM (e.g. /usr/share/seabios/bios.bin), started from reset
  --kernel FILE        Linux bzImage (or vmlinux ELF), entered in 64-bit mode with ACPI
                       tables for SMP
    --initrd FILE      initial ramdisk
    --append STR       kernel command line (default "console=ttyS0")
    --decompress-on-host  unpack a gzip/lz4 bzImage here and enter the kernel proper
                       (skips the in-guest decompressor: minutes on PVM hosts)
  --multiboot FILE     Multiboot (v1) kernel
    --append STR       kernel command line
    --module "FILE [ARGS]"  boot module (repeatable); the whole string is its command line
  --flat FILE@ADDR     flat binary copied to ADDR and entered there
    --mode MODE        real (default below 1 MiB), protected (default above) or long

Machine:
  --cpus N             vCPUs, 1-${MAX_CPUS} (default 1)
  --memory SIZE        RAM, e.g. 256M, 1G; a bare number is MiB (default 128M)
  --clear-cpuid LIST   hide CPUID features from the guest, comma-separated
                       (${Object.keys(CPUID_BITS).join(', ')})
  --debugcon FILE|-    write the debug console (port 0x402) to FILE, or stdout with -
  --debug-exit PORT[,size=N]  put the isa-debug-exit device at PORT, claiming N ports
                       (1, 2 or 4; default 0x501,size=2); e.g. 0xf4,size=4

Devices (virtio over PCI):
  --disk path=FILE[,readonly=on]  a virtio-blk disk on the raw image FILE (repeatable;
                       --disk FILE also works)
  --rng                a virtio-rng device (host entropy)
  --console file=PATH|socket=PATH|tty|off  the virtio console (the guest's hvc0) to a
                       file, a Unix socket vmmapi listens on (output from before the
                       first client connects is kept for it, up to 64 KiB), or stdout
                       (default off; COM1 stays on stdin/stdout)

Run control:
  --timeout SECONDS    stop the guest after SECONDS and exit with status 124
  --trace-exits        print one line per VM exit on stderr (and the instructions the
                       userspace fallback finished, per mnemonic)
  --no-emulate         do not finish instructions KVM's emulator gives up on (PVM hosts):
                       such an instruction then ends the run with its bytes
  --status             a one-line status on stderr while the guest prints nothing
                       (default on a terminal; --no-status turns it off)
  -h, --help           show this help
  -V, --version        print the version

Exit status: the guest's isa-debug-exit status ((value << 1) | 1, low 8 bits: always odd);
0 when the guest powers off or asks for a reset; 1 when the guest fails (KVM internal
error, triple fault) or the VMM does; 2 on usage errors and unusable images; 4 when every
vCPU halted with interrupts disabled; 124 on timeout; 130/143 on SIGINT/SIGTERM.
--trace-exits says why the run ended.
`;

const OPTIONS = {
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
} as const;

/** True if `--name` is an option that takes a value. */
function takesValue(name: string): boolean {
  return Object.hasOwn(OPTIONS, name) && OPTIONS[name as keyof typeof OPTIONS].type === 'string';
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

/** Parse `argv` (without the node and script paths). Throws UsageError on any problem. */
export function parseCommand(argv: readonly string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({ args: joinOptionValues(argv), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`${(e as Error).message.split('\n')[0]} (see vmmapi --help)`);
  }
  const { values: v, positionals } = parsed;
  if (v.help || positionals[0] === 'help') return { kind: 'help' };
  if (v.version || positionals[0] === 'version') return { kind: 'version' };
  if (positionals.length === 0) throw new UsageError('missing command: vmmapi run [options] (see vmmapi --help)');
  if (positionals[0] !== 'run') throw new UsageError(`unknown command '${positionals[0]}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
  if (positionals.length > 1) throw new UsageError(`unexpected argument '${positionals[1]}'`);

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
  const nonEmpty = (s: string, opt: string): string => {
    if (s.trim() === '') throw new UsageError(`--${opt} needs a file name`);
    return s;
  };

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

  return {
    kind: 'run',
    config: {
      boot,
      cpus: v.cpus === undefined ? 1 : parseCount(v.cpus, '--cpus', 1, MAX_CPUS),
      memory: v.memory === undefined ? 128 * 2 ** 20 : parseMemory(v.memory, '--memory'),
      clearCpuid: v['clear-cpuid'] === undefined ? [] : parseCpuidList(v['clear-cpuid']),
      debugcon: v.debugcon === undefined ? undefined : nonEmpty(v.debugcon, 'debugcon'),
      debugExit: v['debug-exit'] === undefined ? undefined : parseDebugExit(v['debug-exit']),
      timeout: v.timeout === undefined ? undefined : parseSeconds(v.timeout, '--timeout'),
      traceExits: v['trace-exits'] ?? false,
      emulate: !(v['no-emulate'] ?? false),
      status: v['no-status'] ? false : v.status ? true : undefined,
      disks: (v.disk ?? []).map(parseDisk),
      rng: v.rng ?? false,
      console: v.console === undefined ? { kind: 'off' } : parseConsole(v.console),
      nets: (v.net ?? []).map(parseNet),
      vsock: v.vsock === undefined ? undefined : parseVsock(v.vsock),
    },
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

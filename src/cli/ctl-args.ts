/**
 * `vmmapi ctl SOCKET COMMAND [DIR] [--timeout SECONDS] [--json] [--leave-paused]`: the
 * command line of the control socket's client, parsed and checked.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CONTROL_COMMANDS, type ControlRequest } from '../control/protocol.js';
import { UsageError } from './errors.js';
import { parseSeconds } from './units.js';

/** A checked `vmmapi ctl` invocation. */
export interface CtlConfig {
  /** The control socket's path. */
  socket: string;
  /** What to send (a snapshot's `dir` made absolute: the VMM may run in another directory). */
  request: ControlRequest;
  /** How long to wait for the reply, seconds (default 30). */
  timeout: number;
  /** Print the reply line as it came. */
  json: boolean;
}

const CTL_OPTIONS = {
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  'leave-paused': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const SHAPE = `vmmapi ctl SOCKET ${CONTROL_COMMANDS.map((c) => (c === 'snapshot' ? 'snapshot DIR' : c)).join('|')}`;

/** The request a command word and its arguments make. */
function request(cmd: string, args: string[], leavePaused: boolean): ControlRequest {
  if (!(CONTROL_COMMANDS as readonly string[]).includes(cmd)) throw new UsageError(`ctl: unknown command '${cmd}' (commands: ${CONTROL_COMMANDS.join(', ')})`);
  if (leavePaused && cmd !== 'snapshot') throw new UsageError('ctl: --leave-paused goes with snapshot');
  if (cmd === 'snapshot') {
    if (args.length === 0 || args[0].trim() === '') throw new UsageError('ctl snapshot needs a directory: vmmapi ctl SOCKET snapshot DIR');
    if (args.length > 1) throw new UsageError(`ctl: unexpected argument '${args[1]}'`);
    const dir = resolve(args[0]);
    return leavePaused ? { cmd, dir, leavePaused } : { cmd, dir };
  }
  if (args.length > 0) throw new UsageError(`ctl: unexpected argument '${args[0]}' (${cmd} takes none)`);
  return { cmd } as ControlRequest;
}

/** `--timeout VALUE` → `--timeout=VALUE`: the next word is the value even if it starts with '-' (as with run). */
function joinTimeout(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') return out.concat(argv.slice(i));
    out.push(argv[i] === '--timeout' && i + 1 < argv.length ? `--timeout=${argv[++i]}` : argv[i]);
  }
  return out;
}

/** `vmmapi ctl …` with `argv` the words after `ctl`. UsageError on any problem; `--help` gives help. */
export function parseCtl(argv: readonly string[]): { kind: 'help' } | { kind: 'ctl'; config: CtlConfig } {
  let parsed;
  try {
    parsed = parseArgs({ args: joinTimeout(argv), options: CTL_OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(`ctl: ${(e as Error).message.split('\n')[0]} (usage: ${SHAPE})`);
  }
  const { values: v, positionals: p } = parsed;
  if (v.help) return { kind: 'help' };
  if (p.length === 0) throw new UsageError(`ctl needs a socket and a command: ${SHAPE}`);
  if (p[0].trim() === '') throw new UsageError('ctl: the socket path is empty');
  if (p.length === 1) throw new UsageError(`ctl needs a command after the socket: ${SHAPE}`);
  return {
    kind: 'ctl',
    config: {
      socket: p[0],
      request: request(p[1], p.slice(2), v['leave-paused'] ?? false),
      timeout: v.timeout === undefined ? 30 : parseSeconds(v.timeout, '--timeout'),
      json: v.json ?? false,
    },
  };
}

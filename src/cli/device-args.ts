/**
 * The virtio device options of `vmmapi run`, in the key=value style of Cloud Hypervisor:
 * `--disk path=FILE[,readonly=on]` (or a bare `--disk FILE`; repeatable), `--rng`,
 * `--console file=PATH|socket=PATH|tty|off`.
 */
import { UsageError } from './errors.js';

/** One `--disk`. */
export interface DiskSpec {
  /** The raw image file. */
  path: string;
  /** The guest cannot write it (VIRTIO_BLK_F_RO). */
  readonly: boolean;
}

/** Where the virtio console (the guest's hvc0) goes; COM1 stays on stdio either way. */
export type ConsoleSpec =
  | { kind: 'off' }
  /** Appended to a file. */
  | { kind: 'file'; path: string }
  /** A Unix socket the VMM listens on: a client connected to it is hvc0's input and output. */
  | { kind: 'socket'; path: string }
  /** This process's stdout. */
  | { kind: 'tty' };

/** key=value pairs of one option value; a first word without `=` is `bare`. */
function keyValues(text: string, option: string, keys: readonly string[]): { bare?: string; values: Map<string, string> } {
  const values = new Map<string, string>();
  let bare: string | undefined;
  text.split(',').forEach((part, i) => {
    const eq = part.indexOf('=');
    if (eq < 0) {
      if (i === 0 && part.trim() !== '') {
        bare = part.trim();
        return;
      }
      throw new UsageError(`${option}: '${part}' is not key=value (keys: ${keys.join(', ')})`);
    }
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (!keys.includes(key)) throw new UsageError(`${option}: unknown key '${key}' (keys: ${keys.join(', ')})`);
    if (values.has(key)) throw new UsageError(`${option}: ${key} given twice`);
    if (value === '') throw new UsageError(`${option}: ${key} needs a value`);
    values.set(key, value);
  });
  return { bare, values };
}

/** on/off (also true/false, yes/no, 1/0). */
function onOff(value: string | undefined, what: string): boolean {
  if (value === undefined) return false;
  const v = value.toLowerCase();
  if (['on', 'true', 'yes', '1'].includes(v)) return true;
  if (['off', 'false', 'no', '0'].includes(v)) return false;
  throw new UsageError(`${what} must be on or off, got '${value}'`);
}

/** `--disk path=FILE[,readonly=on]` or `--disk FILE[,readonly=on]`. */
export function parseDisk(text: string): DiskSpec {
  const { bare, values } = keyValues(text, '--disk', ['path', 'readonly']);
  if (bare !== undefined && values.has('path')) throw new UsageError(`--disk: give the file once, as path=FILE or first, not both ('${text}')`);
  const path = bare ?? values.get('path');
  if (path === undefined) throw new UsageError(`--disk needs a file: --disk path=FILE[,readonly=on] (got '${text}')`);
  return { path, readonly: onOff(values.get('readonly'), '--disk readonly') };
}

/** `--console file=PATH|socket=PATH|tty|off`. */
export function parseConsole(text: string): ConsoleSpec {
  const t = text.trim();
  if (t === 'off') return { kind: 'off' };
  if (t === 'tty') return { kind: 'tty' };
  const { bare, values } = keyValues(t, '--console', ['file', 'socket']);
  if (bare !== undefined || values.size !== 1) throw new UsageError(`--console must be file=PATH, socket=PATH, tty or off, got '${text}'`);
  const [[key, path]] = [...values];
  return key === 'file' ? { kind: 'file', path } : { kind: 'socket', path };
}

/**
 * The virtio device options of `vmmapi run`, in the key=value style of Cloud Hypervisor:
 * `--disk path=FILE[,readonly=on]` (or a bare `--disk FILE`; repeatable), `--rng`,
 * `--console file=PATH|socket=PATH|tty|off`, `--net tap=NAME|socket=PATH[,mac=MAC]`
 * (repeatable), `--vsock cid=N,socket=PATH`.
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

/** One `--net`: a virtio-net device and the backend its frames go to. */
export type NetSpec =
  /** An existing TAP interface (opened through /dev/net/tun). */
  | { kind: 'tap'; name: string; mac?: string }
  /** QEMU's stream-socket protocol over a Unix socket vmmapi connects to (e.g. passt's). */
  | { kind: 'socket'; path: string; mac?: string };

/** `--vsock cid=N,socket=PATH`. */
export interface VsockSpec {
  /** The guest's context id, 3 to 2^32 - 2. */
  cid: number;
  /** The host side: clients connect to PATH; guest connections to port P go to PATH_P. */
  socket: string;
}

/** `--net tap=NAME[,mac=MAC]` or `--net socket=PATH[,mac=MAC]`. */
export function parseNet(text: string): NetSpec {
  const { bare, values } = keyValues(text, '--net', ['tap', 'socket', 'mac']);
  if (bare !== undefined) throw new UsageError(`--net must be tap=NAME or socket=PATH (with an optional ,mac=MAC), got '${text}'`);
  const mac = values.get('mac');
  if (mac !== undefined && !/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac)) throw new UsageError(`--net mac must be six hex bytes like 52:54:00:12:34:56, got '${mac}'`);
  if (mac !== undefined && (Number.parseInt(mac.slice(0, 2), 16) & 1) === 1) throw new UsageError(`--net mac must be a unicast address (first byte even), got '${mac}'`);
  const tap = values.get('tap');
  const path = values.get('socket');
  if ((tap === undefined) === (path === undefined)) throw new UsageError(`--net needs exactly one of tap=NAME and socket=PATH, got '${text}'`);
  if (tap !== undefined) {
    if (tap.length > 15) throw new UsageError(`--net tap: an interface name has at most 15 characters, got '${tap}'`);
    return mac === undefined ? { kind: 'tap', name: tap } : { kind: 'tap', name: tap, mac };
  }
  return mac === undefined ? { kind: 'socket', path: path! } : { kind: 'socket', path: path!, mac };
}

/** `--vsock cid=N,socket=PATH`. */
export function parseVsock(text: string): VsockSpec {
  const { bare, values } = keyValues(text, '--vsock', ['cid', 'socket']);
  const cidText = values.get('cid');
  const socket = values.get('socket');
  if (bare !== undefined || cidText === undefined || socket === undefined) throw new UsageError(`--vsock must be cid=N,socket=PATH, got '${text}'`);
  const cid = /^\d+$/.test(cidText) ? Number(cidText) : NaN;
  if (!Number.isSafeInteger(cid) || cid < 3 || cid > 2 ** 32 - 2) throw new UsageError(`--vsock cid must be an integer from 3 to ${2 ** 32 - 2}, got '${cidText}'`);
  return { cid, socket };
}

/** The virtio devices of a run, in PCI slot order: the disks, the nets, vsock, the rng, the console. */
export interface DeviceSpecs {
  /** virtio-blk disks, in PCI slot order. */
  disks: DiskSpec[];
  /** A virtio-rng device. */
  rng: boolean;
  /** The virtio console (hvc0); `off`: none. */
  console: ConsoleSpec;
  /** virtio-net devices, in PCI slot order after the disks. */
  nets: NetSpec[];
  /** A virtio-vsock device. */
  vsock?: VsockSpec;
}

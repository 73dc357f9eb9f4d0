/**
 * What `vmmapi run` stores in a snapshot's `meta` (under {@link RUN_META_KEY}) so that
 * `vmmapi run --restore` can reopen the machine's devices: the device specs (disks with their
 * paths and readonly, the rng, the console, the nets, vsock) and where the consoles went
 * (COM1 is always stdio; the debug console's destination), with absolute paths. Read back, it is checked as
 * untrusted input: a snapshot's meta is only as good as whoever wrote the file.
 */
import { resolve } from 'node:path';
import { SnapshotError } from '../snapshot/format.js';
import type { ConsoleSpec, DeviceSpecs, DiskSpec, NetSpec, VsockSpec } from './device-args.js';

/** The key of the CLI's entry in a snapshot's meta. */
export const RUN_META_KEY = 'vmmapiRun';

/** The version of {@link RunMeta} this code writes and reads. */
export const RUN_META_VERSION = 1;

/** The CLI's entry in a snapshot's meta. */
export interface RunMeta {
  version: typeof RUN_META_VERSION;
  /** The virtio devices, in PCI slot order. */
  devices: DeviceSpecs;
  /** Where COM1 went (always the VMM's stdin/stdout). */
  serial: 'stdio';
  /** Where the debug console went: a file, '-' (stdout), or null (no debug console). */
  debugcon: string | null;
  /** What the machine first booted (for `info`; not used to restore). */
  boot?: { kind: string; file: string };
}

/** `specs` with every path made absolute (a restore may run in another directory). */
function absolute(specs: DeviceSpecs): DeviceSpecs {
  const d: DeviceSpecs = {
    disks: specs.disks.map((x) => ({ path: resolve(x.path), readonly: x.readonly })),
    rng: specs.rng,
    console: specs.console.kind === 'file' || specs.console.kind === 'socket' ? { kind: specs.console.kind, path: resolve(specs.console.path) } : specs.console,
    nets: specs.nets.map((n) => (n.kind === 'socket' ? { ...n, path: resolve(n.path) } : n)),
  };
  if (specs.vsock) d.vsock = { cid: specs.vsock.cid, socket: resolve(specs.vsock.socket) };
  return d;
}

/** The meta object a snapshot of this run stores (paths made absolute against this process's working directory). */
export function runMeta(devices: DeviceSpecs, debugcon: string | undefined, boot: { kind: string; file: string } | undefined): Record<string, unknown> {
  const con = debugcon === undefined ? null : debugcon === '-' ? '-' : resolve(debugcon);
  const m: RunMeta = { version: RUN_META_VERSION, devices: absolute(devices), serial: 'stdio', debugcon: con };
  if (boot) m.boot = { kind: boot.kind, file: resolve(boot.file) };
  return { [RUN_META_KEY]: JSON.parse(JSON.stringify(m)) as unknown };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isPath = (v: unknown): v is string => typeof v === 'string' && v !== '' && !v.includes('\0');

/** Checks one part of the stored meta; `bad(what)` throws a SnapshotError naming the file and the part. */
type Bad = (what: string) => never;

function disk(v: unknown, bad: Bad): DiskSpec {
  if (!isObj(v) || !isPath(v.path) || typeof v.readonly !== 'boolean') bad('is not { path, readonly }');
  return { path: v.path, readonly: v.readonly };
}

function consoleSpec(v: unknown, bad: Bad): ConsoleSpec {
  if (!isObj(v)) bad('is not an object');
  if (v.kind === 'off' || v.kind === 'tty') return { kind: v.kind };
  if ((v.kind === 'file' || v.kind === 'socket') && isPath(v.path)) return { kind: v.kind, path: v.path };
  return bad('is not off, tty, or file/socket with a path');
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

function net(v: unknown, bad: Bad): NetSpec {
  if (!isObj(v)) bad('is not an object');
  if (v.mac !== undefined && (typeof v.mac !== 'string' || !MAC.test(v.mac))) bad('has a mac that is not xx:xx:xx:xx:xx:xx');
  const mac = v.mac === undefined ? {} : { mac: v.mac as string };
  if (v.kind === 'tap' && typeof v.name === 'string' && v.name !== '' && v.name.length <= 15) return { kind: 'tap', name: v.name, ...mac };
  if (v.kind === 'socket' && isPath(v.path)) return { kind: 'socket', path: v.path, ...mac };
  return bad('is not { kind: tap, name } or { kind: socket, path }');
}

function vsock(v: unknown, bad: Bad): VsockSpec {
  if (!isObj(v) || !Number.isSafeInteger(v.cid) || (v.cid as number) < 3 || (v.cid as number) > 2 ** 32 - 2 || !isPath(v.socket)) bad('is not { cid, socket }');
  return { cid: v.cid as number, socket: v.socket as string };
}

function list<T>(v: unknown, bad: Bad, each: (x: unknown, bad: Bad) => T): T[] {
  if (!Array.isArray(v)) bad('is not a list');
  return v.map((x, i) => each(x, (what) => bad(`[${i}] ${what}`)));
}

/**
 * The CLI's entry of a snapshot's `meta`, checked; undefined if there is none (a snapshot
 * taken through the library). SnapshotError naming `file` and the part for one that does not check.
 */
export function readRunMeta(meta: Record<string, unknown>, file: string): RunMeta | undefined {
  const m = meta[RUN_META_KEY];
  if (m === undefined) return undefined;
  const at = (part: string): Bad => (what) => {
    throw new SnapshotError(`${file}: meta.${RUN_META_KEY}${part}${/^[.[]/.test(what) ? '' : ' '}${what}`);
  };
  const bad: Bad = at('');
  if (!isObj(m)) bad('is not an object');
  if (m.version !== RUN_META_VERSION) bad(`.version is ${JSON.stringify(m.version)}; this vmmapi reads version ${RUN_META_VERSION}`);
  const d = m.devices;
  if (!isObj(d)) bad('.devices is not an object');
  if (typeof d.rng !== 'boolean') bad('.devices.rng is not a boolean');
  if (m.debugcon !== null && !isPath(m.debugcon)) bad('.debugcon is not a path, "-" or null');
  const devices: DeviceSpecs = {
    disks: list(d.disks, at('.devices.disks'), disk),
    rng: d.rng,
    console: consoleSpec(d.console, at('.devices.console')),
    nets: list(d.nets, at('.devices.nets'), net),
  };
  if (d.vsock !== undefined && d.vsock !== null) devices.vsock = vsock(d.vsock, at('.devices.vsock'));
  const out: RunMeta = { version: RUN_META_VERSION, devices, serial: 'stdio', debugcon: m.debugcon as string | null };
  if (isObj(m.boot) && typeof m.boot.kind === 'string' && typeof m.boot.file === 'string') out.boot = { kind: m.boot.kind, file: m.boot.file };
  return out;
}

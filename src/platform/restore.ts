/**
 * `restorePc`: a {@link Pc} from a snapshot directory that {@link Pc.snapshot} wrote.
 *
 * Order (each step checks before anything of the new machine runs; any failure destroys the
 * half-built machine and throws):
 * 1. the state file's header, checksum and shape, memory.bin's length (src/snapshot/format.ts);
 *    every vCPU's and the VM's KVM state decoded and checked;
 * 2. the virtio devices given must be the snapshot's device set (types, in order): a snapshot
 *    holds their state, not their backends, which the caller opens anew (a clone may point a
 *    disk elsewhere, and gets its own sockets);
 * 3. a PC of the same shape whose RAM maps memory.bin privately (copy-on-write: pages are
 *    read when the guest first touches them, and the file never changes), so the cost does
 *    not grow with guest RAM; the CPUID table it would give the vCPUs must be the snapshot's;
 * 4. PCI functions (config space, BARs, MSI-X, virtio transports, queues, devices, with the
 *    caller's per-device overrides), the legacy devices;
 * 5. vCPUs, then the VM (irqchip, PIT, clock), then the SYSCALL repair's record;
 * 6. the virtio devices resume (they may interrupt at once: after the LAPICs are back).
 * Then `pc.run()` continues the guest where it was paused.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { StateFormatError, decodeVcpuState, decodeVmState, type KvmVcpuState } from '../kvm-state.js';
import { MEMORY_FILE, SnapshotError, readStateFile, type SnapshotBody } from '../snapshot/format.js';
import { verifyMemoryFile } from '../snapshot/memory-file.js';
import type { VirtioDevice } from '../virtio/device.js';
import { restorePcDevices } from './device-state.js';
import { Pc, type PcOptions, type PcSerialOptions } from './pc.js';
import type { PcPciOverrides, PcPciState } from './pci.js';
import type { VirtioNotifyPath } from './virtio.js';

/** Options for {@link restorePc}. */
export interface PcRestoreOptions {
  /** COM1 of the restored machine (as {@link PcOptions.serial}). */
  serial?: PcSerialOptions;
  /** The debug console's sink, if the snapshot's machine had one (default: discard). */
  debugcon?: (byte: number) => void;
  /** As {@link PcOptions.onExit}. */
  onExit?: (status: number) => void;
  /** As {@link PcOptions.traceExits}. */
  traceExits?: (line: string) => void;
  /** VM name (default: a unique one). */
  name?: string;
  /**
   * The virtio devices, the same types in the same order as the snapshot's machine had (see
   * {@link snapshotDeviceTypes}), each opened anew: `await VirtioBlock.open({ path })` on the
   * clone's own image (same capacity), a VirtioNet on its own backend, a UnixMuxer's device on
   * its own socket. Their state comes from the snapshot.
   */
  virtio?: VirtioDevice[];
  /**
   * Per virtio device (by index in `virtio`), what its restore changes: `{ mac }` for a
   * VirtioNet, `{ guestCid }` for a VirtioVsock (a clone's fresh identity).
   */
  overrides?: Readonly<Record<number, unknown>>;
  /** Hash memory.bin and compare it with the snapshot's checksum first (reads the whole file; default false). */
  verifyMemory?: boolean;
}

/** The virtio device types (virtio device IDs) a snapshot's machine had, in PCI order: what {@link PcRestoreOptions.virtio} must match. */
export function snapshotDeviceTypes(dir: string): number[] {
  return virtioShape(readStateFile(dir), join(dir, 'snapshot.json')).map((d) => d.deviceType);
}

interface VirtioShape {
  deviceType: number;
  notify: VirtioNotifyPath;
}

function virtioShape(body: SnapshotBody, file: string): VirtioShape[] {
  const list = body.machine.options.virtio;
  if (!Array.isArray(list)) throw new SnapshotError(`${file}: the machine's options lack their virtio device list`);
  return list.map((d: unknown, i) => {
    const o = d as Partial<VirtioShape> | null;
    if (typeof o !== 'object' || o === null || !Number.isInteger(o.deviceType) || !['ioeventfd', 'posted', 'exit'].includes(o.notify as string)) {
      throw new SnapshotError(`${file}: virtio device ${i} of the machine's options is not { deviceType, notify }`);
    }
    return { deviceType: o.deviceType!, notify: o.notify! };
  });
}

/** The machine options a snapshot records, checked; with the caller's host-side options. */
function machineOptions(body: SnapshotBody, file: string, opts: PcRestoreOptions): PcOptions {
  const o = body.machine.options;
  if (body.machine.kind !== 'pc') throw new SnapshotError(`${file}: a snapshot of a '${body.machine.kind}' machine, not a PC`);
  const debugExit = o.debugExit === null ? undefined : (o.debugExit as PcOptions['debugExit']);
  const emulate = o.emulate === null ? undefined : o.emulate;
  if (emulate !== undefined && typeof emulate !== 'boolean') throw new SnapshotError(`${file}: the machine's "emulate" option is not a boolean`);
  if (typeof o.debugcon !== 'boolean') throw new SnapshotError(`${file}: the machine's "debugcon" option is not a boolean`);
  return {
    memory: body.machine.memory,
    cpus: body.machine.cpus,
    cpuid: o.cpuid as PcOptions['cpuid'],
    debugExit,
    emulate,
    debugcon: o.debugcon ? (opts.debugcon ?? (() => {})) : undefined,
    serial: opts.serial,
    onExit: opts.onExit,
    traceExits: opts.traceExits,
    name: opts.name,
  };
}

function checkRestoreOptions(opts: unknown): PcRestoreOptions {
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new TypeError('opts must be an object (PcRestoreOptions)');
  const o = opts as PcRestoreOptions;
  if (o.virtio !== undefined && !Array.isArray(o.virtio)) throw new TypeError('opts.virtio must be an array of VirtioDevice');
  if (o.overrides !== undefined && (typeof o.overrides !== 'object' || o.overrides === null)) throw new TypeError('opts.overrides must be an object');
  if (o.verifyMemory !== undefined && typeof o.verifyMemory !== 'boolean') throw new TypeError('opts.verifyMemory must be a boolean');
  return o;
}

/**
 * Restore the snapshot in `dir` into a new {@link Pc}, ready to `run()` from where the
 * snapshot's machine was paused (see the module comment). Several machines may be restored
 * from one snapshot at once, in one process or many. SnapshotError for a snapshot that is
 * truncated, corrupt, of another version, or for another machine (vCPU count, CPUID, device
 * set); TypeError/RangeError naming the field for a state that does not check; KvmError if
 * KVM refuses.
 */
export async function restorePc(dir: string, opts: PcRestoreOptions = {}): Promise<Pc> {
  if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty path string');
  const o = checkRestoreOptions(opts);
  const file = join(dir, 'snapshot.json');
  const body = readStateFile(dir);
  if (o.verifyMemory) verifyMemoryFile(dir, body);
  const vcpus: KvmVcpuState[] = body.vcpus.map((v, i) => named(`vcpus[${i}]`, file, () => decodeVcpuState(v)));
  const vmState = named('vm', file, () => decodeVmState(body.vm));
  const shape = virtioShape(body, file);
  const devices = o.virtio ?? [];
  const want = shape.map((d) => d.deviceType).join(', ') || 'none';
  const got = devices.map((d) => d.deviceType).join(', ') || 'none';
  if (want !== got) throw new SnapshotError(`${file}: the snapshot's machine had virtio devices of types [${want}]; opts.virtio has [${got}]`);
  const options = machineOptions(body, file, o);

  const fd = openSync(join(dir, MEMORY_FILE), 'r');
  let pc: Pc;
  try {
    pc = new Pc(options, { fd, segments: body.memory.segments });
  } finally {
    closeSync(fd); // the mappings keep the file
  }
  try {
    if (pc.cpuidDigest() !== body.machine.cpuid) {
      throw new SnapshotError(`${file}: this host gives the vCPUs another CPUID table than the snapshot's machine had (another CPU or KVM, or other cpuid options)`);
    }
    devices.forEach((d, i) => pc.addVirtioDevice(d, { notify: shape[i].notify }));
    const overrides: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(o.overrides ?? {})) {
      const i = Number(k);
      const at = Number.isInteger(i) && devices[i] ? pc.virtio.addressOf(devices[i]) : undefined;
      if (at === undefined) throw new RangeError(`opts.overrides.${k}: no virtio device ${k} in opts.virtio`);
      overrides[at] = v;
    }
    const commitPci = named('devices.pci', file, () => pc.pci.prepareRestore(body.devices.pci as PcPciState, overrides as PcPciOverrides));
    named('devices.platform', file, () => restorePcDevices(pc.devices, body.devices.platform));
    commitPci();
    vcpus.forEach((s, v) => named(`vcpus[${v}]`, file, () => pc.vm.restoreVcpuState(v, s)));
    named('vm', file, () => pc.vm.restoreVmState(vmState));
    const repair = body.devices.syscallRepair;
    if (typeof repair === 'string') pc.runner.seedSyscallRepair(new Uint8Array(Buffer.from(repair, 'base64')));
    pc.virtio.resume();
    return pc;
  } catch (e) {
    pc.destroy();
    throw e;
  }
}

/** Run `fn`; a TypeError/RangeError from it becomes a SnapshotError naming the file and part. */
function named<T>(part: string, file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof TypeError || e instanceof RangeError || e instanceof StateFormatError) {
      throw new SnapshotError(`${file}: ${part}: ${e.message}`);
    }
    throw e;
  }
}

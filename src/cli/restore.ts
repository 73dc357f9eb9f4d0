/**
 * `vmmapi run --restore DIR`: a machine from a snapshot (restorePc), its devices reopened
 * from the specs the snapshotting run stored in the snapshot's meta (src/cli/meta.ts), the
 * kinds given on the command line replacing the stored ones (src/cli/restore-devices.ts),
 * then run as a fresh run is (src/cli/session.ts): COM1 on stdio, the control socket, the
 * same exit codes. Files the restored guest writes to (the console's, debugcon's) are appended
 * to: its output continues the snapshotted run's.
 */
import { join } from 'node:path';
import { restorePc } from '../platform/restore.js';
import type { Pc } from '../platform/pc.js';
import { STATE_FILE, type SnapshotBody } from '../snapshot/format.js';
import { describeDevices } from './describe.js';
import { openDevices, type OpenedDevices } from './devices.js';
import { UsageError } from './errors.js';
import { readRunMeta, runMeta } from './meta.js';
import type { RestoreConfig } from './restore-args.js';
import { restoreDevices, restoreOverrides } from './restore-devices.js';
import { ConsoleOutput, driveMachine } from './session.js';

/** Where the restored debug console goes: as given, else as stored; UsageError if the machine has none. */
function debugconOf(cfg: RestoreConfig, body: SnapshotBody, stored: string | null | undefined): string | undefined {
  const has = body.machine.options.debugcon === true;
  if (cfg.debugcon !== undefined && !has) throw new UsageError('--debugcon: the snapshot\'s machine has no debug console (its run had no --debugcon)');
  return has ? (cfg.debugcon ?? stored ?? undefined) : undefined;
}

/**
 * Restore the snapshot in `cfg.dir` (whose state file `body` the caller has read, to start the
 * vCPU threads early) and run it to its end; resolves to the process exit code. SnapshotError
 * for a snapshot that does not check or does not fit; UsageError for device options that do
 * not fit it or files and sockets that cannot be opened.
 */
export async function restoreGuest(cfg: RestoreConfig, body: SnapshotBody, log: (line: string) => void): Promise<number> {
  const stored = readRunMeta(body.meta, join(cfg.dir, STATE_FILE));
  const specs = restoreDevices(stored?.devices, cfg.devices);
  const debugcon = debugconOf(cfg, body, stored?.debugcon);
  const out = new ConsoleOutput(debugcon, log, { append: true });
  let opened: OpenedDevices | undefined;
  let pc: Pc;
  try {
    opened = await openDevices(specs, out.stdout, log, { append: true });
    pc = await restorePc(cfg.dir, {
      virtio: opened.devices,
      overrides: restoreOverrides(cfg.devices, opened.netIndex, opened.vsockIndex),
      serial: { onOutput: out.serial },
      debugcon: out.debugcon,
      traceExits: cfg.traceExits ? (line) => log(`exit: ${line}`) : undefined,
    });
  } catch (e) {
    out.close(log);
    await opened?.close();
    throw e;
  }
  const restored = pc;
  return driveMachine(restored, out, {
    timeout: cfg.timeout,
    traceExits: cfg.traceExits,
    status: cfg.status,
    apiSocket: cfg.apiSocket,
    detach: opened.close,
    control: {
      meta: () => runMeta(specs, debugcon, stored?.boot),
      devices: () => describeDevices(specs, restored),
      restoredFrom: cfg.dir,
    },
  }, log);
}

/**
 * The devices of `vmmapi run --restore`: the snapshot's stored specs, with each kind the
 * command line gives (`--disk`, `--net`, `--vsock`, `--console`, `--rng`) replacing the
 * stored ones of that kind. A restore cannot change the device set (the snapshot holds each
 * device's state), so the counts must match; and what a restore may change about a device's
 * identity (a net's MAC, vsock's CID) goes to restorePc as an override.
 */
import type { DeviceSpecs } from './device-args.js';
import { UsageError } from './errors.js';

/** No devices. */
const NONE: DeviceSpecs = { disks: [], rng: false, console: { kind: 'off' }, nets: [] };

const count = (n: number, one: string): string => `${n === 0 ? 'no' : n} ${one}${n === 1 ? '' : 's'}`;

/** UsageError unless `given` keeps `stored`'s device set. */
function checkSameSet(stored: DeviceSpecs, given: Partial<DeviceSpecs>): void {
  const keep = 'a restore keeps the snapshot\'s devices; the options replace them one for one';
  if (given.disks && given.disks.length !== stored.disks.length)
    throw new UsageError(`--restore: the snapshot's machine has ${count(stored.disks.length, 'disk')}, ${count(given.disks.length, '--disk')} given (${keep})`);
  if (given.nets && given.nets.length !== stored.nets.length)
    throw new UsageError(`--restore: the snapshot's machine has ${count(stored.nets.length, 'network device')}, ${count(given.nets.length, '--net')} given (${keep})`);
  if (given.vsock && !stored.vsock) throw new UsageError('--vsock: the snapshot\'s machine has no vsock device');
  if (given.rng && !stored.rng) throw new UsageError('--rng: the snapshot\'s machine has no virtio-rng device');
  if (given.console && (given.console.kind === 'off') !== (stored.console.kind === 'off')) {
    throw new UsageError(
      stored.console.kind === 'off'
        ? '--console: the snapshot\'s machine has no virtio console'
        : '--console off: the snapshot\'s machine has a virtio console (give file=PATH, socket=PATH or tty)',
    );
  }
}

/**
 * The restore's devices: `stored` (undefined for a snapshot without the CLI's meta: no devices
 * but those given) with the kinds in `given` replaced. UsageError if that changes the set.
 */
export function restoreDevices(stored: DeviceSpecs | undefined, given: Partial<DeviceSpecs>): DeviceSpecs {
  if (stored) checkSameSet(stored, given);
  const base = stored ?? NONE;
  const out: DeviceSpecs = {
    disks: given.disks ?? base.disks,
    rng: given.rng ?? base.rng,
    console: given.console ?? base.console,
    nets: given.nets ?? base.nets,
  };
  const vsock = given.vsock ?? base.vsock;
  if (vsock) out.vsock = vsock;
  return out;
}

/**
 * restorePc's `overrides` (by index in the opened device list) for the identities the
 * command line gave: `{ mac }` for a `--net …,mac=`, `{ guestCid }` for a `--vsock`.
 */
export function restoreOverrides(given: Partial<DeviceSpecs>, netIndex: readonly number[], vsockIndex: number | undefined): Record<number, unknown> {
  const o: Record<number, unknown> = {};
  given.nets?.forEach((n, i) => {
    if (n.mac !== undefined) o[netIndex[i]] = { mac: n.mac };
  });
  if (given.vsock && vsockIndex !== undefined) o[vsockIndex] = { guestCid: given.vsock.cid };
  return o;
}

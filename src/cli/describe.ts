/** A run's virtio devices as plain data: for a snapshot's meta, and for the control socket's info. */
import type { Pc } from '../platform/pc.js';
import { VirtioNet } from '../virtio/devices/net.js';
import type { DeviceSpecs } from './device-args.js';

/** Just the device fields of `cfg` (a RunConfig or the specs of a restore). */
export function pickDevices(cfg: DeviceSpecs): DeviceSpecs {
  const d: DeviceSpecs = { disks: cfg.disks, rng: cfg.rng, console: cfg.console, nets: cfg.nets };
  if (cfg.vsock) d.vsock = cfg.vsock;
  return d;
}

/**
 * One object per device, in PCI slot order, in the words of the command line: `{ type: 'disk',
 * path, readonly }`, `{ type: 'net', socket | tap, mac }` (the MAC the device has now),
 * `{ type: 'vsock', cid, socket }`, `{ type: 'rng' }`, `{ type: 'console', file | socket | tty }`.
 */
export function describeDevices(specs: DeviceSpecs, pc: Pc | undefined): Record<string, unknown>[] {
  const macs = (pc?.virtio.devices ?? []).map((d) => d.device).filter((d): d is VirtioNet => d instanceof VirtioNet).map((d) => d.macString);
  const out: Record<string, unknown>[] = specs.disks.map((d) => ({ type: 'disk', path: d.path, readonly: d.readonly }));
  specs.nets.forEach((n, i) => out.push({ type: 'net', ...(n.kind === 'tap' ? { tap: n.name } : { socket: n.path }), mac: macs[i] ?? n.mac }));
  if (specs.vsock) out.push({ type: 'vsock', cid: specs.vsock.cid, socket: specs.vsock.socket });
  if (specs.rng) out.push({ type: 'rng' });
  const c = specs.console;
  if (c.kind !== 'off') out.push({ type: 'console', ...(c.kind === 'tty' ? { tty: true } : { [c.kind]: c.path }) });
  return out;
}

/**
 * The state of a PC's legacy devices ({@link PcDevices}) for snapshots: each device's own
 * `snapshot()` under its name, and the restore that checks every part before it changes any.
 * (debug-exit and debugcon hold no state; their ports are machine options.)
 */
import type { CmosState } from '../devices/cmos.js';
import type { FwCfgState } from '../devices/fw-cfg.js';
import type { I8042State } from '../devices/i8042.js';
import type { PostPortState } from '../devices/post-port.js';
import type { ResetPortState } from '../devices/reset-port.js';
import type { Uart16550State } from '../devices/uart16550.js';
import type { AcpiPmState } from './acpi-pm.js';
import type { PcDevices } from './devices.js';

/** The legacy devices' states, by device. */
export interface PcDevicesState {
  uart: Uart16550State;
  i8042: I8042State;
  cmos: CmosState;
  post: PostPortState;
  reset: ResetPortState;
  fwCfg: FwCfgState;
  acpiPm: AcpiPmState;
}

const NAMES = ['uart', 'i8042', 'cmos', 'post', 'reset', 'fwCfg', 'acpiPm'] as const;

/** Every legacy device's state (plain JSON-safe data). */
export function pcDevicesState(d: PcDevices): PcDevicesState {
  return {
    uart: d.uart.snapshot(),
    i8042: d.i8042.snapshot(),
    cmos: d.cmos.snapshot(),
    post: d.post.snapshot(),
    reset: d.reset.snapshot(),
    fwCfg: d.fwCfg.snapshot(),
    acpiPm: d.acpiPm.snapshot(),
  };
}

/**
 * Restore {@link pcDevicesState}'s output into `d`. Each device's restore() validates before
 * it changes anything; the parts are restored in order and, should one refuse, those already
 * restored get their earlier state back: nothing is half-done. TypeError/RangeError naming
 * the part.
 */
export function restorePcDevices(d: PcDevices, state: unknown): void {
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new TypeError('devices.platform must be an object');
  const s = state as Record<string, unknown>;
  for (const k of Object.keys(s)) if (!(NAMES as readonly string[]).includes(k)) throw new RangeError(`devices.platform: unknown device '${k}'`);
  for (const k of NAMES) if (!(k in s)) throw new RangeError(`devices.platform.${k} is missing`);
  const before = pcDevicesState(d);
  const done: (typeof NAMES)[number][] = [];
  try {
    for (const k of NAMES) {
      try {
        (d[k].restore as (x: unknown) => void)(s[k]);
      } catch (e) {
        if (e instanceof Error) e.message = `devices.platform.${k}: ${e.message}`;
        throw e;
      }
      done.push(k);
    }
  } catch (e) {
    for (const k of done) (d[k].restore as (x: unknown) => void)(before[k]);
    throw e;
  }
}

/** The PC's legacy devices, created and registered on a runner's port bus. */
import { AcpiPm } from './acpi-pm.js';
import { KvmIrqLine } from './irq.js';
import { IRQS, LOW_RAM_LIMIT, PORTS } from './layout.js';
import { buildFirmwareE820 } from '../boot/e820.js';
import { Cmos } from '../devices/cmos.js';
import { DebugExit } from '../devices/debug-exit.js';
import { Debugcon } from '../devices/debugcon.js';
import { FwCfg } from '../devices/fw-cfg.js';
import { I8042 } from '../devices/i8042.js';
import { PostPort } from '../devices/post-port.js';
import { ResetPort, type ResetKind } from '../devices/reset-port.js';
import { Uart16550 } from '../devices/uart16550.js';
import type { VcpuRunner } from '../runner/runner.js';
import type { PortRange } from './options.js';

/** The devices of a {@link Pc}. */
export interface PcDevices {
  /** COM1. */
  uart: Uart16550;
  /** Keyboard controller (its pulse-reset command resets the machine). */
  i8042: I8042;
  /** CMOS RAM + RTC, with the memory sizes and CPU count filled in. */
  cmos: Cmos;
  /** POST code port. */
  post: PostPort;
  /** 0xcf9 reset control. */
  reset: ResetPort;
  /** isa-debug-exit (port 0x501 unless PcOptions.debugExit moves it). */
  debugExit: DebugExit;
  /** Debug console, when a sink was given. */
  debugcon?: Debugcon;
  /** fw_cfg with RAM size, CPU count and `etc/e820`. */
  fwCfg: FwCfg;
  /** ACPI PM1a registers. */
  acpiPm: AcpiPm;
}

/** What the devices report back to the machine. */
export interface DeviceHooks {
  /** Bytes COM1 transmits. */
  serialOut: (byte: number) => void;
  /** Bytes written to the debug console; no debugcon port when undefined. */
  debugcon?: (byte: number) => void;
  /** A debug-exit write, with QEMU's status `(value << 1) | 1`. */
  debugExit: (status: number) => void;
  /** A reset request (0xcf9 or the i8042 pulse). */
  reset: (kind: ResetKind | 'keyboard') => void;
  /** An ACPI sleep request (SLP_EN) with its SLP_TYP. */
  sleep: (slpTyp: number) => void;
}

/** Where the movable devices go (checked by checkPcOptions). */
export interface DevicePorts {
  /** The debug-exit ports (default {@link PORTS}.debugExit). */
  debugExit?: PortRange;
}

/** Create the devices for `memoryBytes` of RAM and `cpus` vCPUs and register them on `runner`. */
export function attachDevices(runner: VcpuRunner, memoryBytes: number, cpus: number, hooks: DeviceHooks, ports: DevicePorts = {}): PcDevices {
  const vm = runner.vm;
  const d: PcDevices = {
    uart: new Uart16550({ irq: new KvmIrqLine(vm, IRQS.com1), onTransmit: hooks.serialOut }),
    i8042: new I8042({ onReset: () => hooks.reset('keyboard'), irq: new KvmIrqLine(vm, IRQS.keyboard), auxIrq: new KvmIrqLine(vm, IRQS.mouse) }),
    cmos: new Cmos({ memoryBytes, lowMemoryEnd: LOW_RAM_LIMIT, cpus }),
    post: new PostPort(),
    reset: new ResetPort({ onReset: (kind) => hooks.reset(kind) }),
    debugExit: new DebugExit({ onExit: (status) => hooks.debugExit(status) }),
    debugcon: hooks.debugcon ? new Debugcon({ onOutput: hooks.debugcon }) : undefined,
    fwCfg: new FwCfg({ ramBytes: memoryBytes, cpus, e820: buildFirmwareE820(memoryBytes, { lowMemEnd: LOW_RAM_LIMIT }) }),
    acpiPm: new AcpiPm({ onSleep: hooks.sleep }),
  };
  const pio = runner.pio;
  const reg = (p: { base: number; length: number }, dev: Parameters<typeof pio.register>[2], name: string, posted = false): void =>
    void pio.register(p.base, p.length, dev, { name, posted });
  // Pure output sinks are posted: the vCPU does not wait for the main thread.
  reg(PORTS.com1, d.uart, 'COM1', true);
  reg(PORTS.i8042, d.i8042, 'i8042');
  reg(PORTS.cmos, d.cmos, 'CMOS');
  reg(PORTS.post, d.post, 'POST', true);
  reg(PORTS.reset, d.reset, 'reset control');
  reg(ports.debugExit ?? PORTS.debugExit, d.debugExit, 'debug-exit');
  if (d.debugcon) reg(PORTS.debugcon, d.debugcon, 'debugcon', true);
  // fw_cfg: selector and data (firmware reads the data port with `rep insb`: the runner
  // reads the device once per element)
  reg(PORTS.fwCfg, d.fwCfg, 'fw_cfg');
  reg(PORTS.acpiPm, d.acpiPm, 'ACPI PM1a');
  return d;
}

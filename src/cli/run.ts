/** `vmmapi run`: build a PC from a {@link RunConfig}, run it, map the result to an exit code. */
import { readFileSync } from 'node:fs';
import { BootImageError } from '../boot/errors.js';
import { createPc, type Pc } from '../platform/pc.js';
import type { BootSpec, RunConfig } from './args.js';
import { UsageError } from './errors.js';
import { attachDevices, type DetachDevices } from './devices.js';
import { runMeta } from './meta.js';
import { ConsoleOutput, driveMachine, openError } from './session.js';
import { describeDevices, pickDevices } from './describe.js';

/** Read a whole image file; UsageError naming it if that fails. */
export function readImage(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new UsageError(`cannot read ${what} '${path}': ${openError(e)}`);
  }
}

/** Load the boot images into `pc`; image problems become UsageErrors naming the file. */
export function loadBoot(pc: Pc, boot: BootSpec): void {
  const main = readImage(boot.file, boot.kind === 'bios' ? 'BIOS' : boot.kind === 'flat' ? 'flat binary' : 'kernel');
  const initrd = boot.kind === 'kernel' && boot.initrd !== undefined ? readImage(boot.initrd, 'initrd') : undefined;
  const modules = boot.kind === 'multiboot' ? boot.modules.map((m) => ({ data: readImage(m.file, 'module'), cmdline: m.cmdline })) : [];
  try {
    switch (boot.kind) {
      case 'bios':
        pc.loadFirmware(main);
        break;
      case 'kernel':
        pc.loadLinux(main, { cmdline: boot.append, initrd, decompress: boot.decompressOnHost ? 'host' : 'guest' });
        break;
      case 'multiboot':
        pc.loadMultiboot(main, { cmdline: boot.append, modules });
        break;
      case 'flat':
        pc.loadFlat(main, boot.at, { mode: boot.mode });
        break;
    }
  } catch (e) {
    if (e instanceof BootImageError || e instanceof RangeError || e instanceof TypeError) {
      throw new UsageError(`cannot boot '${boot.file}': ${e.message}`);
    }
    throw e;
  }
}

/** Create the PC `cfg` describes, with COM1 and debugcon going to `out`; UsageError for an impossible machine. */
function buildPc(cfg: RunConfig, out: ConsoleOutput, log: (line: string) => void): Pc {
  let pc: Pc;
  try {
    pc = createPc({
      memory: cfg.memory,
      cpus: cfg.cpus,
      cpuid: { clear: cfg.clearCpuid },
      emulate: cfg.emulate,
      engine: cfg.engine,
      serial: { onOutput: out.serial },
      debugcon: out.debugcon,
      debugExit: cfg.debugExit,
      traceExits: cfg.traceExits ? (line) => log(`exit: ${line}`) : undefined,
    });
  } catch (e) {
    if (e instanceof RangeError || e instanceof TypeError) throw new UsageError(e.message);
    throw e;
  }
  const ineffective = pc.ineffectiveCpuidClears();
  if (ineffective.length > 0)
    log(
      `note: --clear-cpuid ${ineffective.join(',')}: KVM does not offer ${ineffective.length > 1 ? 'these bits' : 'this bit'}, so clearing changes nothing (on PVM hosts the guest still sees the host's bit; for Linux use clearcpuid= on its command line)`,
    );
  return pc;
}

/** Run the configured guest to completion; returns the process exit code. Throws UsageError/KvmError before the guest starts. */
export async function runGuest(cfg: RunConfig, log: (line: string) => void): Promise<number> {
  const out = new ConsoleOutput(cfg.debugcon, log);
  let pc: Pc | undefined;
  let detach: DetachDevices | undefined;
  try {
    pc = buildPc(cfg, out, log);
    detach = await attachDevices(pc, cfg, out.stdout, log);
    loadBoot(pc, cfg.boot);
  } catch (e) {
    out.close(log);
    pc?.destroy();
    await detach?.();
    throw e;
  }
  return driveMachine(pc, out, {
    timeout: cfg.timeout,
    traceExits: cfg.traceExits,
    status: cfg.status,
    apiSocket: cfg.apiSocket,
    detach,
    control: {
      meta: () => runMeta(pickDevices(cfg), cfg.debugcon, cfg.boot),
      devices: () => describeDevices(cfg, pc),
    },
  }, log);
}

/** `vmmapi run`: build a PC from a {@link RunConfig}, run it, map the result to an exit code. */
import { readFileSync } from 'node:fs';
import { BootImageError } from '../boot/errors.js';
import { createPc, describeRunResult, type Pc, type PcRunResult } from '../platform/pc.js';
import { GuestError } from '../runner/errors.js';
import type { BootSpec, RunConfig } from './args.js';
import { ByteSink, SerialInput } from './console.js';
import { ExitCode, UsageError } from './errors.js';
import { StatusLine } from './status.js';
import { attachDevices, type DetachDevices } from './devices.js';

const READ_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a path component is not a directory',
};

/** Read a whole image file; UsageError naming it if that fails. */
export function readImage(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    throw new UsageError(`cannot read ${what} '${path}': ${READ_ERRORS[code] ?? (e as Error).message}`);
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

/** Stderr notes and exit codes for each way a run ends. */
function outcome(r: PcRunResult, timeout: number | undefined, signal: NodeJS.Signals | undefined): { code: number; note?: string } {
  switch (r.reason) {
    case 'debug-exit':
      return { code: r.status & 0xff };
    case 'poweroff':
      return { code: ExitCode.OK };
    case 'halted':
      return { code: ExitCode.HALTED, note: 'guest halted: every vCPU halted with interrupts disabled' };
    case 'reset':
      return { code: ExitCode.OK, note: `guest requested a reset (${r.kind}); stopping` };
    case 'triple-fault':
      return { code: ExitCode.GUEST_FAILURE, note: 'guest failed: triple fault (shutdown)' };
    case 'timeout':
      return { code: ExitCode.TIMEOUT, note: `timed out after ${timeout} s; guest stopped` };
    case 'stopped':
      if (signal) return { code: 128 + (signal === 'SIGINT' ? 2 : 15), note: `stopped by ${signal}` };
      return { code: ExitCode.OK };
  }
}

/** Run the configured guest to completion; returns the process exit code. Throws UsageError/KvmError before the guest starts. */
export async function runGuest(cfg: RunConfig, log: (line: string) => void): Promise<number> {
  const stdout = ByteSink.stdout({
    onFirstDrop: (held) => log(`stdout is not keeping up: ${held} bytes of guest output are waiting; more is dropped (counted at exit)`),
  });
  let debugcon: ByteSink | undefined;
  if (cfg.debugcon === '-') debugcon = stdout;
  else if (cfg.debugcon !== undefined) {
    try {
      debugcon = ByteSink.file(cfg.debugcon);
    } catch (e) {
      throw new UsageError(`cannot write debugcon file '${cfg.debugcon}': ${READ_ERRORS[(e as NodeJS.ErrnoException).code ?? ''] ?? (e as Error).message}`);
    }
  }
  let pc: Pc;
  let status: StatusLine | undefined;
  const toStdout = (b: number): void => {
    status?.noteOutput(b);
    stdout.push(b);
  };
  try {
    pc = createPc({
      memory: cfg.memory,
      cpus: cfg.cpus,
      cpuid: { clear: cfg.clearCpuid },
      emulate: cfg.emulate,
      serial: { onOutput: toStdout },
      debugcon: debugcon === stdout ? toStdout : debugcon ? (b) => debugcon.push(b) : undefined,
      debugExit: cfg.debugExit,
      traceExits: cfg.traceExits ? (line) => log(`exit: ${line}`) : undefined,
    });
  } catch (e) {
    if (debugcon !== stdout) debugcon?.close();
    if (e instanceof RangeError || e instanceof TypeError) throw new UsageError(e.message);
    throw e;
  }
  const ineffective = pc.ineffectiveCpuidClears();
  if (ineffective.length > 0)
    log(
      `note: --clear-cpuid ${ineffective.join(',')}: KVM does not offer ${ineffective.length > 1 ? 'these bits' : 'this bit'}, so clearing changes nothing (on PVM hosts the guest still sees the host's bit; for Linux use clearcpuid= on its command line)`,
    );
  let signal: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals): void => {
    signal ??= s;
    pc.stop();
  };
  let input: SerialInput | undefined;
  let detach: DetachDevices | undefined;
  try {
    detach = await attachDevices(pc, cfg, stdout, log);
    loadBoot(pc, cfg.boot);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    input = new SerialInput((bytes) => void pc.sendSerial(bytes), () => pc.stop());
    // the status line: on stderr, while the guest is quiet (a terminal by default, else --status)
    if (cfg.status ?? process.stderr.isTTY === true) {
      status = new StatusLine(pc.runner, process.stderr);
      status.start();
    }
    let result: PcRunResult;
    try {
      result = await pc.run({ timeoutMs: cfg.timeout === undefined ? undefined : cfg.timeout * 1000 });
    } catch (e) {
      status?.stop(); // erased before any note
      if (e instanceof GuestError) {
        log(e.message);
        if (cfg.traceExits) log(`run ended: KVM could not continue the guest; exit status ${ExitCode.GUEST_FAILURE}`);
        return ExitCode.GUEST_FAILURE;
      }
      throw e;
    }
    status?.stop();
    const { code, note } = outcome(result, cfg.timeout, signal);
    stdout.flush();
    if (note) log(note);
    if (cfg.traceExits) log(`run ended: ${result.reason === 'stopped' && signal ? `stopped by ${signal}` : describeRunResult(result)}; exit status ${code}`);
    return code;
  } finally {
    status?.stop();
    // what the instruction fallback did, per mnemonic (the VM's emulated_* stats)
    const emulated = emulationSummary(pc);
    if (emulated) log(`instructions finished in userspace: ${emulated}`);
    input?.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    stdout.close();
    if (stdout.dropped > 0) log(`dropped ${stdout.dropped} bytes of guest output: stdout did not keep up`);
    if (debugcon !== stdout) debugcon?.close();
    pc.destroy();
    await detach?.();
  }
}

/** "clac ×12, popcnt ×3": what the machine's instruction fallback finished, or '' if nothing. */
function emulationSummary(pc: Pc): string {
  return [...pc.emulatedInstructions()].map(([k, n]) => `${k} ×${n}`).join(', ');
}

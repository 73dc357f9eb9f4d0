/**
 * The part of `vmmapi run` that a fresh run and a `--restore` share: the host ends of the
 * consoles (COM1 on stdio, debugcon), and driving a built machine — stdin to COM1, signals,
 * the status line, the control socket, the run, its exit code and notes, and the cleanup.
 */
import { describeRunResult, type Pc, type PcRunResult } from '../platform/pc.js';
import { GuestError } from '../runner/errors.js';
import { ControlServer } from '../control/server.js';
import { SocketPathError } from '../control/socket-path.js';
import { ByteSink, SerialInput } from './console.js';
import { RunController, type ControllerOptions } from './controller.js';
import { ExitCode, UsageError } from './errors.js';
import { StatusLine } from './status.js';

const OPEN_ERRORS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a path component is not a directory',
};

/** A Node error's reason in words. */
export function openError(e: unknown): string {
  return OPEN_ERRORS[(e as NodeJS.ErrnoException).code ?? ''] ?? (e as Error).message;
}

/** Where the guest's consoles go: COM1 to stdout, the debug console to stdout, a file or nowhere. */
export class ConsoleOutput {
  /** Stdout (COM1, and debugcon with '-'). */
  readonly stdout: ByteSink;
  /** The status line, once there is one (told about guest output). */
  status: StatusLine | undefined;
  readonly #debugcon: ByteSink | undefined;

  /** Open stdout and the debug console's destination (`-`, a file, or none); UsageError naming a file that cannot be written. */
  constructor(debugcon: string | undefined, log: (line: string) => void, opts: { append?: boolean } = {}) {
    this.stdout = ByteSink.stdout({
      onFirstDrop: (held) => log(`stdout is not keeping up: ${held} bytes of guest output are waiting; more is dropped (counted at exit)`),
    });
    if (debugcon === '-') this.#debugcon = this.stdout;
    else if (debugcon !== undefined) {
      try {
        this.#debugcon = ByteSink.file(debugcon, opts);
      } catch (e) {
        throw new UsageError(`cannot write debugcon file '${debugcon}': ${openError(e)}`);
      }
    }
  }

  /** COM1's output byte. */
  readonly serial = (b: number): void => {
    this.status?.noteOutput(b);
    this.stdout.push(b);
  };

  /** The debug console's sink, if it has a destination. */
  get debugcon(): ((b: number) => void) | undefined {
    const d = this.#debugcon;
    if (d === undefined) return undefined;
    return d === this.stdout ? this.serial : (b) => d.push(b);
  }

  /** Write out what is held and close the files (the debug console's; stdout stays open). */
  close(log: (line: string) => void): void {
    this.stdout.close();
    if (this.stdout.dropped > 0) log(`dropped ${this.stdout.dropped} bytes of guest output: stdout did not keep up`);
    if (this.#debugcon !== this.stdout) this.#debugcon?.close();
  }
}

/** What {@link driveMachine} needs besides the machine. */
export interface DriveOptions {
  /** Seconds before giving up. */
  timeout?: number;
  /** A line per exit, and why the run ended. */
  traceExits: boolean;
  /** The status line: on, off, or unset (on a terminal). */
  status?: boolean;
  /** The control socket's path. */
  apiSocket?: string;
  /** What the control socket's requests need (the snapshot meta, the devices for info). */
  control: Omit<ControllerOptions, 'stop' | 'apiSocket'>;
  /** Close the devices' backends (after the machine is destroyed). */
  detach: () => Promise<void>;
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

/** Listen on the control socket; UsageError if the path is taken. */
async function listenControl(path: string, controller: RunController): Promise<ControlServer> {
  try {
    return await ControlServer.listen(path, controller.handle, { what: '--api-socket' });
  } catch (e) {
    throw e instanceof SocketPathError ? new UsageError(e.message) : e;
  }
}

/** "clac ×12, popcnt ×3": what the machine's instruction fallback finished, or '' if nothing. */
function emulationSummary(pc: Pc): string {
  return [...pc.emulatedInstructions()].map(([k, n]) => `${k} ×${n}`).join(', ');
}

/**
 * Run the built (loaded or restored) machine `pc` to its end with COM1 on stdio, and the
 * control socket if asked for; resolves to the process exit code. Owns `pc`, `out` and the
 * devices from here on: everything is closed and destroyed when it settles.
 */
export async function driveMachine(pc: Pc, out: ConsoleOutput, opts: DriveOptions, log: (line: string) => void): Promise<number> {
  let signal: NodeJS.Signals | undefined;
  const onSignal = (s: NodeJS.Signals): void => {
    signal ??= s;
    pc.stop();
  };
  let input: SerialInput | undefined;
  let control: ControlServer | undefined;
  try {
    const controller = new RunController(pc, { ...opts.control, stop: () => pc.stop(), apiSocket: opts.apiSocket });
    if (opts.apiSocket !== undefined) control = await listenControl(opts.apiSocket, controller);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    input = new SerialInput((bytes) => void pc.sendSerial(bytes), () => pc.stop());
    // the status line: on stderr, while the guest is quiet (a terminal by default, else --status)
    if (opts.status ?? process.stderr.isTTY === true) {
      out.status = new StatusLine(pc.runner, process.stderr);
      out.status.start();
    }
    let result: PcRunResult;
    try {
      const running = pc.run({ timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000 });
      controller.started();
      result = await running;
    } catch (e) {
      out.status?.stop(); // erased before any note
      if (e instanceof GuestError) {
        log(e.message);
        if (opts.traceExits) log(`run ended: KVM could not continue the guest; exit status ${ExitCode.GUEST_FAILURE}`);
        return ExitCode.GUEST_FAILURE;
      }
      throw e;
    }
    out.status?.stop();
    const { code, note } = outcome(result, opts.timeout, signal);
    out.stdout.flush();
    if (note) log(note);
    if (opts.traceExits) log(`run ended: ${result.reason === 'stopped' && signal ? `stopped by ${signal}` : describeRunResult(result)}; exit status ${code}`);
    return code;
  } finally {
    out.status?.stop();
    // what the instruction fallback did, per mnemonic (the VM's emulated_* stats)
    const emulated = emulationSummary(pc);
    if (emulated) log(`instructions finished in userspace: ${emulated}`);
    input?.close();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await control?.close();
    out.close(log);
    pc.destroy();
    await opts.detach();
  }
}

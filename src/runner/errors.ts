/** Errors raised by the vCPU runner. */
import { describeExit, type VmExit } from '../exits.js';
import { KvmError } from '../errors.js';
import type { WorkerFailure } from './protocol.js';

/** Misuse of the runner or a failure of its machinery (worker, pool). */
export class RunnerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunnerError';
  }
}

/** The guest did something the VMM cannot continue from; carries the exit. */
export class GuestError extends Error {
  /** The exit that ended the run. */
  readonly exit: VmExit;
  constructor(exit: VmExit) {
    super(`guest failed: ${describeExit(exit)}`);
    this.name = 'GuestError';
    this.exit = exit;
  }
}

/** Capture `e` (thrown in a vCPU worker) so that it can cross postMessage without losing its class or errno. */
export function toWorkerFailure(e: unknown): WorkerFailure {
  if (!(e instanceof Error)) return { name: 'Error', message: String(e) };
  const f: WorkerFailure = { name: e.name, message: e.message, stack: e.stack };
  if (e instanceof KvmError) Object.assign(f, { code: e.code, errno: e.errno, syscall: e.syscall });
  return f;
}

/** Rebuild, on the main thread, the error a worker captured with {@link toWorkerFailure}. */
export function fromWorkerFailure(f: WorkerFailure, vcpu: number): Error {
  const message = `vCPU ${vcpu} worker: ${f.message}`;
  let e: Error;
  if (f.name === 'KvmError' && f.code !== undefined) e = new KvmError(message, f.code, f.errno ?? 0, f.syscall ?? '');
  else if (f.name === 'TypeError') e = new TypeError(message);
  else if (f.name === 'RangeError') e = new RangeError(message);
  else if (f.name === 'RunnerError') e = new RunnerError(message);
  else {
    e = new Error(message);
    if (f.name && f.name !== 'Error') e.name = f.name;
  }
  if (f.stack) e.stack = `${e.name}: ${message}\n${f.stack.split('\n').slice(1).join('\n')}`;
  return e;
}

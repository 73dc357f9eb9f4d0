/** Errors raised by the vCPU runner. */
import { describeExit, type VmExit } from '../exits.js';

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

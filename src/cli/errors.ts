/** CLI errors and exit codes. */

/** Process exit codes of `vmmapi run`. */
export const ExitCode = {
  /** The guest powered off, or every vCPU halted. */
  OK: 0,
  /** The guest failed (KVM internal error, triple fault) or the VMM could not run it. */
  GUEST_FAILURE: 1,
  /** Bad command line, unreadable or unusable image, impossible machine. */
  USAGE: 2,
  /** `--timeout` expired (the convention of coreutils' timeout). */
  TIMEOUT: 124,
} as const;

/** A command-line or configuration problem: reported on one line, exit code 2. */
export class UsageError extends Error {
  /** A usage problem, `message` in one line. */
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
